"""Safe dynamic pruning: the exact top-k while scoring a small share of the postings.

Exhaustive scoring adds every posting of every query term. Most of them cannot matter: a
document's score is a sum over dozens of query terms, and the top-k scores sit far above the
bulk. The pruned search proves that, using the search layout of :mod:`.layout` (each term's
postings re-ordered by impact within windows of 2^16 documents, its impact segments, a forward
index), in four phases, each a function below:

1. **Estimate** (:func:`_estimate`). Per-term cuts are chosen so that the postings above them —
   the highest ``q_t × impact`` first — number about ``estimate_postings``; those postings are
   scored, the ``estimate_candidates`` documents with the best partial scores are scored exactly
   (forward index), and the k-th of their exact scores is θ₀, a lower bound on the final k-th
   score θ.
2. **Cut** (:func:`_cut`). New cuts τ_t are chosen so that R = Σ_t q_t·τ_t ≤ ρ·θ₀
   (ρ = ``cut_ratio`` < 1), lowering first the cut that removes the most score range per
   posting. A document with no posting above any cut scores at most R < θ₀ ≤ θ: it cannot be in
   the top-k.
3. **Bound** (:func:`_bound`). For the postings above the cuts (a contiguous prefix of each
   term's window) the excess q_t·(impact − τ_t) is accumulated; score(d) ≤ R + excess(d), since
   each term gives d at most q_t·τ_t unless d's posting is above the cut, where it gives exactly
   q_t·impact. Documents with R + excess(d) ≥ θ₀ are the candidates.
4. **Verify** (:func:`_verify`). Candidates are scored exactly with the forward index in
   decreasing order of bound, keeping the top-k (score descending, document number ascending);
   the loop stops at the first bound below the current k-th score. Every document never scored
   has a bound — hence a score — strictly below the final k-th, so the result is exactly the
   exhaustive top-k, ties included (a tie needs an equal bound, and equal bounds are verified).

Queries whose estimate finds fewer than k documents (very few matching documents) are answered
by the windowed exhaustive kernel, which is cheap for them. Approximate search
(:mod:`.approximate`) runs the same kernel with two knobs that give up the proof: cuts that leave
more below them (ρ ≥ 1), and crediting documents with only a share β < 1 of R.

Why not block-max pruning over reordered documents (BMP, Seismic's blocks)? On SPLADE vectors
almost every common query term occurs in almost every block at a high impact, so a block's bound
Σ_t q_t·max_block(t) stays above θ for far more documents than the per-posting bound above, even
for small blocks of documents ordered by their true topic (measured on the 1M benchmark corpus:
``docs/performance.md``, "Design notes"). The per-posting bound needs no reordering either, so
document numbers stay the insertion order.

The kernels take the index's arrays as one record (:class:`SearchArrays`), their settings as
another (:class:`KernelSettings`) and a thread's scratch arrays as a third (:class:`Scratch`);
heaps come from :mod:`.heaps`.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numba
import numpy as np

from sparse_ir.errors import IndexCorruptError
from sparse_ir.index import approximate, heaps, kernels
from sparse_ir.index.intrinsics import prefetch

__all__ = [
    "EXACT",
    "STATS_FIELDS",
    "KernelSettings",
    "PrunedParams",
    "PrunedSearcher",
    "Scratch",
    "SearchArrays",
    "pruned_search_one",
    "search_one_flat",
    "search_row_flat",
    "search_range",
    "windowed_exhaustive_one",
]

#: The search returned no result itself; the caller runs the exhaustive kernel.
FALLBACK = -2
#: The kernels' ``mode`` of the layer ranking (0: windowed exhaustive, 1: pruned/approximate).
LAYER_MODE = 2
#: :func:`search_row_flat` declined: a term not checked yet, or a weight the general path refuses.
NEEDS_GENERAL = -3
_INT64_MAX = (1 << 63) - 1
_INT32_HALF = ((1 << 31) - 1) // 2
#: Default candidates buffered before an early verification pass (bounded memory per thread;
#: ``PrunedSearcher(candidate_capacity=...)``). The buffer's document array is also the scratch
#: for the documents touched in one window, so it never has fewer entries than a window.
CANDIDATE_CAPACITY = 1 << 16

# Slots of the kernel's ``stats`` array (int64 [len(STATS_FIELDS)]).
STAT_POSTINGS = 0  # postings scored
STAT_VERIFIED = 1  # documents scored exactly through the forward index
STAT_THETA0 = 2  # θ₀, the estimate's k-th exact score
STAT_CUT_BOUND = 3  # R = Σ_t q_t·τ_t of the cuts
STAT_CANDIDATES = 4  # documents whose bound reached θ₀
STAT_KTH_SCORE = 5  # the final k-th score
STAT_EARLY_VERIFICATIONS = 6  # verification passes run because the candidate buffer was full
#: Names of the ``stats`` slots, in order (``SearchStats`` is built from them).
STATS_FIELDS = (
    "postings",
    "verified",
    "theta0",
    "cut_bound",
    "candidates",
    "kth_score",
    "early_verifications",
)
assert (
    STATS_FIELDS.index("early_verifications") == STAT_EARLY_VERIFICATIONS == len(STATS_FIELDS) - 1
)

#: Accumulator entries: every uint16 in-window offset, so no offset can write outside it.
ACCUMULATOR_SIZE = 1 << 16
# Candidates popped and prefetched together in the verification loop.
_VERIFY_BATCH = 8
# Accumulator entries the candidate scan tests together (one vector loop per block).
_SCAN_BLOCK = 64
# Postings a layer's end is searched by at a time (:func:`_prefix_above`).
_PREFIX_STEP = 16
# Postings per 64-byte cache line (uint16 offsets and impacts): the prefetch stride.
_LINE_POSTINGS = 32
# Cut steps grow a term's layer by this factor (snapped to segment ends).
_CUT_GROWTH = 1.25
# Queries with at most this many times ``estimate_postings`` postings run the exhaustive kernel.
_PRUNE_MIN_FACTOR = 2
# The cut phase's budget of postings: none.
_NO_POSTINGS_LIMIT = 1 << 62
# What :func:`_exact_score` returns for a document whose forward entry is damaged (a real score
# is never negative: weights and impacts are positive).
_CORRUPT_SCORE = -1
#: ``k`` from which the exhaustive kernel selects by sort keys instead of a k-best heap (over
#: an int32 accumulator): below it the heap is cheaper (SciFact BM25, k = 10: 13 µs vs 21 µs).
_SELECT_MIN_K = 64
_KEY_TOP = (1 << 31) - 1
_KEY_DOC_MASK = (1 << 31) - 1


class SearchArrays(NamedTuple):
    """The arrays every windowed kernel reads: the inverted index's and its search layout's
    (see :mod:`.layout`), in one record that numba passes as one argument."""

    term_offsets: np.ndarray
    window_offsets: np.ndarray
    impact_order_docs: np.ndarray
    impact_order_impacts: np.ndarray
    segment_offsets: np.ndarray
    segment_impacts: np.ndarray
    segment_ends: np.ndarray
    forward_offsets: np.ndarray
    forward_terms: np.ndarray
    forward_impacts: np.ndarray
    window_bits: int

    @classmethod
    def of(cls, index, layout) -> SearchArrays:
        """The record of an :class:`~sparse_ir.index.impact_index.ImpactIndex` and its layout."""
        return cls(
            index.term_offsets,
            layout.window_offsets,
            layout.impact_order_docs,
            layout.impact_order_impacts,
            layout.segment_offsets,
            layout.segment_impacts,
            layout.segment_ends,
            layout.forward_offsets,
            layout.forward_terms,
            layout.forward_impacts,
            layout.window_bits,
        )


class KernelSettings(NamedTuple):
    """:class:`PrunedParams` as the kernels take them (one record)."""

    estimate_postings: int
    estimate_candidates: int
    cut_ratio: float
    bound_weight: float
    term_share: float
    max_verified: int


class Scratch(NamedTuple):
    """One thread's scratch arrays, reused by every query it runs.

    ``accumulator32``/``accumulator64`` (int32/int64 [2^16]) and ``slots`` (uint16 [V]) are zero
    between queries; ``candidate_docs``/``candidate_keys`` (int64) need no initial value.
    ``candidate_docs`` doubles as the list of documents touched in one window, so it has at
    least one entry per document of a window plus one (the estimate's branch-free listing
    writes one slot past the last document listed) and at least as many as
    ``candidate_keys``.
    """

    accumulator32: np.ndarray
    accumulator64: np.ndarray
    slots: np.ndarray
    candidate_docs: np.ndarray
    candidate_keys: np.ndarray


class PrunedParams:
    """Tuning of the pruned kernel (see the module docstring); defaults are exact.

    Attributes:
        estimate_postings: postings scored in the estimate step (highest q_t × impact first).
        estimate_candidates: documents scored exactly in the estimate step (≥ k is enforced).
        cut_ratio: ρ, the bound R on documents below all cuts as a fraction of θ₀. Below 1 the
            search is exact; at 1 or above, documents that might score up to R are never
            looked at.
        bound_weight: β ≤ 1: the share of R credited to a document as what it may score below
            the cuts (1 = the proven bound, exact; smaller verifies fewer documents).
        term_share: approximate only (:mod:`.approximate`): the query terms whose postings are
            walked, the heaviest covering this share of the query's reach (1 = every term).
        max_verified: approximate only: at most this many candidates verified, those of the
            highest bounds (0 = no limit).
        layer: approximate only: the layer ranking (:func:`.approximate.layer_search_one`)
            runs instead, over the query's ``estimate_postings`` best postings, verifying
            ``max_verified`` documents.
    """

    __slots__ = (
        "bound_weight",
        "cut_ratio",
        "estimate_candidates",
        "estimate_postings",
        "layer",
        "max_verified",
        "term_share",
    )

    def __init__(
        self,
        estimate_postings: int = 100_000,
        estimate_candidates: int = 128,
        cut_ratio: float = 0.5,
        bound_weight: float = 1.0,
        term_share: float = 1.0,
        max_verified: int = 0,
        *,
        layer: bool = False,
    ):
        self.estimate_postings = int(estimate_postings)
        self.estimate_candidates = int(estimate_candidates)
        self.cut_ratio = float(cut_ratio)
        self.bound_weight = float(bound_weight)
        self.term_share = float(term_share)
        self.max_verified = int(max_verified)
        self.layer = bool(layer)

    @property
    def exact(self) -> bool:
        """True when these settings return exactly the exhaustive top-k."""
        return (
            self.cut_ratio < 1.0
            and self.bound_weight >= 1.0
            and self.term_share >= 1.0
            and self.max_verified == 0
            and not self.layer
        )

    @property
    def kernel_mode(self) -> int:
        """The ``mode`` the kernels take: 1 pruned/approximate, 2 the layer ranking."""
        return LAYER_MODE if self.layer else 1

    def as_tuple(self) -> KernelSettings:
        """The settings as the kernels take them."""
        return KernelSettings(
            self.estimate_postings,
            self.estimate_candidates,
            self.cut_ratio,
            self.bound_weight,
            self.term_share,
            self.max_verified,
        )

    def __repr__(self) -> str:
        return (
            f"PrunedParams(estimate_postings={self.estimate_postings}, "
            f"estimate_candidates={self.estimate_candidates}, cut_ratio={self.cut_ratio}, "
            f"bound_weight={self.bound_weight}, term_share={self.term_share}, "
            f"max_verified={self.max_verified}, layer={self.layer})"
        )


EXACT = PrunedParams()


# -- query terms, windows, exact scores ----------------------------------------------------------


@numba.njit(cache=True, nogil=True, inline="always")
def _num_windows(arrays):
    """How many windows of 2^window_bits documents the collection spans (at least one)."""
    num_docs = len(arrays.forward_offsets) - 1
    window = 1 << arrays.window_bits
    return max(1, (num_docs + window - 1) >> arrays.window_bits)


@numba.njit(cache=True, nogil=True, inline="always")
def _window_range(arrays, t, num_windows, w):
    """Where term ``t``'s postings of window ``w`` lie (in both posting orders)."""
    return (
        arrays.window_offsets[t * num_windows + w],
        arrays.window_offsets[t * num_windows + w + 1],
    )


