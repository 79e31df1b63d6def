"""Exact pruned search across the segments of a live index, with one shared top-k.

Searching each segment on its own for its top-k and merging the lists is exact, but each
segment then pays the whole pruned search (:mod:`.pruned`): an estimate of ``estimate_postings``
postings and ``estimate_candidates`` exact scores, and cuts chosen against a k-th score found
in that segment alone, far below the final one. Ten segments cost about three times one.

Here the segments share one k-best heap over global document numbers (a segment's document
``d`` is ``base + d``; ties break by score, then global number, as everywhere), and the four
phases of :mod:`.pruned` are split so that every segment benefits from all the others.

Segments are visited by their upper bound for the query (:func:`upper_bound`, Σ_t q_t · t's
largest impact in the segment), largest first, and a segment whose bound is below the heap's
k-th score θ holds no document that could enter: it is skipped whole.

The per-term cuts τ_t are impacts, so one set of cuts holds for every segment (a document with
no posting above any cut scores at most R = Σ_t q_t·τ_t, whichever segment holds it). They
are chosen once per phase (:func:`choose_cuts_flat`), on the segment with the most of the
query's postings: choosing costs about as much in a small segment as in a large one (tens of
steps per query term; ~0.1 ms for a 50-term query), so choosing per segment cost ten times
as much in ten segments.

1. **Estimate, every segment** (:func:`estimate_segment_flat`): cuts sized so that about
   ``estimate_postings`` postings lie above them in all segments together, and each segment's
   best partial scores (``estimate_candidates`` shared out by its postings) scored exactly
   into the shared heap. A segment whose estimate covered all its postings is done.
2. **Cut** once, with R <= ρ·θ (θ: the heap's k-th after the estimates; chosen again if θ
   rises by 10%).
3. **Bound, segment by segment** (:func:`bound_segment_flat`): the candidates whose bound
   reaches the heap's k-th score, kept in each segment's own buffer.
4. **Verify** (:func:`verify_segment_flat`) in two rounds: first each segment's candidates
   among the best 4·k bounds of all segments, which raises the k-th score near its final
   value, then the rest down to the k-th score, segments by their best remaining bound. (One
   segment after the other, each down to the k-th score of its turn, verified 40% more
   documents than one merged index on the 1M benchmark.)

The proof is that of :mod:`.pruned`, with θ₀ the shared heap's k-th score when the segment
starts (a lower bound on the final k-th score, as before). When the estimates found fewer
than k documents and there is no floor, or the query is too small to prune, every segment is
searched exhaustively, in order, into the shared heap (:func:`exhaustive_segment_flat`).

The segments' arrays are passed field by field (see :func:`.pruned.search_one_flat` for why).
:class:`SegmentsSearcher` drives the calls; its results are checked against brute force over
the live documents in ``tests/test_cross_segment.py`` and ``tests/test_live_index.py``.
"""

from __future__ import annotations

import math
import threading
from typing import NamedTuple

import numba
import numpy as np

from sparse_ir.errors import IndexCorruptError
from sparse_ir.index import heaps, kernels
from sparse_ir.index.pruned import (
    _PRUNE_MIN_FACTOR,
    ACCUMULATOR_SIZE,
    CANDIDATE_CAPACITY,
    STAT_CUT_BOUND,
    STAT_POSTINGS,
    STAT_THETA0,
    STAT_VERIFIED,
    STATS_FIELDS,
    PrunedParams,
    Scratch,
    SearchArrays,
    _bound,
    _choose_cuts,
    _clear_slots,
    _fill_slots,
    _score_estimate,
    _score_layer,
    _verify_until,
    windowed_exhaustive_into,
)

__all__ = [
    "SegmentsResult",
    "SegmentsSearcher",
    "choose_cuts_flat",
    "estimate_segment_flat",
    "exhaustive_segment_flat",
    "bound_segment_flat",
    "verify_segment_flat",
    "upper_bound",
]


