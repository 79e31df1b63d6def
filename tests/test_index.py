"""ImpactIndex: build, open, exact search (numba == numpy == scipy), spills, bad input."""

import json

import numpy as np
import pytest
from conftest import random_batch

from sparse_ir.errors import IndexCorruptError, IndexFormatError, InputError
from sparse_ir.index import builder
from sparse_ir.index.impact_index import ImpactIndex
from sparse_ir.index.modes import Approximate, Pruned
from sparse_ir.quantize import Quantizer
from sparse_ir.sparse_batch import SparseBatch

VOCAB = ("a", "b", "c", "d", "e")


@pytest.fixture()
def hand_index(tmp_path):
    # Impacts chosen so that scores tie: doc0 and doc2 both score 6 for query {a:1, b:1}.
    batch = SparseBatch.from_dicts(
        [{"a": 2, "b": 4}, {"c": 7}, {"a": 5, "b": 1}, {}, {"b": 3, "e": 1}],
        VOCAB,
        ids=["d0", "d1", "d2", "d3", "d4"],
    )
    return ImpactIndex.build(batch, tmp_path / "hand", show_progress=False)


def test_hand_made_scores_and_tie_break(hand_index):
    hits = hand_index.search({"a": 1, "b": 1}, k=10)
    assert [(h.doc_id, h.score) for h in hits] == [("d0", 6), ("d2", 6), ("d4", 3)]
    assert hand_index.search({"a": 1, "b": 1}, k=1)[0].doc_id == "d0"
    # Query weights multiply impacts: d2 = 3*5 + 1*1 = 16, d0 = 3*2 + 1*4 = 10.
    assert [(h.doc_id, h.score) for h in hand_index.search({"a": 3, "b": 1}, k=2)] == [
        ("d2", 16),
        ("d0", 10),
    ]


def test_documents_matching_nothing_are_not_returned(hand_index):
    assert hand_index.search({"d": 5}, k=10) == []
    assert [h.doc_id for h in hand_index.search({"c": 1}, k=10)] == ["d1"]


def test_manifest_facts(hand_index):
    manifest = hand_index.manifest
    assert manifest.num_documents == 5 and manifest.num_postings == 7
    assert manifest.impact_dtype == "|u1" and manifest.max_impact == 7
    assert hand_index.document_frequency().tolist() == [2, 3, 1, 0, 1]
    assert hand_index.term_max_impact.tolist() == [5, 4, 7, 0, 1]
    assert manifest.build["empty_documents"] == 1
    assert hand_index.doc_ids == ["d0", "d1", "d2", "d3", "d4"]


def test_float_queries_are_quantized_with_the_index_quantizer(hand_index):
    # 0.01 * 100 = 1 for each term: the same as the integer query.
    assert hand_index.search({"a": 0.01, "b": 0.01}) == hand_index.search({"a": 1, "b": 1})


def test_explain_and_document_vector(hand_index):
    parts = hand_index.explain({"a": 1, "b": 2}, hand_index.docno("d0"))
    assert [(c.token, c.query_weight, c.document_impact, c.score) for c in parts] == [
        ("b", 2, 4, 8),
        ("a", 1, 2, 2),
    ]
    assert hand_index.document_vector(hand_index.docno("d4")) == {"b": 3, "e": 1}


@pytest.mark.parametrize("seed", range(6))
def test_numba_equals_numpy_reference_and_scipy(tmp_path, seed):
    rng = np.random.default_rng(seed)
    docs = random_batch(rng, 400, 60, 25, integer=bool(seed % 2))
    queries = random_batch(rng, 30, 60, 12)
    index = ImpactIndex.build(docs, tmp_path / "ix", memory_budget=3000, show_progress=False)
    quantized = index.quantizer.quantize(docs) if not docs.is_quantized else docs
    matrix = quantized.to_scipy().astype(np.int64)
    query_impacts = index.quantizer.quantize(queries)
    brute = (query_impacts.to_scipy().astype(np.int64) @ matrix.T).toarray()
    run = index.search_batch(queries, 15, threads=2)
    for q in range(len(queries)):
        candidates = np.flatnonzero(brute[q] > 0)
        order = np.lexsort((candidates, -brute[q][candidates]))[:15]
        expected = [(int(d), int(brute[q][d])) for d in candidates[order]]
        one = queries.select([q])
        for hits in (index.search(one, 15), index.reference_search(one, 15), run[f"doc{q}"]):
            assert [(h.docno, h.score) for h in hits] == expected


