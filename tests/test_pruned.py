"""Pruned and approximate search: exactly the exhaustive top-k (numba == numpy reference)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sparse_ir.errors import IndexCorruptError, InputError
from sparse_ir.index import kernels
from sparse_ir.index.impact_index import ImpactIndex
from sparse_ir.index.layout import SearchLayout
from sparse_ir.index.modes import Approximate, Pruned
from sparse_ir.index.pruned import (
    CANDIDATE_CAPACITY,
    STATS_FIELDS,
    PrunedParams,
    PrunedSearcher,
    pruned_search_one,
)
from sparse_ir.index.reference import reference_top_k
from sparse_ir.quantize import Quantizer
from sparse_ir.sparse_batch import SparseBatch


def _random_impacts(rng, rows, vocab_size, max_terms, max_impact, skew):
    """Integer vectors; a skewed term distribution makes long lists, small impacts make ties."""
    probabilities = 1.0 / np.arange(1, vocab_size + 1) ** skew
    probabilities /= probabilities.sum()
    indptr, indices, values = [0], [], []
    for _ in range(rows):
        n = int(rng.integers(0, max_terms + 1))
        n = min(n, vocab_size)
        terms = np.sort(rng.choice(vocab_size, size=n, replace=False, p=probabilities))
        indices.extend(terms.tolist())
        values.extend(rng.integers(1, max_impact + 1, size=n).tolist())
        indptr.append(len(indices))
    vocab = tuple(f"t{i}" for i in range(vocab_size))
    return SparseBatch(
        np.array(indptr),
        np.array(indices, np.int32),
        np.array(values, np.int32),
        vocab,
        tuple(f"d{i}" for i in range(rows)),
    )


def _reference(index, terms, weights, k):
    scores = index.reference_scores(terms, weights)
    docs, top = reference_top_k(scores, k)
    return list(zip(docs.tolist(), top.tolist())), scores


def _pairs(hits):
    return [(h.docno, h.score) for h in hits]


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    seed=st.integers(0, 2**32 - 1),
    rows=st.integers(1, 300),
    vocab_size=st.integers(1, 60),
    max_impact=st.sampled_from([1, 3, 20, 300, 70000]),
    k=st.integers(1, 25),
    skew=st.sampled_from([0.0, 1.0, 2.0]),
)
def test_pruned_equals_reference_on_random_data(
    tmp_path_factory, seed, rows, vocab_size, max_impact, k, skew
):
    rng = np.random.default_rng(seed)
    docs = _random_impacts(rng, rows, vocab_size, 12, max_impact, skew)
    path = tmp_path_factory.mktemp("pruned")
    index = ImpactIndex.build(
        docs, path / "index", quantizer=Quantizer(max_impact=100_000), show_progress=False
    )
    queries = _random_impacts(rng, 8, vocab_size, 10, max_impact, skew)
    run = index.search_batch(queries, k, mode="pruned", threads=2)
    run_exhaustive = index.search_batch(queries, k, mode="exhaustive", threads=1)
    for q in range(len(queries)):
        terms, weights = index.prepare_query(queries.select([q]))
        expected, _ = _reference(index, terms, weights, k)
        one = queries.select([q])
        assert _pairs(index.search(one, k, mode="pruned")) == expected
        assert _pairs(index.search(one, k, mode="exhaustive")) == expected
        # cut_ratio < 1 and bound_weight 1 keep the proof: approximate mode is then exact.
        assert (
            _pairs(index.search(one, k, mode=Approximate(cut_ratio=0.5, bound_weight=1.0)))
            == expected
        )
        assert _pairs(run[f"d{q}"]) == expected
        assert _pairs(run_exhaustive[f"d{q}"]) == expected
        for mode in ("pruned", "exhaustive"):
            top = index.search_arrays(one, k, mode=mode)
            assert list(zip(top.docnos.tolist(), top.scores.tolist())) == expected


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    seed=st.integers(0, 2**32 - 1),
    rows=st.integers(1, 1500),
    vocab_size=st.integers(1, 40),
    max_impact=st.sampled_from([1, 3, 20, 300, 70000]),
    k=st.sampled_from([63, 64, 65, 100, 700, 2000]),
    skew=st.sampled_from([0.0, 1.0, 2.0]),
    density=st.sampled_from([None, 0.1, 0.9]),
)
def test_large_k_selection_equals_reference(
    tmp_path_factory, seed, rows, vocab_size, max_impact, k, skew, density
):
    # From k = 64 the exhaustive kernel selects by sort keys over an int32 accumulator (the
    # heap below it, and always over int64: max_impact 70000 makes int64 queries); many ties
    # with small impacts, k above the number of matching documents, a filter and a floor.
    rng = np.random.default_rng(seed)
    docs = _random_impacts(rng, rows, vocab_size, 12, max_impact, skew)
    index = ImpactIndex.build(
        docs,
        tmp_path_factory.mktemp("large-k") / "index",
        quantizer=Quantizer(max_impact=100_000),
        show_progress=False,
    )
    queries = _random_impacts(rng, 6, vocab_size, 10, max_impact, skew)
    mask = None if density is None else rng.random(rows) < density
    run = index.search_batch(queries, k, mode="exhaustive", threads=1)
    for q in range(len(queries)):
        one = queries.select([q])
        terms, weights = index.prepare_query(one)
        expected, scores = _reference(index, terms, weights, k)
        assert _pairs(index.search(one, k, mode="exhaustive")) == expected
        assert _pairs(index.search(one, k, mode="pruned")) == expected
        assert _pairs(run[f"d{q}"]) == expected
        positive = scores[scores > 0]
        floor = int(rng.choice(positive)) if len(positive) and q % 2 else 0
        allowed = np.ones(rows, bool) if mask is None else mask
        order = sorted(
            (d for d in range(rows) if scores[d] > floor and allowed[d]),
            key=lambda d: (-scores[d], d),
        )
        filtered = [(d, int(scores[d])) for d in order[:k]]
        for mode in ("exhaustive", "pruned"):
            top = index.search_arrays(one, k, mode=mode, filter=mask, floor=floor)
            assert list(zip(top.docnos.tolist(), top.scores.tolist())) == filtered, mode


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    seed=st.integers(0, 2**32 - 1),
    cut_ratio=st.floats(1.0, 20.0),
    bound_weight=st.floats(0.0, 1.0),
    k=st.integers(1, 15),
)
def test_approximate_returns_true_scores_in_order(
    tmp_path_factory, seed, cut_ratio, bound_weight, k
):
    rng = np.random.default_rng(seed)
    docs = _random_impacts(rng, 200, 40, 15, 50, 1.0)
    index = ImpactIndex.build(
        docs, tmp_path_factory.mktemp("approx") / "index", show_progress=False
    )
    queries = _random_impacts(rng, 5, 40, 12, 50, 1.0)
    for q in range(len(queries)):
        one = queries.select([q])
        terms, weights = index.prepare_query(one)
        expected, scores = _reference(index, terms, weights, k)
        hits = _pairs(index.search(one, k, mode=Approximate(cut_ratio, bound_weight)))
        # Every hit carries its true score, the order is the tie-break order, and no document
        # is listed twice; recall may be below 1.
        assert all(scores[d] == s for d, s in hits)
        assert hits == sorted(hits, key=lambda pair: (-pair[1], pair[0]))
        assert len({d for d, _ in hits}) == len(hits)
        assert len(hits) <= len(expected)


def test_ties_break_by_document_number(tmp_path):
    # 50 identical documents and a few weaker ones: every k must take the lowest numbers.
    vectors = [{"a": 5, "b": 3}] * 50 + [{"a": 1}] * 20 + [{"c": 9}] * 5
    docs = SparseBatch.from_dicts(vectors, ["a", "b", "c"], ids=[f"x{i}" for i in range(75)])
    index = ImpactIndex.build(docs, tmp_path / "index", show_progress=False)
    for k in (1, 7, 50, 60, 80):
        expected = index.search({"a": 2, "b": 1}, k, mode="exhaustive")
        assert index.search({"a": 2, "b": 1}, k, mode="pruned") == expected
        assert [h.docno for h in expected] == list(range(min(k, 70)))


def test_modes_and_knobs_are_validated(tmp_path):
    docs = SparseBatch.from_dicts([{"a": 1}, {"b": 2}], ["a", "b"], ids=["x", "y"])
    index = ImpactIndex.build(docs, tmp_path / "with", show_progress=False)
    assert index.has_search_layout
    with pytest.raises(ValueError, match="mode must be one of"):
        index.search({"a": 1}, mode="fast")
    with (
        pytest.raises(ValueError, match="apply to mode='approximate'"),
        pytest.warns(DeprecationWarning),
    ):
        index.search({"a": 1}, mode="pruned", cut_ratio=2.0)
    with (
        pytest.raises(ValueError, match="apply to mode='approximate'"),
        pytest.warns(DeprecationWarning),
    ):
        index.search_batch([{"a": 1}], mode="exhaustive", bound_weight=0.5)
    with pytest.raises(ValueError, match="cut_ratio must be > 0"):
        index.search({"a": 1}, mode=Approximate(cut_ratio=0))
    with pytest.raises(ValueError, match="bound_weight must be in"):
        Approximate(bound_weight=1.5)
    plain = ImpactIndex.build(docs, tmp_path / "without", show_progress=False, search_layout=False)
    assert not plain.has_search_layout
    assert plain.search({"a": 1}) == index.search({"a": 1})  # default falls back to exhaustive
    with pytest.raises(ValueError, match="no search layout"):
        plain.search({"a": 1}, mode="pruned")
    with pytest.raises(InputError):
        index.search({"a": -1}, mode="pruned")


def test_layout_is_listed_checked_and_consistent(tmp_path):
    rng = np.random.default_rng(3)
    docs = _random_impacts(rng, 500, 80, 20, 400, 1.0)
    index = ImpactIndex.build(
        docs, tmp_path / "index", show_progress=False, memory_budget=20_000
    )  # several spilled runs
    manifest = index.manifest
    for name in ("impact_order_docs.bin", "segment_ends.bin", "forward_terms.bin"):
        assert name in manifest.files
    index.verify()
    layout = SearchLayout.open(index.directory, manifest)
    offsets = np.asarray(index.term_offsets)
    forward = docs.to_dicts()
    for t in range(index.vocab_size):
        lo, hi = offsets[t], offsets[t + 1]
        token = index.vocab[t]
        # From the input (the index stores no document-ordered copy to compare with).
        by_doc = [(d, row[token]) for d, row in enumerate(forward) if token in row]
        assert [a.tolist() for a in index.postings(t)] == [list(x) for x in zip(*by_doc)] or (
            not by_doc and len(index.postings(t)[0]) == 0
        )
        by_impact = list(
            zip(
                layout.impact_order_docs[lo:hi].tolist(),
                layout.impact_order_impacts[lo:hi].tolist(),
            )
        )
        assert by_impact == sorted(by_doc, key=lambda pair: (-pair[1], pair[0]))
    fo = np.asarray(layout.forward_offsets)
    for d in range(index.num_documents):
        terms = layout.forward_terms[fo[d] : fo[d + 1]].tolist()
        impacts = layout.forward_impacts[fo[d] : fo[d + 1]].tolist()
        assert {index.vocab[t]: i for t, i in zip(terms, impacts)} == forward[d]


@pytest.fixture(scope="module")
def scifact_impacts(scifact_vectors):
    """Real splade-tiny vectors of SciFact (documents and the 300 test queries), quantized."""
    quantizer = Quantizer(scale=100)
    return (
        quantizer.quantize(scifact_vectors.documents),
        quantizer.quantize(scifact_vectors.queries),
    )


@pytest.mark.slow
def test_pruned_equals_scipy_on_scifact(tmp_path, scifact_impacts):
    docs, queries = scifact_impacts
    index = ImpactIndex.build(docs, tmp_path / "scifact", show_progress=False)
    scores = (queries.to_scipy().astype(np.int64) @ docs.to_scipy().astype(np.int64).T).toarray()
    for k in (10, 100):
        pruned = index.search_batch(queries, k, mode="pruned", threads=2)
        approximate = index.search_batch(queries, k, mode="approximate", threads=1)
        recall = []
        for q, qid in enumerate(queries.ids):
            row = scores[q]
            candidates = np.flatnonzero(row > 0)
            order = np.lexsort((candidates, -row[candidates]))[:k]
            expected = list(zip(candidates[order].tolist(), row[candidates[order]].tolist()))
            assert _pairs(pruned[qid]) == expected, qid
            assert _pairs(index.search(queries.select([q]), k, mode="pruned")) == expected
            found = {d for d, _ in _pairs(approximate[qid])}
            recall.append(len(found & {d for d, _ in expected}) / max(len(expected), 1))
        assert np.mean(recall) >= 0.9


def _kernel_pairs(index, terms, weights, k, params, threads=None):
    """Hits of the pruned kernel with explicit settings (one query), and its stats."""
    mode = Pruned(params.estimate_postings, params.estimate_candidates, params.cut_ratio)
    if threads is None:
        hits, stats = index.search_with_stats((terms, weights), k, mode=mode)
        return _pairs(hits), stats
    run = index.search_batch([(terms, weights)], k, mode=mode, threads=threads)
    return _pairs(run["0"]), None


# Small estimates leave postings below the cuts, so the cut, bound and verification steps run
# (the default estimate of 100,000 postings covers a whole test index: it would be exhaustive).
_STEP_PARAMS = [
    PrunedParams(estimate_postings=e, estimate_candidates=c, cut_ratio=r)
    for e, c, r in ((1, 1, 0.5), (4, 2, 0.05), (16, 8, 0.3), (64, 32, 0.9), (8, 1, 0.999))
]


def test_pruned_steps_equal_reference(tmp_path_factory):
    # Counted over all examples: one random index may be too flat for any query to prune
    # (every query then falls back to the exhaustive kernel), but the run as a whole must not.
    pruned_runs = [0]

    @settings(
        max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(
        seed=st.integers(0, 2**32 - 1),
        rows=st.integers(20, 400),
        vocab_size=st.integers(2, 40),
        max_impact=st.sampled_from([1, 3, 20, 300, 70000]),
        k=st.integers(1, 20),
        skew=st.sampled_from([0.0, 1.0, 2.0]),
    )
    def check(seed, rows, vocab_size, max_impact, k, skew):
        rng = np.random.default_rng(seed)
        docs = _random_impacts(rng, rows, vocab_size, 15, max_impact, skew)
        index = ImpactIndex.build(
            docs,
            tmp_path_factory.mktemp("steps") / "index",
            quantizer=Quantizer(max_impact=100_000),
            show_progress=False,
        )
        queries = _random_impacts(rng, 6, vocab_size, 12, max_impact, skew)
        k = min(k, index.num_documents)
        for q in range(len(queries)):
            terms, weights = index.prepare_query(queries.select([q]))
            expected, _ = _reference(index, terms, weights, k)
            for params in _STEP_PARAMS:
                hits, stats = _kernel_pairs(index, terms, weights, k, params)
                assert hits == expected, params
                pruned_runs[0] += int(stats.theta0 > 0)  # θ₀ recorded: cut and verify steps ran
                assert _kernel_pairs(index, terms, weights, k, params, threads=2)[0] == expected

    check()
    assert pruned_runs[0] > 0  # not vacuous: the pruned path itself was checked


@pytest.mark.slow
def test_pruned_steps_over_many_windows(tmp_path):
    # More than two windows of 2^16 documents: per-window prefixes, candidates and offsets.
    rng = np.random.default_rng(11)
    rows, vocab_size = 150_000, 30
    lengths = rng.integers(0, 6, size=rows)
    indptr = np.zeros(rows + 1, np.int64)
    np.cumsum(lengths, out=indptr[1:])
    probabilities = 1.0 / np.arange(1, vocab_size + 1)
    probabilities /= probabilities.sum()
    indices = np.concatenate(
        [np.sort(rng.choice(vocab_size, size=n, replace=False, p=probabilities)) for n in lengths]
    )
    values = rng.integers(1, 200, size=len(indices))
    docs = SparseBatch(
        indptr,
        indices.astype(np.int32),
        values.astype(np.int32),
        tuple(f"t{i}" for i in range(vocab_size)),
        tuple(f"d{i}" for i in range(rows)),
    )
    index = ImpactIndex.build(
        docs, tmp_path / "index", show_progress=False, memory_budget=2_000_000
    )
    assert index.manifest.search_layout.num_windows == 3
    queries = _random_impacts(rng, 8, vocab_size, 10, 200, 1.0)
    for q in range(len(queries)):
        terms, weights = index.prepare_query(queries.select([q]))
        for k in (1, 10, 100, 1000):
            expected, _ = _reference(index, terms, weights, k)
            assert _pairs(index.search(queries.select([q]), k, mode="pruned")) == expected
            assert _pairs(index.search(queries.select([q]), k, mode="exhaustive")) == expected
            pruned_runs = 0
            for params in _STEP_PARAMS + [PrunedParams(estimate_postings=2_000)]:
                hits, stats = _kernel_pairs(index, terms, weights, k, params)
                assert hits == expected, (q, k, params)
                pruned_runs += int(stats.theta0 > 0)
            assert pruned_runs > 0 or len(terms) == 0


# -- the candidate buffer filling up (early verification passes) --------------------------------

_EARLY = STATS_FIELDS.index("early_verifications")
_CANDIDATES = STATS_FIELDS.index("candidates")
_THETA0 = STATS_FIELDS.index("theta0")


def _int64(index, terms, weights) -> bool:
    """Whether the index sums this query's scores in 64 bits."""
    return index.search_with_stats((terms, weights), 1, mode="exhaustive")[1].int64_accumulator


