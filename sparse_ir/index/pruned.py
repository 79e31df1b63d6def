"""Safe dynamic pruning: the exact top-k while scoring a small share of the postings.

Exhaustive scoring adds every posting of every query term (~10M per query on the 1M-document
SPLADE benchmark). Most of them cannot matter: a document's score is a sum over ~50 query
terms, and the top-k scores sit far above the bulk (the 10th score is ~10× the median). The
pruned search proves that, using the search layout of :mod:`.layout` (each term's postings
re-ordered by impact within windows of 2^16 documents, its impact segments, a forward index):

1. **Estimate.** Per-term cuts are chosen so that the postings above them — the highest
   ``q_t × impact`` first — number about ``estimate_postings``; those postings are scored, the
   ``estimate_candidates`` documents with the best partial scores are scored exactly (forward
   index), and the k-th of their exact scores is θ₀, a lower bound on the final k-th score θ.
2. **Cut.** New cuts τ_t are chosen so that R = Σ_t q_t·τ_t ≤ ρ·θ₀ (ρ = ``cut_ratio`` < 1),
   lowering first the cut that removes the most score range per posting. A document with no
   posting above any cut scores at most R < θ₀ ≤ θ: it cannot be in the top-k.
3. **Bound.** For the postings above the cuts (a contiguous prefix of each term's window) the
   excess q_t·(impact − τ_t) is accumulated; score(d) ≤ R + excess(d), since each term gives d
   at most q_t·τ_t unless d's posting is above the cut, where it gives exactly q_t·impact.
   Documents with R + excess(d) ≥ θ₀ are the candidates.
4. **Verify.** Candidates are scored exactly with the forward index in decreasing order of
   bound, keeping the top-k (score descending, document number ascending); the loop stops at
   the first bound below the current k-th score. Every document never scored has a bound —
   hence a score — strictly below the final k-th, so the result is exactly the exhaustive
   top-k, ties included (a tie needs an equal bound, and equal bounds are verified).

Queries whose estimate finds fewer than k documents (very few matching documents) are answered
by the windowed exhaustive kernel, which is cheap for them. Approximate search
(:mod:`.approximate`) runs the same kernel with two knobs that give up the proof: cuts that leave
more below them (ρ ≥ 1), and crediting documents with only a share β < 1 of R.

Why not block-max pruning over reordered documents (BMP, Seismic's blocks)? Measured on the 1M
benchmark corpus (noisy copies of 5,183 real documents, each with ~30% extra terms drawn from
the collection): even with documents ordered by their true template, blocks of 8 documents have
a bound Σ_t q_t·max_block(t) above θ for ~9,000 documents per query, and blocks of 32 for
~280,000 (the extra terms put almost every common query term in every block at a high impact).
The per-posting bound above is tighter and needs no reordering, so document numbers stay the
insertion order.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

from sparse_ir.errors import IndexCorruptError
from sparse_ir.index import kernels
from sparse_ir.index.intrinsics import prefetch

__all__ = [
    "EXACT",
    "STATS_FIELDS",
    "PrunedParams",
    "PrunedSearcher",
    "pruned_search_one",
    "search_range",
    "windowed_exhaustive_one",
]

#: The search returned no result itself; the caller runs the exhaustive kernel.
FALLBACK = -2
#: Default candidates buffered before an early verification pass (bounded memory per thread;
#: ``PrunedSearcher(candidate_capacity=...)``). The buffer's document array is also the scratch
#: for the documents touched in one window, so it never has fewer entries than a window.
CANDIDATE_CAPACITY = 1 << 16
#: What the kernel's ``stats`` array holds, in order: postings scored, documents verified
#: exactly, θ₀, R, candidates collected, final k-th score, early verification passes (the
#: candidate buffer was full).
STATS_FIELDS = ("postings", "verified", "theta0", "cut_bound", "candidates", "kth_score",
                "early_verifications")
#: Accumulator entries: every uint16 in-window offset, so no offset can write outside it.
ACCUMULATOR_SIZE = 1 << 16
# Candidates popped and prefetched together in the verification loop.
_VERIFY_BATCH = 8
# Cut steps grow a term's layer by this factor (snapped to segment ends).
_CUT_GROWTH = 1.25
# Queries with at most this many times ``estimate_postings`` postings run the exhaustive kernel.
_PRUNE_MIN_FACTOR = 2


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
    """

    __slots__ = ("bound_weight", "cut_ratio", "estimate_candidates", "estimate_postings")

    def __init__(self, estimate_postings: int = 100_000, estimate_candidates: int = 128,
                 cut_ratio: float = 0.5, bound_weight: float = 1.0):
        self.estimate_postings = int(estimate_postings)
        self.estimate_candidates = int(estimate_candidates)
        self.cut_ratio = float(cut_ratio)
        self.bound_weight = float(bound_weight)

    @property
    def exact(self) -> bool:
        """True when these settings return exactly the exhaustive top-k."""
        return self.cut_ratio < 1.0 and self.bound_weight >= 1.0

    def as_tuple(self) -> tuple[int, int, float, float]:
        """The settings in the order the kernels take them."""
        return (self.estimate_postings, self.estimate_candidates, self.cut_ratio,
                self.bound_weight)

    def __repr__(self) -> str:
        return (f"PrunedParams(estimate_postings={self.estimate_postings}, "
                f"estimate_candidates={self.estimate_candidates}, cut_ratio={self.cut_ratio}, "
                f"bound_weight={self.bound_weight})")


