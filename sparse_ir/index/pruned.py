"""Safe dynamic pruning: the exact top-k while scoring a small share of the postings.

Exhaustive scoring adds every posting of every query term (~10M per query on a 1M-document
SPLADE index). Most of them cannot matter: a document's score is a sum over ~50 query terms, and
the top-k scores sit far above the bulk. The pruned search proves that, using the search layout
of :mod:`.layout` (postings re-ordered by impact, their impact segments, a forward index):

1. **Estimate.** Score the first few postings of each term's impact-ordered list, take the
   documents with the best partial scores, score them exactly (forward index) and keep the
   best k. Their k-th exact score θ₀ is a lower bound on the final k-th score θ.
2. **Cut.** Choose a cut τ_t in each term's impact order so that the sum of what lies below the
   cuts, R = Σ_t q_t·τ_t, stays under ρ·θ₀ (ρ < 1), taking segments greedily by score range per
   posting. A document with no posting above any cut scores at most R < θ₀ ≤ θ: it cannot enter
   the top-k.
3. **Bound.** For the postings above the cuts (one contiguous prefix per term) accumulate the
   excess q_t·(impact − τ_t). A document's score is at most R + excess(d) (each term contributes
   at most q_t·τ_t unless it is above the cut, where it contributes exactly q_t·impact).
4. **Verify.** Pop documents by that bound, highest first, score each exactly with the forward
   index and keep the top-k (score descending, document number ascending); stop as soon as the
   next bound is below the current k-th score. Every document left out has a bound, hence a
   score, strictly below the k-th: the result is exactly the exhaustive top-k, ties included.

If fewer than k documents are found in step 1 the query matches few documents and the exhaustive
kernel answers it. Approximate search (:mod:`.approximate`) runs the same kernel with two knobs
that give up the proof: cuts that leave more below them (ρ ≥ 1), and crediting documents with
only a share β < 1 of R for what lies below the cuts.
"""

from __future__ import annotations

import threading

import numba
import numpy as np
from numba import prange

from sparse_ir.errors import IndexCorruptError
from sparse_ir.index import kernels

__all__ = [
    "EXACT",
    "PrunedParams",
    "PrunedSearcher",
    "pruned_search_one",
    "search_many_windowed",
    "windowed_exhaustive_one",
]