def test_large_impacts_switch_to_int64_and_stay_exact(tmp_path):
    quantizer = Quantizer(scale=1, max_impact=2**31 - 1)
    batch = SparseBatch.from_dicts([{"a": 2**30, "b": 2**30}, {"a": 5}], VOCAB, ids=["x", "y"])
    index = ImpactIndex.build(batch, tmp_path / "big", quantizer=quantizer, show_progress=False)
    hits = index.search({"a": 3, "b": 3})
    assert hits[0].score == 6 * 2**30 and hits[1].score == 15
    assert index.search_batch([{"a": 3, "b": 3}], 2)["0"][0].score == 6 * 2**30
    top = index.search_arrays({"a": 3, "b": 3})
    assert top.docnos.tolist() == [0, 1] and top.scores.tolist() == [6 * 2**30, 15]


def _arrays_pairs(top):
    assert top.docnos.dtype == np.int64 and top.scores.dtype == np.int64
    return list(zip(top.docnos.tolist(), top.scores.tolist()))


@pytest.mark.parametrize("search_layout", [True, False])
@pytest.mark.parametrize("seed", range(3))
def test_search_arrays_equals_the_reference_exactly(tmp_path, seed, search_layout):
    """search_arrays (every exact mode, with and without the search layout) ==
    reference_search, ties included; search's hits are the same."""
    rng = np.random.default_rng(seed)
    # Small integer impacts: many equal scores, so the tie-break is exercised.
    docs = random_batch(rng, 500, 40, 15, integer=True)
    index = ImpactIndex.build(
        docs, tmp_path / "ix", search_layout=search_layout, show_progress=False
    )
    queries = random_batch(rng, 25, 40, 10)
    # A tiny estimate makes the pruned kernel run (not its exhaustive fallback).
    modes = [None, "exhaustive", "pruned", Pruned(estimate_postings=20, estimate_candidates=4)]
    approximate = Approximate(1.5, 0.5, estimate_postings=20, estimate_candidates=4)
    for q in range(len(queries)):
        one = queries.select([q])
        every = dict((h.docno, h.score) for h in index.reference_search(one, 1000))
        for k in (1, 10, 1000):
            expected = [(h.docno, h.score) for h in index.reference_search(one, k)]
            assert [(h.docno, h.score) for h in index.search(one, k)] == expected
            for mode in modes if search_layout else modes[:2]:
                assert _arrays_pairs(index.search_arrays(one, k, mode=mode)) == expected
            if search_layout:  # may miss documents, never misstates a score or the order
                found = _arrays_pairs(index.search_arrays(one, k, mode=approximate))
                assert all(every[d] == score for d, score in found)
                assert found == sorted(found, key=lambda pair: (-pair[1], pair[0]))


def test_search_arrays_of_hand_index(hand_index):
    top = hand_index.search_arrays({"a": 1, "b": 1}, k=10)
    assert _arrays_pairs(top) == [(0, 6), (2, 6), (4, 3)]
    assert [hand_index.doc_ids[d] for d in top.docnos] == ["d0", "d2", "d4"]
    assert _arrays_pairs(hand_index.search_arrays({"d": 5}, k=3)) == []
    assert _arrays_pairs(hand_index.search_arrays({"a": 1}, k=1)) == [(2, 5)]
    with pytest.raises(ValueError, match="k must be a positive integer"):
        hand_index.search_arrays({"a": 1}, k=0)


def test_tiny_budget_gives_byte_identical_postings(tmp_path):
    rng = np.random.default_rng(7)
    shards = [random_batch(rng, 200, 80, 30) for _ in range(5)]
    shards = [
        SparseBatch(
            s.indptr, s.indices, s.values, s.vocab, tuple(f"s{n}-{i}" for i in range(len(s)))
        )
        for n, s in enumerate(shards)
    ]
    small = ImpactIndex.build(
        iter(shards),
        tmp_path / "small",
        memory_budget=builder._BYTES_PER_BUFFERED_POSTING * 1500,
        show_progress=False,
    )
    large = ImpactIndex.build(
        iter(shards), tmp_path / "large", memory_budget="1GB", show_progress=False
    )
    assert small.settings["runs_spilled"] >= 5
    assert large.settings["runs_spilled"] == 0
    assert "postings_docs.bin" not in small.manifest.files
    assert sorted(small.manifest.files) == sorted(large.manifest.files)
    for name in small.manifest.files:  # every file but the manifest (timings)
        assert (small.directory / name).read_bytes() == (large.directory / name).read_bytes()
    assert not list((tmp_path / "small").glob(".tmp-*"))
    # The document-ordered postings, when kept, are identical too.
    kept = [
        ImpactIndex.build(
            iter(shards),
            tmp_path / f"kept-{budget}",
            memory_budget=budget,
            show_progress=False,
            doc_ordered_postings=True,
        )
        for budget in (builder._BYTES_PER_BUFFERED_POSTING * 1500, "1GB")
    ]
    for name in ("postings_docs.bin", "postings_impacts.bin", "impact_order_docs.bin"):
        assert (kept[0].directory / name).read_bytes() == (kept[1].directory / name).read_bytes()
        if name.startswith("impact_order"):
            assert (kept[0].directory / name).read_bytes() == (small.directory / name).read_bytes()