# The cuts are chosen again when the k-th score rose by this factor since they were chosen.
_RECUT = 1.1
# Candidates each segment buffers (one thread); a full buffer is verified at once.
_SEGMENT_CANDIDATES = 1 << 14
# The first verification round takes the candidates among the best _FIRST_ROUND·k bounds.
_FIRST_ROUND = 4
_NO_STOP = -(1 << 63)


# -- the kernels (one segment each, one heap for all) --------------------------------------------


@numba.njit(cache=True, nogil=True)
def upper_bound(query_terms, query_weights, segment_offsets, segment_impacts):
    """Σ_t q_t · (term t's largest impact in a segment): no document of it scores more.

    ``segment_offsets``/``segment_impacts``: the segment's search layout (a term's impact
    segments run from its largest impact down)."""
    total = np.int64(0)
    for i in range(len(query_terms)):
        t = query_terms[i]
        first = segment_offsets[t]
        if segment_offsets[t + 1] > first:
            total += query_weights[i] * np.int64(segment_impacts[first])
    return total


@numba.njit(cache=True, nogil=True)
def _estimate_segment(
    query_terms,
    query_weights,
    k,
    allowed,
    floor,
    heap_base,
    arrays,
    cut_impact,
    want,
    accumulator,
    scratch,
    heap_scores,
    heap_docs,
    size,
    estimated,
    stats,
):
    """Phase 1 in one segment, into the shared heap (see :func:`estimate_segment_flat`)."""
    slots = scratch.slots
    slot_weights = _fill_slots(query_terms, query_weights, slots)
    best_scores = np.empty(want, np.int64)
    best_docs = np.empty(want, np.int64)
    n_best, scored, exhaustive, corrupt = _score_layer(
        query_terms, query_weights, allowed, arrays, accumulator, scratch.candidate_docs,
        cut_impact, best_scores, best_docs,
    )  # fmt: skip
    sorted_docs = np.sort(best_docs[:n_best])
    estimated[:n_best] = sorted_docs
    if not corrupt:
        size = _score_estimate(
            best_scores, best_docs, n_best, sorted_docs, exhaustive, k, floor, arrays, slots,
            slot_weights, heap_scores, heap_docs, size, heap_base,
        )  # fmt: skip
        corrupt = size < 0
    _clear_slots(query_terms, slots)
    stats[STAT_VERIFIED] += n_best
    stats[STAT_POSTINGS] += scored
    if corrupt:
        return np.int64(kernels.CORRUPT), n_best, exhaustive
    return size, n_best, exhaustive


@numba.njit(cache=True, nogil=True)
def _bound_segment(
    query_terms,
    query_weights,
    k,
    allowed,
    floor,
    heap_base,
    arrays,
    cut_impact,
    bound,
    bound_weight,
    accumulator,
    scratch,
    heap_scores,
    heap_docs,
    size,
    estimated,
    n_estimated,
    stats,
):
    """Phase 3 in one segment (see :func:`bound_segment_flat`)."""
    # Every document that can still enter scores at least θ₀: the heap's k-th (ties may
    # still enter by a smaller number), or above the floor.
    theta0 = heap_scores[0] if size == k else floor + 1
    slot_weights = _fill_slots(query_terms, query_weights, scratch.slots)
    credit = bound
    if bound_weight < 1.0:
        credit = np.int64(np.floor(bound * bound_weight))
    need = max(theta0 - credit, np.int64(1))
    size, n_candidates, postings = _bound(
        query_terms, query_weights, k, allowed, floor, arrays, accumulator, scratch,
        slot_weights, cut_impact, credit, need, heap_scores, heap_docs, size, estimated,
        n_estimated, stats, heap_base,
    )  # fmt: skip
    _clear_slots(query_terms, scratch.slots)
    stats[STAT_POSTINGS] += postings
    stats[STAT_THETA0] = theta0
    stats[STAT_CUT_BOUND] = bound
    if size < 0:
        accumulator[:] = 0  # a pass may have stopped before clearing its window
        return np.int64(kernels.CORRUPT), n_candidates
    return size, n_candidates


