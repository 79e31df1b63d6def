"""Pruned search across segments with one shared top-k (:mod:`sparse_ir.index.cross_segment`):
exactly the plain reference over the live documents, ties by score then document number."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sparse_ir.errors import IndexCorruptError
from sparse_ir.index.cross_segment import SegmentsSearcher
from sparse_ir.index.impact_index import ImpactIndex
from sparse_ir.index.live_index import LiveImpactIndex
from sparse_ir.index.modes import Approximate, Pruned
from sparse_ir.index.pruned import STATS_FIELDS, PrunedParams
from sparse_ir.index.writer import IndexWriter
from sparse_ir.quantize import Quantizer
from sparse_ir.sparse_batch import SparseBatch

# Small estimates leave postings below the cuts, so the cut, bound and verify phases run on
# test-sized segments (the default estimate would cover them whole: exhaustive).
STEP_MODES = [
    Pruned(estimate_postings=e, estimate_candidates=c, cut_ratio=r)
    for e, c, r in ((1, 1, 0.5), (4, 2, 0.05), (16, 8, 0.3), (64, 32, 0.9), (8, 1, 0.999))
]
_THETA0 = STATS_FIELDS.index("theta0")


def random_batch(rng, ids, vocab, max_terms, max_impact, skew, scale=1.0) -> SparseBatch:
    """Integer impact vectors (skewed terms: long lists; small impacts: many ties)."""
    probabilities = 1.0 / np.arange(1, len(vocab) + 1) ** skew
    probabilities /= probabilities.sum()
    indptr, indices, values = [0], [], []
    for _ in ids:
        n = min(int(rng.integers(0, max_terms + 1)), len(vocab))
        terms = np.sort(rng.choice(len(vocab), size=n, replace=False, p=probabilities))
        indices.extend(terms.tolist())
        impacts = np.maximum(1, (rng.integers(1, max_impact + 1, size=n) * scale).astype(int))
        values.extend(impacts.tolist())
        indptr.append(len(indices))
    return SparseBatch(
        np.array(indptr), np.array(indices, np.int32), np.array(values, np.int32), vocab,
        tuple(ids),
    )  # fmt: skip


def brute_force(index: LiveImpactIndex, terms, weights, k, allowed=None, floor=0):
    """``[(docno, score)]``: plain numpy scores of every document, deleted and disallowed ones
    and scores <= floor left out, sorted by score descending then document number."""
    parts = []
    for segment in index.segments:
        part = np.zeros(segment.num_documents, np.int64)
        for term, weight in zip(np.asarray(terms).tolist(), np.asarray(weights).tolist()):
            docs, impacts = segment.postings(int(term))
            part[docs] += int(weight) * np.asarray(impacts, np.int64)
        parts.append(part)
    scores = np.concatenate(parts)
    keep = (scores > max(floor, 0)) & ~index.deleted_mask()
    if allowed is not None:
        keep &= allowed
    docs = np.flatnonzero(keep)
    order = np.lexsort((docs, -scores[docs]))[:k]
    return list(zip(docs[order].tolist(), scores[docs][order].tolist()))


def build_live(path, rng, sizes, vocab, max_impact, skew, delete_share, scales=None):
    """A live index of one segment per entry of ``sizes`` (no merges), ``delete_share`` of
    the documents deleted."""
    quantizer = Quantizer(max_impact=100_000)
    total = 0
    with IndexWriter.open(path, vocab=vocab, quantizer=quantizer, merge_policy=None) as writer:
        for n, size in enumerate(sizes):
            ids = [f"d{i}" for i in range(total, total + size)]
            scale = 1.0 if scales is None else scales[n]
            writer.add(random_batch(rng, ids, vocab, 12, max_impact, skew, scale))
            writer.commit()
            total += size
        chosen = rng.choice(total, int(total * delete_share), replace=False)
        writer.delete([f"d{i}" for i in chosen.tolist()])
    index = ImpactIndex.open(path)
    # A segment whose every document was deleted leaves the commit.
    assert isinstance(index, LiveImpactIndex) and len(index.segments) <= len(sizes)
    return index


def pairs(top):
    return list(zip(top.docnos.tolist(), top.scores.tolist()))


def test_shared_top_k_equals_reference(tmp_path_factory):
    # Counted over all examples: the pruned phases must have run somewhere (not vacuous).
    pruned_runs = [0]

    @settings(
        max_examples=25,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(
        seed=st.integers(0, 2**32 - 1),
        sizes=st.lists(st.integers(0, 250), min_size=1, max_size=5),
        vocab_size=st.integers(2, 40),
        max_impact=st.sampled_from([1, 3, 20, 300, 70000]),
        k=st.integers(1, 25),
        skew=st.sampled_from([0.0, 1.0, 2.0]),
        delete_share=st.sampled_from([0.0, 0.1, 0.5]),
    )
    def check(seed, sizes, vocab_size, max_impact, k, skew, delete_share):
        rng = np.random.default_rng(seed)
        vocab = tuple(f"t{i}" for i in range(vocab_size))
        sizes = [max(1, s) for s in sizes]
        index = build_live(
            tmp_path_factory.mktemp("live") / "ix", rng, sizes, vocab, max_impact, skew,
            delete_share,
        )  # fmt: skip
        queries = random_batch(rng, [f"q{i}" for i in range(5)], vocab, 10, max_impact, skew)
        mask = rng.random(index.num_docnos) < 0.3
        for q in range(len(queries)):
            one = queries.select([q])
            terms, weights = index.prepare_query(one)
            expected = brute_force(index, terms, weights, k)
            for mode in ["exhaustive", "pruned", Approximate(0.5, 1.0), *STEP_MODES]:
                assert pairs(index.search_arrays(one, k, mode=mode)) == expected, mode
                hits, stats = index.search_with_stats(one, k, mode=mode)
                assert [(h.docno, h.score) for h in hits] == expected, mode
                pruned_runs[0] += int(stats.theta0 > 0)
            floor = expected[len(expected) // 2][1] if expected else 0
            for mode in ("exhaustive", STEP_MODES[0], STEP_MODES[2]):
                filtered = brute_force(index, terms, weights, k, allowed=mask)
                assert pairs(index.search_arrays(one, k, mode=mode, filter=mask)) == filtered
                above = brute_force(index, terms, weights, k, floor=floor)
                assert pairs(index.search_arrays(one, k, mode=mode, floor=floor)) == above

    check()
    assert pruned_runs[0] > 0


def test_many_windows_and_threads(tmp_path):
    # Segments of more than one window of 2^16 documents, searched from several threads.
    rng = np.random.default_rng(3)
    vocab = tuple(f"t{i}" for i in range(30))
    index = build_live(tmp_path / "ix", rng, [70_000, 5_000, 30_000], vocab, 200, 1.0, 0.1)
    queries = random_batch(rng, [f"q{i}" for i in range(6)], vocab, 10, 200, 1.0)
    for mode in ("pruned", STEP_MODES[0], Pruned(estimate_postings=2_000)):
        run = index.search_batch(queries, 10, mode=mode, threads=3)
        for q in range(len(queries)):
            terms, weights = index.prepare_query(queries.select([q]))
            expected = brute_force(index, terms, weights, 10)
            assert [(h.docno, h.score) for h in run[f"q{q}"]] == expected, (mode, q)


def test_a_segment_below_the_k_th_score_is_skipped(tmp_path):
    # The second segment's impacts are a tenth of the first's: its upper bound for a query
    # stays below the k-th score the first one reaches, so it is never searched.
    rng = np.random.default_rng(9)
    vocab = tuple(f"t{i}" for i in range(6))
    index = build_live(tmp_path / "ix", rng, [400, 400], vocab, 1000, 0.0, 0.0, [1.0, 0.01])
    searcher = SegmentsSearcher(index.segments, index.offsets[:-1], index.vocab_size)
    params = PrunedParams(estimate_postings=100, estimate_candidates=10)
    terms, weights = index.prepare_query({"t0": 1, "t1": 1})
    result = searcher.search(terms, weights, 5, params, [None, None])
    assert result.pruned and result.skipped == 1
    assert pairs(result) == brute_force(index, terms, weights, 5)
    assert all(d < 400 for d in result.docnos.tolist())


def test_ties_across_segments_go_to_the_smaller_number(tmp_path):
    # Identical documents in every segment: the top-k is the lowest live numbers, whatever
    # the order the segments are pruned in.
    docs = SparseBatch.from_dicts([{"a": 5, "b": 3}] * 40 + [{"a": 1}] * 30, ["a", "b"])
    path = tmp_path / "ix"
    with IndexWriter.open(path, vocab=("a", "b"), merge_policy=None) as writer:
        for part in range(3):
            batch = SparseBatch.from_dicts(
                docs.to_dicts(), ["a", "b"], ids=[f"s{part}-{i}" for i in range(70)]
            )
            writer.add(batch)
            writer.commit()
        writer.delete(["s0-0", "s0-5", "s1-3"])
    index = ImpactIndex.open(path)
    terms, weights = index.prepare_query({"a": 2, "b": 1})
    for k in (1, 7, 45, 130):
        expected = brute_force(index, terms, weights, k)
        for mode in ("exhaustive", "pruned", *STEP_MODES):
            assert pairs(index.search_arrays({"a": 2, "b": 1}, k, mode=mode)) == expected


def test_damaged_postings_are_refused_naming_the_segment(tmp_path):
    rng = np.random.default_rng(1)
    vocab = tuple(f"t{i}" for i in range(5))
    index = build_live(tmp_path / "ix", rng, [300, 300], vocab, 9, 0.0, 0.0)
    segment = index.segments[1]
    searcher = SegmentsSearcher(index.segments, index.offsets[:-1], index.vocab_size)
    terms, weights = index.prepare_query({"t0": 1, "t1": 2, "t2": 1})
    params = PrunedParams(estimate_postings=100, estimate_candidates=5)
    assert searcher.search(terms, weights, 3, params, [None, None]).pruned
    # The pruned phases read the impact-ordered postings: offsets past the segment's end.
    layout = segment._pruned().layout
    damaged = np.array(layout.impact_order_docs)
    damaged[:] = 60_000
    damaged.flags.writeable = False  # as mapped arrays are: one kernel type, no extra compile
    segment._pruned().layout = layout._replace(impact_order_docs=damaged)
    with pytest.raises(IndexCorruptError, match=str(segment.directory)):
        searcher.search(terms, weights, 3, params, [None, None])
    # The exhaustive kernel reads the same impact-ordered postings (no other copy is stored).
    with pytest.raises(IndexCorruptError, match=str(segment.directory)):
        searcher.search(terms, weights, 3, None, [None, None])