@numba.njit(cache=True, nogil=True)
def _fill_slots(query_terms, query_weights, slots):
    """Point ``slots`` (zero) at the query's weights; return the weight table.

    ``slots[t]`` is the position of term t's weight in the returned table (0 = not a query term,
    weight 0): a small table that stays in the L1 cache, unlike a vocabulary-sized array of
    weights. :func:`_clear_slots` resets ``slots``.
    """
    n_terms = len(query_terms)
    slot_weights = np.zeros(n_terms + 1, np.int64)
    for i in range(n_terms):
        slots[query_terms[i]] = i + 1
        slot_weights[i + 1] = query_weights[i]
    return slot_weights


@numba.njit(cache=True, nogil=True)
def _clear_slots(query_terms, slots):
    for i in range(len(query_terms)):
        slots[query_terms[i]] = 0


@numba.njit(cache=True, nogil=True, inline="always")
def _forward_entry_ok(start, end, n_forward):
    """True when a document's forward range lies inside the forward arrays. The forward offsets
    are not checked at open (O(N), unlike the O(V·W) layout offsets), so each verified document
    checks its own two offsets: damage that only verify() would see is refused, never read."""
    return 0 <= start and start <= end and end <= n_forward


@numba.njit(cache=True, nogil=True, inline="always")
def _exact_score(doc, arrays, slots, slot_weights):
    """Σ q_t·impact over the document's terms (``slots``/``slot_weights``: see
    :func:`_fill_slots`).

    Returns ``_CORRUPT_SCORE`` when the document's forward entry points outside the arrays or
    names a term outside the vocabulary (a damaged file)."""
    forward_terms = arrays.forward_terms
    forward_impacts = arrays.forward_impacts
    start = arrays.forward_offsets[doc]
    end = arrays.forward_offsets[doc + 1]
    if not _forward_entry_ok(start, end, len(forward_terms)):
        return np.int64(_CORRUPT_SCORE)
    score = np.int64(0)
    n_slots = np.uint64(len(slots))
    for p in range(start, end):
        term = forward_terms[p]
        # Unsigned compare: also refuses a negative int32 term id (one compare either way).
        if np.uint64(term) >= n_slots:
            return np.int64(_CORRUPT_SCORE)
        score += slot_weights[slots[term]] * np.int64(forward_impacts[p])
    return score


@numba.njit(cache=True, nogil=True, inline="always")
def _prefetch_document(doc, arrays):
    start = arrays.forward_offsets[doc]
    end = arrays.forward_offsets[doc + 1]
    if not _forward_entry_ok(start, end, len(arrays.forward_terms)):
        return  # _exact_score reports it; a damaged range must not set a runaway loop here
    for p in range(start, end, 32):
        prefetch(arrays.forward_terms, p)
        prefetch(arrays.forward_impacts, p)


@numba.njit(cache=True, nogil=True, inline="always")
def _prefetch_starts(query_terms, arrays, num_windows, w):
    """Announce where every query term's postings of window ``w`` start: those first cache
    lines are far apart (a miss each), so fetching them together overlaps the misses."""
    for i in range(len(query_terms)):
        start = arrays.window_offsets[np.int64(query_terms[i]) * num_windows + w]
        prefetch(arrays.impact_order_docs, start)
        prefetch(arrays.impact_order_impacts, start)


@numba.njit(cache=True, nogil=True, inline="always")
def _prefetch_next_window(arrays, end, count, last):
    """Announce about ``count`` postings of a term's next window, which starts where this
    window's postings ``end``: its layer there is about as long as here, and fetching it while
    this window is scored hides the misses of a stream the hardware has not detected yet (a
    window's layer of a term is a few cache lines to a few hundred). Nothing when this window
    is the ``last``."""
    if last:
        return
    for j in range(0, count, _LINE_POSTINGS):
        prefetch(arrays.impact_order_docs, end + j)
        prefetch(arrays.impact_order_impacts, end + j)


@numba.njit(cache=True, nogil=True)
def _contains(sorted_values, count, value):
    low = 0
    high = count
    while low < high:
        middle = (low + high) // 2
        if sorted_values[middle] < value:
            low = middle + 1
        else:
            high = middle
    return low < count and sorted_values[low] == value


# -- choosing the cuts (phases 1 and 2) ----------------------------------------------------------


@numba.njit(cache=True, nogil=True)
def _next_cut(term_start, segment_last, segment_impacts, segment_ends, segment, position):
    """The next cut of one term: ``(segment index after it, its position, impact below it)``.

    The layer grows by about ``_CUT_GROWTH`` of its size (at least one segment), snapped to the
    end of a segment, so choosing cuts takes a few steps per term whatever the list length.
    """
    size = position - term_start
    want = term_start + max(size + 1, np.int64(np.ceil(size * _CUT_GROWTH)))
    low = segment
    high = segment_last - 1
    while low < high:  # first segment ending at or after ``want``
        middle = (low + high) // 2
        if segment_ends[middle] >= want:
            high = middle
        else:
            low = middle + 1
    below = np.int64(segment_impacts[low + 1]) if low + 1 < segment_last else np.int64(0)
    return low + 1, segment_ends[low], below