class PrunedParams:
    """Tuning of the pruned kernel (see the module docstring); defaults are exact.

    Attributes:
        estimate_postings: postings per term scored in the estimate step.
        estimate_candidates: documents scored exactly in the estimate step (≥ k is enforced).
        cut_ratio: ρ, the bound R on documents below all cuts as a fraction of θ₀. Below 1 the
            search is exact; above 1 documents that might score up to R are never looked at.
        bound_weight: β ≤ 1: the share of R credited to a document as what it may score below
            the cuts (1 = the proven bound, exact; smaller verifies fewer documents).
    """

    __slots__ = ("bound_weight", "cut_ratio", "estimate_candidates", "estimate_postings")

    def __init__(self, estimate_postings: int = 1024, estimate_candidates: int = 64,
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
        return (self.estimate_postings, self.estimate_candidates, self.cut_ratio,
                self.bound_weight)


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


# -- the kernel ----------------------------------------------------------------------------------

@numba.njit(cache=True, nogil=True)
def _exact_score(doc, forward_offsets, forward_terms, forward_impacts, dense):
    """The exact score of one document, or -1 when its forward entry points outside the
    arrays (a damaged large file that only verify() would see: refused, never read)."""
    start = forward_offsets[doc]
    end = forward_offsets[doc + 1]
    if start < 0 or end < start or end > len(forward_terms):
        return np.int64(-1)
    vocab_size = np.uint64(len(dense))
    score = np.int64(0)
    for p in range(start, end):
        term = forward_terms[p]
        if np.uint64(term) >= vocab_size:
            return np.int64(-1)
        score += dense[term] * np.int64(forward_impacts[p])
    return score


@numba.njit(cache=True, nogil=True)
def _next_cut(term_start, segment_first, segment_last, segment_impacts, segment_ends, segment,
              position, growth):
    """The next cut of one term: ``(segment index after it, its position, impact below it)``.

    The layer grows by about ``growth`` of its size (at least one segment), snapped to the end
    of a segment, so a query's cut choice takes a few steps per term whatever the list length.
    """
    size = position - term_start
    want = term_start + max(size + 1, np.int64(np.ceil(size * growth)))
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
                 segment_ends, target, growth, cut_position, cut_impact):
    """Per-term cuts with R = Σ q_t·τ_t <= target, taking the best score range per posting.

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
            j, position, below = _next_cut(term_offsets[t], segment_offsets[t],
                                           segment_offsets[t + 1], segment_impacts,
                                           segment_ends, segment[i], cut_position[i], growth)
            next_segment[i] = j
            next_position[i] = position
            next_impact[i] = below
            keys[size] = query_weights[i] * (cut_impact[i] - below) / (position -
                                                                       cut_position[i])
            owners[size] = i
            size += 1
    for position in range(size // 2 - 1, -1, -1):
        _max_sift_down(keys, owners, size, position)
    while bound > target and size > 0:
        i = owners[0]
        bound -= query_weights[i] * (cut_impact[i] - next_impact[i])
        cut_impact[i] = next_impact[i]
        cut_position[i] = next_position[i]
        segment[i] = next_segment[i]
        t = query_terms[i]
        if cut_impact[i] > 0:
            j, position, below = _next_cut(term_offsets[t], segment_offsets[t],
                                           segment_offsets[t + 1], segment_impacts,
                                           segment_ends, segment[i], cut_position[i], growth)
            next_segment[i] = j
            next_position[i] = position
            next_impact[i] = below
            keys[0] = query_weights[i] * (cut_impact[i] - below) / (position - cut_position[i])
        else:
            size -= 1
            keys[0] = keys[size]
            owners[0] = owners[size]
        _max_sift_down(keys, owners, size, 0)
    return bound


@numba.njit(cache=True, nogil=True)
def _grow(candidates, keys):
    """Twice the room for candidates (rare: only when many documents pass the bound)."""
    more_candidates = np.empty(2 * len(candidates), candidates.dtype)
    more_keys = np.empty(2 * len(keys), keys.dtype)
    more_candidates[:len(candidates)] = candidates
    more_keys[:len(keys)] = keys
    return more_candidates, more_keys


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


@numba.njit(cache=True, nogil=True)
def pruned_search_one(query_terms, query_weights, term_offsets, window_offsets, io_docs,
                      io_impacts, segment_offsets, segment_impacts, segment_ends,
                      forward_offsets, forward_terms, forward_impacts, window_bits,
                      accumulator, dense, marks, candidates, k, estimate_postings,
                      estimate_candidates, cut_ratio, bound_weight, out_docs, out_scores, stats):
    """Top-k of one query by the four steps of the module docstring, window by window.

    Scratch arrays, all zero on entry and on return: ``accumulator`` [2^window_bits] (int32 or
    int64), ``dense`` int64 [V], ``marks`` uint8 [N]; ``candidates`` int64
    [2^window_bits] needs no initial value. ``stats`` (int64 [6]) receives: postings scored,
    documents verified, θ₀, R, candidates. Returns the number of hits, or ``kernels.CORRUPT``
    (-1), or -2 when fewer than k documents were found by the estimate (the caller then runs
    the exhaustive kernel, cheap for such a rare query).
    """
    n_terms = len(query_terms)
    num_docs = len(forward_offsets) - 1
    window = 1 << window_bits
    num_windows = max(1, (num_docs + window - 1) >> window_bits)
    scored = 0

    # 1. Estimate: the first postings of each term in each window, then exact scores of the
    #    documents with the best partial scores.
    per_window = max(1, estimate_postings // num_windows)
    want = max(estimate_candidates, k)
    best_scores = np.empty(want, np.int64)
    best_docs = np.empty(want, np.int64)
    n_best = 0
    touched = np.empty(min(window, n_terms * per_window), np.int64)
    for w in range(num_windows):
        base = w << window_bits
        size_w = min(window, num_docs - base)
        n_touched = 0
        corrupt = False
        for i in range(n_terms):
            t = query_terms[i]
            weight = accumulator.dtype.type(query_weights[i])
            start = window_offsets[t * num_windows + w]
            end = min(window_offsets[t * num_windows + w + 1], start + per_window)
            for p in range(start, end):
                offset = np.int64(io_docs[p])
                if offset >= size_w:
                    corrupt = True
                    break
                if accumulator[offset] == 0:
                    touched[n_touched] = offset
                    n_touched += 1
                accumulator[offset] += weight * accumulator.dtype.type(io_impacts[p])
            scored += end - start
        for j in range(n_touched):
            offset = touched[j]
            n_best = _offer(best_scores, best_docs, n_best, want,
                            np.int64(accumulator[offset]), base + offset)
            accumulator[offset] = 0
        if corrupt:
            return -1
    for i in range(n_terms):
        dense[query_terms[i]] = query_weights[i]
    heap_scores = np.empty(k, np.int64)
    heap_docs = np.empty(k, np.int64)
    size = 0
    corrupt = False
    for j in range(n_best):
        d = best_docs[j]
        exact = _exact_score(d, forward_offsets, forward_terms, forward_impacts, dense)
        if exact < 0:
            corrupt = True
        size = _offer(heap_scores, heap_docs, size, k, exact, d)
        marks[d] = 1
    verified = n_best
    if corrupt:
        for j in range(n_best):
            marks[best_docs[j]] = 0
        for i in range(n_terms):
            dense[query_terms[i]] = 0
        return -1
    if size < k:
        for j in range(n_best):
            marks[best_docs[j]] = 0
        for i in range(n_terms):
            dense[query_terms[i]] = 0
        stats[0] = scored
        stats[1] = verified
        return -2
    theta0 = heap_scores[0]

    # 2. Cut: R = Σ q_t·τ_t <= ρ·θ₀ (and < θ₀ when exact).
    target = np.int64(np.floor(theta0 * cut_ratio))
    if cut_ratio < 1.0 and target >= theta0:
        target = theta0 - 1
    cut_position = np.empty(n_terms, np.int64)
    cut_impact = np.empty(n_terms, np.int64)
    bound = _choose_cuts(query_terms, query_weights, term_offsets, segment_offsets,
                         segment_impacts, segment_ends, target, 1.25, cut_position, cut_impact)

    # 3. Per window: excess over the cuts; a document becomes a candidate when its excess
    #    first reaches θ₀ - R (excesses only grow), so no pass over the window is needed.
    credit = bound
    if bound_weight < 1.0:
        credit = np.int64(np.floor(bound * bound_weight))
    need = max(theta0 - credit, np.int64(1))
    n_candidates = 0
    keys = np.empty(len(candidates), np.int64)
    corrupt = False
    for w in range(num_windows):
        base = w << window_bits
        size_w = min(window, num_docs - base)
        first_candidate = n_candidates
        while n_candidates + size_w > len(candidates):  # at most one new candidate per doc
            candidates, keys = _grow(candidates, keys)
        for i in range(n_terms):
            t = query_terms[i]
            weight = query_weights[i]
            cut = cut_impact[i]
            start = window_offsets[t * num_windows + w]
            end = _cut_in_window(io_impacts, start, window_offsets[t * num_windows + w + 1],
                                 cut)
            for p in range(start, end):
                offset = np.int64(io_docs[p])
                if offset >= size_w:
                    corrupt = True
                    break
                before = np.int64(accumulator[offset])
                after = before + weight * (np.int64(io_impacts[p]) - cut)
                accumulator[offset] = after
                if before < need <= after:
                    candidates[n_candidates] = offset
                    n_candidates += 1
            scored += end - start
        if corrupt:
            accumulator[:] = 0
            break
        for j in range(first_candidate, n_candidates):
            offset = candidates[j]
            keys[j] = credit + np.int64(accumulator[offset])
            candidates[j] = base + offset
        accumulator[:size_w] = 0

    # 4. Verify by decreasing bound over all windows, so the k-th score rises as fast as it
    #    can; stop when the next bound is below it.
    if not corrupt:
        for position in range(n_candidates // 2 - 1, -1, -1):
            _max_sift_down(keys, candidates, n_candidates, position)
        remaining = n_candidates
        while remaining > 0:
            upper = keys[0]
            d = candidates[0]
            if upper < heap_scores[0]:
                break
            remaining -= 1
            keys[0] = keys[remaining]
            candidates[0] = candidates[remaining]
            _max_sift_down(keys, candidates, remaining, 0)
            if marks[d] == 0:
                exact = _exact_score(d, forward_offsets, forward_terms, forward_impacts, dense)
                if exact < 0:
                    corrupt = True
                    break
                size = _offer(heap_scores, heap_docs, size, k, exact, d)
                verified += 1

    for j in range(n_best):
        marks[best_docs[j]] = 0
    for i in range(n_terms):
        dense[query_terms[i]] = 0
    if corrupt:
        return -1
    stats[0] = scored
    stats[1] = verified
    stats[2] = theta0
    stats[3] = bound
    stats[4] = n_candidates
    stats[5] = heap_scores[0]
    return _drain(heap_scores, heap_docs, size, out_docs, out_scores)


@numba.njit(cache=True, nogil=True)
def windowed_exhaustive_one(query_terms, query_weights, window_offsets, postings_docs,
                            postings_impacts, num_docs, window_bits, accumulator, k, out_docs,
                            out_scores):
    """Exhaustive top-k, one window of documents at a time (accumulator in L2 cache).

    Same result as :func:`kernels.search_one`; ``accumulator`` has 2^window_bits entries,
    zero on entry and on return. Returns the number of hits or ``kernels.CORRUPT``.
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
                    return -1
                accumulator[offset] += weight * accumulator.dtype.type(postings_impacts[p])
        # Documents arrive in increasing number: a newcomer must beat the worst strictly.
        for offset in range(size_w):
            score = np.int64(accumulator[offset])
            if score > 0 and (size < k or score > heap_scores[0]):
                size = _offer(heap_scores, heap_docs, size, k, score, base + offset)
        accumulator[:size_w] = 0
    return _drain(heap_scores, heap_docs, size, out_docs, out_scores)