def _many_pairs(searcher, index, queries, k, params, threads):
    """Hits and stats rows of ``search_many`` for every query of a batch."""
    prepared = [index.prepare_query(queries.select([q])) for q in range(len(queries))]
    indptr = np.zeros(len(prepared) + 1, np.int64)
    np.cumsum([len(terms) for terms, _ in prepared], out=indptr[1:])
    terms = np.concatenate([t for t, _ in prepared]).astype(np.int32)
    weights = np.concatenate([w for _, w in prepared])
    use_int64 = np.array([_int64(index, t, w) for t, w in prepared])
    docs, scores, counts, stats = searcher.search_many(
        indptr, terms, weights, use_int64, k, params, threads=threads
    )
    return [
        list(zip(docs[q, :c].tolist(), scores[q, :c].tolist()))
        for q, c in enumerate(counts.tolist())
    ], stats


def _hidden_top_index(path):
    """326 documents built so that the top-k is found only by verifying candidates.

    For a query on a and b with q_a < q_b <= 3·q_a: ``_ESTIMATED`` (6 documents a = 10, b = 8,
    numbered last) hold the impact-10 postings of a, the only postings ``_HIDDEN_PARAMS``
    estimates with (a's top segment, 6 postings for a drop of q_a, has the most score range
    per posting), so θ₀ = 10·q_a + 8·q_b for k <= 6. ``_HIDDEN_TOP`` (20 documents a = b = 9)
    score 9·(q_a + q_b) > θ₀: the top-k, none of it seen by the estimate. The rest have a, b <= 4,
    so their bound is at most 4·(q_a + q_b) + R <= 4·(q_a + q_b) + θ₀/2 < θ₀. The candidates are
    exactly the 26 documents of both groups.
    """
    rng = np.random.default_rng(5)
    vectors = []
    for d in range(320):
        if d in _HIDDEN_TOP:
            vectors.append({"a": 9, "b": 9})
        else:
            a, b = (int(x) for x in rng.integers(1, 5, size=2))
            vectors.append({"a": a, "b": b} if d % 5 else {"ab"[d % 2]: a})
    vectors += [{"a": 10, "b": 8}] * len(_ESTIMATED)
    docs = SparseBatch.from_dicts(vectors, ["a", "b"], ids=[f"x{i}" for i in range(326)])
    return ImpactIndex.build(docs, path, show_progress=False)