@numba.njit(cache=True, nogil=True, inline="always")
def _plan_step(
    i,
    query_terms,
    query_weights,
    arrays,
    segment,
    cut_position,
    cut_impact,
    next_segment,
    next_position,
    next_impact,
):
    """Find query term i's next cut (into ``next_*``); return its gain, the score range it
    removes per posting it adds."""
    t = query_terms[i]
    j, position, below = _next_cut(
        arrays.term_offsets[t],
        arrays.segment_offsets[t + 1],
        arrays.segment_impacts,
        arrays.segment_ends,
        segment[i],
        cut_position[i],
    )
    next_segment[i] = j
    next_position[i] = position
    next_impact[i] = below
    # max(.., 1): segment ends rise in a sound index; a damaged one must not divide by zero (the
    # search then is merely wrong, and verify() names the file).
    return query_weights[i] * (cut_impact[i] - below) / max(position - cut_position[i], 1)


# Rows of a cut plan (int64 [_PLAN_ROWS, n_terms]): the state of :func:`_lower_cuts` between
# calls, so the cut phase resumes where the estimate's cuts stopped.
_PLAN_SEGMENT = 0  # each term's next segment
_PLAN_OWNER = 1  # the terms of the max-heap of next steps (keys: ``plan_keys``)
_PLAN_NEXT_SEGMENT = 2  # each term's next step: segment after it,
_PLAN_NEXT_POSITION = 3  # its layer end,
_PLAN_NEXT_IMPACT = 4  # its cut
_PLAN_ROWS = 5


@numba.njit(cache=True, nogil=True)
def _start_cuts(query_terms, query_weights, arrays, cut_position, cut_impact, plan, plan_keys):
    """Every cut above its term's highest impact (an empty layer), and the plan of the next
    steps (``plan``: int64 [_PLAN_ROWS, n_terms], ``plan_keys``: float64 [n_terms]).

    Returns ``(steps in the plan's heap, R = Σ q_t·τ_t)`` for :func:`_lower_cuts`."""
    n_terms = len(query_terms)
    segment = plan[_PLAN_SEGMENT]
    owners = plan[_PLAN_OWNER]
    next_segment = plan[_PLAN_NEXT_SEGMENT]
    next_position = plan[_PLAN_NEXT_POSITION]
    next_impact = plan[_PLAN_NEXT_IMPACT]
    bound = np.int64(0)
    for i in range(n_terms):
        t = query_terms[i]
        first = arrays.segment_offsets[t]
        segment[i] = first
        cut_position[i] = arrays.term_offsets[t]
        cut_impact[i] = (
            np.int64(arrays.segment_impacts[first])
            if arrays.segment_offsets[t + 1] > first
            else np.int64(0)
        )
        bound += query_weights[i] * cut_impact[i]
    # Max-heap of each term's next step, keyed by its gain.
    size = 0
    for i in range(n_terms):
        if cut_impact[i] > 0:
            plan_keys[size] = _plan_step(
                i,
                query_terms,
                query_weights,
                arrays,
                segment,
                cut_position,
                cut_impact,
                next_segment,
                next_position,
                next_impact,
            )
            owners[size] = i
            size += 1
    heaps.max_heapify(plan_keys, owners, size)
    return size, bound


@numba.njit(cache=True, nogil=True)
def _lower_cuts(
    query_terms,
    query_weights,
    arrays,
    target,
    max_postings,
    cut_position,
    cut_impact,
    plan,
    plan_keys,
    size,
    bound,
    postings,
):
    """Lower the cuts of a plan (:func:`_start_cuts`) greedily, best score range per posting
    first, until R <= ``target`` or the layer would pass ``max_postings`` (``postings``: the
    layer's size so far). Returns ``(size, R, postings)`` to resume from.

    The steps depend only on the plan, not on the target or the budget: lowering to one
    target and then resuming to a lower one takes the same steps as lowering to the lower
    target at once, as long as R was still above it when the first call stopped."""
    segment = plan[_PLAN_SEGMENT]
    owners = plan[_PLAN_OWNER]
    next_segment = plan[_PLAN_NEXT_SEGMENT]
    next_position = plan[_PLAN_NEXT_POSITION]
    next_impact = plan[_PLAN_NEXT_IMPACT]
    while bound > target and size > 0:
        i = owners[0]
        step = next_position[i] - cut_position[i]
        if postings + step > max_postings:
            break
        postings += step
        bound -= query_weights[i] * (cut_impact[i] - next_impact[i])
        cut_impact[i] = next_impact[i]
        cut_position[i] = next_position[i]
        segment[i] = next_segment[i]
        if cut_impact[i] > 0:
            plan_keys[0] = _plan_step(
                i,
                query_terms,
                query_weights,
                arrays,
                segment,
                cut_position,
                cut_impact,
                next_segment,
                next_position,
                next_impact,
            )
        else:
            size -= 1
            plan_keys[0] = plan_keys[size]
            owners[0] = owners[size]
        heaps.max_sift_down(plan_keys, owners, size, 0)
    return size, bound, postings


@numba.njit(cache=True, nogil=True)
def _choose_cuts(
    query_terms, query_weights, arrays, target, max_postings, cut_position, cut_impact
):
    """Per-term cuts, lowered greedily (best score range per posting first) until
    R = Σ q_t·τ_t <= ``target`` or the layer would exceed ``max_postings``.

    Fills ``cut_position`` (end of each term's layer) and ``cut_impact`` (τ_t); returns R.
    """
    n_terms = len(query_terms)
    plan = np.empty((_PLAN_ROWS, n_terms), np.int64)
    plan_keys = np.empty(n_terms, np.float64)
    size, bound = _start_cuts(
        query_terms, query_weights, arrays, cut_position, cut_impact, plan, plan_keys
    )
    _, bound, _ = _lower_cuts(
        query_terms, query_weights, arrays, target, max_postings, cut_position, cut_impact,
        plan, plan_keys, size, bound, np.int64(0),
    )  # fmt: skip
    return bound


# -- 1. estimate ---------------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True, inline="always")
def _add_layer(
    query_terms, query_weights, arrays, num_windows, w, cut_impact, accumulator, touched
):
    """Estimate, one window: add q_t·impact for each term's postings above its cut, listing
    each document touched once in ``touched``. Returns ``(documents touched, postings scored,
    corrupt)``."""
    io_docs = arrays.impact_order_docs
    io_impacts = arrays.impact_order_impacts
    n_touched = 0
    postings = 0
    corrupt = False
    limit = len(touched) - 1
    for i in range(len(query_terms)):
        weight = accumulator.dtype.type(query_weights[i])
        start, end = _window_range(arrays, query_terms[i], num_windows, w)
        docs = io_docs[start:end]  # views counted from 0: see _add_excess
        impacts = io_impacts[start:end]
        count = _prefix_above(impacts, cut_impact[i])
        _prefetch_next_window(arrays, end, count, w + 1 == num_windows)
        for j in range(count):
            offset = np.int64(docs[j])
            # The document is listed when first touched, without a branch: the slot is always
            # written and kept only then. A window has at most 2^16 documents, so only a
            # damaged layout (the same offset again after an overflow to 0) fills the list.
            touched[min(n_touched, limit)] = offset
            n_touched += accumulator[offset] == 0
            accumulator[offset] += weight * accumulator.dtype.type(impacts[j])
        postings += count
    if n_touched > limit:
        corrupt = True
        n_touched = limit
    return n_touched, postings, corrupt


@numba.njit(cache=True, nogil=True, inline="always")
def _keep_best(
    accumulator, touched, n_touched, base, size_w, allowed, best_scores, best_docs, n_best
):
    """Estimate, one window: offer the touched allowed documents' partial scores to the heap
    of the best, clearing the accumulator. Returns ``(heap size, corrupt)``."""
    want = len(best_scores)
    corrupt = False
    for j in range(n_touched):
        offset = touched[j]
        score = np.int64(accumulator[offset])
        accumulator[offset] = 0
        if offset >= size_w:
            corrupt = True
        elif (n_best < want or score >= best_scores[0]) and kernels.admits(allowed, base + offset):
            n_best = heaps.offer(best_scores, best_docs, n_best, want, score, base + offset)
    return n_best, corrupt


@numba.njit(cache=True, nogil=True)
def _estimate(
    query_terms,
    query_weights,
    allowed,
    arrays,
    settings,
    accumulator,
    touched,
    cut_position,
    cut_impact,
    best_scores,
    best_docs,
):
    """Phase 1, partial scores: score the postings above cuts sized to ``estimate_postings``
    (full q_t·impact) and keep the best allowed documents in ``best_scores``/``best_docs``.

    Returns ``(documents kept, postings scored, exhaustive, corrupt)``; ``exhaustive``: no
    posting was left below the cuts, so the partial scores are the scores.
    """
    _choose_cuts(
        query_terms,
        query_weights,
        arrays,
        np.int64(0),
        np.int64(settings.estimate_postings),
        cut_position,
        cut_impact,
    )
    return _score_layer(
        query_terms, query_weights, allowed, arrays, accumulator, touched, cut_impact,
        best_scores, best_docs,
    )  # fmt: skip