@numba.njit(cache=True, nogil=True)
def choose_cuts_flat(
    query_terms,
    query_weights,
    term_offsets,
    window_offsets,
    impact_order_docs,
    impact_order_impacts,
    segment_offsets,
    segment_impacts,
    segment_ends,
    forward_offsets,
    forward_terms,
    forward_impacts,
    window_bits,
    target,
    max_postings,
    exact_below,
    cut_impact,
):
    """Per-term cuts τ_t chosen on one segment (into ``cut_impact``); returns R = Σ q_t·τ_t.

    ``max_postings`` > 0: the estimate's cuts (about that many of this segment's postings
    above them, :func:`.pruned._estimate`); else the cut phase's, R <= ``target``
    (:func:`.pruned._cut` with ρ·θ₀ = ``target``, and R < ``exact_below`` when > 0).
    A cut is an impact, so the cuts hold for every segment: a document with no posting
    above any of them scores at most R wherever it is.
    """
    arrays = SearchArrays(
        term_offsets, window_offsets, impact_order_docs,
        impact_order_impacts, segment_offsets, segment_impacts, segment_ends, forward_offsets,
        forward_terms, forward_impacts, window_bits,
    )  # fmt: skip
    cut_position = np.empty(len(query_terms), np.int64)
    if max_postings > 0:
        return _choose_cuts(
            query_terms, query_weights, arrays, np.int64(0), np.int64(max_postings),
            cut_position, cut_impact,
        )  # fmt: skip
    if exact_below > 0 and target >= exact_below:
        target = exact_below - 1
    return _choose_cuts(
        query_terms, query_weights, arrays, np.int64(target), np.int64(1) << 62, cut_position,
        cut_impact,
    )  # fmt: skip


@numba.njit(cache=True, nogil=True)
def estimate_segment_flat(
    query_terms,
    query_weights,
    k,
    allowed,
    floor,
    heap_base,
    use_int64,
    term_offsets,
    window_offsets,
    impact_order_docs,
    impact_order_impacts,
    segment_offsets,
    segment_impacts,
    segment_ends,
    forward_offsets,
    forward_terms,
    forward_impacts,
    window_bits,
    cut_impact,
    want,
    accumulator32,
    accumulator64,
    slots,
    candidate_docs,
    candidate_keys,
    heap_scores,
    heap_docs,
    size,
    estimated,
    stats,
):
    """Phase 1 of the pruned search in one segment, into a heap shared by all segments.

    Scores the postings above the cuts ``cut_impact`` (:func:`choose_cuts_flat`), keeps the
    ``want`` (>= k) allowed documents with the best partial scores, writes them sorted into
    ``estimated`` [:n] (local numbers) and offers their exact scores above ``floor`` to the
    k-best heap ``heap_scores``/``heap_docs`` [:size] as ``heap_base + doc``. ``stats``: one row of
    :data:`.pruned.STATS_FIELDS` (added to). ``allowed``/``floor``: see :mod:`.kernels`.

    Returns ``(heap size or kernels.CORRUPT, n, exhaustive)``; ``exhaustive``: no posting
    of the query was left below the cuts, so the segment's answer is in the heap already.
    """
    arrays = SearchArrays(
        term_offsets, window_offsets, impact_order_docs,
        impact_order_impacts, segment_offsets, segment_impacts, segment_ends, forward_offsets,
        forward_terms, forward_impacts, window_bits,
    )  # fmt: skip
    scratch = Scratch(accumulator32, accumulator64, slots, candidate_docs, candidate_keys)
    if use_int64:
        size, n, exhaustive = _estimate_segment(
            query_terms, query_weights, k, allowed, floor, heap_base, arrays, cut_impact, want,
            scratch.accumulator64, scratch, heap_scores, heap_docs, size, estimated, stats,
        )  # fmt: skip
    else:
        size, n, exhaustive = _estimate_segment(
            query_terms, query_weights, k, allowed, floor, heap_base, arrays, cut_impact, want,
            scratch.accumulator32, scratch, heap_scores, heap_docs, size, estimated, stats,
        )  # fmt: skip
    return size, n, exhaustive


