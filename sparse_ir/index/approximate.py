"""Approximate search: the pruned kernel with its proof relaxed, for speed at a measured recall.

The pruned search (:mod:`.pruned`) keeps every document whose score could reach the k-th. Four
knobs give that up where it costs most:

* ``cut_ratio`` (ρ): the per-term cuts are lowered only until documents below all of them score
  at most ρ·θ₀ (θ₀: the k-th exact score found by the estimate step). Exact search needs ρ < 1;
  with ρ > 1 fewer postings are scored, and a document that reaches the top-k only through
  postings below the cuts is missed.
* ``bound_weight`` (β ≤ 1): a document's bound is β·R + its excess above the cuts. The proof
  needs β = 1 (R is what a document could score below the cuts if it held every query term at
  the cut); real documents hold few of the query terms, so a smaller β verifies far fewer
  documents at little loss.
* ``term_share`` (σ ≤ 1, query-term pruning): only the heaviest query terms are walked, those
  whose *reach* (q_t × the term's largest impact, the most it can add to a score) covers the
  share σ of the query's total reach. The light terms of a long SPLADE query (~47 terms on the
  1M benchmark) take little part in any top-k score but, through R = Σ q_t·τ_t, hold the other
  terms' cuts down; without them the cuts stay higher and far fewer postings are scored. The
  dropped terms still count in every score: documents are verified with the whole query.
* ``max_verified`` (V, a verification budget): at most the V candidates of the highest bounds
  are verified. With a budget, β = 1 and ρ ≥ 1 become useful: the bounds rank the candidates
  well, and the budget stops the long tail of them being scored one by one.

Each hit's score is always its exact score under the whole query (verification reads the
forward index); what approximation may lose is a document that belonged in the top-k. With
ρ < 1, β = 1, σ = 1 and no budget the search is exact (the kernel of :mod:`.pruned` runs);
the knobs are measured on real and synthetic SPLADE vectors in ``docs/performance.md``
(Recall@10 against exact search, and latency: ``scripts/bench_approx.py``).

The knobs are the fields of :class:`~sparse_ir.index.modes.Approximate`, the mode value::

    index.search(query, 10, mode=Approximate(cut_ratio=1.0, bound_weight=1.0,
                                             term_share=0.7, max_verified=500))

A fifth knob replaces the four: ``layer_postings`` (P), the **layer ranking**
(:func:`layer_search_one`): no estimate, cuts or bounds; the query's P best postings (highest
q_t × impact over all its terms) rank the documents by their partial sums, and the best
``max_verified`` of them are scored exactly. It is the fastest setting at R@10 ≈ 0.97 on the
1M benchmark (``docs/performance.md``)::

    index.search(query, 10, mode=Approximate(layer_postings=700_000, max_verified=300))

:func:`approximate_search_one` is the kernel of σ < 1 or a budget; the pruned kernel's
``_search_one_any`` dispatches to it. Its phases are those of :mod:`.pruned`, called on the
walked terms, with :func:`_bound_budget` in place of the bound phase when there is a budget.
"""

from __future__ import annotations

import numba
import numpy as np

from sparse_ir.index import heaps, kernels
from sparse_ir.index import pruned as _pruned
from sparse_ir.index.modes import (
    DEFAULT_BOUND_WEIGHT,
    DEFAULT_CUT_RATIO,
    DEFAULT_MAX_VERIFIED,
    DEFAULT_TERM_SHARE,
    Approximate,
)

__all__ = [
    "DEFAULT_BOUND_WEIGHT",
    "DEFAULT_CUT_RATIO",
    "DEFAULT_MAX_VERIFIED",
    "DEFAULT_TERM_SHARE",
    "Approximate",
    "approximate_search_one",
    "layer_cuts",
    "layer_search_one",
    "walked_terms",
]

# The candidate buffer is trimmed to the budget whenever it holds this many times the budget
# (at least _TRIM_MIN): trimming early raises the bar the later windows' candidates must pass.
_TRIM_FACTOR = 4
_TRIM_MIN = 1024