@numba.njit(cache=True, nogil=True)
def _score_layer(
    query_terms,
    query_weights,
    allowed,
    arrays,
    accumulator,
    touched,
    cut_impact,
    best_scores,
    best_docs,
):
    """Phase 1 with the cuts chosen (``cut_impact``: τ_t per query term): score the postings
    above them and keep the best allowed documents; returns what :func:`_estimate` does.

    Cuts are impacts, so cuts chosen on one segment of a live index apply to every other."""
    exhaustive = True
    for i in range(len(query_terms)):
        exhaustive = exhaustive and cut_impact[i] == 0
    num_docs = len(arrays.forward_offsets) - 1
    num_windows = _num_windows(arrays)
    n_best = 0
    scored = 0
    for w in range(num_windows):
        base = w << arrays.window_bits
        size_w = min(1 << arrays.window_bits, num_docs - base)
        _prefetch_starts(query_terms, arrays, num_windows, w)
        n_touched, postings, corrupt = _add_layer(
            query_terms, query_weights, arrays, num_windows, w, cut_impact, accumulator, touched
        )
        scored += postings
        n_best, damaged = _keep_best(
            accumulator, touched, n_touched, base, size_w, allowed, best_scores, best_docs, n_best
        )
        if corrupt or damaged:
            accumulator[:] = 0  # entries added after the scratch was full are not listed
            return n_best, scored, exhaustive, True
    return n_best, scored, exhaustive, False


@numba.njit(cache=True, nogil=True)
def _score_estimate(
    best_scores,
    best_docs,
    n_best,
    estimated_docs,
    exhaustive,
    k,
    floor,
    arrays,
    slots,
    slot_weights,
    heap_scores,
    heap_docs,
    size,
    base,
):
    """Phase 1, θ₀: the estimate's documents (``estimated_docs``: sorted) scored exactly into
    the k-best heap of ``size`` entries as ``base + doc``, those scoring above ``floor`` only.
    Returns the heap size, or -1 when a forward entry is damaged."""
    if exhaustive:
        for j in range(n_best):
            if best_scores[j] > floor:
                size = heaps.offer(
                    heap_scores, heap_docs, size, k, best_scores[j], base + best_docs[j]
                )
        return size
    for j in range(n_best):
        _prefetch_document(estimated_docs[j], arrays)
    for j in range(n_best):
        doc = estimated_docs[j]
        score = _exact_score(doc, arrays, slots, slot_weights)
        if score < 0:
            return -1
        if score > floor:
            size = heaps.offer(heap_scores, heap_docs, size, k, score, base + doc)
    return size


# -- 2. cut --------------------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True)
def _cut(query_terms, query_weights, arrays, theta0, cut_ratio, cut_position, cut_impact):
    """Phase 2: cuts with R = Σ q_t·τ_t <= ρ·θ₀ (and < θ₀ when exact); returns R."""
    return _choose_cuts(
        query_terms,
        query_weights,
        arrays,
        _cut_target(theta0, cut_ratio),
        _NO_POSTINGS_LIMIT,
        cut_position,
        cut_impact,
    )


@numba.njit(cache=True, nogil=True, inline="always")
def _cut_target(theta0, cut_ratio):
    """The largest R the cut phase may leave: ρ·θ₀, and below θ₀ when exact (ρ < 1)."""
    target = np.int64(np.floor(theta0 * cut_ratio))
    if cut_ratio < 1.0 and target >= theta0:
        target = theta0 - 1
    return target


# -- 3. bound ------------------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True, inline="always")
def _prefix_above(impacts, cut):
    """How many of ``impacts`` (descending) are above ``cut``: the layer of one term's window.

    Steps of 16 while the 16th impact ahead is still above the cut, then one by one (a linear
    stop is cheaper than a binary search, whose probes miss the cache)."""
    n = len(impacts)
    count = 0
    while count + _PREFIX_STEP <= n and np.int64(impacts[count + _PREFIX_STEP - 1]) > cut:
        count += _PREFIX_STEP
    while count < n and np.int64(impacts[count]) > cut:
        count += 1
    return count


@numba.njit(cache=True, nogil=True, inline="always")
def _add_excess(query_terms, query_weights, arrays, num_windows, w, cut_impact, accumulator):
    """Bound, one window: add the excess q_t·(impact − τ_t) of each posting above its term's
    cut. Returns the postings scored."""
    io_docs = arrays.impact_order_docs
    io_impacts = arrays.impact_order_impacts
    postings = 0
    for i in range(len(query_terms)):
        weight = accumulator.dtype.type(query_weights[i])
        below = accumulator.dtype.type(query_weights[i] * cut_impact[i])
        cut = cut_impact[i]
        start, end = _window_range(arrays, query_terms[i], num_windows, w)
        # Views counted from 0: numba's negative-index handling of the loads then vanishes.
        docs = io_docs[start:end]
        impacts = io_impacts[start:end]
        count = _prefix_above(impacts, cut)
        _prefetch_next_window(arrays, end, count, w + 1 == num_windows)
        # Offsets are uint16 and the accumulator has 2^16 entries: no write can leave it; an
        # offset past the window's documents is caught by the candidate scan.
        for j in range(count):
            accumulator[np.int64(docs[j])] += weight * accumulator.dtype.type(impacts[j]) - below
        postings += count
    return postings


@numba.njit(cache=True, nogil=True)
def _bound(
    query_terms,
    query_weights,
    k,
    allowed,
    floor,
    arrays,
    accumulator,
    scratch,
    slot_weights,
    cut_impact,
    credit,
    need,
    heap_scores,
    heap_docs,
    size,
    estimated_docs,
    n_estimated,
    stats,
    heap_base,
):
    """Phase 3: per window, accumulate the excess over the cuts, then collect the allowed
    documents whose bound ``credit`` + excess reaches θ₀ (excess >= ``need``) while clearing the
    accumulator (a filtered-out document is never verified). A full candidate buffer is
    verified at once (phase 4) to free it.

    The heap holds documents as ``heap_base + doc`` (a segment's documents in a heap shared
    across segments). Returns ``(heap size, candidates left in the buffer, postings scored)``;
    the heap size is -1 when the layout or a forward entry is damaged.
    """
    candidate_docs = scratch.candidate_docs
    candidate_keys = scratch.candidate_keys
    capacity = min(len(candidate_keys), len(candidate_docs))
    num_docs = len(arrays.forward_offsets) - 1
    num_windows = _num_windows(arrays)
    n_candidates = 0
    n_flushed = 0  # candidates handed to early verification passes
    n_early = 0  # early verification passes
    scored = 0
    corrupt = False
    filtered = len(allowed) > 0
    for w in range(num_windows):
        base = w << arrays.window_bits
        size_w = min(1 << arrays.window_bits, num_docs - base)
        _prefetch_starts(query_terms, arrays, num_windows, w)
        scored += _add_excess(
            query_terms, query_weights, arrays, num_windows, w, cut_impact, accumulator
        )
        # Collect the candidates while clearing the accumulator, a block of entries at a time:
        # a block is looked at entry by entry only when one of its entries reaches the need (a
        # few per window), so the scan of the others is a branch-free vector loop. (Offsets are
        # block + j with both counted from 0: with a plain range(start, end) numba's negative
        # index handling turns the loops into scatters, several times slower.)
        n_blocks = size_w // _SCAN_BLOCK
        for b in range(n_blocks + 1):  # the last, partial block entry by entry
            block = b * _SCAN_BLOCK
            if b < n_blocks:
                hit = 0
                if filtered:
                    # Under a filter most entries reaching the need are filtered out: testing
                    # the mask in the vector loop spares their blocks the entry-by-entry pass.
                    mask = allowed[base + block : base + block + _SCAN_BLOCK]
                    for j in range(_SCAN_BLOCK):
                        hit |= (np.int64(accumulator[block + j]) >= need) & (mask[j] != 0)
                else:
                    for j in range(_SCAN_BLOCK):
                        hit |= np.int64(accumulator[block + j]) >= need
                if hit == 0:
                    for j in range(_SCAN_BLOCK):
                        accumulator[block + j] = 0
                    continue
            for offset in range(block, min(block + _SCAN_BLOCK, size_w)):
                excess = np.int64(accumulator[offset])
                accumulator[offset] = 0
                if excess < need or not kernels.admits(allowed, base + offset):
                    continue
                if n_candidates == capacity:
                    # Rare: the buffer is full; verify its candidates now (by bound) to free it.
                    n_early += 1
                    n_flushed += n_candidates
                    size = _verify(
                        candidate_keys,
                        candidate_docs,
                        n_candidates,
                        heap_scores,
                        heap_docs,
                        size,
                        k,
                        floor,
                        estimated_docs,
                        n_estimated,
                        arrays,
                        scratch.slots,
                        slot_weights,
                        stats,
                        heap_base,
                    )
                    n_candidates = 0
                    if size < 0:
                        corrupt = True
                        break
                candidate_docs[n_candidates] = base + offset
                candidate_keys[n_candidates] = credit + excess
                n_candidates += 1
            if corrupt:
                break
        for offset in range(size_w, ACCUMULATOR_SIZE):
            if accumulator[offset] != 0:
                accumulator[offset] = 0
                corrupt = True
        if corrupt:
            break
    stats[STAT_CANDIDATES] = n_flushed + n_candidates
    stats[STAT_EARLY_VERIFICATIONS] = n_early
    return (-1 if corrupt else size), n_candidates, scored