@numba.njit(cache=True, nogil=True)
def bound_segment_flat(
    query_terms,
    query_weights,
    k,
    allowed,
    floor,
    heap_base,
    use_int64,
    term_offsets,
    window_offsets,
    impact_order_docs,
    impact_order_impacts,
    segment_offsets,
    segment_impacts,
    segment_ends,
    forward_offsets,
    forward_terms,
    forward_impacts,
    window_bits,
    cut_impact,
    bound,
    bound_weight,
    accumulator32,
    accumulator64,
    slots,
    candidate_docs,
    candidate_keys,
    heap_scores,
    heap_docs,
    size,
    estimated,
    n_estimated,
    stats,
):
    """Phase 3 of the pruned search in one segment with the cuts ``cut_impact`` of R =
    ``bound`` (< the heap's k-th score θ₀: :func:`choose_cuts_flat`): the documents whose
    bound R + excess reaches θ₀ (β·R with ``bound_weight`` β < 1) are left in
    ``candidate_keys``/``candidate_docs`` (the segment's own buffers, local numbers) for
    :func:`verify_segment_flat`; a full buffer is verified into the heap at once.

    ``estimated`` [:n_estimated]: the segment's documents its estimate scored (sorted, local
    numbers; never verified again). The other arguments are those of
    :func:`estimate_segment_flat`. Returns ``(heap size or kernels.CORRUPT, candidates)``.
    """
    arrays = SearchArrays(
        term_offsets, window_offsets, impact_order_docs,
        impact_order_impacts, segment_offsets, segment_impacts, segment_ends, forward_offsets,
        forward_terms, forward_impacts, window_bits,
    )  # fmt: skip
    scratch = Scratch(accumulator32, accumulator64, slots, candidate_docs, candidate_keys)
    if use_int64:
        return _bound_segment(
            query_terms, query_weights, k, allowed, floor, heap_base, arrays, cut_impact,
            bound, bound_weight, scratch.accumulator64, scratch, heap_scores, heap_docs, size,
            estimated, n_estimated, stats,
        )  # fmt: skip
    return _bound_segment(
        query_terms, query_weights, k, allowed, floor, heap_base, arrays, cut_impact, bound,
        bound_weight, scratch.accumulator32, scratch, heap_scores, heap_docs, size, estimated,
        n_estimated, stats,
    )  # fmt: skip


@numba.njit(cache=True, nogil=True)
def verify_segment_flat(
    query_terms,
    query_weights,
    k,
    floor,
    heap_base,
    term_offsets,
    window_offsets,
    impact_order_docs,
    impact_order_impacts,
    segment_offsets,
    segment_impacts,
    segment_ends,
    forward_offsets,
    forward_terms,
    forward_impacts,
    window_bits,
    slots,
    candidate_docs,
    candidate_keys,
    count,
    stop,
    heap_scores,
    heap_docs,
    size,
    estimated,
    n_estimated,
    stats,
):
    """Phase 4 of the pruned search in one segment: its candidates [:count] (those
    :func:`bound_segment_flat` left) scored exactly by decreasing bound into the shared heap,
    until a bound is below the k-th score or below ``stop``. Returns ``(heap size or
    kernels.CORRUPT, candidates left)``: those below ``stop``, still a max-heap by bound.

    Verifying every segment's best candidates first (``stop`` high), then the rest, raises
    the k-th score as fast as one merged index's verification does, so fewer are verified.
    """
    arrays = SearchArrays(
        term_offsets, window_offsets, impact_order_docs,
        impact_order_impacts, segment_offsets, segment_impacts, segment_ends, forward_offsets,
        forward_terms, forward_impacts, window_bits,
    )  # fmt: skip
    slot_weights = _fill_slots(query_terms, query_weights, slots)
    size, left = _verify_until(
        candidate_keys, candidate_docs, count, stop, heap_scores, heap_docs, size, k, floor,
        estimated, n_estimated, arrays, slots, slot_weights, stats, heap_base,
    )  # fmt: skip
    _clear_slots(query_terms, slots)
    if size < 0:
        return np.int64(kernels.CORRUPT), left
    return size, left


