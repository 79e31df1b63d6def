"""Which postings layouts an impact index stores, and that every reader copes with each.

New builds with a search layout store no document-ordered postings (format version 2): the
impact-ordered copy and the forward index hold the postings. An index written before (format
version 1, ``tests/data/index-v1``, made by ``tests/data/make_index_v1.py`` with the sparse_ir
of that time) still opens, verifies and answers exactly as a new build of the same documents.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from sparse_ir import ImpactIndex, SparseBatch
from sparse_ir.errors import IndexCorruptError, IndexFormatError
from sparse_ir.export.lucene import document_vectors
from sparse_ir.index import storage
from sparse_ir.index.check import verify_index
from sparse_ir.index.writer import IndexWriter

DATA = Path(__file__).parent / "data"
sys.path.insert(0, str(DATA))
from make_index_v1 import build, rows  # noqa: E402

sys.path.remove(str(DATA))

MODES = ("exhaustive", "pruned")


def brute_force(documents, query: dict[str, int], k: int) -> list[tuple[int, int]]:
    scores = [(sum(w * d.get(t, 0) for t, w in query.items()), n) for n, d in enumerate(documents)]
    return [(n, s) for s, n in sorted(scores, key=lambda x: (-x[0], x[1])) if s > 0][:k]


def queries(vocab, count=40, seed=3):
    rng = np.random.default_rng(seed)
    return [
        {vocab[t]: int(rng.integers(1, 6)) for t in rng.choice(len(vocab), 4, replace=False)}
        for _ in range(count)
    ]


@pytest.fixture
def v1(tmp_path):
    path = tmp_path / "v1"
    shutil.copytree(DATA / "index-v1", path)
    return ImpactIndex.open(path)


@pytest.fixture
def new(tmp_path):
    build(tmp_path / "new")
    return ImpactIndex.open(tmp_path / "new")


def test_a_version_1_index_opens_verifies_and_searches_exactly(v1, new):
    documents, vocab = rows()
    assert v1.manifest.format_version == 1 and v1.has_doc_ordered_postings
    assert new.manifest.format_version == 2 and not new.has_doc_ordered_postings
    v1.verify()
    new.verify()
    assert v1._layout.num_windows == new._layout.num_windows == 10
    for query in queries(vocab):
        for k in (1, 10, 300):
            want = brute_force(documents, query, k)
            for index in (v1, new):
                for mode in MODES:
                    got = [(h.docno, h.score) for h in index.search(query, k, mode=mode)]
                    assert got == want, (index.manifest.format_version, mode, k)
                assert [(h.docno, h.score) for h in index.reference_search(query, k)] == want
    # The impact order, forward index and offsets are the very bytes the old build wrote.
    for name in new.manifest.files:
        assert (new.directory / name).read_bytes() == (v1.directory / name).read_bytes(), name


def test_every_other_reader_agrees_on_both_layouts(v1, new):
    documents, vocab = rows()
    for term in range(len(vocab)):
        for got, want in zip(new.postings(term), v1.postings(term)):
            assert np.array_equal(got, want) and got.dtype == want.dtype
    for docno in (0, 1, 150, 299):
        assert new.document_vector(docno) == v1.document_vector(docno) == documents[docno]
        query = {vocab[0]: 2, vocab[5]: 1, vocab[17]: 3}
        assert new.explain(query, docno) == v1.explain(query, docno)
    assert document_vectors(new).to_dicts() == document_vectors(v1).to_dicts() == documents
    assert new.document_block(290, 300).ids == tuple(f"d{i}" for i in range(290, 300))
    assert verify_index(new.directory.parent).ok and verify_index(v1.directory.parent).ok


def test_the_document_ordered_postings_are_refused_by_name_when_absent(new):
    for name in ("postings_docs", "postings_impacts"):
        with pytest.raises(IndexFormatError, match=rf"no document-ordered postings \({name}"):
            getattr(new, name)
    assert "postings_docs.bin" not in new.manifest.files
    assert not (new.directory / "postings_docs.bin").exists()


def test_a_reader_of_version_1_only_refuses_a_new_index_by_its_version(new):
    # What an earlier sparse_ir says: the version, not a missing or corrupt file.
    with pytest.raises(IndexFormatError, match="format version 2; this sparse_ir reads version 1"):
        storage.read_manifest(new.directory, format_name="sparse-ir-impact-index", version=1)


def test_keeping_them_writes_the_version_1_files(tmp_path, v1):
    build(tmp_path / "kept", doc_ordered_postings=True)
    kept = ImpactIndex.open(tmp_path / "kept")
    assert kept.manifest.format_version == 1 and kept.has_doc_ordered_postings
    assert sorted(kept.manifest.files) == sorted(v1.manifest.files)
    for name in kept.manifest.files:
        assert (kept.directory / name).read_bytes() == (v1.directory / name).read_bytes(), name
    body = json.loads((kept.directory / "manifest.json").read_text())
    assert "doc_ordered_postings" not in body


def test_without_a_search_layout_they_are_the_only_postings(tmp_path):
    batch = SparseBatch.from_dicts([{"a": 1}, {"b": 2}], ["a", "b"])
    flat = ImpactIndex.build(batch, tmp_path / "flat", show_progress=False, search_layout=False)
    assert flat.has_doc_ordered_postings and flat.manifest.format_version == 1
    assert flat.document_vector(1) == {"b": 2} and flat.explain({"b": 1}, 1)[0].score == 2
    with pytest.raises(ValueError, match="doc_ordered_postings=False needs search_layout"):
        ImpactIndex.build(
            batch,
            tmp_path / "none",
            show_progress=False,
            search_layout=False,
            doc_ordered_postings=False,
        )


def _forge(index, edit):
    from forge import forge

    return forge(index.directory.parent, manifest=edit)


def test_a_manifest_that_contradicts_itself_is_refused(tmp_path, new, v1):
    sys.path.insert(0, str(Path(__file__).parent))
    _forge(new, lambda body: body.pop("search_layout"))
    with pytest.raises(IndexCorruptError, match="holds no postings"):
        ImpactIndex.open(new.directory.parent)
    _forge(v1, lambda body: body.update(format_version=2, doc_ordered_postings=False))
    with pytest.raises(IndexCorruptError, match="postings_docs.bin is listed"):
        ImpactIndex.open(v1.directory.parent)


def _forge_arrays(index, arrays):
    from forge import forge

    sys.path.insert(0, str(Path(__file__).parent))
    return forge(index.directory.parent, arrays=arrays)


def _read(index, name):
    return np.array(storage.open_array(index.directory / f"{name}.bin"))


def test_damage_to_the_only_copy_is_refused(tmp_path):
    sys.path.insert(0, str(Path(__file__).parent))
    cases = {
        # A window of term t0 lists one document twice.
        "impact_order_docs": ("a document twice", "search"),
        # One impact changed in the forward index only: the copies disagree.
        "forward_impacts": ("differs from the impact-ordered postings", "verify"),
    }
    for name, (message, where) in cases.items():
        build(tmp_path / name)
        index = ImpactIndex.open(tmp_path / name)
        values = _read(index, name)
        if name == "impact_order_docs":
            # A window of term 0 with two impacts: its first document written again in place
            # of the first posting of a lower impact (so only the duplicate check sees it).
            windows = np.asarray(index._layout.window_offsets)[: index._layout.num_windows + 1]
            impacts = _read(index, "impact_order_impacts")
            low, j = next(
                (int(low), j)
                for low, high in zip(windows[:-1], windows[1:])
                for j in range(1, int(high - low))
                if impacts[low + j] != impacts[low]
            )
            values[low + j] = values[low]
        else:
            values[7] = values[7] % 29 + 1
        _forge_arrays(index, {name: values})
        damaged = ImpactIndex.open(tmp_path / name)
        with pytest.raises(IndexCorruptError, match=message):
            if where == "search":
                damaged.search({"t0": 1}, 5, mode="exhaustive")
            else:
                damaged.verify()


def test_a_live_index_merges_segments_of_both_layouts(tmp_path, monkeypatch):
    from sparse_ir.index import builder

    documents, vocab = rows()
    ids = [f"d{i}" for i in range(300)]
    path = tmp_path / "live"
    with IndexWriter.open(path, vocab=vocab) as writer:
        # The first segment as an earlier sparse_ir wrote it (document-ordered postings kept).
        with monkeypatch.context() as patch:
            patch.setattr(builder, "keeps_doc_ordered_postings", lambda *_: True)
            writer.add(SparseBatch.from_dicts(documents[:150], vocab, ids=ids[:150]))
            writer.commit()
        writer.add(SparseBatch.from_dicts(documents[150:], vocab, ids=ids[150:]))
        writer.commit()
        writer.delete(["d3", "d200"])
        writer.commit()
        live = ImpactIndex.open(path)
        assert [s.has_doc_ordered_postings for s in live.segments] == [True, False]
        kept = [d for i, d in enumerate(documents) if i not in (3, 200)]
        kept_ids = [d for i, d in enumerate(ids) if i not in (3, 200)]
        for query in queries(vocab, 10):
            want = [(kept_ids[n], s) for n, s in brute_force(kept, query, 10)]
            for mode in MODES:
                got = [(h.doc_id, h.score) for h in live.search(query, 10, mode=mode)]
                assert got == want, mode
        writer.force_merge(1)
    merged = ImpactIndex.open(path)
    assert len(merged.segments) == 1
    segment = merged.segments[0]
    assert not segment.has_doc_ordered_postings
    assert [segment.document_vector(n) for n in range(segment.num_documents)] == kept
    for query in queries(vocab, 10):
        want = brute_force(kept, query, 10)
        assert [(h.docno, h.score) for h in merged.search(query, 10, mode="exhaustive")] == want
        assert [(h.docno, h.score) for h in merged.reference_search(query, 10)] == want


def _corpus(path: Path) -> Path:
    texts = ["sparse retrieval with impacts", "dense retrieval", "impacts of sparse models", "x"]
    path.write_text(
        "".join(json.dumps({"_id": f"d{n}", "text": t}) + "\n" for n, t in enumerate(texts))
    )
    return path


def test_the_index_command_keeps_them_when_asked(tmp_path):
    from sparse_ir.cli import main

    corpus = _corpus(tmp_path / "corpus.jsonl")
    for name, extra in (("default", []), ("kept", ["--doc-ordered-postings"])):
        argv = ["index", "--bm25", "--input", str(corpus), "--output", str(tmp_path / name)]
        assert main(argv + extra) == 0
    default, kept = ImpactIndex.open(tmp_path / "default"), ImpactIndex.open(tmp_path / "kept")
    assert not default.has_doc_ordered_postings and kept.has_doc_ordered_postings
    assert verify_index(tmp_path / "kept").ok
    query = SparseBatch.from_dicts([{kept.vocab[0]: 3, kept.vocab[1]: 2}], kept.vocab, ["q"])
    for mode in MODES:
        assert kept.search(query, k=3, mode=mode) == default.search(query, k=3, mode=mode)


def test_the_index_command_refuses_them_on_ray(tmp_path, capsys):
    from sparse_ir.cli import main

    corpus = _corpus(tmp_path / "corpus.jsonl")
    argv = ["index", "--ray", "--input", str(corpus), "--output", str(tmp_path / "ix")]
    assert main([*argv, "--doc-ordered-postings"]) != 0
    assert "--doc-ordered-postings is not available with --ray" in capsys.readouterr().err
    assert not (tmp_path / "ix").exists()