@numba.njit(cache=True, nogil=True)
def _search_one_any(mode, query_terms, query_weights, term_offsets, postings_docs,
                    postings_impacts, window_offsets, io_docs, io_impacts, segment_offsets,
                    segment_impacts, segment_ends, forward_offsets, forward_terms,
                    forward_impacts, window_bits, accumulator, dense, marks, candidates, k,
                    estimate_postings, estimate_candidates, cut_ratio, bound_weight, out_docs,
                    out_scores, stats):
    """Mode 0: windowed exhaustive; 1: pruned (falls back to exhaustive when it must)."""
    num_docs = len(forward_offsets) - 1
    if mode == 1:
        count = pruned_search_one(query_terms, query_weights, term_offsets, window_offsets,
                                  io_docs, io_impacts, segment_offsets, segment_impacts,
                                  segment_ends, forward_offsets, forward_terms,
                                  forward_impacts, window_bits, accumulator, dense, marks,
                                  candidates, k, estimate_postings, estimate_candidates,
                                  cut_ratio, bound_weight, out_docs, out_scores, stats)
        if count != -2:
            return count
    return windowed_exhaustive_one(query_terms, query_weights, window_offsets, postings_docs,
                                   postings_impacts, num_docs, window_bits, accumulator, k,
                                   out_docs, out_scores)