@numba.njit(cache=True, nogil=True)
def exhaustive_segment_flat(
    query_terms,
    query_weights,
    k,
    allowed,
    floor,
    heap_base,
    use_int64,
    term_offsets,
    window_offsets,
    impact_order_docs,
    impact_order_impacts,
    segment_offsets,
    segment_impacts,
    segment_ends,
    forward_offsets,
    forward_terms,
    forward_impacts,
    window_bits,
    accumulator32,
    accumulator64,
    heap_scores,
    heap_docs,
    size,
):
    """Every posting of one segment, into the shared heap (:func:`.pruned.windowed_exhaustive_into`:
    the heap must hold only documents of the segments before this one). Returns the heap
    size, or ``kernels.CORRUPT``."""
    arrays = SearchArrays(
        term_offsets, window_offsets, impact_order_docs,
        impact_order_impacts, segment_offsets, segment_impacts, segment_ends, forward_offsets,
        forward_terms, forward_impacts, window_bits,
    )  # fmt: skip
    if use_int64:
        return windowed_exhaustive_into(
            query_terms, query_weights, k, allowed, floor, arrays, accumulator64, heap_scores,
            heap_docs, size, heap_base,
        )  # fmt: skip
    return windowed_exhaustive_into(
        query_terms, query_weights, k, allowed, floor, arrays, accumulator32, heap_scores,
        heap_docs, size, heap_base,
    )  # fmt: skip


@numba.njit(cache=True, nogil=True)
def drain_heap(heap_scores, heap_docs, size, out_docs, out_scores):
    """:func:`.heaps.drain` (best first), callable from Python."""
    return heaps.drain(heap_scores, heap_docs, size, out_docs, out_scores)


# -- the driver -----------------------------------------------------------------------------------


class SegmentsResult(NamedTuple):
    """What :meth:`SegmentsSearcher.search` found and did.

    Attributes:
        docnos, scores: the top-k, best first (global document numbers).
        stats: int64 [len(STATS_FIELDS)], summed over the segments (``theta0``: the first
            segment's θ₀, ``cut_bound``: the largest R, ``kth_score``: the final k-th score).
        pruned: the pruned phases ran (False: every segment was searched exhaustively).
        skipped: segments skipped whole because their upper bound was below the k-th score.
        int64_accumulator: some segment summed the query's scores in 64 bits.
    """

    docnos: np.ndarray
    scores: np.ndarray
    stats: np.ndarray
    pruned: bool
    skipped: int
    int64_accumulator: bool