EXACT = PrunedParams()


# -- small heaps ---------------------------------------------------------------------------------

@numba.njit(cache=True, nogil=True, inline="always")
def _better(score_a, doc_a, score_b, doc_b):
    return score_a > score_b or (score_a == score_b and doc_a < doc_b)


@numba.njit(cache=True, nogil=True)
def _offer(heap_scores, heap_docs, size, k, score, doc):
    """Offer (score, doc) to a k-best min-heap (worst at the root); return the new size."""
    if size < k:
        heap_scores[size] = score
        heap_docs[size] = doc
        kernels._sift_up(heap_scores, heap_docs, size)
        return size + 1
    if _better(score, doc, heap_scores[0], heap_docs[0]):
        heap_scores[0] = score
        heap_docs[0] = doc
        kernels._sift_down(heap_scores, heap_docs, size, 0)
    return size


@numba.njit(cache=True, nogil=True)
def _drain(heap_scores, heap_docs, size, out_docs, out_scores):
    """Empty a k-best heap into the outputs, best first; return the count."""
    count = size
    while size > 0:
        size -= 1
        out_docs[size] = heap_docs[0]
        out_scores[size] = heap_scores[0]
        heap_scores[0] = heap_scores[size]
        heap_docs[0] = heap_docs[size]
        kernels._sift_down(heap_scores, heap_docs, size, 0)
    return count


@numba.njit(cache=True, nogil=True)
def _max_sift_down(keys, values, size, position):
    while True:
        left = 2 * position + 1
        if left >= size:
            return
        child = left
        if left + 1 < size and keys[left + 1] > keys[left]:
            child = left + 1
        if keys[child] > keys[position]:
            keys[child], keys[position] = keys[position], keys[child]
            values[child], values[position] = values[position], values[child]
            position = child
        else:
            return


# -- exact scores through the forward index ------------------------------------------------------

#: What :func:`_exact_score` returns for a document whose forward entry is damaged (a real
#: score is never negative: weights and impacts are positive).
_CORRUPT_SCORE = -1


@numba.njit(cache=True, nogil=True, inline="always")
def _forward_entry_ok(start, end, n_forward):
    """True when a document's forward range lies inside the forward arrays. The forward offsets
    are not checked at open (O(N), unlike the O(V·W) layout offsets), so each verified document
    checks its own two offsets: damage that only verify() would see is refused, never read."""
    return 0 <= start and start <= end and end <= n_forward


@numba.njit(cache=True, nogil=True, inline="always")
def _exact_score(doc, forward_offsets, forward_terms, forward_impacts, slots, slot_weights):
    """Σ q_t·impact over the document's terms; ``slots`` maps a query term to its weight's
    position in ``slot_weights`` (0 = not a query term, weight 0): a small table that stays in
    the L1 cache, unlike a vocabulary-sized array of weights.

    Returns ``_CORRUPT_SCORE`` when the document's forward entry points outside the arrays or
    names a term outside the vocabulary (a damaged file)."""
    start = forward_offsets[doc]
    end = forward_offsets[doc + 1]
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
def _prefetch_document(doc, forward_offsets, forward_terms, forward_impacts):
    start = forward_offsets[doc]
    end = forward_offsets[doc + 1]
    if not _forward_entry_ok(start, end, len(forward_terms)):
        return  # _exact_score reports it; a damaged range must not set a runaway loop here
    for p in range(start, end, 32):
        prefetch(forward_terms, p)
        prefetch(forward_impacts, p)