@numba.njit(cache=True, nogil=True)
def walked_terms(query_terms, query_weights, arrays, term_share):
    """The query terms whose postings are walked: the heaviest by reach (q_t × the term's
    largest impact) until their reach covers ``term_share`` of the query's total, in query
    order (``(terms, weights)``, new arrays). Every term when ``term_share`` >= 1; ties in
    reach go to the earlier term.

    Example (a term's largest impact is its first segment's impact): with reaches 50, 30 and
    20, ``term_share`` 0.7 keeps the first two (80% >= 70%), 0.5 the first only.
    """
    n = len(query_terms)
    if term_share >= 1.0:
        return query_terms.copy(), query_weights.copy()
    reach = np.empty(n, np.float64)
    total = 0.0
    for i in range(n):
        t = query_terms[i]
        first = arrays.segment_offsets[t]
        top = 0.0
        if arrays.segment_offsets[t + 1] > first:
            top = np.float64(arrays.segment_impacts[first])
        reach[i] = np.float64(query_weights[i]) * top
        total += reach[i]
    order = np.argsort(-reach, kind="mergesort")  # stable: ties keep the query order
    keep = np.zeros(n, np.bool_)
    covered = 0.0
    kept = 0
    for j in range(n):
        if covered >= term_share * total:
            break
        keep[order[j]] = True
        covered += reach[order[j]]
        kept += 1
    terms = np.empty(kept, query_terms.dtype)
    weights = np.empty(kept, query_weights.dtype)
    m = 0
    for i in range(n):
        if keep[i]:
            terms[m] = query_terms[i]
            weights[m] = query_weights[i]
            m += 1
    return terms, weights


@numba.njit(cache=True, nogil=True)
def _trim(keys, docs, count, budget):
    """Keep the ``budget`` highest keys of ``keys``/``docs`` [:count] at the front, in their
    order (ties at the lowest kept key: the first ones); return the lowest kept key."""
    lowest = np.partition(keys[:count], count - budget)[count - budget]
    above = 0
    for j in range(count):
        if keys[j] > lowest:
            above += 1
    ties = budget - above
    m = 0
    for j in range(count):
        key = keys[j]
        if key > lowest or (key == lowest and ties > 0):
            if key == lowest:
                ties -= 1
            keys[m] = key
            docs[m] = docs[j]
            m += 1
    return lowest