def test_stored_contents(tmp_path):
    batch = SparseBatch.from_dicts([{"a": 1}, {"b": 2}], VOCAB, ids=["x", "y"])
    index = ImpactIndex.build(
        batch, tmp_path / "c", contents=[("T1", "text one"), ("", "two")], show_progress=False
    )
    assert index.has_contents and index.document(1) == ("", "two")


def test_rebuild_replaces_and_keeps_one_previous_generation(tmp_path):
    path = tmp_path / "ix"
    for n in range(3):
        batch = SparseBatch.from_dicts([{"a": n + 1}], VOCAB, ids=[f"v{n}"])
        index = ImpactIndex.build(batch, path, show_progress=False)
    assert ImpactIndex.open(path).doc_ids == ["v2"] and index.directory.name == "gen-000003"
    assert sorted(p.name for p in path.glob("gen-*")) == ["gen-000002", "gen-000003"]


# -- bad input --------------------------------------------------------------------------------


def test_k_must_be_positive(hand_index):
    for k in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="k must be a positive integer"):
            hand_index.search({"a": 1}, k=k)
        with pytest.raises(ValueError, match="k must be a positive integer"):
            hand_index.search_batch([{"a": 1}], k=k)


def test_out_of_vocabulary_queries(hand_index):
    # Tokens the vocabulary does not know match nothing: dropped (documented behaviour).
    assert hand_index.search({"zebra": 5, "a": 1}) == hand_index.search({"a": 1})
    # Term ids outside the vocabulary are an error.
    with pytest.raises(InputError, match="term id 5 is outside the vocabulary"):
        hand_index.search((np.array([5]), np.array([1])))
    with pytest.raises(InputError, match="term id -1"):
        hand_index.search((np.array([-1]), np.array([1])))


def test_bad_query_weights(hand_index):
    with pytest.raises(InputError, match=">= 0"):
        hand_index.search({"a": -1})
    with pytest.raises(InputError, match="finite"):
        hand_index.search({"a": float("nan")})
    with pytest.raises(InputError, match="not a number"):
        hand_index.search({"a": "1"})
    with pytest.raises(InputError, match="same term twice"):
        hand_index.search((np.array([1, 1]), np.array([1, 1])))
    with pytest.raises(TypeError, match="cannot search with a str"):
        hand_index.search("a b")


def test_unknown_format_version_is_refused_naming_both(hand_index, tmp_path):
    from sparse_ir.index import storage

    manifest_path = hand_index.directory / "manifest.json"
    body = json.loads(manifest_path.read_text())
    body.pop("manifest_crc32")
    body["format_version"] = 99
    manifest_path.unlink()
    storage.write_manifest(hand_index.directory, body)
    expected = r"version 99; this sparse_ir reads version 2 \(and 1\)"
    with pytest.raises(IndexFormatError, match=expected):
        ImpactIndex.open(hand_index.directory.parent)


def test_truncated_array_file_is_refused(hand_index):
    path = hand_index.directory / "impact_order_docs.bin"
    data = path.read_bytes()
    path.write_bytes(data[:-3])
    with pytest.raises(IndexCorruptError, match="impact_order_docs.bin"):
        ImpactIndex.open(hand_index.directory.parent)


def test_duplicate_document_ids_are_refused(tmp_path):
    batch = SparseBatch.from_dicts([{"a": 1}, {"b": 1}], VOCAB, ids=["same", "same"])
    with pytest.raises(InputError, match="duplicate document id 'same'"):
        ImpactIndex.build(batch, tmp_path / "dup", show_progress=False)
    assert not (tmp_path / "dup" / "CURRENT").exists()


def test_opening_nothing(tmp_path):
    with pytest.raises(FileNotFoundError):
        ImpactIndex.open(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(IndexCorruptError, match="no CURRENT"):
        ImpactIndex.open(tmp_path / "empty")


def test_refuses_to_build_into_a_foreign_directory(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    batch = SparseBatch.from_dicts([{"a": 1}], VOCAB)
    with pytest.raises(FileExistsError, match="not an index"):
        ImpactIndex.build(batch, tmp_path / "mine", show_progress=False)
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"
