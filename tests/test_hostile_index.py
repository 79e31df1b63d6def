"""Hostile indexes: values forged with every checksum recomputed, and hostile files.

An index is a file people download. Each case here is refused by ``open()`` (or by the first
search touching the forged term) with :class:`IndexCorruptError` naming the file, never a
crash, a hang, a traceback or a silent wrong answer; ``verify_index`` reports each as a
problem and never raises. The crafted cases of issue 14 are here as regression tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from forge import forge, generation_of, manifest_body, read, rewrite_manifest

from sparse_ir import ImpactIndex, SparseBatch
from sparse_ir.errors import IndexCorruptError, IndexFormatError
from sparse_ir.index import storage
from sparse_ir.index.check import verify_index

VOCAB = ["a", "b", "c", "d"]
ROOT = Path(__file__).resolve().parents[1]


def _docs(n: int = 12) -> SparseBatch:
    rows = [
        {"a": 1 + i % 5, "b": 1 + (i * 7) % 3, **({"c": 2} if i % 3 == 0 else {})} for i in range(n)
    ]
    return SparseBatch.from_dicts(rows, VOCAB, ids=[f"d{i}" for i in range(n)])


@pytest.fixture
def built(tmp_path):
    path = tmp_path / "index"
    ImpactIndex.build(_docs(), path, show_progress=False)
    return path


@pytest.fixture
def kept(tmp_path):
    """An index with its document-ordered postings kept (format version 1)."""
    path = tmp_path / "kept"
    ImpactIndex.build(_docs(), path, show_progress=False, doc_ordered_postings=True)
    return path


@pytest.fixture
def flat(tmp_path):
    """An index without the search layout (the plain exhaustive kernel)."""
    path = tmp_path / "flat"
    ImpactIndex.build(_docs(), path, show_progress=False, search_layout=False)
    return path


def _refused(path, *fragments):
    """open() refuses with IndexCorruptError naming each fragment; verify_index reports it."""
    with pytest.raises(IndexFormatError) as caught:
        ImpactIndex.open(path)
    for fragment in fragments:
        assert fragment in str(caught.value), str(caught.value)
    report = verify_index(path)
    assert not report.ok
    return str(caught.value)


def _search_refused(path, query, *fragments):
    """open() accepts (the damage is inside a term's postings), every search touching the
    term refuses, and verify() and verify_index refuse."""
    index = ImpactIndex.open(path)
    for mode in ["exhaustive", "pruned"] if index.has_search_layout else ["exhaustive"]:
        with pytest.raises(IndexCorruptError) as caught:
            index.search(query, k=3, mode=mode)
        for fragment in fragments:
            assert fragment in str(caught.value)
        with pytest.raises(IndexCorruptError):
            index.search_batch([query], k=3, mode=mode, threads=1)
    with pytest.raises(IndexCorruptError):
        index.verify()
    assert not verify_index(path).ok


# -- the crafted cases of the issue, through the CLI in a subprocess ------------------------------


def _cli(*args, timeout=300):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "sparse_ir", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def _forge_document_count(path, count, far_docs):
    """num_documents = ``count`` with the per-document arrays emptied so the counts agree,
    and postings pointing at ``far_docs`` (the issue's SIGSEGV / heap corruption)."""
    generation = generation_of(path)
    # Document numbers, or in-window offsets (uint16) when the impact order is the only copy.
    name = "postings_docs" if (generation / "postings_docs.bin").exists() else "impact_order_docs"
    docs = read(generation, name)
    top = np.iinfo(docs.dtype).max
    forged = np.resize(np.minimum(np.asarray(far_docs, np.int64), top), len(docs))

    def edit(body):
        body["num_documents"] = count

    return forge(
        path,
        arrays={
            "doc_ids.offsets": np.zeros(max(count + 1, 0), np.int64),
            "doc_ids.bytes": np.zeros(0, np.uint8),
            "forward_offsets": np.zeros(max(count + 1, 0), np.int64),
            name: forged.astype(docs.dtype),
        },
        manifest=edit,
    )


@pytest.mark.parametrize(
    "count, far_docs",
    [(-1, [10**8]), (-1, [65536 + i for i in range(8)]), (0, [10**8]), (0, [65536, 1])],
    ids=["minus-one-far", "minus-one-heap", "zero-far", "zero-heap"],
)
def test_forged_document_count_is_refused_by_search_in_a_subprocess(built, count, far_docs):
    _forge_document_count(built, count, far_docs)
    result = _cli("search", "--index", str(built), "--model", "idf", "a b")
    assert result.returncode == 3, (result.returncode, result.stderr[-2000:])  # not a signal
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sparse-ir: error:"), result.stderr
    assert "manifest" in lines[0] or "num_documents" in lines[0] or "offsets" in lines[0]
    assert "Traceback" not in result.stderr
    verify = _cli("verify", str(built))
    assert verify.returncode == 1 and "CORRUPT" in verify.stderr + verify.stdout


# -- manifest fields ------------------------------------------------------------------------------


def _set(key, value, section=None):
    def edit(body):
        (body[section] if section else body)[key] = value

    return edit


MANIFEST_CASES = {
    "num_documents -1": (_set("num_documents", -1), "num_documents"),
    "num_documents above int32": (_set("num_documents", 2**31), "num_documents"),
    "num_documents as a string": (_set("num_documents", "12"), "num_documents"),
    "vocab_size -1": (_set("vocab_size", -1), "vocab_size"),
    "num_postings -5": (_set("num_postings", -5), "num_postings"),
    "impact_dtype <f8": (_set("impact_dtype", "<f8"), "impact_dtype"),
    "impact_dtype garbage": (_set("impact_dtype", "(x)[1]"), "impact_dtype"),
    "impact_dtype >u2": (_set("impact_dtype", ">u2"), "impact_dtype"),
    "max_impact above the dtype": (_set("max_impact", 70000), "max_impact"),
    "max_impact 0 with postings": (_set("max_impact", 0), "max_impact"),
    "quantizer scale NaN-ish": (_set("scale", -1.0, "quantizer"), "quantizer"),
    "quantizer max_impact 2^40": (_set("max_impact", 2**40, "quantizer"), "quantizer"),
    "quantizer unknown key": (_set("evil", 1, "quantizer"), "quantizer"),
    "term_dtype <f8": (_set("term_dtype", "<f8", "search_layout"), "term_dtype"),
    "term_dtype <u2 over a huge vocabulary": (
        lambda b: (b.update(vocab_size=70000), b["search_layout"].update(term_dtype="<u2")),
        "term_dtype",
    ),
    "window_bits 0": (_set("window_bits", 0, "search_layout"), "windows"),
    "window_bits 17": (_set("window_bits", 17, "search_layout"), "windows"),
    "window_bits -3": (_set("window_bits", -3, "search_layout"), "window_bits"),
    "window_bits 10^30": (_set("window_bits", 10**30, "search_layout"), "windows"),
    "window_bits 2^63-1": (_set("window_bits", 2**63 - 1, "search_layout"), "windows"),
    "num_windows 5": (_set("num_windows", 5, "search_layout"), "windows"),
    "num_segments above postings": (_set("num_segments", 10**6, "search_layout"), "segments"),
    "files not a mapping": (_set("files", []), "files"),
    "files missing": (lambda b: b.pop("files"), "files"),
    "a size as a string": (
        lambda b: b["files"]["vocab.json"].update(size="160"),
        "size",
    ),
    "a required file unlisted": (lambda b: b["files"].pop("term_max_impact.bin"), "term_max"),
    "has_contents without the files": (_set("has_contents", True), "doc_titles"),
    "search_layout not a mapping": (_set("search_layout", [1, 2]), "search_layout"),
}


@pytest.mark.parametrize("case", sorted(MANIFEST_CASES))
def test_a_forged_manifest_field_is_refused_at_open(built, case):
    edit, fragment = MANIFEST_CASES[case]
    forge(built, manifest=edit)
    message = _refused(built)
    assert fragment in message, message


@pytest.mark.parametrize(
    "name", ["../escape.bin", "", "a\0b", "sub/dir.bin", ".hidden", "..", "bad\nname"]
)
def test_a_listed_name_outside_the_generation_is_refused(built, name):
    generation = generation_of(built)
    (generation.parent / "escape.bin").write_bytes(b"x")

    def edit(body):
        body["files"][name] = {"size": 1, "crc32": 0}

    forge(built, manifest=edit)
    _refused(built, "manifest lists")


# -- vocabulary -----------------------------------------------------------------------------------


def _forge_vocab(path, vocab):
    from sparse_ir.index.builder import vocab_hash

    data = json.dumps(vocab).encode()
    forge(
        path,
        raw_files={"vocab.json": data},
        manifest=lambda body: body.update(vocab_hash=vocab_hash(vocab)),
    )


@pytest.mark.parametrize(
    "vocab, fragment",
    [
        (["a", "a", "c", "d"], "listed twice"),
        (["a", 7, "c", "d"], "not a string"),
        (["a", None, "c", "d"], "not a string"),
        (["a", ["b"], "c", "d"], "not a string"),
    ],
)
def test_a_forged_vocabulary_is_refused(built, vocab, fragment):
    _forge_vocab(built, vocab)
    _refused(built, "vocab.json", fragment)


def test_a_deeply_nested_vocabulary_is_refused(built):
    generation = generation_of(built)
    deep = b"[" * 100_000 + b"]" * 100_000
    forge(built, raw_files={"vocab.json": deep})
    _refused(built, "vocab.json")
    assert generation.exists()


# -- offsets and layout arrays (checked at open) --------------------------------------------------


def _layout_case(name, change):
    def apply(path):
        generation = generation_of(path)
        values = read(generation, name).astype(np.int64)
        forge(path, arrays={name: change(values)})

    return apply


OPEN_ARRAY_CASES = {
    "term offsets decreasing": _layout_case("term_offsets", lambda v: v[::-1].copy()),
    "term offsets past the postings": _layout_case("term_offsets", lambda v: v + 1),
    "window offsets out of range": _layout_case("window_offsets", lambda v: v * 1000),
    "window offsets shifted inside": _layout_case(
        "window_offsets", lambda v: np.r_[0, np.minimum(v[1:-1] + 1, v[-1]), v[-1]]
    ),
    "negative segment ends": _layout_case("segment_ends", lambda v: -v),
    "segment ends shuffled": _layout_case("segment_ends", lambda v: v[::-1].copy()),
    "segment impacts rising": _layout_case("segment_impacts", lambda v: v[::-1].copy()),
    "segment offsets out of range": _layout_case("segment_offsets", lambda v: v * 3),
    "forward offsets out of range": _layout_case("forward_offsets", lambda v: v * 7),
    "forward offsets decreasing": _layout_case("forward_offsets", lambda v: v[::-1].copy()),
    "doc id offsets out of range": _layout_case("doc_ids.offsets", lambda v: v * 9),
    "term max above max_impact": _layout_case("term_max_impact", lambda v: v + 100),
    "term max zero for a term with postings": _layout_case("term_max_impact", lambda v: v * 0),
}


@pytest.mark.parametrize("case", sorted(OPEN_ARRAY_CASES))
def test_forged_offsets_are_refused_at_open(built, case):
    OPEN_ARRAY_CASES[case](built)
    _refused(built)


# -- per-term postings (checked before a term's first search) -------------------------------------


def _postings(path, name, change):
    generation = generation_of(path)
    values = read(generation, name).astype(np.int64)
    forge(path, arrays={name: change(values)})


TERM_CASES = {
    "a document number past the collection": (
        "postings_docs",
        lambda v: np.where(np.arange(len(v)) == 0, 10**8, v),
        "document numbers",
    ),
    "a negative document number": (
        "postings_docs",
        lambda v: np.where(np.arange(len(v)) == 0, -5, v),
        "document numbers",
    ),
    "documents descending in a term": (
        "postings_docs",
        lambda v: np.r_[v[1], v[0], v[2:]],
        "document numbers",
    ),
    "an impact of zero": ("postings_impacts", lambda v: np.r_[0, v[1:]], "impact"),
    "an impact of zero in the impact order": (
        "impact_order_impacts",
        lambda v: np.r_[0, v[1:]],
        "impact",
    ),
    "an impact above the term's maximum in the impact order": (
        "impact_order_impacts",
        lambda v: np.r_[v[0] + 50, v[1:]],
        "impact",
    ),
    "a document twice in a window": (
        "impact_order_docs",
        lambda v: np.r_[v[0], v[0], v[2:]],
        "impact_order_docs",
    ),
    "an impact above the term's maximum": (
        "postings_impacts",
        lambda v: np.r_[v[0] + 50, v[1:]],
        "impact",
    ),
    "impact order re-sorted ascending": (
        "impact_order_impacts",
        lambda v: np.sort(v),
        "impact_order",
    ),
    "impact order offsets past the window": (
        "impact_order_docs",
        lambda v: v + 40,
        "impact_order",
    ),
}


@pytest.mark.parametrize("case", sorted(TERM_CASES))
def test_forged_postings_are_refused_before_the_first_search(built, kept, case):
    name, change, fragment = TERM_CASES[case]
    # The document-ordered files exist only where they are kept; the impact order in both.
    for path in [kept] if name.startswith("postings_") else [built, kept]:
        _postings(path, name, change)
        _search_refused(path, {"a": 1, "b": 1}, fragment)


@pytest.mark.parametrize(
    "case", ["a document number past the collection", "an impact above the term's maximum"]
)
def test_forged_postings_without_a_layout_are_refused(flat, case):
    name, change, fragment = TERM_CASES[case]
    _postings(flat, name, change)
    _search_refused(flat, {"a": 1, "b": 1}, fragment)


def test_a_sound_term_is_searched_while_a_damaged_one_is_refused(built):
    generation = generation_of(built)
    offsets = read(generation, "term_offsets")
    docs = read(generation, "impact_order_docs").astype(np.int64)
    docs[offsets[2]] = 65535  # the first posting of term "c", past its window's documents
    forge(built, arrays={"impact_order_docs": docs})
    index = ImpactIndex.open(built)
    assert index.search({"a": 1}, k=3) == ImpactIndex.reference_search(index, {"a": 1}, k=3)
    with pytest.raises(IndexCorruptError, match="term 2 \\('c'\\)"):
        index.search({"a": 1, "c": 1})


# -- verify(): damage that stays within bounds ----------------------------------------------------


VERIFY_CASES = {
    "forward impacts set to 1": ("forward_impacts", lambda v: np.ones_like(v)),
    "forward terms permuted in a document": ("forward_terms", lambda v: np.r_[v[1], v[0], v[2:]]),
    "impact order docs swapped within a window": (
        "impact_order_docs",
        lambda v: np.r_[v[1], v[0], v[2:]],
    ),
    "impact order names a document twice": (
        "impact_order_docs",
        lambda v: np.r_[v[1], v[1], v[2:]],
    ),
}


@pytest.mark.parametrize("case", sorted(VERIFY_CASES))
def test_verify_sees_the_whole_search_layout(built, case):
    name, change = VERIFY_CASES[case]
    _postings(built, name, change)
    report = verify_index(built)
    assert not report.ok, report.summary()
    with pytest.raises(IndexCorruptError):
        ImpactIndex.open(built).verify()


@pytest.mark.parametrize("forged", [b"d\x01", b"\xff\xfe", b"d\n"])
def test_verify_refuses_a_forged_document_id(built, forged):
    generation = generation_of(built)
    data = read(generation, "doc_ids.bytes")
    offsets = read(generation, "doc_ids.offsets")
    first = int(offsets[1])
    new = np.frombuffer(forged + bytes(data[first:]), np.uint8)
    shifted = np.r_[0, offsets[1:] - first + len(forged)]
    forge(built, arrays={"doc_ids.bytes": new, "doc_ids.offsets": shifted})
    report = verify_index(built)
    assert not report.ok and "doc_ids" in report.summary(), report.summary()


def test_a_sound_index_verifies(built, flat):
    for path in (built, flat):
        assert verify_index(path).ok
        ImpactIndex.open(path).verify()


# -- hostile files --------------------------------------------------------------------------------


def test_current_symlinked_to_dev_zero_is_refused_at_once(built):
    os.unlink(built / "CURRENT")
    os.symlink("/dev/zero", built / "CURRENT")
    _refused(built, "CURRENT", "outside the index directory")


def test_manifest_symlinked_to_dev_zero_is_refused_at_once(built):
    generation = generation_of(built)
    os.unlink(generation / "manifest.json")
    os.symlink("/dev/zero", generation / "manifest.json")
    _refused(built, "manifest.json", "outside the index directory")


@pytest.mark.parametrize("name", ["vocab.json", "impact_order_docs.bin", "doc_ids.bytes.bin"])
def test_a_listed_file_symlinked_to_dev_zero_is_refused(built, name):
    generation = generation_of(built)
    os.unlink(generation / name)
    os.symlink("/dev/zero", generation / name)
    _refused(built, name, "outside the index directory")


@pytest.mark.parametrize("name", ["vocab.json", "term_offsets.bin", "manifest.json", "CURRENT"])
def test_a_fifo_is_refused_without_hanging(built, name):
    generation = generation_of(built)
    target = (built if name == "CURRENT" else generation) / name
    body = manifest_body(generation)
    os.unlink(target)
    os.mkfifo(target)
    if name not in ("manifest.json", "CURRENT"):
        body["files"][name]["size"] = 0  # a FIFO's size: every size check passes
        rewrite_manifest(generation, body)
    _refused(built, name)


def test_a_listed_file_that_is_a_directory_is_refused(built):
    generation = generation_of(built)
    os.unlink(generation / "vocab.json")
    (generation / "vocab.json").mkdir()
    _refused(built, "vocab.json", "directory")


def test_a_symlink_inside_the_index_is_accepted(built):
    generation = generation_of(built)
    (generation / "vocab.json").rename(built / "vocab-copy.json")
    os.symlink("../vocab-copy.json", generation / "vocab.json")
    assert ImpactIndex.open(built).search({"a": 1}, k=1)


def test_a_symlink_to_a_file_elsewhere_is_refused(built, tmp_path):
    generation = generation_of(built)
    outside = tmp_path / "elsewhere.json"
    (generation / "vocab.json").rename(outside)
    os.symlink(outside, generation / "vocab.json")
    _refused(built, "vocab.json", "outside the index directory")


def test_a_huge_manifest_is_refused_before_parsing(built, monkeypatch):
    generation = generation_of(built)
    forge(built, manifest=lambda body: body["build"].update(padding="x" * 5000))
    monkeypatch.setattr(storage, "MAX_MANIFEST_BYTES", 4096)
    _refused(built, "manifest.json", "larger than")
    assert (generation / "manifest.json").stat().st_size > 4096


def test_a_long_current_is_refused(built):
    (built / "CURRENT").write_bytes(b"gen-000001 " + b"0" * 10_000 + b"\n")
    _refused(built, "CURRENT")


def test_a_generation_symlinked_elsewhere_is_refused(built, tmp_path):
    generation = generation_of(built)
    moved = tmp_path / "moved-generation"
    generation.rename(moved)
    os.symlink(moved, generation)
    _refused(built, "outside the index directory")


def test_verify_index_never_raises_whatever_the_damage(built, monkeypatch):
    """Even an unexpected exception inside a check becomes a problem in the report."""
    from sparse_ir.index import validate

    def explode(index):
        raise MemoryError("simulated")

    monkeypatch.setattr(validate, "check_all_terms", explode)
    report = verify_index(built)
    assert not report.ok and "MemoryError" in report.summary()


# -- SparseBatch files: zip bombs and forged sizes ---------------------------------------------


def _rezip(source, target, *, replace=None, compression=None):
    """Copy an .npz member by member, replacing some members' bytes, optionally deflated."""
    import zipfile

    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for info in old.infolist():
            data = (replace or {}).get(info.filename, old.read(info.filename))
            new.writestr(info.filename, data, compress_type=compression or info.compress_type)


def _npy(array) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


@pytest.fixture
def batch_file(tmp_path):
    path = tmp_path / "batch.npz"
    _docs(3).save(path)
    return path


def test_a_zip_bomb_member_is_refused_before_it_inflates(batch_file, tmp_path):
    import zipfile

    from sparse_ir.errors import InputError

    bomb = tmp_path / "bomb.npz"
    _rezip(
        batch_file,
        bomb,
        replace={"values.npy": _npy(np.zeros(4_000_000, np.float32))},
        compression=zipfile.ZIP_DEFLATED,
    )
    assert bomb.stat().st_size < 200_000
    with pytest.raises(InputError, match="zip bomb"):
        SparseBatch.load(bomb)


def test_an_array_header_larger_than_its_member_is_refused(batch_file, tmp_path):
    from sparse_ir.errors import InputError

    header = _npy(np.zeros(3, np.float32))
    forged = header.replace(b"(3,)", b"(1000000000000,)".ljust(4)) if b"(3,)" in header else b""
    assert forged, header
    target = tmp_path / "forged.npz"
    _rezip(batch_file, target, replace={"values.npy": forged})
    with pytest.raises(InputError, match="array header needs"):
        SparseBatch.load(target)


def test_an_unknown_member_is_refused(batch_file, tmp_path):
    import zipfile

    from sparse_ir.errors import InputError

    target = tmp_path / "extra.npz"
    _rezip(batch_file, target)
    with zipfile.ZipFile(target, "a") as archive:
        archive.writestr("payload.npy", _npy(np.zeros(3)))
    with pytest.raises(InputError, match="members"):
        SparseBatch.load(target)


def test_a_compressed_sparse_batch_still_loads(batch_file, tmp_path):
    import zipfile

    target = tmp_path / "compressed.npz"
    _rezip(batch_file, target, compression=zipfile.ZIP_DEFLATED)
    loaded = SparseBatch.load(target)
    assert loaded.ids == SparseBatch.load(batch_file).ids


# -- quantized SparseBatch queries whose weights overflow ---------------------------------------


def test_a_quantized_batch_query_that_would_overflow_is_refused(tmp_path):
    """int32 query impacts × impacts up to 2^31 - 1 over three terms pass 2^63: refused,
    naming the query and the term, instead of scores that wrap."""
    from sparse_ir import Quantizer
    from sparse_ir.errors import InputError

    top = 2**31 - 1
    docs = SparseBatch.from_dicts([{"a": top, "b": top, "c": top}, {"a": 1}], VOCAB)
    index = ImpactIndex.build(
        docs, tmp_path / "wide", quantizer=Quantizer(max_impact=top), show_progress=False
    )
    queries = SparseBatch.from_dicts(
        [{"a": 1}, {"a": top, "b": top, "c": top}], VOCAB, ids=["ok", "evil"]
    )
    assert queries.is_quantized
    with pytest.raises(InputError, match="query 'evil'.*'a'"):
        index.search_batch(queries, k=3)
    with pytest.raises(InputError, match="'a'"):
        index.search(queries.select([1]), k=3)
    assert index.search(queries.select([0]), k=1)[0].score == top


# -- dense indexes ------------------------------------------------------------------------------


@pytest.fixture
def dense(tmp_path):
    pytest.importorskip("faiss")
    from sparse_ir.index.dense import DenseIndex, HnswOptions

    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(60, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    path = tmp_path / "dense"
    DenseIndex.build(vectors, path, hnsw=HnswOptions(m=4, ef_construction=16))
    return path


def _forge_graph(path, change):
    import faiss

    generation = generation_of(path)
    graph = faiss.deserialize_index(read(generation, "hnsw"))
    change(graph.hnsw)
    forge(path, arrays={"hnsw": faiss.serialize_index(graph)})


def _set_vector(vector, position, value):
    import faiss

    values = faiss.vector_to_array(vector)
    values[position] = value
    faiss.copy_array_to_vector(values, vector)


@pytest.mark.parametrize(
    "case",
    ["neighbour past the collection", "negative neighbour", "entry point", "level too high"],
)
def test_a_forged_hnsw_graph_is_refused_before_faiss_searches_it(dense, case):
    from sparse_ir.index.dense import DenseIndex

    changes = {
        "neighbour past the collection": lambda h: _set_vector(h.neighbors, 3, 10**6),
        "negative neighbour": lambda h: _set_vector(h.neighbors, 0, -7),
        "entry point": lambda h: setattr(h, "entry_point", 10**6),
        "level too high": lambda h: _set_vector(h.levels, 5, 99),
    }
    _forge_graph(dense, changes[case])
    index = DenseIndex.open(dense)
    query = np.ones(8, np.float32) / np.sqrt(8)
    assert index.search(query, k=3, mode="exact")  # the matrix is sound
    with pytest.raises(IndexCorruptError, match="hnsw.bin: damaged HNSW graph"):
        index.search(query, k=3, mode="hnsw")
    report = verify_index(dense)
    assert not report.ok and "HNSW" in report.summary()


def test_dense_vectors_scaled_are_found_by_verify(dense):
    generation = generation_of(dense)
    vectors = read(generation, "vectors")
    forge(dense, arrays={"vectors": vectors * 100})
    report = verify_index(dense)
    assert not report.ok and "normalized" in report.summary(), report.summary()


@pytest.mark.parametrize("value", [10**30, 0, "128", -1])
def test_a_forged_hnsw_setting_is_refused(dense, value):
    from sparse_ir.index.dense import DenseIndex

    forge(dense, manifest=lambda body: body["hnsw"].update(ef_search=value))
    with pytest.raises(IndexFormatError, match="ef_search"):
        DenseIndex.open(dense)


@pytest.mark.parametrize("dim", [0, -1, 10**6])
def test_a_forged_dense_dimension_is_refused(dense, dim):
    from sparse_ir.index.dense import DenseIndex

    forge(dense, manifest=lambda body: body.update(dim=dim))
    with pytest.raises(IndexFormatError, match="dim"):
        DenseIndex.open(dense)
    assert not verify_index(dense).ok


def test_a_sound_dense_index_verifies(dense):
    assert verify_index(dense).ok, verify_index(dense).summary()


def test_check_hnsw_graph_without_faiss_own_checks(dense):
    """Older faiss deserializes any graph: our check must refuse what faiss 1.8+ refuses."""
    import faiss

    from sparse_ir.index.validate import check_hnsw_graph

    graph = faiss.deserialize_index(read(generation_of(dense), "hnsw"))
    check_hnsw_graph(graph, 60, 8, Path("hnsw.bin"))
    with pytest.raises(IndexCorruptError, match="60 × 8"):
        check_hnsw_graph(graph, 61, 8, Path("hnsw.bin"))
    _set_vector(graph.hnsw.neighbors, 3, 10**6)
    with pytest.raises(IndexCorruptError, match="neighbour id"):
        check_hnsw_graph(graph, 60, 8, Path("hnsw.bin"))
    _set_vector(graph.hnsw.neighbors, 3, 0)
    _set_vector(graph.hnsw.levels, 5, 99)
    with pytest.raises(IndexCorruptError, match="level"):
        check_hnsw_graph(graph, 60, 8, Path("hnsw.bin"))


def test_from_dicts_refuses_an_impact_beyond_int32_naming_the_token():
    from sparse_ir.errors import InputError

    with pytest.raises(InputError, match="row 1: impact 4611686018427387904 of 'b'"):
        SparseBatch.from_dicts([{"a": 1}, {"a": 2, "b": 2**62}], VOCAB)