@numba.njit(cache=True, nogil=True, parallel=True)
def search_many_windowed(mode, query_indptr, query_terms, query_weights, use_int64,
                         term_offsets, postings_docs, postings_impacts, window_offsets, io_docs,
                         io_impacts, segment_offsets, segment_impacts, segment_ends,
                         forward_offsets, forward_terms, forward_impacts, window_bits,
                         vocab_size, k, estimate_postings, estimate_candidates, cut_ratio,
                         bound_weight, n_threads, out_docs, out_scores, out_counts, out_stats):
    """Many queries (CSR) over ``n_threads`` numba threads, each with its own scratch."""
    n_queries = len(query_indptr) - 1
    num_docs = len(forward_offsets) - 1
    window = 1 << window_bits
    n_threads = max(1, min(n_threads, n_queries))
    for c in prange(n_threads):
        # Round-robin assignment balances cheap and costly queries across threads.
        dense = np.zeros(vocab_size, np.int64)
        marks = np.zeros(num_docs, np.uint8)
        candidates = np.empty(window, np.int64)
        accumulator32 = np.zeros(window, np.int32)
        accumulator64 = np.zeros(window, np.int64)
        for q in range(c, n_queries, n_threads):
            start = query_indptr[q]
            end = query_indptr[q + 1]
            if use_int64[q]:
                out_counts[q] = _search_one_any(
                    mode, query_terms[start:end], query_weights[start:end], term_offsets,
                    postings_docs, postings_impacts, window_offsets, io_docs, io_impacts,
                    segment_offsets, segment_impacts, segment_ends, forward_offsets,
                    forward_terms, forward_impacts, window_bits, accumulator64, dense, marks,
                    candidates, k, estimate_postings, estimate_candidates, cut_ratio,
                    bound_weight, out_docs[q], out_scores[q], out_stats[q])
            else:
                out_counts[q] = _search_one_any(
                    mode, query_terms[start:end], query_weights[start:end], term_offsets,
                    postings_docs, postings_impacts, window_offsets, io_docs, io_impacts,
                    segment_offsets, segment_impacts, segment_ends, forward_offsets,
                    forward_terms, forward_impacts, window_bits, accumulator32, dense, marks,
                    candidates, k, estimate_postings, estimate_candidates, cut_ratio,
                    bound_weight, out_docs[q], out_scores[q], out_stats[q])