_HIDDEN_TOP = list(range(7, 320, 16))
_ESTIMATED = list(range(320, 326))
_HIDDEN_PARAMS = PrunedParams(estimate_postings=6, estimate_candidates=1, cut_ratio=0.5)
_HIDDEN_QUERIES = SparseBatch.from_dicts(
    [{"a": 1, "b": 2}, {"a": 1, "b": 3}, {"a": 2, "b": 3}, {"a": 3, "b": 5}], ["a", "b"]
)


def test_full_candidate_buffer_is_verified_early(tmp_path):
    index = _hidden_top_index(tmp_path / "index")
    n_candidates = len(_HIDDEN_TOP) + len(_ESTIMATED)
    for capacity in (1, 2, 4, 7, 25, 26, 27, CANDIDATE_CAPACITY):
        searcher = PrunedSearcher(index, candidate_capacity=capacity)
        for k in (1, 3, 6):
            runs = {
                threads: _many_pairs(searcher, index, _HIDDEN_QUERIES, k, _HIDDEN_PARAMS, threads)
                for threads in (1, 2)
            }
            for q in range(len(_HIDDEN_QUERIES)):
                terms, weights = index.prepare_query(_HIDDEN_QUERIES.select([q]))
                expected, _ = _reference(index, terms, weights, k)
                assert [d for d, _ in expected] == _HIDDEN_TOP[:k]  # ties: lowest numbers
                docs, scores, stats = searcher.search(
                    terms, weights, k, _HIDDEN_PARAMS, _int64(index, terms, weights)
                )
                assert list(zip(docs.tolist(), scores.tolist())) == expected, (capacity, k, q)
                assert stats[_THETA0] > 0  # the cut, bound and verify steps ran
                assert stats[_CANDIDATES] == n_candidates
                # A pass each time a candidate finds the buffer full.
                assert stats[_EARLY] == (n_candidates - 1) // capacity, (capacity, k, q)
                assert stats[_EARLY] > 0 or capacity >= n_candidates
                for threads, (pairs, many_stats) in runs.items():
                    assert pairs[q] == expected, (capacity, k, q, threads)
                    assert many_stats[q].tolist() == stats.tolist()