# -- 4. verify -----------------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True)
def _verify(
    keys,
    docs,
    count,
    heap_scores,
    heap_docs,
    size,
    k,
    floor,
    skip,
    n_skip,
    arrays,
    slots,
    slot_weights,
    stats,
    heap_base,
):
    """Phase 4: score candidates exactly by decreasing bound until a bound is below the k-th
    score, into the k-best heap (those scoring above ``floor``, as ``heap_base + doc``).

    ``keys``/``docs`` [:count] are the candidates (bound, document), in any order; documents in
    ``skip`` [:n_skip] (sorted) were scored already. Returns the new heap size, or -1 when a
    candidate's forward entry is damaged.
    """
    size, _ = _verify_until(
        keys, docs, count, np.iinfo(np.int64).min, heap_scores, heap_docs, size, k, floor,
        skip, n_skip, arrays, slots, slot_weights, stats, heap_base,
    )  # fmt: skip
    return size


@numba.njit(cache=True, nogil=True)
def _verify_until(
    keys,
    docs,
    count,
    stop,
    heap_scores,
    heap_docs,
    size,
    k,
    floor,
    skip,
    n_skip,
    arrays,
    slots,
    slot_weights,
    stats,
    heap_base,
):
    """:func:`_verify`, stopping also at the first bound below ``stop``: the candidates not
    verified stay in ``keys``/``docs`` [:remaining], a max-heap by bound (none of them when
    the k-th score stopped the loop: they cannot enter). Returns ``(heap size or -1,
    remaining)``."""
    heaps.max_heapify(keys, docs, count)
    batch = np.empty(_VERIFY_BATCH, np.int64)
    remaining = count
    stopped = False
    while remaining > 0 and not stopped:
        # Pop a few candidates whose bound still reaches the k-th score and prefetch their
        # forward entries together: their cache misses overlap instead of following each other.
        n_batch = 0
        while remaining > 0 and n_batch < _VERIFY_BATCH:
            if size == k and keys[0] < heap_scores[0]:
                remaining = 0
                break
            if keys[0] < stop:
                stopped = True
                break
            doc = docs[0]
            remaining -= 1
            keys[0] = keys[remaining]
            docs[0] = docs[remaining]
            heaps.max_sift_down(keys, docs, remaining, 0)
            if not _contains(skip, n_skip, doc):
                _prefetch_document(doc, arrays)
                batch[n_batch] = doc
                n_batch += 1
        for j in range(n_batch):
            doc = batch[j]
            score = _exact_score(doc, arrays, slots, slot_weights)
            if score < 0:
                return -1, remaining
            if score > floor:
                size = heaps.offer(heap_scores, heap_docs, size, k, score, heap_base + doc)
        stats[STAT_VERIFIED] += n_batch
    return size, remaining


# -- the kernels ---------------------------------------------------------------------------------


# The phase calls' arguments are packed (not one per line) so the driver reads on one screen.
# fmt: off
@numba.njit(cache=True, nogil=True)
def pruned_search_one(
    query_terms,
    query_weights,
    k,
    allowed,
    floor,
    arrays,
    settings,
    accumulator,
    scratch,
    out_docs,
    out_scores,
    stats,
):
    """Top-k of one query by the four phases of the module docstring, window by window.

    ``allowed``/``floor``: which documents may be returned (:mod:`.kernels`); a filtered-out
    document is never scored exactly, and a floor above 0 is a lower bound on the k-th score
    from the start (θ₀ is at least ``floor + 1``), so the cuts and the candidates shrink with it.
    ``arrays``: :class:`SearchArrays`; ``settings``: :class:`KernelSettings`; ``accumulator``:
    ``scratch.accumulator32`` or ``scratch.accumulator64`` (wide enough for the query's scores);
    ``scratch``: :class:`Scratch` (the candidate buffer holds ``len(candidate_keys)``
    candidates, verified early when it is full). ``stats`` (int64 [len(STATS_FIELDS)]) receives
    the figures of :data:`STATS_FIELDS`. Returns the number of hits, ``kernels.CORRUPT`` (-1),
    or ``FALLBACK`` (-2) when the estimate found fewer than k documents and there is no floor
    (the caller then runs the exhaustive kernel).
    """
    n_terms = len(query_terms)
    if n_terms >= 65535 or len(accumulator) != ACCUMULATOR_SIZE:
        return FALLBACK  # slots are uint16; the accumulator must cover every uint16 offset
    slots = scratch.slots
    slot_weights = _fill_slots(query_terms, query_weights, slots)
    heap_scores = np.empty(k, np.int64)
    heap_docs = np.empty(k, np.int64)
    cut_position = np.empty(n_terms, np.int64)
    cut_impact = np.empty(n_terms, np.int64)
    want = max(settings.estimate_candidates, k)
    best_scores = np.empty(want, np.int64)
    best_docs = np.empty(want, np.int64)
    floor = max(np.int64(floor), np.int64(0))
    plan = np.empty((_PLAN_ROWS, n_terms), np.int64)
    plan_keys = np.empty(n_terms, np.float64)

    # 1. Estimate θ₀ (the estimate's documents are skipped when verifying candidates): what
    # _estimate does, keeping the plan of the cuts for the cut phase to resume.
    n_steps, estimate_bound = _start_cuts(
        query_terms, query_weights, arrays, cut_position, cut_impact, plan, plan_keys
    )
    n_steps, estimate_bound, layer_postings = _lower_cuts(
        query_terms, query_weights, arrays, np.int64(0), np.int64(settings.estimate_postings),
        cut_position, cut_impact, plan, plan_keys, n_steps, estimate_bound, np.int64(0)
    )
    n_best, scored, exhaustive, corrupt = _score_layer(
        query_terms, query_weights, allowed, arrays, accumulator, scratch.candidate_docs,
        cut_impact, best_scores, best_docs
    )
    estimated_docs = np.sort(best_docs[:n_best])
    size = 0
    if not corrupt:
        size = _score_estimate(
            best_scores, best_docs, n_best, estimated_docs, exhaustive, k, floor, arrays, slots,
            slot_weights, heap_scores, heap_docs, 0, np.int64(0)
        )
        corrupt = size < 0
    stats[STAT_VERIFIED] = n_best
    stats[STAT_POSTINGS] = scored
    # Exhaustive: every posting was scored and the heap of the best kept the ``want`` >= k best
    # allowed documents, so the heap holds the whole answer even when it has fewer than k.
    if corrupt or exhaustive or (size < k and floor == 0):
        _clear_slots(query_terms, slots)
        if corrupt:
            return kernels.CORRUPT
        if not exhaustive:
            return FALLBACK
        stats[STAT_KTH_SCORE] = heap_scores[0] if size == k else 0
        return heaps.drain(heap_scores, heap_docs, size, out_docs, out_scores)
    # Every document of the answer scores at least θ₀: the heap's k-th, or above the floor.
    theta0 = heap_scores[0] if size == k else floor + 1

    # 2. Cut: R = Σ q_t·τ_t <= ρ·θ₀, resuming the estimate's plan: the same cuts as _cut
    # chooses from scratch while the estimate's R is above the target (its steps are the
    # first steps of _cut's), without choosing those steps again.
    target = _cut_target(theta0, settings.cut_ratio)
    if estimate_bound > target:
        _, bound, _ = _lower_cuts(
            query_terms, query_weights, arrays, target, _NO_POSTINGS_LIMIT, cut_position,
            cut_impact, plan, plan_keys, n_steps, estimate_bound, layer_postings
        )
    else:
        bound = _cut(
            query_terms, query_weights, arrays, theta0, settings.cut_ratio, cut_position,
            cut_impact
        )

    # 3. Bound: candidates are the documents with credit + excess >= θ₀ (credit = R, or β·R).
    credit = bound
    if settings.bound_weight < 1.0:
        credit = np.int64(np.floor(bound * settings.bound_weight))
    need = max(theta0 - credit, np.int64(1))
    size, n_candidates, postings = _bound(
        query_terms, query_weights, k, allowed, floor, arrays, accumulator, scratch,
        slot_weights, cut_impact, credit, need, heap_scores, heap_docs, size, estimated_docs,
        n_best, stats, np.int64(0)
    )
    scored += postings

    # 4. Verify by decreasing bound, so the k-th score rises as fast as it can.
    if size >= 0:
        size = _verify(
            scratch.candidate_keys, scratch.candidate_docs, n_candidates, heap_scores, heap_docs,
            size, k, floor, estimated_docs, n_best, arrays, slots, slot_weights, stats,
            np.int64(0)
        )
    _clear_slots(query_terms, slots)
    if size < 0:
        accumulator[:] = 0  # a pass may have stopped before clearing its window
        return kernels.CORRUPT
    stats[STAT_POSTINGS] = scored
    stats[STAT_THETA0] = theta0
    stats[STAT_CUT_BOUND] = bound
    stats[STAT_KTH_SCORE] = heap_scores[0] if size == k else 0
    return heaps.drain(heap_scores, heap_docs, size, out_docs, out_scores)