@numba.njit(cache=True, nogil=True, inline="always")
def _prefetch_starts(query_terms, window_offsets, num_windows, w, io_docs, io_impacts):
    """Announce where every query term's postings of window ``w`` start: those first cache
    lines are far apart (a miss each), so fetching them together overlaps the misses."""
    for i in range(len(query_terms)):
        start = window_offsets[np.int64(query_terms[i]) * num_windows + w]
        prefetch(io_docs, start)
        prefetch(io_impacts, start)


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


@numba.njit(cache=True, nogil=True)
def _verify(keys, docs, count, heap_scores, heap_docs, size, k, skip, n_skip,
            forward_offsets, forward_terms, forward_impacts, slots, slot_weights, stats):
    """Score candidates exactly by decreasing bound until a bound is below the k-th score.

    ``keys``/``docs`` [:count] are the candidates (bound, document), in any order; documents in
    ``skip`` [:n_skip] (sorted) were scored already. Returns the new heap size, or -1 when a
    candidate's forward entry is damaged.
    """
    for position in range(count // 2 - 1, -1, -1):
        _max_sift_down(keys, docs, count, position)
    batch = np.empty(_VERIFY_BATCH, np.int64)
    remaining = count
    while remaining > 0:
        # Pop a few candidates whose bound still reaches the k-th score and prefetch their
        # forward entries together: their cache misses overlap instead of following each other.
        n_batch = 0
        while remaining > 0 and n_batch < _VERIFY_BATCH:
            if size == k and keys[0] < heap_scores[0]:
                remaining = 0
                break
            doc = docs[0]
            remaining -= 1
            keys[0] = keys[remaining]
            docs[0] = docs[remaining]
            _max_sift_down(keys, docs, remaining, 0)
            if not _contains(skip, n_skip, doc):
                _prefetch_document(doc, forward_offsets, forward_terms, forward_impacts)
                batch[n_batch] = doc
                n_batch += 1
        for j in range(n_batch):
            doc = batch[j]
            score = _exact_score(doc, forward_offsets, forward_terms, forward_impacts, slots,
                                 slot_weights)
            if score < 0:
                return -1
            size = _offer(heap_scores, heap_docs, size, k, score, doc)
        stats[1] += n_batch
    return size


# -- choosing the cuts ---------------------------------------------------------------------------

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


@numba.njit(cache=True, nogil=True)
def _choose_cuts(query_terms, query_weights, term_offsets, segment_offsets, segment_impacts,
                 segment_ends, target, max_postings, cut_position, cut_impact):
    """Per-term cuts, lowered greedily (best score range per posting first) until
    R = Σ q_t·τ_t <= ``target`` or the layer would exceed ``max_postings``.

    Fills ``cut_position`` (end of each term's layer) and ``cut_impact`` (τ_t); returns R.
    """
    n_terms = len(query_terms)
    segment = np.empty(n_terms, np.int64)
    bound = np.int64(0)
    for i in range(n_terms):
        t = query_terms[i]
        segment[i] = segment_offsets[t]
        cut_position[i] = term_offsets[t]
        cut_impact[i] = np.int64(segment_impacts[segment_offsets[t]]) \
            if segment_offsets[t + 1] > segment_offsets[t] else np.int64(0)
        bound += query_weights[i] * cut_impact[i]
    # Max-heap of each term's next step, keyed by score range per posting.
    keys = np.empty(n_terms, np.float64)
    owners = np.empty(n_terms, np.int64)
    next_segment = np.empty(n_terms, np.int64)
    next_position = np.empty(n_terms, np.int64)
    next_impact = np.empty(n_terms, np.int64)
    size = 0
    for i in range(n_terms):
        t = query_terms[i]
        if cut_impact[i] > 0:
            j, position, below = _next_cut(term_offsets[t], segment_offsets[t + 1],
                                           segment_impacts, segment_ends, segment[i],
                                           cut_position[i])
            next_segment[i] = j
            next_position[i] = position
            next_impact[i] = below
            # max(.., 1): segment ends rise in a sound index; a damaged one must not divide
            # by zero (the search then is merely wrong, and verify() names the file).
            keys[size] = query_weights[i] * (cut_impact[i] - below) / max(
                position - cut_position[i], 1)
            owners[size] = i
            size += 1
    for position in range(size // 2 - 1, -1, -1):
        _max_sift_down(keys, owners, size, position)
    postings = np.int64(0)
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
        t = query_terms[i]
        if cut_impact[i] > 0:
            j, position, below = _next_cut(term_offsets[t], segment_offsets[t + 1],
                                           segment_impacts, segment_ends, segment[i],
                                           cut_position[i])
            next_segment[i] = j
            next_position[i] = position
            next_impact[i] = below
            keys[0] = query_weights[i] * (cut_impact[i] - below) / max(
                position - cut_position[i], 1)
        else:
            size -= 1
            keys[0] = keys[size]
            owners[0] = owners[size]
        _max_sift_down(keys, owners, size, 0)
    return bound


@numba.njit(cache=True, nogil=True)
def _cut_in_window(io_impacts, start, end, cut):
    """First position in [start, end) (impacts descending) whose impact is <= cut."""
    low = start
    high = end
    while low < high:
        middle = (low + high) // 2
        if np.int64(io_impacts[middle]) > cut:
            low = middle + 1
        else:
            high = middle
    return low


# -- the kernel ----------------------------------------------------------------------------------

@numba.njit(cache=True, nogil=True)
def pruned_search_one(query_terms, query_weights, term_offsets, window_offsets, io_docs,
                      io_impacts, segment_offsets, segment_impacts, segment_ends,
                      forward_offsets, forward_terms, forward_impacts, window_bits,
                      accumulator, slots, candidate_docs, candidate_keys, k,
                      estimate_postings, estimate_candidates, cut_ratio, bound_weight,
                      out_docs, out_scores, stats):
    """Top-k of one query by the four steps of the module docstring, window by window.

    Scratch arrays: ``accumulator`` [2^16] (int32 or int64) and ``slots`` uint16 [V]
    are zero on entry and on return; ``candidate_docs``/``candidate_keys`` (int64) need no
    initial value. The candidate buffer holds ``len(candidate_keys)`` candidates (verified early
    when it is full); ``candidate_docs`` is also the scratch for the documents touched in one
    window, so it has at least ``min(2^window_bits, N)`` entries and at least as many as
    ``candidate_keys``. ``stats`` (int64 [len(STATS_FIELDS)]) receives the figures listed in
    :data:`STATS_FIELDS`. Returns the number of hits, ``kernels.CORRUPT`` (-1), or
    ``FALLBACK`` (-2) when the estimate found fewer than k documents (the caller then runs the
    exhaustive kernel).
    """
    n_terms = len(query_terms)
    if n_terms >= 65535 or len(accumulator) != ACCUMULATOR_SIZE:
        return FALLBACK  # slots are uint16; the accumulator must cover every uint16 offset
    num_docs = len(forward_offsets) - 1
    window = 1 << window_bits
    num_windows = max(1, (num_docs + window - 1) >> window_bits)
    slot_weights = np.zeros(n_terms + 1, np.int64)
    for i in range(n_terms):
        slots[query_terms[i]] = i + 1
        slot_weights[i + 1] = query_weights[i]
    heap_scores = np.empty(k, np.int64)
    heap_docs = np.empty(k, np.int64)
    size = 0
    cut_position = np.empty(n_terms, np.int64)
    cut_impact = np.empty(n_terms, np.int64)
    want = max(estimate_candidates, k)
    best_scores = np.empty(want, np.int64)
    best_docs = np.empty(want, np.int64)
    n_best = 0
    corrupt = False
    scored = 0

    # 1. Estimate: the postings above cuts sized to ``estimate_postings``, full q·impact.
    _choose_cuts(query_terms, query_weights, term_offsets, segment_offsets, segment_impacts,
                 segment_ends, np.int64(0), np.int64(estimate_postings), cut_position,
                 cut_impact)
    estimate_exhaustive = True
    for i in range(n_terms):
        estimate_exhaustive = estimate_exhaustive and cut_impact[i] == 0
    touched = candidate_docs  # scratch: documents touched in the current window
    for w in range(num_windows):
        base = w << window_bits
        size_w = min(window, num_docs - base)
        _prefetch_starts(query_terms, window_offsets, num_windows, w, io_docs, io_impacts)
        n_touched = 0
        for i in range(n_terms):
            t = query_terms[i]
            weight = accumulator.dtype.type(query_weights[i])
            cut = cut_impact[i]
            start = window_offsets[t * num_windows + w]
            end = window_offsets[t * num_windows + w + 1]
            # Impacts descend within the window: the layer is the prefix above the cut (a
            # linear stop is cheaper than a binary search, whose probes miss the cache).
            p = start
            while p < end and np.int64(io_impacts[p]) > cut:
                offset = np.int64(io_docs[p])
                if accumulator[offset] == 0:
                    # A window has at most 2^16 documents, so only a damaged layout (the same
                    # offset again after an overflow to 0) can fill the scratch.
                    if n_touched == len(touched):
                        corrupt = True
                        break
                    touched[n_touched] = offset
                    n_touched += 1
                accumulator[offset] += weight * accumulator.dtype.type(io_impacts[p])
                p += 1
            scored += p - start
        for j in range(n_touched):
            offset = touched[j]
            score = np.int64(accumulator[offset])
            accumulator[offset] = 0
            if offset >= size_w:
                corrupt = True
            elif n_best < want or score >= best_scores[0]:
                n_best = _offer(best_scores, best_docs, n_best, want, score, base + offset)
        if corrupt:
            accumulator[:] = 0  # entries added after the scratch was full are not listed
            break
    # The estimate's documents, sorted (they are skipped when verifying candidates).
    verified_docs = np.sort(best_docs[:n_best])
    if estimate_exhaustive:
        # No posting was left below the cuts: the partial scores are the scores.
        for j in range(n_best):
            size = _offer(heap_scores, heap_docs, size, k, best_scores[j], best_docs[j])
    else:
        for j in range(n_best):
            _prefetch_document(verified_docs[j], forward_offsets, forward_terms,
                               forward_impacts)
        for j in range(n_best):
            d = verified_docs[j]
            score = _exact_score(d, forward_offsets, forward_terms, forward_impacts, slots,
                                 slot_weights)
            if score < 0:
                corrupt = True
                break
            size = _offer(heap_scores, heap_docs, size, k, score, d)
    stats[1] = n_best
    stats[0] = scored
    if corrupt or estimate_exhaustive or size < k:
        for i in range(n_terms):
            slots[query_terms[i]] = 0
        if corrupt:
            return kernels.CORRUPT
        if size < k:
            return FALLBACK
        stats[5] = heap_scores[0]
        return _drain(heap_scores, heap_docs, size, out_docs, out_scores)
    theta0 = heap_scores[0]

    # 2. Cut: R = Σ q_t·τ_t <= ρ·θ₀ (and < θ₀ when exact).
    target = np.int64(np.floor(theta0 * cut_ratio))
    if cut_ratio < 1.0 and target >= theta0:
        target = theta0 - 1
    bound = _choose_cuts(query_terms, query_weights, term_offsets, segment_offsets,
                         segment_impacts, segment_ends, target, np.int64(1) << 62,
                         cut_position, cut_impact)

    # 3. Per window: accumulate the excess over the cuts, then collect the documents whose
    #    bound reaches θ₀ while clearing the accumulator.
    credit = bound
    if bound_weight < 1.0:
        credit = np.int64(np.floor(bound * bound_weight))
    need = max(theta0 - credit, np.int64(1))
    n_candidates = 0
    n_flushed = 0  # candidates handed to early verification passes
    n_early = 0  # early verification passes
    capacity = min(len(candidate_keys), len(candidate_docs))
    for w in range(num_windows):
        base = w << window_bits
        size_w = min(window, num_docs - base)
        _prefetch_starts(query_terms, window_offsets, num_windows, w, io_docs, io_impacts)
        for i in range(n_terms):
            t = query_terms[i]
            weight = accumulator.dtype.type(query_weights[i])
            below = accumulator.dtype.type(query_weights[i] * cut_impact[i])
            cut = cut_impact[i]
            start = window_offsets[t * num_windows + w]
            end = window_offsets[t * num_windows + w + 1]
            # Offsets are uint16 and the accumulator has 2^16 entries: no write can leave it;
            # an offset past the window's documents is caught below.
            # Impacts descend within the window: when the 4th posting ahead is above the cut,
            # so are the three before it (one test per four postings instead of one each).
            p = start
            while p + 3 < end and np.int64(io_impacts[p + 3]) > cut:
                for j in range(p, p + 4):
                    accumulator[np.int64(io_docs[j])] += \
                        weight * accumulator.dtype.type(io_impacts[j]) - below
                p += 4
            while p < end and np.int64(io_impacts[p]) > cut:
                accumulator[np.int64(io_docs[p])] += \
                    weight * accumulator.dtype.type(io_impacts[p]) - below
                p += 1
            scored += p - start
        # Collect the candidates while clearing the accumulator. (Skipping chunks of 64 entries
        # whose vectorized maximum is below the need measured slower on the 1M benchmark:
        # 6.2-6.7 ms against 5.7 ms per query.)
        for offset in range(size_w):
            excess = np.int64(accumulator[offset])
            accumulator[offset] = 0
            if excess >= need:
                if n_candidates == capacity:
                    # Rare: the buffer is full; verify its candidates now (by bound) to free it.
                    n_early += 1
                    n_flushed += n_candidates
                    size = _verify(candidate_keys, candidate_docs, n_candidates, heap_scores,
                                   heap_docs, size, k, verified_docs, n_best, forward_offsets,
                                   forward_terms, forward_impacts, slots, slot_weights, stats)
                    n_candidates = 0
                    if size < 0:
                        corrupt = True
                        break
                candidate_docs[n_candidates] = base + offset
                candidate_keys[n_candidates] = credit + excess
                n_candidates += 1
        for offset in range(size_w, ACCUMULATOR_SIZE):
            if accumulator[offset] != 0:
                accumulator[offset] = 0
                corrupt = True
        if corrupt:
            break
    stats[4] = n_flushed + n_candidates
    stats[6] = n_early

    # 4. Verify by decreasing bound, so the k-th score rises as fast as it can.
    if not corrupt:
        size = _verify(candidate_keys, candidate_docs, n_candidates, heap_scores, heap_docs,
                       size, k, verified_docs, n_best, forward_offsets, forward_terms,
                       forward_impacts, slots, slot_weights, stats)
        corrupt = size < 0
    for i in range(n_terms):
        slots[query_terms[i]] = 0
    if corrupt:
        accumulator[:] = 0  # a pass may have stopped before clearing its window
        return kernels.CORRUPT
    stats[0] = scored
    stats[2] = theta0
    stats[3] = bound
    stats[5] = heap_scores[0]
    return _drain(heap_scores, heap_docs, size, out_docs, out_scores)


@numba.njit(cache=True, nogil=True)
def windowed_exhaustive_one(query_terms, query_weights, window_offsets, postings_docs,
                            postings_impacts, num_docs, window_bits, accumulator, k, out_docs,
                            out_scores):
    """Exhaustive top-k, one window of documents at a time (accumulator in L2 cache).

    Same result as :func:`kernels.search_one`; ``accumulator`` has at least 2^window_bits
    entries, zero on entry and on return. Returns the number of hits or ``kernels.CORRUPT``.
    """
    n_terms = len(query_terms)
    window = 1 << window_bits
    num_windows = max(1, (num_docs + window - 1) >> window_bits)
    heap_scores = np.empty(k, np.int64)
    heap_docs = np.empty(k, np.int64)
    size = 0
    for w in range(num_windows):
        base = w << window_bits
        size_w = min(window, num_docs - base)
        for i in range(n_terms):
            t = query_terms[i]
            weight = accumulator.dtype.type(query_weights[i])
            for p in range(window_offsets[t * num_windows + w],
                           window_offsets[t * num_windows + w + 1]):
                offset = np.int64(postings_docs[p]) - base
                if np.uint64(offset) >= np.uint64(size_w):
                    accumulator[:] = 0
                    return kernels.CORRUPT
                accumulator[offset] += weight * accumulator.dtype.type(postings_impacts[p])
        # Documents arrive in increasing number: a newcomer must beat the worst strictly.
        for offset in range(size_w):
            score = np.int64(accumulator[offset])
            accumulator[offset] = 0
            if score > 0 and (size < k or score > heap_scores[0]):
                size = _offer(heap_scores, heap_docs, size, k, score, base + offset)
    return _drain(heap_scores, heap_docs, size, out_docs, out_scores)


@numba.njit(cache=True, nogil=True)
def _search_one_any(mode, query_terms, query_weights, term_offsets, postings_docs,
                    postings_impacts, window_offsets, io_docs, io_impacts, segment_offsets,
                    segment_impacts, segment_ends, forward_offsets, forward_terms,
                    forward_impacts, window_bits, accumulator, slots, candidate_docs,
                    candidate_keys, k, estimate_postings, estimate_candidates, cut_ratio,
                    bound_weight, out_docs, out_scores, stats):
    """Mode 0: windowed exhaustive; 1: pruned (exhaustive for small queries, or when the
    estimate finds fewer than k documents)."""
    num_docs = len(forward_offsets) - 1
    total = 0
    if mode == 1:
        for i in range(len(query_terms)):
            t = query_terms[i]
            total += term_offsets[t + 1] - term_offsets[t]
    # Pruning pays off only when the query's postings far outnumber what its estimate scores
    # (a small collection, rare terms): below that the exhaustive kernel is cheaper, and exact.
    if mode == 1 and total > _PRUNE_MIN_FACTOR * estimate_postings:
        count = pruned_search_one(query_terms, query_weights, term_offsets, window_offsets,
                                  io_docs, io_impacts, segment_offsets, segment_impacts,
                                  segment_ends, forward_offsets, forward_terms,
                                  forward_impacts, window_bits, accumulator, slots,
                                  candidate_docs, candidate_keys, k, estimate_postings,
                                  estimate_candidates, cut_ratio, bound_weight, out_docs,
                                  out_scores, stats)
        if count != FALLBACK:
            return count
    return windowed_exhaustive_one(query_terms, query_weights, window_offsets, postings_docs,
                                   postings_impacts, num_docs, window_bits, accumulator, k,
                                   out_docs, out_scores)


@numba.njit(cache=True, nogil=True)
def search_range(mode, first, last, query_indptr, query_terms, query_weights, use_int64,
                 term_offsets, postings_docs, postings_impacts, window_offsets, io_docs,
                 io_impacts, segment_offsets, segment_impacts, segment_ends, forward_offsets,
                 forward_terms, forward_impacts, window_bits, accumulator32, accumulator64,
                 slots, candidate_docs, candidate_keys, k, estimate_postings,
                 estimate_candidates, cut_ratio, bound_weight, out_docs, out_scores, out_counts,
                 out_stats):
    """Queries [first, last) of a CSR batch with one thread's scratch arrays (GIL released)."""
    for q in range(first, last):
        start = query_indptr[q]
        end = query_indptr[q + 1]
        if use_int64[q]:
            out_counts[q] = _search_one_any(
                mode, query_terms[start:end], query_weights[start:end], term_offsets,
                postings_docs, postings_impacts, window_offsets, io_docs, io_impacts,
                segment_offsets, segment_impacts, segment_ends, forward_offsets,
                forward_terms, forward_impacts, window_bits, accumulator64, slots,
                candidate_docs, candidate_keys, k, estimate_postings, estimate_candidates,
                cut_ratio, bound_weight, out_docs[q], out_scores[q], out_stats[q])
        else:
            out_counts[q] = _search_one_any(
                mode, query_terms[start:end], query_weights[start:end], term_offsets,
                postings_docs, postings_impacts, window_offsets, io_docs, io_impacts,
                segment_offsets, segment_impacts, segment_ends, forward_offsets,
                forward_terms, forward_impacts, window_bits, accumulator32, slots,
                candidate_docs, candidate_keys, k, estimate_postings, estimate_candidates,
                cut_ratio, bound_weight, out_docs[q], out_scores[q], out_stats[q])


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
            raise ValueError(f"{index.directory}: this index has no search layout, so only "
                             "mode='exhaustive' works; rebuild it with search_layout=True "
                             "(the default) for pruned and approximate search")
        if isinstance(candidate_capacity, bool) or not isinstance(
                candidate_capacity, (int, np.integer)) or candidate_capacity < 1:
            raise ValueError(f"candidate_capacity must be an integer >= 1, got "
                             f"{candidate_capacity!r}")
        self.candidate_capacity = int(candidate_capacity)
        self.index = index
        # The index maps its layout when it opens (see ImpactIndex.__init__).
        self.layout = getattr(index, "_layout", None) or SearchLayout.open(index.directory,
                                                                            index.manifest)
        self._local = threading.local()
        # Worker threads live as long as the searcher, so their scratch arrays are allocated
        # once, not at every batch (a SciFact batch takes only ~40 ms).
        self._pool: ThreadPoolExecutor | None = None
        self._pool_size = 0
        self._pool_pid = 0
        self._pool_lock = threading.Lock()

    def _scratch(self) -> tuple[np.ndarray, ...]:
        """This thread's scratch: int32 and int64 accumulators, term slots, candidates."""
        local = self._local
        if not hasattr(local, "scratch"):
            capacity = self.candidate_capacity
            # Candidate documents double as the scratch of one window's touched documents.
            window = 1 << self.layout.window_bits
            local.scratch = (np.zeros(ACCUMULATOR_SIZE, np.int32),
                             np.zeros(ACCUMULATOR_SIZE, np.int64),
                             np.zeros(self.index.vocab_size, np.uint16),
                             np.empty(max(capacity, window), np.int64),
                             np.empty(capacity, np.int64))
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

    def _arrays(self):
        index, layout = self.index, self.layout
        return (index.term_offsets, index.postings_docs, index.postings_impacts,
                layout.window_offsets, layout.impact_order_docs, layout.impact_order_impacts,
                layout.segment_offsets, layout.segment_impacts, layout.segment_ends,
                layout.forward_offsets, layout.forward_terms, layout.forward_impacts,
                layout.window_bits)

    def _check(self, counts) -> None:
        if np.any(np.asarray(counts) == kernels.CORRUPT):
            raise IndexCorruptError(f"{self.index.directory}: a posting points outside the "
                                    "index; run verify()")

    def search(self, terms: np.ndarray, weights: np.ndarray, k: int,
               params: PrunedParams | None, use_int64: bool
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(docs, scores, stats)`` of one prepared query; ``params=None``: exhaustive."""
        accumulator32, accumulator64, slots, candidate_docs, candidate_keys = self._scratch()
        docs = np.empty(k, np.int64)
        scores = np.empty(k, np.int64)
        stats = np.zeros(len(STATS_FIELDS), np.int64)
        settings = (params or EXACT).as_tuple()
        count = _search_one_any(0 if params is None else 1, terms, weights, *self._arrays(),
                                accumulator64 if use_int64 else accumulator32, slots,
                                candidate_docs, candidate_keys, k, *settings, docs, scores,
                                stats)
        self._check([count])
        return docs[:count], scores[:count], stats

    def search_many(self, indptr: np.ndarray, terms: np.ndarray, weights: np.ndarray,
                    use_int64: np.ndarray, k: int, params: PrunedParams | None,
                    threads: int = 1
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(docs [Q, k], scores [Q, k], counts [Q], stats [Q, len(STATS_FIELDS)])`` on
        ``threads`` threads.

        Threads take small chunks of queries from a shared counter as they finish (dynamic
        balance: a costly query does not hold up a thread's whole share); the kernel releases
        the GIL, so the threads run in parallel.
        """
        n_queries = len(indptr) - 1
        out_docs = np.empty((n_queries, k), np.int64)
        out_scores = np.empty((n_queries, k), np.int64)
        out_counts = np.empty(n_queries, np.int64)
        out_stats = np.zeros((n_queries, len(STATS_FIELDS)), np.int64)
        mode = 0 if params is None else 1
        settings = (params or EXACT).as_tuple()
        arrays = self._arrays()
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
                search_range(mode, first, min(first + chunk, n_queries), indptr, terms, weights,
                             use_int64, *arrays, *scratch, k, *settings, out_docs, out_scores,
                             out_counts, out_stats)

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