def test_small_candidate_buffer_equals_reference(tmp_path_factory):
    # Random data decides whether a query takes the pruned path at all (a small query, or an
    # estimate that finds fewer than k documents, goes to the exhaustive kernel), so the
    # early passes are counted over all examples rather than required of each one.
    early_runs = []

    @settings(max_examples=15, deadline=None)
    @given(
        seed=st.integers(0, 2**32 - 1),
        rows=st.integers(20, 400),
        vocab_size=st.integers(2, 40),
        max_impact=st.sampled_from([1, 3, 20, 300, 70000]),
        capacity=st.integers(1, 3),
        k=st.integers(4, 20),
        skew=st.sampled_from([0.0, 1.0, 2.0]),
    )
    def check(seed, rows, vocab_size, max_impact, capacity, k, skew):
        rng = np.random.default_rng(seed)
        docs = _random_impacts(rng, rows, vocab_size, 15, max_impact, skew)
        index = ImpactIndex.build(
            docs,
            tmp_path_factory.mktemp("buffer") / "index",
            quantizer=Quantizer(max_impact=100_000),
            show_progress=False,
        )
        queries = _random_impacts(rng, 6, vocab_size, 12, max_impact, skew)
        searcher = PrunedSearcher(index, candidate_capacity=capacity)
        for params in _STEP_PARAMS:
            runs = [_many_pairs(searcher, index, queries, k, params, threads) for threads in (1, 2)]
            for q in range(len(queries)):
                terms, weights = index.prepare_query(queries.select([q]))
                expected, _ = _reference(index, terms, weights, k)
                docs, scores, stats = searcher.search(
                    terms, weights, k, params, _int64(index, terms, weights)
                )
                assert list(zip(docs.tolist(), scores.tolist())) == expected, params
                for pairs, many_stats in runs:
                    assert pairs[q] == expected, params
                    assert many_stats[q].tolist() == stats.tolist()
                if stats[_THETA0] > 0:
                    # Every top-k document is a candidate and k > capacity: the buffer filled.
                    assert stats[_CANDIDATES] >= k
                    assert stats[_EARLY] == (stats[_CANDIDATES] - 1) // capacity >= 1
                    early_runs.append(int(stats[_EARLY]))

    check()
    assert early_runs  # not vacuous: the early passes themselves were checked