# fmt: on


@numba.njit(cache=True, nogil=True, inline="always")
def _accumulate_window(query_terms, query_weights, arrays, num_windows, w, size_w, accumulator):
    """Add every query posting of window ``w`` to the accumulator, read from the impact-ordered
    postings (their in-window offsets index it directly); False when a sum landed past the
    window's ``size_w`` documents (a damaged layout), after zeroing the accumulator.

    Within a window the order of the additions does not change the integer sums, and the
    in-window offsets (uint16) are 4 bytes per posting with the impact where document numbers
    (int32) would be 6; the accumulator takes random rather than rising offsets, which costs
    nothing measurable at L2 latency (docs/performance.md).
    """
    io_docs = arrays.impact_order_docs
    io_impacts = arrays.impact_order_impacts
    _prefetch_starts(query_terms, arrays, num_windows, w)
    for i in range(len(query_terms)):
        weight = accumulator.dtype.type(query_weights[i])
        start, end = _window_range(arrays, query_terms[i], num_windows, w)
        docs = io_docs[start:end]  # views counted from 0: see _add_excess
        impacts = io_impacts[start:end]
        for j in range(len(docs)):
            accumulator[np.int64(docs[j])] += weight * accumulator.dtype.type(impacts[j])
    corrupt = False
    for offset in range(size_w, ACCUMULATOR_SIZE):
        if accumulator[offset] != 0:
            corrupt = True
    if corrupt:
        accumulator[:] = 0
        return False
    return True


@numba.njit(cache=True, nogil=True)
def windowed_exhaustive_one(
    query_terms, query_weights, k, allowed, floor, arrays, accumulator, out_docs, out_scores
):
    """Exhaustive top-k, one window of documents at a time (accumulator in L2 cache).

    Same result as :func:`kernels.search_one` (``allowed``/``floor`` as there);
    ``accumulator`` has ``ACCUMULATOR_SIZE`` entries (every uint16 offset), zero on entry and
    on return. Returns the number of hits or ``kernels.CORRUPT``. A large ``k`` over an int32
    accumulator selects by sort keys (:func:`_exhaustive_select`); otherwise a k-best heap
    keeps the top (:func:`windowed_exhaustive_into`).
    """
    if len(accumulator) != ACCUMULATOR_SIZE:
        return kernels.CORRUPT  # an offset could land outside a smaller one
    if k >= _SELECT_MIN_K and accumulator.itemsize == 4:
        return _exhaustive_select(
            query_terms, query_weights, k, allowed, floor, arrays, accumulator, out_docs, out_scores
        )
    heap_scores = np.empty(k, np.int64)
    heap_docs = np.empty(k, np.int64)
    size = windowed_exhaustive_into(
        query_terms, query_weights, k, allowed, floor, arrays, accumulator, heap_scores,
        heap_docs, 0, np.int64(0)
    )  # fmt: skip
    if size < 0:
        return kernels.CORRUPT
    return heaps.drain(heap_scores, heap_docs, size, out_docs, out_scores)


@numba.njit(cache=True, nogil=True)
def windowed_exhaustive_into(
    query_terms,
    query_weights,
    k,
    allowed,
    floor,
    arrays,
    accumulator,
    heap_scores,
    heap_docs,
    size,
    heap_base,
):
    """:func:`windowed_exhaustive_one` into a k-best heap of ``size`` entries, documents
    entering as ``heap_base + doc``; returns the new size or ``kernels.CORRUPT``.

    Documents are offered in increasing number, so a newcomer must beat the heap's worst
    strictly: the heap must hold only documents numbered below ``heap_base`` (the segments
    before this one, in order).
    """
    if len(accumulator) != ACCUMULATOR_SIZE:
        return kernels.CORRUPT  # an offset could land outside a smaller one
    floor = max(np.int64(floor), np.int64(0))
    num_docs = len(arrays.forward_offsets) - 1
    num_windows = _num_windows(arrays)
    # What a newcomer must beat strictly: the floor, then the heap's worst once it is full.
    # Documents arrive in increasing number, so a tie with the worst loses (our tie-break), and
    # one comparison per document (rarely true once the heap is full) keeps the branch
    # predictable: the scan of every document of the window costs little more than zeroing it.
    threshold = floor
    if size == k:
        threshold = max(floor, heap_scores[0])
    for w in range(num_windows):
        base = np.int64(w) << arrays.window_bits
        size_w = min(1 << arrays.window_bits, num_docs - base)
        if not _accumulate_window(
            query_terms, query_weights, arrays, num_windows, w, size_w, accumulator
        ):
            return kernels.CORRUPT
        for offset in range(size_w):
            score = np.int64(accumulator[offset])
            accumulator[offset] = 0
            if score > threshold and kernels.admits(allowed, base + offset):
                size = heaps.offer(
                    heap_scores, heap_docs, size, k, score, heap_base + base + offset
                )
                if size == k:
                    threshold = max(floor, heap_scores[0])
    return size


@numba.njit(cache=True, nogil=True, inline="always")
def _select_key(score, doc):
    """One int64 whose ascending order is our ranking: score descending, then document number
    ascending (score < 2^31, as an int32 accumulator's are, and doc < 2^31)."""
    return ((_KEY_TOP - score) << 31) | doc


@numba.njit(cache=True, nogil=True)
def _exhaustive_select(
    query_terms, query_weights, k, allowed, floor, arrays, accumulator, out_docs, out_scores
):
    """:func:`windowed_exhaustive_one` for a large ``k`` and an int32 accumulator.

    With a large k most matching documents enter a k-best heap and it is drained entry by
    entry, O(log k) each (SciFact, k = 1000: 2,700 matching documents, ~170 µs). Here each
    window's matching documents are written as sort keys (:func:`_select_key`) without a
    branch, the best k kept by a partition whenever there are more, and the k sorted once
    (~50 µs). The same documents, scores and order as the heap.
    """
    floor = max(np.int64(floor), np.int64(0))
    num_docs = len(arrays.forward_offsets) - 1
    num_windows = _num_windows(arrays)
    keys = np.empty(min(num_docs, 1 << arrays.window_bits) + k, np.int64)
    m = 0
    threshold = floor
    for w in range(num_windows):
        base = np.int64(w) << arrays.window_bits
        size_w = min(1 << arrays.window_bits, num_docs - base)
        if not _accumulate_window(
            query_terms, query_weights, arrays, num_windows, w, size_w, accumulator
        ):
            return kernels.CORRUPT
        if len(allowed) == 0:
            # Always write, count only a document above the threshold: about half the
            # documents match a common query, so a branch here would be mispredicted often.
            for offset in range(size_w):
                score = np.int64(accumulator[offset])
                accumulator[offset] = 0
                keys[m] = _select_key(score, base + offset)
                m += np.int64(score > threshold)
        else:
            for offset in range(size_w):
                score = np.int64(accumulator[offset])
                accumulator[offset] = 0
                if score > threshold and allowed[base + offset] != 0:
                    keys[m] = _select_key(score, base + offset)
                    m += 1
        if m > k:
            keys[:k] = np.partition(keys[:m], k - 1)[:k]
            m = k
            # The k-th best so far: a later document (a higher number) must beat it strictly.
            threshold = max(threshold, _KEY_TOP - (keys[:k].max() >> 31))
    best = np.sort(keys[:m])
    for j in range(m):
        out_docs[j] = best[j] & _KEY_DOC_MASK
        out_scores[j] = _KEY_TOP - (best[j] >> 31)
    return m


