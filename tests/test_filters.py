"""Filtered search: every kernel with an ``allowed`` mask and a ``floor`` equals brute force.

The reference is :mod:`sparse_ir.index.reference` with the filtered-out documents and those
scoring at or below the floor set to 0 (never returned); ties by score, then document number.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sparse_ir.errors import InputError
from sparse_ir.index import kernels
from sparse_ir.index.filters import allowed_documents, check_floor
from sparse_ir.index.impact_index import ImpactIndex
from sparse_ir.index.modes import Approximate, Pruned
from sparse_ir.index.pruned import STATS_FIELDS, PrunedSearcher
from sparse_ir.index.reference import reference_top_k
from sparse_ir.quantize import Quantizer
from sparse_ir.sparse_batch import SparseBatch

# Small estimates leave postings below the cuts, so the cut, bound and verify phases run on
# these small collections (the default estimate would cover every posting: exhaustive).
_THROUGH_CUTS = [
    Pruned(estimate_postings=1, estimate_candidates=1),
    Pruned(estimate_postings=4, estimate_candidates=2, cut_ratio=0.05),
    Pruned(estimate_postings=16, estimate_candidates=8, cut_ratio=0.9),
]
_THETA0 = STATS_FIELDS.index("theta0")


def _random_impacts(rng, rows, vocab_size, max_terms, max_impact, skew):
    """Integer vectors; a skewed term distribution makes long lists, small impacts make ties."""
    probabilities = 1.0 / np.arange(1, vocab_size + 1) ** skew
    probabilities /= probabilities.sum()
    indptr, indices, values = [0], [], []
    for _ in range(rows):
        n = min(int(rng.integers(0, max_terms + 1)), vocab_size)
        terms = np.sort(rng.choice(vocab_size, size=n, replace=False, p=probabilities))
        indices.extend(terms.tolist())
        values.extend(rng.integers(1, max_impact + 1, size=n).tolist())
        indptr.append(len(indices))
    return SparseBatch(
        np.array(indptr),
        np.array(indices, np.int32),
        np.array(values, np.int32),
        tuple(f"t{i}" for i in range(vocab_size)),
        tuple(f"d{i}" for i in range(rows)),
    )


def filtered_reference(index, terms, weights, k, allowed=None, floor=0):
    """(docno, score) pairs of the top-k allowed documents scoring above ``floor``."""
    scores = index.reference_scores(terms, weights)
    if allowed is not None:
        scores[~np.asarray(allowed, bool)] = 0
    scores[scores <= floor] = 0
    docs, top = reference_top_k(scores, k)
    return list(zip(docs.tolist(), top.tolist())), scores


def _pairs(hits):
    return [(h.docno, h.score) for h in hits]


def _arrays_pairs(top):
    return list(zip(top.docnos.tolist(), top.scores.tolist()))


def _random_mask(rng, n, density):
    return rng.random(n) < density


def _random_floor(rng, scores):
    """0, a score of the collection (ties at the floor), or above every score."""
    positive = scores[scores > 0]
    choice = int(rng.integers(0, 4))
    if choice == 0 or not len(positive):
        return 0
    if choice == 3:
        return int(positive.max()) + int(rng.integers(0, 3))
    return int(rng.choice(positive)) - int(rng.integers(0, 2))


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    seed=st.integers(0, 2**32 - 1),
    rows=st.integers(1, 300),
    vocab_size=st.integers(1, 40),
    max_impact=st.sampled_from([1, 3, 20, 300, 70000]),
    k=st.integers(1, 20),
    skew=st.sampled_from([0.0, 1.0, 2.0]),
    density=st.sampled_from([0.0, 0.02, 0.1, 0.5, 0.9, 1.0]),
)
def test_every_mode_with_mask_and_floor_equals_reference(
    tmp_path_factory, seed, rows, vocab_size, max_impact, k, skew, density
):
    rng = np.random.default_rng(seed)
    docs = _random_impacts(rng, rows, vocab_size, 12, max_impact, skew)
    path = tmp_path_factory.mktemp("filtered")
    quantizer = Quantizer(max_impact=100_000)
    index = ImpactIndex.build(docs, path / "index", quantizer=quantizer, show_progress=False)
    plain = ImpactIndex.build(
        docs, path / "plain", quantizer=quantizer, show_progress=False, search_layout=False
    )
    queries = _random_impacts(rng, 5, vocab_size, 10, max_impact, skew)
    mask = _random_mask(rng, rows, density)
    exact_modes = ["exhaustive", "pruned", Approximate(cut_ratio=0.5, bound_weight=1.0)]
    for q in range(len(queries)):
        one = queries.select([q])
        terms, weights = index.prepare_query(one)
        _, all_scores = filtered_reference(index, terms, weights, k)
        floor = _random_floor(rng, all_scores)
        expected, scores = filtered_reference(index, terms, weights, k, mask, floor)
        filtered_only, _ = filtered_reference(index, terms, weights, k, mask)
        for mode in exact_modes + _THROUGH_CUTS:
            top = index.search_arrays(one, k, mode=mode, filter=mask, floor=floor)
            assert _arrays_pairs(top) == expected, (mode, floor)
            assert _pairs(index.search(one, k, mode=mode, filter=mask)) == filtered_only, mode
            hits, _ = index.search_with_stats(one, k, mode=mode, filter=mask, floor=floor)
            assert _pairs(hits) == expected, mode
        # The index without a search layout: the plain exhaustive kernel.
        top = plain.search_arrays(one, k, filter=mask.astype(np.uint8), floor=floor)
        assert _arrays_pairs(top) == expected
        # Approximate search: true scores of allowed documents above the floor, in order.
        hits = _arrays_pairs(
            index.search_arrays(one, k, mode=Approximate(4.0, 0.3), filter=mask, floor=floor)
        )
        assert all(mask[d] and s > floor and scores[d] == s for d, s in hits)
        assert hits == sorted(hits, key=lambda pair: (-pair[1], pair[0]))
    for target in (index, plain):
        for mode in ["exhaustive"] + (["pruned", *_THROUGH_CUTS] if target is index else []):
            for threads in (1, 2):
                run = target.search_batch(queries, k, mode=mode, threads=threads, filter=mask)
                for q in range(len(queries)):
                    terms, weights = index.prepare_query(queries.select([q]))
                    want, _ = filtered_reference(index, terms, weights, k, mask)
                    assert _pairs(run[f"d{q}"]) == want, (mode, threads)


def test_pruned_kernel_never_scores_a_filtered_out_document(tmp_path):
    # The forward entries of every filtered-out document are damaged (a term outside the
    # vocabulary): scoring one of them exactly would make the kernel report corruption. The
    # best documents are filtered out, so without the filter they would be verified.
    rng = np.random.default_rng(3)
    docs = _random_impacts(rng, 3000, 30, 12, 200, 1.0)
    index = ImpactIndex.build(docs, tmp_path / "index", show_progress=False)
    searcher = PrunedSearcher(index)
    pristine = searcher.layout
    queries = _random_impacts(rng, 6, 30, 10, 200, 1.0)
    through_cuts = 0
    for q in range(len(queries)):
        terms, weights = index.prepare_query(queries.select([q]))
        _, scores = filtered_reference(index, terms, weights, 10)
        allowed = rng.random(index.num_documents) < 0.3
        allowed[np.argsort(-scores, kind="stable")[:50]] = False
        forward_terms = np.array(pristine.forward_terms)
        offsets = np.asarray(pristine.forward_offsets)
        for doc in np.flatnonzero(~allowed):
            forward_terms[offsets[doc] : offsets[doc + 1]] = np.iinfo(forward_terms.dtype).max
        forward_terms.flags.writeable = False  # as mapped: a writable array recompiles the kernel
        searcher.layout = pristine._replace(forward_terms=forward_terms)
        expected, _ = filtered_reference(index, terms, weights, 10, allowed)
        for mode in _THROUGH_CUTS + [Pruned(200, 20), Pruned(600, 40, cut_ratio=0.9)]:
            found, found_scores, stats = searcher.search(
                terms, weights, 10, mode.kernel_params(), False, allowed.view(np.uint8), 0
            )
            assert list(zip(found.tolist(), found_scores.tolist())) == expected
            through_cuts += int(stats[_THETA0] > 0)
        searcher.layout = pristine
    assert through_cuts > 0  # the estimate, cut, bound and verify phases ran


def test_pruned_kernel_skips_filtered_out_candidates(tmp_path, monkeypatch):
    """Scoring exactly goes through _exact_score: count which documents reach it."""
    rng = np.random.default_rng(5)
    docs = _random_impacts(rng, 2000, 25, 12, 100, 1.0)
    index = ImpactIndex.build(docs, tmp_path / "index", show_progress=False)
    allowed = _random_mask(rng, index.num_documents, 0.1)
    mode = Pruned(estimate_postings=30, estimate_candidates=4)
    queries = _random_impacts(rng, 10, 25, 10, 100, 1.0)
    stats_on, stats_off = [], []
    for q in range(len(queries)):
        one = queries.select([q])
        terms, weights = index.prepare_query(one)
        want, _ = filtered_reference(index, terms, weights, 5, allowed)
        hits, on = index.search_with_stats(one, 5, mode=mode, filter=allowed)
        assert _pairs(hits) == want
        _, off = index.search_with_stats(one, 5, mode=mode)
        stats_on.append(on.candidates)
        stats_off.append(off.candidates)
    # Candidates are collected among the allowed documents only: far fewer than unfiltered.
    assert sum(stats_on) < sum(stats_off)


@pytest.mark.parametrize("density", [0.01, 0.1, 0.6])
def test_the_candidate_scan_tests_the_mask_with_the_bound(tmp_path, density):
    # The bound phase tests 64 accumulator entries at a time, the mask with the bound under a
    # filter: a block whose entries reaching the bound are all filtered out is passed over. A
    # uint8 mask marks allowed documents with any nonzero value, not only 1.
    rng = np.random.default_rng(11)
    docs = _random_impacts(rng, 5000, 30, 12, 200, 1.0)
    index = ImpactIndex.build(docs, tmp_path / "index", show_progress=False)
    allowed = _random_mask(rng, index.num_documents, density)
    marks = np.where(allowed, rng.integers(1, 256, index.num_documents), 0).astype(np.uint8)
    queries = _random_impacts(rng, 12, 30, 10, 200, 1.0)
    candidates = 0
    for q in range(len(queries)):
        one = queries.select([q])
        terms, weights = index.prepare_query(one)
        for k in (1, 10, 40):
            want, _ = filtered_reference(index, terms, weights, k, allowed)
            for mode in _THROUGH_CUTS + [Pruned(300, 20), Pruned(300, 20, cut_ratio=0.95)]:
                for mask in (allowed, marks):
                    hits, stats = index.search_with_stats(one, k, mode=mode, filter=mask)
                    assert _pairs(hits) == want, (q, k, mode)
                    candidates += stats.candidates
    assert candidates > 0  # the bound phase ran and collected candidates


def test_a_floor_prunes_from_the_start(tmp_path):
    # A floor just below the unfiltered k-th score: pruning starts there, so the estimate may
    # find fewer than k documents above it and the kernel still proves the answer (no fallback).
    rng = np.random.default_rng(9)
    docs = _random_impacts(rng, 4000, 30, 12, 200, 1.0)
    index = ImpactIndex.build(docs, tmp_path / "index", show_progress=False)
    mode = Pruned(estimate_postings=20, estimate_candidates=1)
    query = _random_impacts(rng, 1, 30, 10, 200, 1.0)
    terms, weights = index.prepare_query(query)
    unfiltered, scores = filtered_reference(index, terms, weights, 10)
    floor = unfiltered[4][1]  # the 5th score: only documents above it qualify
    expected, _ = filtered_reference(index, terms, weights, 10, None, floor)
    hits, stats = index.search_with_stats(query, 10, mode=mode, floor=floor)
    assert _pairs(hits) == expected and len(expected) < 10
    assert stats.theta0 > floor  # pruned from the floor up, not handed to the exhaustive kernel
    # A floor above every score: nothing qualifies.
    top = index.search_arrays(query, 10, mode=mode, floor=int(scores.max()))
    assert len(top.docnos) == 0


def test_no_filter_is_the_plain_search(tmp_path):
    rng = np.random.default_rng(1)
    docs = _random_impacts(rng, 500, 20, 10, 50, 1.0)
    index = ImpactIndex.build(docs, tmp_path / "index", show_progress=False)
    queries = _random_impacts(rng, 4, 20, 8, 50, 1.0)
    everything = np.ones(index.num_documents, bool)
    for q in range(len(queries)):
        one = queries.select([q])
        plain = _pairs(index.search(one, 7))
        assert _pairs(index.search(one, 7, filter=None)) == plain
        assert _pairs(index.search(one, 7, filter=everything)) == plain
        assert _arrays_pairs(index.search_arrays(one, 7, floor=None)) == plain
        assert _arrays_pairs(index.search_arrays(one, 7, floor=-5)) == plain


def test_masks_and_floors_are_validated(tmp_path):
    docs = SparseBatch.from_dicts([{"a": 1}, {"a": 2}, {"b": 1}], ["a", "b"], ids=["x", "y", "z"])
    index = ImpactIndex.build(docs, tmp_path / "index", show_progress=False)
    with pytest.raises(InputError, match=r"one entry per document \(3\), got shape \(2,\)"):
        index.search({"a": 1}, 2, filter=np.array([True, False]))
    with pytest.raises(InputError, match="bool or uint8 array, got dtype int64"):
        index.search({"a": 1}, 2, filter=np.array([1, 0, 1]))
    with pytest.raises(InputError, match="one entry per document"):
        index.search({"a": 1}, 2, filter=np.ones((3, 1), bool))
    with pytest.raises(TypeError, match="filter must be a Filter"):
        index.search({"a": 1}, 2, filter=[True, False, True])
    with pytest.raises(ValueError, match="floor must be an integer"):
        index.search_arrays({"a": 1}, 2, floor=1.5)
    with pytest.raises(ValueError, match="floor must be an integer"):
        check_floor(True)
    # A read-only or strided mask is copied into the kernels' one array type.
    readonly = np.array([False, True, True])
    readonly.flags.writeable = False
    allowed = allowed_documents(readonly, index)
    assert allowed.flags.writeable and allowed.dtype == np.uint8
    assert allowed_documents(np.array([1, 0, 1, 0, 1, 0], bool)[::2], index).tolist() == [1, 1, 1]
    assert [h.doc_id for h in index.search({"a": 1}, 2, filter=readonly)] == ["y"]
    assert index.search({"a": 1}, 2, filter=np.zeros(3, bool)) == []


def test_kernels_take_the_empty_mask_as_everything():
    assert len(kernels.ALL_DOCUMENTS) == 0 and kernels.ALL_DOCUMENTS.dtype == np.uint8


# -- dense search -----------------------------------------------------------------------------


def _ties_matrix(rng, n, dim):
    """Random vectors with repeated rows, so equal scores are common."""
    base = rng.integers(-3, 4, size=(max(1, n // 3), dim)).astype(np.float32)
    return base[rng.integers(0, len(base), size=n)]


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 400),
    dim=st.integers(1, 12),
    k=st.integers(1, 30),
    chunk_rows=st.sampled_from([1, 7, 64, None]),
    density=st.sampled_from([0.0, 0.01, 0.1, 0.5, 1.0]),
)
def test_dense_exact_with_mask_equals_reference(seed, n, dim, k, chunk_rows, density):
    from sparse_ir.index.dense import exact_top_k
    from sparse_ir.index.dense import reference_top_k as dense_reference

    rng = np.random.default_rng(seed)
    vectors = _ties_matrix(rng, n, dim)
    queries = rng.integers(-2, 3, size=(3, dim)).astype(np.float32)
    mask = _random_mask(rng, n, density)
    docs, scores = exact_top_k(vectors, queries, k, chunk_rows=chunk_rows, allowed=mask)
    for q in range(len(queries)):
        want_docs, want_scores = dense_reference(vectors, queries[q], k, allowed=mask)
        assert docs[q].tolist() == want_docs.tolist()
        assert scores[q].tolist() == want_scores.tolist()


def test_dense_index_filter_forms(tmp_path):
    from sparse_ir.index.dense import DenseIndex

    rng = np.random.default_rng(0)
    # Small integers: every score is exact in float32, whatever the order of the sums.
    vectors = _ties_matrix(rng, 300, 8)
    ids = [f"v{i}" for i in range(300)]
    index = DenseIndex.build(vectors, tmp_path / "dense", ids=ids)
    queries = rng.integers(-2, 3, size=(4, 8)).astype(np.float32)
    mask = _random_mask(rng, 300, 0.2)
    chosen = {ids[i] for i in np.flatnonzero(mask)}
    run = index.search_batch(queries, 10, filter=mask)
    run_ids = index.search_batch(queries, 10, filter=chosen)
    for q in range(len(queries)):
        want = index.reference_search(queries[q], 10, filter=mask)
        assert run[str(q)] == want == run_ids[str(q)]
        assert index.search(queries[q], 10, filter=mask) == want
        assert all(mask[h.docno] for h in want) and len(want) == 10
    with pytest.raises(InputError, match="one entry per document"):
        index.search(queries[0], 3, filter=np.ones(5, bool))
    assert index.search(queries[0], 3, filter=np.zeros(300, bool)) == []


def test_dense_hnsw_filter(tmp_path):
    pytest.importorskip("faiss")
    from sparse_ir.index.dense import HNSW_EXACT_BELOW, DenseIndex, HnswOptions

    rng = np.random.default_rng(1)
    n = 4000
    vectors = rng.standard_normal((n, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = DenseIndex.build(
        vectors, tmp_path / "dense", hnsw=HnswOptions(m=16, ef_construction=100, ef_search=32)
    )
    queries = rng.standard_normal((20, 16)).astype(np.float32)
    k = 10

    def recall(mask):
        graph = index.search_batch(queries, k, mode="hnsw", filter=mask)
        exact = index.search_batch(queries, k, mode="exact", filter=mask)
        found = 0
        for q in range(len(queries)):
            hits = graph[str(q)]
            assert all(mask[h.docno] for h in hits)  # never a filtered-out document
            assert len(hits) == min(k, int(mask.sum()))
            assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
            found += len({h.docno for h in hits} & {h.docno for h in exact[str(q)]})
        return found / (k * len(queries)), exact, graph

    # A 30% filter walks the graph with faiss' selector: approximate, high recall.
    wide, _, _ = recall(_random_mask(rng, n, 0.3))
    assert wide >= 0.9
    # A very selective filter (below HNSW_EXACT_BELOW and 4·ef documents): scored exactly.
    narrow = np.zeros(n, bool)
    narrow[rng.choice(n, size=int(n * HNSW_EXACT_BELOW) // 2, replace=False)] = True
    value, exact, graph = recall(narrow)
    assert value == 1.0 and graph == exact
    # Fewer allowed documents than k: all of them, whatever the mode.
    few = np.zeros(n, bool)
    few[[5, 17, 99]] = True
    hits = index.search(queries[0], k, mode="hnsw", filter=few)
    assert sorted(h.docno for h in hits) == [5, 17, 99]