def test_candidate_capacity_is_validated(tmp_path):
    index = _hidden_top_index(tmp_path / "index")
    for bad in (0, -3, 2.5, True, "8"):
        with pytest.raises(ValueError, match="candidate_capacity must be an integer >= 1"):
            PrunedSearcher(index, candidate_capacity=bad)
    assert PrunedSearcher(index).candidate_capacity == CANDIDATE_CAPACITY


def test_damage_found_by_an_early_verification_is_refused(tmp_path):
    index = _hidden_top_index(tmp_path / "index")
    searcher = PrunedSearcher(index, candidate_capacity=4)
    pristine = searcher.layout
    terms, weights = index.prepare_query(_HIDDEN_QUERIES.select([0]))
    # Every forward entry but the estimate's names a term outside the vocabulary: the estimate
    # passes, and the first early pass (when the 5th candidate arrives) verifies one of the
    # first four candidates (documents 7, 23, 39, 55) and finds the damage.
    forward_terms = np.array(pristine.forward_terms)
    forward_terms[: pristine.forward_offsets[_ESTIMATED[0]]] = np.iinfo(forward_terms.dtype).max
    forward_terms.flags.writeable = False  # as mapped: a writable array recompiles the kernel
    searcher.layout = pristine._replace(forward_terms=forward_terms)
    scratch = searcher._scratch()
    accumulator32, slots = scratch.accumulator32, scratch.slots
    docs, scores = np.empty(3, np.int64), np.empty(3, np.int64)
    stats = np.zeros(len(STATS_FIELDS), np.int64)
    count = pruned_search_one(
        terms,
        weights,
        3,
        kernels.ALL_DOCUMENTS,
        0,
        searcher._arrays(),
        _HIDDEN_PARAMS.as_tuple(),
        accumulator32,
        scratch,
        docs,
        scores,
        stats,
    )
    assert count == kernels.CORRUPT
    # Refused in the first early pass, before any other candidate was collected.
    assert stats[_EARLY] == 1 and stats[_CANDIDATES] == 4
    assert not accumulator32.any() and not slots.any()  # the scratch is clean for reuse
    with pytest.raises(IndexCorruptError, match="run verify"):
        searcher.search(terms, weights, 3, _HIDDEN_PARAMS, False)
    with pytest.raises(IndexCorruptError, match="run verify"):
        _many_pairs(searcher, index, _HIDDEN_QUERIES, 3, _HIDDEN_PARAMS, 2)
    searcher.layout = pristine
    expected, _ = _reference(index, terms, weights, 3)
    assert _many_pairs(searcher, index, _HIDDEN_QUERIES, 3, _HIDDEN_PARAMS, 2)[0][0] == expected