@numba.njit(cache=True, nogil=True)
def _search_one_any(
    mode,
    query_terms,
    query_weights,
    k,
    allowed,
    floor,
    arrays,
    settings,
    accumulator,
    scratch,
    out_docs,
    out_scores,
    stats,
):
    """Mode 0: windowed exhaustive; 1: pruned (exhaustive for small queries, or when the
    estimate finds fewer than k documents); 2 (``LAYER_MODE``): the layer ranking of
    :mod:`.approximate` (exhaustive when the layer would hold every posting)."""
    total = 0
    if mode != 0:
        for i in range(len(query_terms)):
            t = query_terms[i]
            total += arrays.term_offsets[t + 1] - arrays.term_offsets[t]
    # Pruning pays off only when the query's postings far outnumber what its estimate scores
    # (a small collection, rare terms): below that the exhaustive kernel is cheaper, and exact.
    if mode == LAYER_MODE and total > settings.estimate_postings:
        count = approximate.layer_search_one(
            query_terms, query_weights, k, allowed, floor, arrays, settings, accumulator,
            scratch, out_docs, out_scores, stats,
        )  # fmt: skip
        if count != FALLBACK:
            return count
    elif mode == 1 and total > _PRUNE_MIN_FACTOR * settings.estimate_postings:
        # Term pruning and a verification budget: approximate only (see .approximate).
        if settings.term_share < 1.0 or settings.max_verified > 0:
            count = approximate.approximate_search_one(
                query_terms, query_weights, k, allowed, floor, arrays, settings, accumulator,
                scratch, out_docs, out_scores, stats,
            )  # fmt: skip
        else:
            count = pruned_search_one(
                query_terms, query_weights, k, allowed, floor, arrays, settings, accumulator,
                scratch, out_docs, out_scores, stats,
            )  # fmt: skip
        if count != FALLBACK:
            return count
    return windowed_exhaustive_one(
        query_terms, query_weights, k, allowed, floor, arrays, accumulator, out_docs, out_scores
    )


@numba.njit(cache=True, nogil=True)
def search_range(
    mode,
    first,
    last,
    query_indptr,
    query_terms,
    query_weights,
    use_int64,
    k,
    allowed,
    floor,
    arrays,
    settings,
    scratch,
    out_docs,
    out_scores,
    out_counts,
    out_stats,
):
    """Queries [first, last) of a CSR batch with one thread's scratch arrays (GIL released)."""
    for q in range(first, last):
        start = query_indptr[q]
        end = query_indptr[q + 1]
        if use_int64[q]:
            out_counts[q] = _search_one_any(
                mode,
                query_terms[start:end],
                query_weights[start:end],
                k,
                allowed,
                floor,
                arrays,
                settings,
                scratch.accumulator64,
                scratch,
                out_docs[q],
                out_scores[q],
                out_stats[q],
            )
        else:
            out_counts[q] = _search_one_any(
                mode,
                query_terms[start:end],
                query_weights[start:end],
                k,
                allowed,
                floor,
                arrays,
                settings,
                scratch.accumulator32,
                scratch,
                out_docs[q],
                out_scores[q],
                out_stats[q],
            )