class SegmentsSearcher:
    """Searches the segments of a live impact index as one, sharing the top-k between them.

    ``segments``: :class:`~sparse_ir.index.impact_index.ImpactIndex` es with the search layout
    (same vocabulary); ``bases``: each one's first global document number. One instance per
    index commit; thread-safe (each thread has its own scratch arrays).
    """

    def __init__(self, segments, bases, vocab_size: int):
        self.segments = list(segments)
        self.bases = [int(b) for b in bases]
        self.vocab_size = int(vocab_size)
        self._local = threading.local()

    def _scratch(self) -> Scratch:
        """This thread's scratch arrays, shared by every segment (they stay in cache)."""
        scratch = getattr(self._local, "scratch", None)
        if scratch is None:
            window = max([1 << s._pruned().layout.window_bits for s in self.segments], default=1)
            scratch = self._local.scratch = Scratch(
                np.zeros(ACCUMULATOR_SIZE, np.int32),
                np.zeros(ACCUMULATOR_SIZE, np.int64),
                np.zeros(self.vocab_size, np.uint16),
                np.empty(max(CANDIDATE_CAPACITY, window + 1), np.int64),
                np.empty(CANDIDATE_CAPACITY, np.int64),
            )
        return scratch

    def search(
        self,
        terms: np.ndarray,
        weights: np.ndarray,
        k: int,
        params: PrunedParams | None,
        allowed: list,
        floor: int = 0,
    ) -> SegmentsResult:
        """The top-``k`` of a prepared query (int32 terms, int64 weights) over every segment.

        ``params``: the pruned kernel's settings (None: exhaustive); ``allowed``: each
        segment's mask (uint8, or None for all its documents); ``floor``: only scores above.
        """
        segments = self.segments
        k = max(1, int(k))
        floor = max(int(floor), 0)
        masks = [kernels.ALL_DOCUMENTS if a is None else a for a in allowed]
        use_int64 = []
        postings = []
        for segment in segments:
            segment._check_terms(terms)
            use_int64.append(bool(segment._needs_int64(terms, weights)))
            offsets = segment.term_offsets
            postings.append(int((offsets[terms + 1] - offsets[terms]).sum()) if len(terms) else 0)
        flats = [segment._pruned()._flat_arrays for segment in segments]
        scratch = self._scratch()
        heap_scores = np.empty(k, np.int64)
        heap_docs = np.empty(k, np.int64)
        stats = np.zeros((len(segments), len(STATS_FIELDS)), np.int64)
        total = sum(postings)
        size = 0
        pruned = (
            params is not None
            and len(terms) < 65535
            and total > _PRUNE_MIN_FACTOR * params.estimate_postings
        )
        skipped = 0
        if pruned:
            size, skipped, pruned = self._pruned(
                terms, weights, k, params, masks, floor, use_int64, postings, flats, scratch,
                heap_scores, heap_docs, stats,
            )  # fmt: skip
        if not pruned:
            stats[:] = 0
            size = 0
            for s, segment in enumerate(segments):
                size = exhaustive_segment_flat(
                    terms, weights, k, masks[s], floor, self.bases[s], use_int64[s], *flats[s],
                    scratch.accumulator32, scratch.accumulator64, heap_scores, heap_docs, size,
                )  # fmt: skip
                self._check(size, segment)
                stats[s, STAT_POSTINGS] = postings[s]
        docs = np.empty(k, np.int64)
        scores = np.empty(k, np.int64)
        count = drain_heap(heap_scores, heap_docs, size, docs, scores)
        summed = stats.sum(axis=0)
        summed[STAT_THETA0] = next((int(v) for v in stats[:, STAT_THETA0] if v), 0)
        summed[STAT_CUT_BOUND] = int(stats[:, STAT_CUT_BOUND].max(initial=0))
        summed[STATS_FIELDS.index("kth_score")] = int(scores[k - 1]) if count == k else 0
        return SegmentsResult(docs[:count], scores[:count], summed, pruned, skipped, any(use_int64))

    def _pruned(
        self, terms, weights, k, params, masks, floor, use_int64, postings, flats, scratch,
        heap_scores, heap_docs, stats,
    ) -> tuple[int, int, bool]:  # fmt: skip
        """Estimate every segment, then cut, bound and verify them by upper bound; returns
        ``(heap size, segments skipped, pruned)`` (pruned False: the caller searches them all
        exhaustively, as the single-index kernel does when the estimate finds fewer than k)."""
        total = sum(postings)
        uppers = [
            int(upper_bound(terms, weights, s._pruned().layout.segment_offsets,
                            s._pruned().layout.segment_impacts))
            for s in self.segments
        ]  # fmt: skip
        order = sorted(range(len(self.segments)), key=lambda s: -uppers[s])
        # Cuts are chosen once, on the segment with the most of the query's postings (choosing
        # them costs about as much in a small segment as in a large one), and hold for all.
        chooser = flats[max(range(len(postings)), key=lambda s: postings[s])]
        share = max(postings) / total
        cuts = np.empty(len(terms), np.int64)
        choose_cuts_flat(
            terms, weights, *chooser, 0, max(1, math.ceil(params.estimate_postings * share)),
            0, cuts,
        )  # fmt: skip
        size = 0
        skipped = 0
        estimated, counts, pending = {}, {}, []
        for s in order:  # largest upper bound first: the k-th score rises fastest
            if postings[s] == 0:
                continue
            if size == k and uppers[s] < int(heap_scores[0]):
                skipped += 1  # no document of it can reach the k-th score
                continue
            want = max(k, math.ceil(params.estimate_candidates * postings[s] / total))
            docs = np.empty(want, np.int64)
            size, n, exhaustive = estimate_segment_flat(
                terms, weights, k, masks[s], floor, self.bases[s], use_int64[s], *flats[s],
                cuts, want, *scratch, heap_scores, heap_docs, size, docs, stats[s],
            )  # fmt: skip
            self._check(size, self.segments[s])
            if not exhaustive:  # else its whole answer is in the heap already
                estimated[s], counts[s] = docs, n
                pending.append(s)
        if size < k and floor == 0:
            return 0, 0, False
        cut_theta = 0
        buffers = self._candidate_buffers()
        left = {}
        for s in pending:
            theta = int(heap_scores[0]) if size == k else floor + 1
            if uppers[s] < theta:
                skipped += 1
                continue
            if theta > cut_theta * _RECUT:
                # R <= ρ·θ (< θ when exact): documents below every cut cannot enter. The k-th
                # score only rises, so the cuts stay valid; they are chosen again only when
                # it rose enough to save postings.
                bound = choose_cuts_flat(
                    terms, weights, *chooser, math.floor(theta * params.cut_ratio), 0,
                    theta if params.cut_ratio < 1.0 else 0, cuts,
                )  # fmt: skip
                cut_theta = theta
            size, left[s] = bound_segment_flat(
                terms, weights, k, masks[s], floor, self.bases[s], use_int64[s], *flats[s],
                cuts, bound, params.bound_weight, scratch.accumulator32, scratch.accumulator64,
                scratch.slots, *buffers[s], heap_scores, heap_docs, size, estimated[s],
                counts[s], stats[s],
            )  # fmt: skip
            self._check(size, self.segments[s])
        # Verification: every segment's best candidates first (those among the top
        # _FIRST_ROUND·k bounds of all segments), then the rest by each one's best bound, so
        # the k-th score rises as in one index and fewer candidates are verified.
        candidates = [buffers[s][1][:n] for s, n in left.items() if n]
        total_left = sum(len(c) for c in candidates)
        rounds = [_NO_STOP]
        if total_left > _FIRST_ROUND * k:
            every = np.concatenate(candidates)
            rank = total_left - _FIRST_ROUND * k
            rounds.insert(0, int(np.partition(every, rank)[rank]))
        for stop in rounds:
            best = {s: int(buffers[s][1][:n].max()) for s, n in left.items() if n}
            for s in sorted(best, key=lambda s: -best[s]):
                size, left[s] = verify_segment_flat(
                    terms, weights, k, floor, self.bases[s], *flats[s], scratch.slots,
                    *buffers[s], left[s], stop, heap_scores, heap_docs, size, estimated[s],
                    counts[s], stats[s],
                )  # fmt: skip
                self._check(size, self.segments[s])
        return size, skipped, True

    def _candidate_buffers(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """This thread's candidate buffers, ``(documents, bounds)`` for each segment."""
        buffers = getattr(self._local, "candidates", None)
        if buffers is None:
            buffers = self._local.candidates = [
                (np.empty(_SEGMENT_CANDIDATES, np.int64), np.empty(_SEGMENT_CANDIDATES, np.int64))
                for _ in self.segments
            ]
        return buffers

    @staticmethod
    def _check(size: int, segment) -> None:
        if size < 0:
            raise IndexCorruptError(
                f"{segment.directory}: a posting points outside the index; run verify()"
            )