class PrunedSearcher:
    """Runs the windowed kernels over one :class:`~sparse_ir.index.impact_index.ImpactIndex`.

    Holds the memory-mapped search layout and per-thread scratch arrays (a window-sized
    accumulator, a dense query vector, marks), so repeated searches allocate nothing large.
    ``mode`` is ``"exhaustive"`` (windowed exhaustive kernel) or a :class:`PrunedParams`.
    """

    def __init__(self, index):
        from sparse_ir.index.layout import SearchLayout

        if "search_layout" not in index.manifest:
            raise ValueError(f"{index.directory}: this index has no search layout, so only "
                             "mode='exhaustive' works; rebuild it with search_layout=True "
                             "(the default) for pruned and approximate search")
        self.index = index
        self.layout = SearchLayout.open(index.directory, index.manifest)
        self._local = threading.local()

    def _scratch(self, use_int64: bool):
        local = self._local
        window = 1 << self.layout.window_bits
        if not hasattr(local, "dense"):
            local.dense = np.zeros(self.index.vocab_size, np.int64)
            local.marks = np.zeros(self.index.num_documents, np.uint8)
            local.candidates = np.empty(window, np.int64)
        name = "acc64" if use_int64 else "acc32"
        accumulator = getattr(local, name, None)
        if accumulator is None:
            accumulator = np.zeros(window, np.int64 if use_int64 else np.int32)
            setattr(local, name, accumulator)
        return accumulator, local.dense, local.marks, local.candidates

    def _arrays(self):
        index, layout = self.index, self.layout
        return (index.term_offsets, index.postings_docs, index.postings_impacts,
                layout.window_offsets, layout.impact_order_docs, layout.impact_order_impacts,
                layout.segment_offsets, layout.segment_impacts, layout.segment_ends,
                layout.forward_offsets, layout.forward_terms, layout.forward_impacts,
                layout.window_bits)

    def search(self, terms: np.ndarray, weights: np.ndarray, k: int,
               params: PrunedParams | None, use_int64: bool
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(docs, scores, stats)`` of one prepared query; ``params=None``: exhaustive."""
        accumulator, dense, marks, candidates = self._scratch(use_int64)
        docs = np.empty(k, np.int64)
        scores = np.empty(k, np.int64)
        stats = np.zeros(6, np.int64)
        settings = (params or EXACT).as_tuple()
        count = _search_one_any(0 if params is None else 1, terms, weights, *self._arrays(),
                                accumulator, dense, marks, candidates, k, *settings, docs,
                                scores, stats)
        if count == kernels.CORRUPT:
            raise IndexCorruptError(f"{self.index.directory}: a posting points outside the "
                                    "index; run verify()")
        return docs[:count], scores[:count], stats

    def search_many(self, indptr: np.ndarray, terms: np.ndarray, weights: np.ndarray,
                    use_int64: np.ndarray, k: int, params: PrunedParams | None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(docs [Q, k], scores [Q, k], counts [Q], stats [Q, 6])`` over numba's threads."""
        n_queries = len(indptr) - 1
        out_docs = np.empty((n_queries, k), np.int64)
        out_scores = np.empty((n_queries, k), np.int64)
        out_counts = np.empty(n_queries, np.int64)
        out_stats = np.zeros((n_queries, 6), np.int64)
        settings = (params or EXACT).as_tuple()
        search_many_windowed(0 if params is None else 1, indptr, terms, weights, use_int64,
                             *self._arrays(), self.index.vocab_size, k, *settings,
                             numba.get_num_threads(), out_docs, out_scores, out_counts,
                             out_stats)
        if np.any(out_counts == kernels.CORRUPT):
            raise IndexCorruptError(f"{self.index.directory}: a posting points outside the "
                                    "index; run verify()")
        return out_docs, out_scores, out_counts, out_stats