class PrunedSearcher:
    """Runs the windowed kernels over one :class:`~sparse_ir.index.impact_index.ImpactIndex`.

    Holds the memory-mapped search layout and per-thread scratch arrays (a window-sized
    accumulator, a query-term table, a candidate buffer), so repeated searches allocate nothing
    large. ``params=None`` runs the windowed exhaustive kernel.
    """

    def __init__(self, index, candidate_capacity: int = CANDIDATE_CAPACITY):
        """``candidate_capacity``: candidates buffered per thread before an early verification
        pass (memory: 8 bytes each, twice); small values exist for tests of that pass."""
        from sparse_ir.index.layout import SearchLayout

        if index.manifest.search_layout is None:
            raise ValueError(
                f"{index.directory}: this index has no search layout, so only "
                "mode='exhaustive' works; rebuild it with search_layout=True "
                "(the default) for pruned and approximate search"
            )
        if (
            isinstance(candidate_capacity, bool)
            or not isinstance(candidate_capacity, (int, np.integer))
            or candidate_capacity < 1
        ):
            raise ValueError(
                f"candidate_capacity must be an integer >= 1, got {candidate_capacity!r}"
            )
        self.candidate_capacity = int(candidate_capacity)
        self.index = index
        # The index maps its layout when it opens (see ImpactIndex.__init__).
        self.layout = getattr(index, "_layout", None) or SearchLayout.open(
            index.directory, index.manifest
        )
        self._local = threading.local()
        # Worker threads live as long as the searcher, so their scratch arrays are allocated
        # once, not at every batch (a SciFact batch takes only ~40 ms).
        self._pool: ThreadPoolExecutor | None = None
        self._pool_size = 0
        self._pool_pid = 0
        self._pool_lock = threading.Lock()

    @property
    def layout(self):
        """The search layout's memory-mapped arrays (:class:`~.layout.SearchLayout`)."""
        return self._layout

    @layout.setter
    def layout(self, layout) -> None:
        # The kernels' record of the arrays is built once per layout, not at every search.
        self._layout = layout
        self._search_arrays = SearchArrays.of(self.index, layout)
        # The same fields one by one, for search_one_flat (see there why).
        self._flat_arrays = tuple(self._search_arrays)

    def _scratch(self) -> Scratch:
        """This thread's scratch: int32 and int64 accumulators, term slots, candidates."""
        local = self._local
        if not hasattr(local, "scratch"):
            capacity = self.candidate_capacity
            # Candidate documents double as the scratch of one window's touched documents.
            window = 1 << self.layout.window_bits
            local.scratch = Scratch(
                np.zeros(ACCUMULATOR_SIZE, np.int32),
                np.zeros(ACCUMULATOR_SIZE, np.int64),
                np.zeros(self.index.vocab_size, np.uint16),
                np.empty(max(capacity, window + 1), np.int64),
                np.empty(capacity, np.int64),
            )
        return local.scratch

    def _executor(self, workers: int) -> ThreadPoolExecutor:
        """A pool of at least ``workers`` threads, kept between calls."""
        with self._pool_lock:
            # A forked child inherits the pool object but not its threads: make a new one.
            if self._pool is None or self._pool_size < workers or self._pool_pid != os.getpid():
                if self._pool is not None and self._pool_pid == os.getpid():
                    self._pool.shutdown(wait=False)
                self._pool = ThreadPoolExecutor(workers, thread_name_prefix="sparse-ir-search")
                self._pool_size, self._pool_pid = workers, os.getpid()
            return self._pool

    def _arrays(self) -> SearchArrays:
        """The kernels' record of the index's and the layout's arrays."""
        return self._search_arrays

    def _check(self, counts) -> None:
        if np.any(np.asarray(counts) == kernels.CORRUPT):
            raise IndexCorruptError(
                f"{self.index.directory}: a posting points outside the index; run verify()"
            )

    def search(
        self,
        terms: np.ndarray,
        weights: np.ndarray,
        k: int,
        params: PrunedParams | None,
        use_int64: bool,
        allowed: np.ndarray = kernels.ALL_DOCUMENTS,
        floor: int = 0,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(docs, scores, stats)`` of one prepared query; ``params=None``: exhaustive.

        ``terms``/``weights``: as :meth:`ImpactIndex.prepare_query
        <sparse_ir.index.impact_index.ImpactIndex.prepare_query>` gives them (int32, int64).
        ``allowed`` (uint8 [num_documents], writable, or empty for all) and ``floor``: see
        :mod:`.kernels`; the caller checks the mask's length.
        """
        local = self._local
        scratch = local.scratch if hasattr(local, "scratch") else self._scratch()
        docs = np.empty(k, np.int64)
        scores = np.empty(k, np.int64)
        stats = np.zeros(len(STATS_FIELDS), np.int64)
        settings = params or EXACT
        count = search_one_flat(
            0 if params is None else params.kernel_mode,
            terms,
            weights,
            k,
            allowed,
            int(floor),
            bool(use_int64),
            *self._flat_arrays,
            # KernelSettings' fields as a plain tuple (making the NamedTuple costs ~0.5 µs).
            settings.estimate_postings,
            settings.estimate_candidates,
            settings.cut_ratio,
            settings.bound_weight,
            settings.term_share,
            settings.max_verified,
            *scratch,
            docs,
            scores,
            stats,
        )
        if count < 0:  # kernels.CORRUPT
            raise IndexCorruptError(
                f"{self.index.directory}: a posting points outside the index; run verify()"
            )
        return docs[:count], scores[:count], stats

    def search_row(
        self,
        row_terms: np.ndarray,
        row_weights: np.ndarray,
        k: int,
        params: PrunedParams | None,
        allowed: np.ndarray,
        floor: int,
        checked: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """``(docs, scores)`` of one query row as a one-row SparseBatch holds it (term ids
        over this index's vocabulary, integer weights, zeros allowed), everything
        :meth:`ImpactIndex.search_arrays` does for it in one compiled call
        (:func:`search_row_flat`); None when the general path must run instead (a term
        ``checked`` does not mark yet, or a weight too large to keep scores exact)."""
        local = self._local
        scratch = local.scratch if hasattr(local, "scratch") else self._scratch()
        docs = np.empty(k, np.int64)
        scores = np.empty(k, np.int64)
        stats = np.zeros(len(STATS_FIELDS), np.int64)
        settings = params or EXACT
        index = self.index
        count = search_row_flat(
            0 if params is None else params.kernel_mode,
            row_terms,
            row_weights,
            k,
            allowed,
            int(floor),
            checked,
            index._term_max_float,
            index._largest_impact,
            int(index.quantizer.max_impact),
            *self._flat_arrays,
            settings.estimate_postings,
            settings.estimate_candidates,
            settings.cut_ratio,
            settings.bound_weight,
            settings.term_share,
            settings.max_verified,
            *scratch,
            docs,
            scores,
            stats,
        )
        if count == NEEDS_GENERAL:
            return None
        if count < 0:  # kernels.CORRUPT
            raise IndexCorruptError(
                f"{index.directory}: a posting points outside the index; run verify()"
            )
        return docs[:count], scores[:count]

    def search_many(
        self,
        indptr: np.ndarray,
        terms: np.ndarray,
        weights: np.ndarray,
        use_int64: np.ndarray,
        k: int,
        params: PrunedParams | None,
        threads: int = 1,
        allowed: np.ndarray = kernels.ALL_DOCUMENTS,
        floor: int = 0,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(docs [Q, k], scores [Q, k], counts [Q], stats [Q, len(STATS_FIELDS)])`` on
        ``threads`` threads (``allowed``/``floor``: as in :meth:`search`, for every query).

        Threads take small chunks of queries from a shared counter as they finish (dynamic
        balance: a costly query does not hold up a thread's whole share); the kernel releases
        the GIL, so the threads run in parallel.
        """
        n_queries = len(indptr) - 1
        out_docs = np.empty((n_queries, k), np.int64)
        out_scores = np.empty((n_queries, k), np.int64)
        out_counts = np.empty(n_queries, np.int64)
        out_stats = np.zeros((n_queries, len(STATS_FIELDS)), np.int64)
        mode = 0 if params is None else params.kernel_mode
        settings = (params or EXACT).as_tuple()
        arrays = self._arrays()
        floor = int(floor)
        threads = max(1, min(int(threads), n_queries))
        taken = [0]  # queries handed out so far
        lock = threading.Lock()

        def work() -> None:
            scratch = self._scratch()
            while True:
                # Guided chunks: large while much work remains (fewer calls), shrinking to
                # one query at the end so that the threads finish together.
                with lock:
                    first = taken[0]
                    chunk = max(1, min(8, (n_queries - first) // (threads * 8)))
                    taken[0] = first + chunk
                if first >= n_queries:
                    return
                search_range(
                    mode,
                    first,
                    min(first + chunk, n_queries),
                    indptr,
                    terms,
                    weights,
                    use_int64,
                    k,
                    allowed,
                    floor,
                    arrays,
                    settings,
                    scratch,
                    out_docs,
                    out_scores,
                    out_counts,
                    out_stats,
                )

        if threads == 1:
            work()
        else:
            # The calling thread is one of the workers.
            futures = [self._executor(threads - 1).submit(work) for _ in range(threads - 1)]
            try:
                work()
            finally:
                for future in futures:
                    future.result()
        self._check(out_counts)
        return out_docs, out_scores, out_counts, out_stats


@numba.njit(cache=True, nogil=True)
def search_one_flat(
    mode,
    query_terms,
    query_weights,
    k,
    allowed,
    floor,
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
    estimate_postings,
    estimate_candidates,
    cut_ratio,
    bound_weight,
    term_share,
    max_verified,
    accumulator32,
    accumulator64,
    slots,
    candidate_docs,
    candidate_keys,
    out_docs,
    out_scores,
    stats,
):
    """One query of :func:`search_range`, the records passed field by field.

    Numba checks the type of a record of arrays (a NamedTuple) on a slow path at every call;
    plain arrays and numbers take a fast one (a three-term query, best of 600 calls: 8.4 µs
    through the records, 5.3 µs field by field, several times both on a loaded machine: as
    much as the whole search on a collection of a few thousand documents). The fields are put back
    together into :class:`SearchArrays`, :class:`KernelSettings` and :class:`Scratch` inside
    compiled code, and the search is that of :func:`search_range`.
    """
    arrays = SearchArrays(
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
    )
    settings = KernelSettings(
        estimate_postings, estimate_candidates, cut_ratio, bound_weight, term_share, max_verified
    )
    scratch = Scratch(accumulator32, accumulator64, slots, candidate_docs, candidate_keys)
    if use_int64:
        return _search_one_any(
            mode,
            query_terms,
            query_weights,
            k,
            allowed,
            floor,
            arrays,
            settings,
            scratch.accumulator64,
            scratch,
            out_docs,
            out_scores,
            stats,
        )
    return _search_one_any(
        mode,
        query_terms,
        query_weights,
        k,
        allowed,
        floor,
        arrays,
        settings,
        scratch.accumulator32,
        scratch,
        out_docs,
        out_scores,
        stats,
    )


@numba.njit(cache=True, nogil=True)
def search_row_flat(
    mode,
    row_terms,
    row_weights,
    k,
    allowed,
    floor,
    checked,
    term_max,
    largest_impact,
    max_impact,
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
    estimate_postings,
    estimate_candidates,
    cut_ratio,
    bound_weight,
    term_share,
    max_verified,
    accumulator32,
    accumulator64,
    slots,
    candidate_docs,
    candidate_keys,
    out_docs,
    out_scores,
    stats,
):
    """One query row from a one-row SparseBatch to its top-k, in one compiled call.

    What :meth:`ImpactIndex.prepare_query`, ``_check_terms``, ``_needs_int64`` and
    :func:`search_one_flat` do one after the other in Python for such a row (each a few numpy
    calls on a handful of numbers: together more than the whole BM25 search of a SciFact
    query), with the same rules: weights of 0 are dropped; the row is declined
    (``NEEDS_GENERAL``) when a term is not yet marked in ``checked`` (the index's per-term
    checks, :class:`~sparse_ir.index.validate.TermCheck`) or a weight is above
    ``INT64_MAX // (max_impact × terms)`` (the general path raises the error); scores are summed
    in int64 when Σ weights × ``largest_impact`` passes INT32_MAX // 2 and so does the bound
    Σ weight × ``term_max``. The row is also declined unless its terms are ascending, unique
    and inside the vocabulary and its weights >= 0 (a SparseBatch guarantees it; a query
    already in :meth:`ImpactIndex.prepare_query`'s form comes here too, and anything else
    gets the general path's error or sorting). Returns the number of hits,
    ``kernels.CORRUPT`` or ``NEEDS_GENERAL``.
    """
    n = len(row_terms)
    top = np.int64(0)
    total = np.int64(0)
    kept = 0
    previous = np.int64(-1)
    for i in range(n):
        term = np.int64(row_terms[i])
        if term <= previous or term >= len(checked) or checked[term] == 0:
            return NEEDS_GENERAL
        previous = term
        weight = np.int64(row_weights[i])
        if weight < 0:
            return NEEDS_GENERAL
        top = max(top, weight)
        if weight > 0:
            kept += 1
    if n > 0 and top > _INT64_MAX // (max(max_impact, 1) * n):
        return NEEDS_GENERAL
    query_terms = np.empty(kept, np.int32)
    query_weights = np.empty(kept, np.int64)
    j = 0
    wide = False
    for i in range(n):
        weight = np.int64(row_weights[i])
        if weight > 0:
            query_terms[j] = row_terms[i]
            query_weights[j] = weight
            j += 1
            # Σ weights, saturating: past the limit below, the exact sum does not matter.
            if total <= _INT64_MAX - weight:
                total += weight
            else:
                total = _INT64_MAX
    if float(total) * largest_impact > _INT32_HALF:
        bound = 0.0
        for i in range(kept):
            bound += float(query_weights[i]) * term_max[query_terms[i]]
        wide = bound > _INT32_HALF
    return search_one_flat(
        mode,
        query_terms,
        query_weights,
        k,
        allowed,
        floor,
        wide,
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
        estimate_postings,
        estimate_candidates,
        cut_ratio,
        bound_weight,
        term_share,
        max_verified,
        accumulator32,
        accumulator64,
        slots,
        candidate_docs,
        candidate_keys,
        out_docs,
        out_scores,
        stats,
    )