def _batch_in_child(index, queries, connection):
    run = index.search_batch(queries, 5, threads=2, mode="pruned")
    connection.send({q: [(h.doc_id, h.score) for h in hits] for q, hits in run.results.items()})
    connection.close()


def test_threaded_batches_reuse_their_pool_and_survive_a_fork(tmp_path):
    """Worker threads persist between batches; a forked child gets its own, not a dead pool."""
    import multiprocessing

    rng = np.random.default_rng(5)
    docs = _random_impacts(rng, 300, 20, 8, 50, 1.0)
    index = ImpactIndex.build(docs, tmp_path / "index", show_progress=False)
    queries = _random_impacts(rng, 40, 20, 6, 50, 1.0)
    single = index.search_batch(queries, 5, threads=1, mode="pruned").results
    assert index.search_batch(queries, 5, threads=2, mode="pruned").results == single
    pool = index._pruned()._pool
    assert pool is not None
    assert index.search_batch(queries, 5, threads=2, mode="pruned").results == single
    assert index._pruned()._pool is pool  # reused, not rebuilt

    context = multiprocessing.get_context("fork")
    parent, child = context.Pipe(duplex=False)
    process = context.Process(target=_batch_in_child, args=(index, queries, child))
    process.start()
    child.close()
    try:
        assert parent.poll(60), "the forked child's threaded batch hung"
        received = parent.recv()
        process.join(30)
        assert process.exitcode == 0
    finally:
        if process.is_alive():
            process.kill()
    assert received == {q: [(h.doc_id, h.score) for h in hits] for q, hits in single.items()}