@numba.njit(cache=True, nogil=True)
def _bound_budget(
    query_terms, query_weights, allowed, arrays, accumulator, scratch, cut_impact, credit, need,
    budget, stats,
):  # fmt: skip
    """The bound phase (:func:`.pruned._bound`) keeping only the ``budget`` candidates of the
    highest bounds: whenever the buffer fills up to the trim size, the best ``budget`` stay and
    the bar rises to the lowest of them, so no early verification pass runs. A budget above
    half the buffer is taken as half the buffer (only a tiny test buffer is that small).

    Returns ``(candidates in the buffer, postings scored, corrupt)``.
    """
    candidate_docs = scratch.candidate_docs
    candidate_keys = scratch.candidate_keys
    capacity = min(len(candidate_keys), len(candidate_docs))
    budget = max(1, min(budget, capacity // 2))
    limit = min(capacity, max(_TRIM_FACTOR * budget, _TRIM_MIN))
    num_docs = len(arrays.forward_offsets) - 1
    num_windows = _pruned._num_windows(arrays)
    n_candidates = 0
    n_seen = 0
    scored = 0
    corrupt = False
    for w in range(num_windows):
        base = w << arrays.window_bits
        size_w = min(1 << arrays.window_bits, num_docs - base)
        _pruned._prefetch_starts(query_terms, arrays, num_windows, w)
        scored += _pruned._add_excess(
            query_terms, query_weights, arrays, num_windows, w, cut_impact, accumulator
        )
        for offset in range(size_w):
            excess = np.int64(accumulator[offset])
            accumulator[offset] = 0
            if excess >= need and kernels.admits(allowed, base + offset):
                if n_candidates == limit:
                    lowest = _trim(candidate_keys, candidate_docs, n_candidates, budget)
                    n_candidates = budget
                    need = max(need, lowest - credit)
                    if excess < need:
                        continue
                candidate_docs[n_candidates] = base + offset
                candidate_keys[n_candidates] = credit + excess
                n_candidates += 1
                n_seen += 1
        for offset in range(size_w, _pruned.ACCUMULATOR_SIZE):
            if accumulator[offset] != 0:
                accumulator[offset] = 0
                corrupt = True
        if corrupt:
            break
    if n_candidates > budget:
        _trim(candidate_keys, candidate_docs, n_candidates, budget)
        n_candidates = budget
    stats[_pruned.STAT_CANDIDATES] = n_seen
    return n_candidates, scored, corrupt


# The phase calls' arguments are packed (not one per line) so the driver reads on one screen.
# fmt: off
@numba.njit(cache=True, nogil=True)
def approximate_search_one(
    query_terms, query_weights, k, allowed, floor, arrays, settings, accumulator, scratch,
    out_docs, out_scores, stats,
):
    """Top-k of one query by the pruned kernel's phases over the walked terms
    (:func:`walked_terms`, ``settings.term_share``), verifying at most
    ``settings.max_verified`` candidates when it is above 0; documents are scored exactly with
    the whole query. Arguments and return values: those of :func:`.pruned.pruned_search_one`.
    """
    n_terms = len(query_terms)
    if n_terms >= 65535 or len(accumulator) != _pruned.ACCUMULATOR_SIZE:
        return _pruned.FALLBACK
    walk_terms, walk_weights = walked_terms(query_terms, query_weights, arrays, settings.term_share)
    n_walk = len(walk_terms)
    slots = scratch.slots
    slot_weights = _pruned._fill_slots(query_terms, query_weights, slots)  # the whole query
    heap_scores = np.empty(k, np.int64)
    heap_docs = np.empty(k, np.int64)
    cut_position = np.empty(n_walk, np.int64)
    cut_impact = np.empty(n_walk, np.int64)
    want = max(settings.estimate_candidates, k)
    best_scores = np.empty(want, np.int64)
    best_docs = np.empty(want, np.int64)
    floor = max(np.int64(floor), np.int64(0))

    # 1. Estimate θ₀ from the walked terms' top postings, the documents scored exactly.
    n_best, scored, exhaustive, corrupt = _pruned._estimate(
        walk_terms, walk_weights, allowed, arrays, settings, accumulator,
        scratch.candidate_docs, cut_position, cut_impact, best_scores, best_docs
    )
    # Partial scores of the walked terms are the scores only when every term is walked.
    exhaustive = exhaustive and n_walk == n_terms
    estimated_docs = np.sort(best_docs[:n_best])
    size = 0
    if not corrupt:
        size = _pruned._score_estimate(
            best_scores, best_docs, n_best, estimated_docs, exhaustive, k, floor, arrays, slots,
            slot_weights, heap_scores, heap_docs, 0, np.int64(0)
        )
        corrupt = size < 0
    stats[_pruned.STAT_VERIFIED] = n_best
    stats[_pruned.STAT_POSTINGS] = scored
    if corrupt or exhaustive or (size < k and floor == 0):
        _pruned._clear_slots(query_terms, slots)
        if corrupt:
            return kernels.CORRUPT
        if not exhaustive:
            return _pruned.FALLBACK
        stats[_pruned.STAT_KTH_SCORE] = heap_scores[0] if size == k else 0
        return heaps.drain(heap_scores, heap_docs, size, out_docs, out_scores)
    theta0 = heap_scores[0] if size == k else floor + 1

    # 2. Cut the walked terms: R = Σ q_t·τ_t <= ρ·θ₀.
    bound = _pruned._cut(
        walk_terms, walk_weights, arrays, theta0, settings.cut_ratio, cut_position, cut_impact
    )

    # 3. Bound (credit = β·R), keeping the best max_verified candidates when there is a budget.
    credit = bound
    if settings.bound_weight < 1.0:
        credit = np.int64(np.floor(bound * settings.bound_weight))
    need = max(theta0 - credit, np.int64(1))
    if settings.max_verified > 0:
        n_candidates, postings, corrupt = _bound_budget(
            walk_terms, walk_weights, allowed, arrays, accumulator, scratch, cut_impact, credit,
            need, settings.max_verified, stats
        )
        if corrupt:
            size = -1
    else:
        size, n_candidates, postings = _pruned._bound(
            walk_terms, walk_weights, k, allowed, floor, arrays, accumulator, scratch,
            slot_weights, cut_impact, credit, need, heap_scores, heap_docs, size, estimated_docs,
            n_best, stats, np.int64(0)
        )
    scored += postings

    # 4. Verify by decreasing bound, with the whole query.
    if size >= 0:
        size = _pruned._verify(
            scratch.candidate_keys, scratch.candidate_docs, n_candidates, heap_scores, heap_docs,
            size, k, floor, estimated_docs, n_best, arrays, slots, slot_weights, stats,
            np.int64(0)
        )
    _pruned._clear_slots(query_terms, slots)
    if size < 0:
        accumulator[:] = 0  # a pass may have stopped before clearing its window
        return kernels.CORRUPT
    stats[_pruned.STAT_POSTINGS] = scored
    stats[_pruned.STAT_THETA0] = theta0
    stats[_pruned.STAT_CUT_BOUND] = bound
    stats[_pruned.STAT_KTH_SCORE] = heap_scores[0] if size == k else 0
    return heaps.drain(heap_scores, heap_docs, size, out_docs, out_scores)
# fmt: on


# -- the layer ranking ---------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True, inline="always")
def _segments_reaching(weight, threshold, segment_impacts, first, last):
    """How many of a term's segments ``[first, last)`` (impacts descending) have
    weight × impact >= ``threshold``."""
    low = first
    high = last
    while low < high:
        middle = (low + high) // 2
        if weight * np.int64(segment_impacts[middle]) >= threshold:
            low = middle + 1
        else:
            high = middle
    return low - first


@numba.njit(cache=True, nogil=True)
def _layer_size(query_terms, query_weights, arrays, threshold):
    """Postings of the query terms with q_t × impact >= ``threshold`` (read off the segments)."""
    total = np.int64(0)
    for i in range(len(query_terms)):
        t = query_terms[i]
        first = arrays.segment_offsets[t]
        n = _segments_reaching(
            query_weights[i],
            threshold,
            arrays.segment_impacts,
            first,
            arrays.segment_offsets[t + 1],
        )
        if n > 0:
            total += arrays.segment_ends[first + n - 1] - arrays.term_offsets[t]
    return total


@numba.njit(cache=True, nogil=True)
def layer_cuts(query_terms, query_weights, arrays, max_postings, cut_impact):
    """The layer of the query's best postings: the smallest threshold T (at most the largest
    q_t × impact) such that at most ``max_postings`` postings have q_t × impact >= T.

    Fills ``cut_impact`` with each term's cut τ_t (its postings with impact > τ_t are those
    with q_t × impact >= T; τ_t = the term's highest impact when none is) and returns
    ``(T, postings in the layer)``. The layer holds more than ``max_postings`` postings only
    when the postings tied at the highest q_t × impact alone do. A binary search over T, each
    probe counting the layer from the terms' impact segments (no posting is read).
    """
    n_terms = len(query_terms)
    high = np.int64(0)
    for i in range(n_terms):
        t = query_terms[i]
        first = arrays.segment_offsets[t]
        if arrays.segment_offsets[t + 1] > first:
            high = max(high, query_weights[i] * np.int64(arrays.segment_impacts[first]))
    low = np.int64(1)
    high = max(high, low)
    while low < high:  # the smallest T in [1, high] whose layer fits, else high
        middle = low + (high - low) // 2
        if _layer_size(query_terms, query_weights, arrays, middle) <= max_postings:
            high = middle
        else:
            low = middle + 1
    threshold = low
    for i in range(n_terms):
        t = query_terms[i]
        first = arrays.segment_offsets[t]
        last = arrays.segment_offsets[t + 1]
        n = _segments_reaching(query_weights[i], threshold, arrays.segment_impacts, first, last)
        if first + n < last:
            cut_impact[i] = np.int64(arrays.segment_impacts[first + n])  # the first left out
        else:
            cut_impact[i] = 0  # every posting is in the layer (or the term has none)
    return threshold, _layer_size(query_terms, query_weights, arrays, threshold)


# fmt: off
@numba.njit(cache=True, nogil=True)
def layer_search_one(
    query_terms, query_weights, k, allowed, floor, arrays, settings, accumulator, scratch,
    out_docs, out_scores, stats,
):
    """Top-k of one query by the layer ranking (``Approximate(layer_postings=P,
    max_verified=V)``).

    1. The layer (:func:`layer_cuts`): the query's P = ``settings.estimate_postings`` best
       postings by q_t × impact over all its terms; in the impact-ordered layout they are a
       prefix of each term's window, so only they are read.
    2. Their sums rank the documents (a partial score); the best max(V, k) allowed documents
       (V = ``settings.max_verified``; partial score descending, then document ascending) are
       kept.
    3. Those documents are scored exactly with the whole query (forward index) and the top-k
       of them (score descending, document ascending) above ``floor`` is the answer.

    No bound is computed: a document outside the best V by partial score is never looked at,
    which is what approximation may lose. When the layer holds every posting the partial
    scores are the scores (exact). Arguments and return values: those of
    :func:`.pruned.pruned_search_one` (``FALLBACK`` when fewer than k documents are in the
    layer and there is no floor).
    """
    n_terms = len(query_terms)
    if n_terms >= 65535 or len(accumulator) != _pruned.ACCUMULATOR_SIZE:
        return _pruned.FALLBACK
    cut_impact = np.empty(n_terms, np.int64)
    layer_cuts(query_terms, query_weights, arrays, np.int64(settings.estimate_postings), cut_impact)
    # Only the terms with postings in the layer are walked (the others' windows are not
    # touched: a cache miss each per window saved).
    walk_terms = np.empty(n_terms, query_terms.dtype)
    walk_weights = np.empty(n_terms, query_weights.dtype)
    walk_cuts = np.empty(n_terms, np.int64)
    m = 0
    for i in range(n_terms):
        t = query_terms[i]
        first = arrays.segment_offsets[t]
        if arrays.segment_offsets[t + 1] > first and cut_impact[i] < arrays.segment_impacts[first]:
            walk_terms[m] = t
            walk_weights[m] = query_weights[i]
            walk_cuts[m] = cut_impact[i]
            m += 1
    walk_terms, walk_weights, walk_cuts = walk_terms[:m], walk_weights[:m], walk_cuts[:m]
    want = max(settings.max_verified, k)
    best_scores = np.empty(want, np.int64)
    best_docs = np.empty(want, np.int64)
    floor = max(np.int64(floor), np.int64(0))
    n_best, scored, corrupt = _rank_layer(
        walk_terms, walk_weights, allowed, arrays, accumulator, walk_cuts, best_scores, best_docs
    )
    # Every posting scored: the partial scores are the scores.
    exhaustive = scored == _total_postings(query_terms, arrays)
    stats[_pruned.STAT_POSTINGS] = scored
    stats[_pruned.STAT_CANDIDATES] = n_best
    if corrupt:
        return kernels.CORRUPT
    slots = scratch.slots
    slot_weights = _pruned._fill_slots(query_terms, query_weights, slots)
    heap_scores = np.empty(k, np.int64)
    heap_docs = np.empty(k, np.int64)
    estimated_docs = np.sort(best_docs[:n_best])
    size = _pruned._score_estimate(
        best_scores, best_docs, n_best, estimated_docs, exhaustive, k, floor, arrays, slots,
        slot_weights, heap_scores, heap_docs, 0, np.int64(0)
    )
    _pruned._clear_slots(query_terms, slots)
    if size < 0:
        return kernels.CORRUPT
    if not exhaustive:
        stats[_pruned.STAT_VERIFIED] = n_best
        if size < k and floor == 0:
            return _pruned.FALLBACK  # too few documents in the layer: the exhaustive kernel
    stats[_pruned.STAT_KTH_SCORE] = heap_scores[0] if size == k else 0
    return heaps.drain(heap_scores, heap_docs, size, out_docs, out_scores)
# fmt: on


@numba.njit(cache=True, nogil=True)
def _total_postings(query_terms, arrays):
    total = np.int64(0)
    for i in range(len(query_terms)):
        t = query_terms[i]
        total += arrays.term_offsets[t + 1] - arrays.term_offsets[t]
    return total


@numba.njit(cache=True, nogil=True, inline="always")
def _add_full(query_terms, query_weights, arrays, num_windows, w, cut_impact, accumulator):
    """Layer, one window: add q_t·impact of each posting above its term's cut (the prefix of
    the term's window). Returns the postings scored."""
    io_docs = arrays.impact_order_docs
    io_impacts = arrays.impact_order_impacts
    postings = 0
    for i in range(len(query_terms)):
        weight = accumulator.dtype.type(query_weights[i])
        start, end = _pruned._window_range(arrays, query_terms[i], num_windows, w)
        docs = io_docs[start:end]  # views counted from 0: see .pruned._add_excess
        impacts = io_impacts[start:end]
        count = _pruned._prefix_above(impacts, cut_impact[i])
        for j in range(count):
            accumulator[np.int64(docs[j])] += weight * accumulator.dtype.type(impacts[j])
        postings += count
    return postings


@numba.njit(cache=True, nogil=True)
def _rank_layer(
    query_terms, query_weights, allowed, arrays, accumulator, cut_impact, best_scores, best_docs
):
    """Layer, every window: the partial scores of the postings above the cuts, and the
    ``len(best_scores)`` best allowed documents by them (score descending, document ascending)
    in the heap ``best_scores``/``best_docs``.

    The accumulator is scanned a block at a time against the heap's entry bar (a document
    enters only above the heap's worst once it is full: documents come in increasing number,
    so a tie loses), so most blocks are a branch-free vector loop and few documents are
    offered; no list of touched documents is kept while adding. Returns ``(documents kept,
    postings scored, corrupt)``.
    """
    want = len(best_scores)
    num_docs = len(arrays.forward_offsets) - 1
    num_windows = _pruned._num_windows(arrays)
    n_best = 0
    scored = 0
    need = np.int64(1)
    for w in range(num_windows):
        base = w << arrays.window_bits
        size_w = min(1 << arrays.window_bits, num_docs - base)
        _pruned._prefetch_starts(query_terms, arrays, num_windows, w)
        scored += _add_full(
            query_terms, query_weights, arrays, num_windows, w, cut_impact, accumulator
        )
        n_blocks = size_w // _pruned._SCAN_BLOCK
        for b in range(n_blocks + 1):  # the last, partial block entry by entry
            block = b * _pruned._SCAN_BLOCK
            if b < n_blocks:
                hit = 0
                for j in range(_pruned._SCAN_BLOCK):
                    hit |= np.int64(accumulator[block + j]) >= need
                if hit == 0:
                    for j in range(_pruned._SCAN_BLOCK):
                        accumulator[block + j] = 0
                    continue
            for offset in range(block, min(block + _pruned._SCAN_BLOCK, size_w)):
                score = np.int64(accumulator[offset])
                accumulator[offset] = 0
                if score >= need and kernels.admits(allowed, base + offset):
                    n_best = heaps.offer(best_scores, best_docs, n_best, want, score, base + offset)
                    if n_best == want:
                        need = best_scores[0] + 1
        for offset in range(size_w, _pruned.ACCUMULATOR_SIZE):
            if accumulator[offset] != 0:
                accumulator[:] = 0
                return n_best, scored, True
    return n_best, scored, False
