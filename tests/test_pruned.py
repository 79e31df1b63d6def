"""Pruned and approximate search: exactly the exhaustive top-k (numba == numpy reference)."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sparse_ir.errors import InputError
from sparse_ir.index.approximate import search_params
from sparse_ir.index.impact_index import ImpactIndex
from sparse_ir.index.layout import SearchLayout
from sparse_ir.index.pruned import PrunedParams
from sparse_ir.index.reference import reference_scores, reference_top_k
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
    return SparseBatch(np.array(indptr), np.array(indices, np.int32),
                       np.array(values, np.int32), vocab, tuple(f"d{i}" for i in range(rows)))


def _reference(index, terms, weights, k):
    scores = reference_scores(np.asarray(index.term_offsets), np.asarray(index.postings_docs),
                              np.asarray(index.postings_impacts), index.num_documents,
                              terms, weights)
    docs, top = reference_top_k(scores, k)
    return list(zip(docs.tolist(), top.tolist())), scores


def _pairs(hits):
    return [(h.docno, h.score) for h in hits]


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), rows=st.integers(1, 300), vocab_size=st.integers(1, 60),
       max_impact=st.sampled_from([1, 3, 20, 300, 70000]), k=st.integers(1, 25),
       skew=st.sampled_from([0.0, 1.0, 2.0]))
def test_pruned_equals_reference_on_random_data(tmp_path_factory, seed, rows, vocab_size,
                                                max_impact, k, skew):
    rng = np.random.default_rng(seed)
    docs = _random_impacts(rng, rows, vocab_size, 12, max_impact, skew)
    path = tmp_path_factory.mktemp("pruned")
    index = ImpactIndex.build(docs, path / "index", quantizer=Quantizer(max_impact=100_000),
                              show_progress=False)
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
        assert _pairs(index.search(one, k, mode="approximate", cut_ratio=0.5,
                                   bound_weight=1.0)) == expected
        assert _pairs(run[f"d{q}"]) == expected
        assert _pairs(run_exhaustive[f"d{q}"]) == expected


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), cut_ratio=st.floats(1.0, 20.0),
       bound_weight=st.floats(0.0, 1.0), k=st.integers(1, 15))
def test_approximate_returns_true_scores_in_order(tmp_path_factory, seed, cut_ratio,
                                                  bound_weight, k):
    rng = np.random.default_rng(seed)
    docs = _random_impacts(rng, 200, 40, 15, 50, 1.0)
    index = ImpactIndex.build(docs, tmp_path_factory.mktemp("approx") / "index",
                              show_progress=False)
    queries = _random_impacts(rng, 5, 40, 12, 50, 1.0)
    for q in range(len(queries)):
        one = queries.select([q])
        terms, weights = index.prepare_query(one)
        expected, scores = _reference(index, terms, weights, k)
        hits = _pairs(index.search(one, k, mode="approximate", cut_ratio=cut_ratio,
                                   bound_weight=bound_weight))
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
    with pytest.raises(ValueError, match="apply to mode='approximate'"):
        index.search({"a": 1}, mode="pruned", cut_ratio=2.0)
    with pytest.raises(ValueError, match="apply to mode='approximate'"):
        index.search_batch([{"a": 1}], mode="exhaustive", bound_weight=0.5)
    with pytest.raises(ValueError, match="cut_ratio must be > 0"):
        index.search({"a": 1}, mode="approximate", cut_ratio=0)
    with pytest.raises(ValueError, match="bound_weight must be in"):
        search_params("approximate", bound_weight=1.5)
    plain = ImpactIndex.build(docs, tmp_path / "without", show_progress=False,
                              search_layout=False)
    assert not plain.has_search_layout
    assert plain.search({"a": 1}) == index.search({"a": 1})  # default falls back to exhaustive
    with pytest.raises(ValueError, match="no search layout"):
        plain.search({"a": 1}, mode="pruned")
    with pytest.raises(InputError):
        index.search({"a": -1}, mode="pruned")


def test_layout_is_listed_checked_and_consistent(tmp_path):
    rng = np.random.default_rng(3)
    docs = _random_impacts(rng, 500, 80, 20, 400, 1.0)
    index = ImpactIndex.build(docs, tmp_path / "index", show_progress=False,
                              memory_budget=20_000)  # several spilled runs
    manifest = index.manifest
    for name in ("impact_order_docs.bin", "segment_ends.bin", "forward_terms.bin"):
        assert name in manifest["files"]
    index.verify()
    layout = SearchLayout.open(index.directory, manifest)
    offsets = np.asarray(index.term_offsets)
    for t in range(index.vocab_size):
        lo, hi = offsets[t], offsets[t + 1]
        by_doc = sorted(zip(index.postings_docs[lo:hi].tolist(),
                            index.postings_impacts[lo:hi].tolist()))
        by_impact = list(zip(layout.impact_order_docs[lo:hi].tolist(),
                             layout.impact_order_impacts[lo:hi].tolist()))
        assert by_impact == sorted(by_doc, key=lambda pair: (-pair[1], pair[0]))
    forward = docs.to_dicts()
    fo = np.asarray(layout.forward_offsets)
    for d in range(index.num_documents):
        terms = layout.forward_terms[fo[d]:fo[d + 1]].tolist()
        impacts = layout.forward_impacts[fo[d]:fo[d + 1]].tolist()
        assert {index.vocab[t]: i for t, i in zip(terms, impacts)} == forward[d]


@pytest.fixture(scope="module")
def scifact_vectors(scifact_dir):
    """Real splade-tiny vectors of SciFact (documents and the 300 test queries), quantized."""
    directory = scifact_dir.parent / "scifact-splade-tiny"
    if not (directory / "doc_vectors.json.gz").is_file():
        pytest.skip(f"{directory} not found")
    with gzip.open(directory / "doc_vectors.json.gz", "rt") as handle:
        docs = json.load(handle)
    with gzip.open(directory / "query_vectors.json.gz", "rt") as handle:
        queries = json.load(handle)
    vocab = sorted({t for v in docs.values() for t in v} | {t for v in queries.values() for t in v})
    quantizer = Quantizer(scale=100)
    return (quantizer.quantize(SparseBatch.from_dicts(docs.values(), vocab, ids=list(docs))),
            quantizer.quantize(SparseBatch.from_dicts(queries.values(), vocab,
                                                      ids=list(queries))))


@pytest.mark.slow
def test_pruned_equals_scipy_on_scifact(tmp_path, scifact_vectors):
    docs, queries = scifact_vectors
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
    searcher = index._pruned()
    use_int64 = index._needs_int64(terms, weights)
    if threads is None:
        docs, scores, stats = searcher.search(terms, weights, k, params, use_int64)
        return list(zip(docs.tolist(), scores.tolist())), stats
    indptr = np.array([0, len(terms)], np.int64)
    docs, scores, counts, stats = searcher.search_many(
        indptr, np.asarray(terms, np.int32), weights, np.array([use_int64]), k, params,
        threads=threads)
    count = int(counts[0])
    return list(zip(docs[0, :count].tolist(), scores[0, :count].tolist())), stats[0]


# Small estimates leave postings below the cuts, so the cut, bound and verification steps run
# (the default estimate of 100,000 postings covers a whole test index: it would be exhaustive).
_STEP_PARAMS = [PrunedParams(estimate_postings=e, estimate_candidates=c, cut_ratio=r)
                for e, c, r in ((1, 1, 0.5), (4, 2, 0.05), (16, 8, 0.3), (64, 32, 0.9),
                                (8, 1, 0.999))]


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), rows=st.integers(20, 400),
       vocab_size=st.integers(2, 40), max_impact=st.sampled_from([1, 3, 20, 300, 70000]),
       k=st.integers(1, 20), skew=st.sampled_from([0.0, 1.0, 2.0]))
def test_pruned_steps_equal_reference(tmp_path_factory, seed, rows, vocab_size, max_impact, k,
                                      skew):
    rng = np.random.default_rng(seed)
    docs = _random_impacts(rng, rows, vocab_size, 15, max_impact, skew)
    index = ImpactIndex.build(docs, tmp_path_factory.mktemp("steps") / "index",
                              quantizer=Quantizer(max_impact=100_000), show_progress=False)
    queries = _random_impacts(rng, 6, vocab_size, 12, max_impact, skew)
    k = min(k, index.num_documents)
    pruned_runs = 0
    for q in range(len(queries)):
        terms, weights = index.prepare_query(queries.select([q]))
        expected, _ = _reference(index, terms, weights, k)
        for params in _STEP_PARAMS:
            hits, stats = _kernel_pairs(index, terms, weights, k, params)
            assert hits == expected, params
            pruned_runs += int(stats[2] > 0)  # θ₀ recorded: the cut and verify steps ran
            assert _kernel_pairs(index, terms, weights, k, params, threads=2)[0] == expected
    if rows >= 100 and vocab_size >= 5 and max_impact > 1:
        assert pruned_runs > 0  # not vacuous: the pruned path itself was checked


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
    indices = np.concatenate([np.sort(rng.choice(vocab_size, size=n, replace=False,
                                                 p=probabilities)) for n in lengths])
    values = rng.integers(1, 200, size=len(indices))
    docs = SparseBatch(indptr, indices.astype(np.int32), values.astype(np.int32),
                       tuple(f"t{i}" for i in range(vocab_size)),
                       tuple(f"d{i}" for i in range(rows)))
    index = ImpactIndex.build(docs, tmp_path / "index", show_progress=False,
                              memory_budget=2_000_000)
    assert index.manifest["search_layout"]["num_windows"] == 3
    queries = _random_impacts(rng, 8, vocab_size, 10, 200, 1.0)
    for q in range(len(queries)):
        terms, weights = index.prepare_query(queries.select([q]))
        for k in (1, 10, 100):
            expected, _ = _reference(index, terms, weights, k)
            assert _pairs(index.search(queries.select([q]), k, mode="pruned")) == expected
            pruned_runs = 0
            for params in _STEP_PARAMS + [PrunedParams(estimate_postings=2_000)]:
                hits, stats = _kernel_pairs(index, terms, weights, k, params)
                assert hits == expected, (q, k, params)
                pruned_runs += int(stats[2] > 0)
            assert pruned_runs > 0 or len(terms) == 0