def test_one_row_fast_path_equals_the_general_path(tmp_path):
    # A one-row integer SparseBatch (BM25's queries) is searched by one compiled call
    # (ImpactIndex._search_row); the same query as (term ids, weights) takes prepare_query and
    # _search_prepared. Zero weights, int64 sums, unchecked terms, a filter and a floor must
    # all come out the same.
    rng = np.random.default_rng(5)
    docs = _random_impacts(rng, 400, 30, 12, 300, 1.0)
    path = tmp_path / "index"
    ImpactIndex.build(docs, path, quantizer=Quantizer(max_impact=100_000), show_progress=False)
    index = ImpactIndex.open(path)  # fresh: no term checked yet, so the first rows decline
    rows = []
    for weights_high in (3, 300, 10**7):
        queries = _random_impacts(rng, 6, 30, 10, weights_high, 1.0)
        values = queries.values.astype(np.int64)
        values[::4] = 0  # explicit zeros are dropped, as prepare_query drops them
        rows.append(SparseBatch(queries.indptr, queries.indices, values, queries.vocab))
    mask = rng.random(400) < 0.5
    fast_hits = 0
    for queries in rows:
        for q in range(len(queries)):
            one = queries.select([q])
            terms, weights = one.row(0)
            keep = weights > 0
            pair = (terms[keep].astype(np.int64), weights[keep])
            for k in (1, 10, 100):
                expected, scores = _reference(index, pair[0], pair[1], k)
                for mode in ("pruned", "exhaustive"):
                    assert _pairs(index.search(one, k, mode=mode)) == expected
                    assert _pairs(index.search(pair, k, mode=mode)) == expected
                    top = index.search_arrays(one, k, mode=mode, filter=mask, floor=5)
                    general = index.search_arrays(pair, k, mode=mode, filter=mask, floor=5)
                    assert top.docnos.tolist() == general.docnos.tolist()
                    assert top.scores.tolist() == general.scores.tolist()
                fast_hits += index._search_row(one, k, Pruned(), None, 0) is not None
    assert fast_hits > 0  # not vacuous: the compiled path answered


def test_cut_phase_resuming_the_estimate_equals_cuts_from_scratch(tmp_path):
    # pruned_search_one's cut phase continues the estimate's plan (_lower_cuts) instead of
    # choosing every cut again (_cut): the cuts, layer ends and R must be the same, for every
    # estimate budget and target, whenever the estimate stopped above the target.
    from sparse_ir.index import pruned

    rng = np.random.default_rng(11)
    docs = _random_impacts(rng, 600, 40, 15, 300, 1.5)
    index = ImpactIndex.build(
        docs, tmp_path / "index", quantizer=Quantizer(max_impact=100_000), show_progress=False
    )
    arrays = pruned.SearchArrays.of(index, index._pruned().layout)
    queries = _random_impacts(rng, 20, 40, 12, 300, 1.0)
    resumed = 0
    for q in range(len(queries)):
        terms, weights = index.prepare_query(queries.select([q]))
        n = len(terms)
        if n == 0:
            continue
        for budget in (0, 1, 5, 40, 300, 5000):
            for target in (0, 10, 1000, 30_000, 10**6):
                position, impact = np.empty(n, np.int64), np.empty(n, np.int64)
                plan = np.empty((pruned._PLAN_ROWS, n), np.int64)
                keys = np.empty(n, np.float64)
                steps, bound = pruned._start_cuts(
                    terms, weights, arrays, position, impact, plan, keys
                )
                steps, bound, postings = pruned._lower_cuts(
                    terms, weights, arrays, 0, budget, position, impact, plan, keys, steps,
                    bound, 0,
                )  # fmt: skip
                if bound <= target:
                    continue  # the kernel chooses from scratch then
                _, bound, _ = pruned._lower_cuts(
                    terms, weights, arrays, target, pruned._NO_POSTINGS_LIMIT, position,
                    impact, plan, keys, steps, bound, postings,
                )  # fmt: skip
                fresh_position, fresh_impact = np.empty(n, np.int64), np.empty(n, np.int64)
                fresh = pruned._choose_cuts(
                    terms, weights, arrays, target, pruned._NO_POSTINGS_LIMIT, fresh_position,
                    fresh_impact,
                )  # fmt: skip
                assert bound == fresh
                assert position.tolist() == fresh_position.tolist()
                assert impact.tolist() == fresh_impact.tolist()
                resumed += 1
    assert resumed > 100  # not vacuous


def test_prepared_queries_take_the_one_row_path_and_equal_the_general_path(tmp_path):
    # A (int32 terms, int64 weights) tuple, prepare_query's own form, is searched by the same
    # compiled call as a one-row SparseBatch; it must give what prepare_query +
    # _search_prepared give (search_with_stats always takes that path), and anything not in
    # the prepared form must be declined there: unsorted terms are sorted and bad ones get
    # the general path's error.
    rng = np.random.default_rng(8)
    docs = _random_impacts(rng, 400, 30, 12, 300, 1.0)
    path = tmp_path / "index"
    ImpactIndex.build(docs, path, quantizer=Quantizer(max_impact=100_000), show_progress=False)
    index = ImpactIndex.open(path)
    mask = rng.random(400) < 0.5
    fast = 0
    for weights_high in (3, 300, 10**7):
        queries = _random_impacts(rng, 8, 30, 10, weights_high, 1.0)
        for q in range(len(queries)):
            terms, weights = queries.select([q]).row(0)
            weights = weights.astype(np.int64)
            weights[::3] = 0  # zeros are dropped by both paths
            pair = (terms.astype(np.int32), weights)
            for k in (1, 10, 100):
                for mode in ("pruned", "exhaustive"):
                    general, _ = index.search_with_stats(pair, k, mode=mode)
                    assert _pairs(index.search(pair, k, mode=mode)) == _pairs(general)
                    for flt, floor in ((None, None), (mask, 5)):
                        top = index.search_arrays(pair, k, mode=mode, filter=flt, floor=floor)
                        hits, _ = index.search_with_stats(
                            pair, k, mode=mode, filter=flt, floor=floor
                        )
                        assert list(zip(top.docnos.tolist(), top.scores.tolist())) == _pairs(hits)
                fast += index._search_row(pair, k, Pruned(), None, 0) is not None
            if len(terms) > 1:  # reversed: declined by the compiled call, sorted by the other
                backwards = (pair[0][::-1].copy(), pair[1][::-1].copy())
                assert index._search_row(backwards, 10, Pruned(), None, 0) is None
                assert _pairs(index.search(backwards, 10)) == _pairs(index.search(pair, 10))
    assert fast > 0  # not vacuous
    bad = [
        (np.array([3, 3], np.int32), np.array([1, 2], np.int64)),  # a term twice
        (np.array([1, 30], np.int32), np.array([1, 2], np.int64)),  # outside the vocabulary
        (np.array([-1, 2], np.int32), np.array([1, 2], np.int64)),
        (np.array([1, 2], np.int32), np.array([1, -2], np.int64)),  # a negative weight
        (np.array([1, 2], np.int32), np.array([1, 2**62], np.int64)),  # scores would overflow
    ]
    for pair in bad:
        assert index._search_row(pair, 10, Pruned(), None, 0) is None
        with pytest.raises(InputError):
            index.search(pair, 10)
        with pytest.raises(InputError):
            index.search_arrays(pair, 10)
