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
that give up the proof: cuts above θ₀ (ρ > 1) and stopping when the bound falls below θ/α.
"""

from __future__ import annotations

import threading

import numba
import numpy as np
from numba import prange

from sparse_ir.errors import IndexCorruptError
from sparse_ir.index import kernels

__all__ = ["PrunedSearcher", "PrunedParams", "EXACT", "pruned_search_one", "pruned_search_many"]


class PrunedParams:
    """Tuning of the pruned kernel (see the module docstring); defaults are exact.

    Attributes:
        estimate_postings: postings per term scored in the estimate step.
        estimate_candidates: documents scored exactly in the estimate step (≥ k is enforced).
        cut_ratio: ρ, the bound R on documents below all cuts as a fraction of θ₀. Below 1 the
            search is exact; above 1 documents that might score up to R are never looked at.
        bound_slack: α ≤ 1: stop verifying when bound·α < θ (1 = exact).
    """

    __slots__ = ("estimate_postings", "estimate_candidates", "cut_ratio", "bound_slack")

    def __init__(self, estimate_postings: int = 256, estimate_candidates: int = 64,
                 cut_ratio: float = 0.75, bound_slack: float = 1.0):
        self.estimate_postings = int(estimate_postings)
        self.estimate_candidates = int(estimate_candidates)
        self.cut_ratio = float(cut_ratio)
        self.bound_slack = float(bound_slack)

    @property
    def exact(self) -> bool:
        """True when these settings return exactly the exhaustive top-k."""
        return self.cut_ratio < 1.0 and self.bound_slack >= 1.0

    def as_tuple(self) -> tuple[int, int, float, float]:
        return (self.estimate_postings, self.estimate_candidates, self.cut_ratio,
                self.bound_slack)


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
    score = np.int64(0)
    for p in range(forward_offsets[doc], forward_offsets[doc + 1]):
        score += dense[forward_terms[p]] * np.int64(forward_impacts[p])
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
def pruned_search_one(query_terms, query_weights, term_offsets, postings_docs, postings_impacts,
                      io_docs, io_impacts, segment_offsets, segment_impacts, segment_ends,
                      forward_offsets, forward_terms, forward_impacts,
                      accumulator, dense, marks, candidates, k, estimate_postings,
                      estimate_candidates, cut_ratio, bound_slack, out_docs, out_scores, stats):
    """Top-k of one query by the four steps of the module docstring.

    Scratch arrays, all zero on entry and on return: ``accumulator`` [N] (int32 or int64),
    ``dense`` int64 [V], ``marks`` uint8 [N]; ``candidates`` int32 [N] needs no initial value.
    ``stats`` (int64 [6]) receives: postings scored, documents verified, θ₀, R, -, -.
    Returns the number of hits, or ``kernels.CORRUPT``.
    """
    n_terms = len(query_terms)
    num_docs = len(accumulator)
    limit = np.uint32(num_docs)
    scored = 0

    # 1. Estimate: a short prefix of every impact-ordered list, then exact scores of the best.
    touched = np.empty(n_terms * estimate_postings, np.int64)
    n_touched = 0
    corrupt = False
    for i in range(n_terms):
        t = query_terms[i]
        weight = accumulator.dtype.type(query_weights[i])
        start = term_offsets[t]
        end = min(term_offsets[t + 1], start + estimate_postings)
        for p in range(start, end):
            d = io_docs[p]
            if np.uint32(d) >= limit:
                corrupt = True
                break
            if accumulator[d] == 0:
                touched[n_touched] = d
                n_touched += 1
            accumulator[d] += weight * accumulator.dtype.type(io_impacts[p])
        scored += end - start
    want = max(estimate_candidates, k)
    best_scores = np.empty(want, np.int64)
    best_docs = np.empty(want, np.int64)
    n_best = 0
    for j in range(n_touched):
        d = touched[j]
        n_best = _offer(best_scores, best_docs, n_best, want, np.int64(accumulator[d]), d)
        accumulator[d] = 0
    if corrupt:
        return -1
    for i in range(n_terms):
        dense[query_terms[i]] = query_weights[i]
    heap_scores = np.empty(k, np.int64)
    heap_docs = np.empty(k, np.int64)
    size = 0
    for j in range(n_best):
        d = best_docs[j]
        size = _offer(heap_scores, heap_docs, size, k,
                      _exact_score(d, forward_offsets, forward_terms, forward_impacts, dense), d)
        marks[d] = 1
    verified = n_best
    if size < k:
        # Few matching documents: the exhaustive kernel is cheap and settles it.
        for j in range(n_best):
            marks[best_docs[j]] = 0
        for i in range(n_terms):
            dense[query_terms[i]] = 0
        ok = kernels._accumulate(query_terms, query_weights, term_offsets, postings_docs,
                                 postings_impacts, accumulator)
        count = kernels._select_top_k(accumulator, k, out_docs, out_scores) if ok else -1
        accumulator[:] = 0
        stats[0] = scored
        stats[1] = verified
        stats[2] = 0
        stats[3] = 0
        return count
    theta0 = heap_scores[0]

    # 2. Cut: R = Σ q_t·τ_t <= ρ·θ₀ (and < θ₀ when exact).
    target = np.int64(np.floor(theta0 * cut_ratio))
    if cut_ratio < 1.0 and target >= theta0:
        target = theta0 - 1
    cut_position = np.empty(n_terms, np.int64)
    cut_impact = np.empty(n_terms, np.int64)
    bound = _choose_cuts(query_terms, query_weights, term_offsets, segment_offsets,
                         segment_impacts, segment_ends, target, 1.25, cut_position, cut_impact)

    # 3. Bound: excess over the cut for the postings above it (contiguous prefixes).
    for i in range(n_terms):
        t = query_terms[i]
        weight = query_weights[i]
        cut = cut_impact[i]
        start = term_offsets[t]
        end = cut_position[i]
        for p in range(start, end):
            d = io_docs[p]
            if np.uint32(d) >= limit:
                corrupt = True
                break
            accumulator[d] += accumulator.dtype.type(weight * (np.int64(io_impacts[p]) - cut))
        scored += end - start
    if corrupt:
        accumulator[:] = 0
        for j in range(n_best):
            marks[best_docs[j]] = 0
        for i in range(n_terms):
            dense[query_terms[i]] = 0
        return -1

    # 4. Verify by decreasing bound R + excess; stop below the k-th score.
    need = theta0 - bound
    if bound_slack < 1.0:
        need = np.int64(np.ceil(theta0 / bound_slack)) - bound
    n_candidates = 0
    for d in range(num_docs):
        if accumulator[d] >= need:
            candidates[n_candidates] = d
            n_candidates += 1
    keys = np.empty(n_candidates, np.int64)
    docs = np.empty(n_candidates, np.int64)
    n_keys = 0
    for j in range(n_candidates):
        d = candidates[j]
        if marks[d] == 0:
            keys[n_keys] = bound + np.int64(accumulator[d])
            docs[n_keys] = d
            n_keys += 1
    accumulator[:] = 0
    for position in range(n_keys // 2 - 1, -1, -1):
        _max_sift_down(keys, docs, n_keys, position)
    remaining = n_keys
    while remaining > 0:
        upper = keys[0]
        d = docs[0]
        if upper * bound_slack < heap_scores[0]:
            break
        remaining -= 1
        keys[0] = keys[remaining]
        docs[0] = docs[remaining]
        _max_sift_down(keys, docs, remaining, 0)
        size = _offer(heap_scores, heap_docs, size, k,
                      _exact_score(d, forward_offsets, forward_terms, forward_impacts, dense), d)
        verified += 1

    for j in range(n_best):
        marks[best_docs[j]] = 0
    for i in range(n_terms):
        dense[query_terms[i]] = 0
    stats[0] = scored
    stats[1] = verified
    stats[2] = theta0
    stats[3] = bound
    stats[4] = n_candidates
    return _drain(heap_scores, heap_docs, size, out_docs, out_scores)


@numba.njit(cache=True, nogil=True, parallel=True)
def pruned_search_many(query_indptr, query_terms, query_weights, use_int64, term_offsets,
                       postings_docs, postings_impacts, io_docs, io_impacts, segment_offsets,
                       segment_impacts, segment_ends, forward_offsets, forward_terms,
                       forward_impacts, vocab_size, k, estimate_postings, estimate_candidates,
                       cut_ratio, bound_slack, out_docs, out_scores, out_counts, out_stats):
    """Pruned top-k of many queries (CSR), spread over numba's threads."""
    n_queries = len(query_indptr) - 1
    num_docs = len(forward_offsets) - 1
    n_threads = min(numba.get_num_threads(), max(n_queries, 1))
    for c in prange(n_threads):
        # Round-robin assignment balances cheap and costly queries across threads.
        dense = np.zeros(vocab_size, np.int64)
        marks = np.zeros(num_docs, np.uint8)
        candidates = np.empty(num_docs, np.int32)
        accumulator32 = np.zeros(num_docs, np.int32)
        accumulator64 = np.zeros(num_docs if use_int64.any() else 0, np.int64)
        for q in range(c, n_queries, n_threads):
            start = query_indptr[q]
            end = query_indptr[q + 1]
            if use_int64[q]:
                out_counts[q] = pruned_search_one(
                    query_terms[start:end], query_weights[start:end], term_offsets,
                    postings_docs, postings_impacts, io_docs, io_impacts, segment_offsets,
                    segment_impacts, segment_ends, forward_offsets, forward_terms,
                    forward_impacts, accumulator64, dense, marks, candidates, k,
                    estimate_postings, estimate_candidates, cut_ratio, bound_slack,
                    out_docs[q], out_scores[q], out_stats[q])
            else:
                out_counts[q] = pruned_search_one(
                    query_terms[start:end], query_weights[start:end], term_offsets,
                    postings_docs, postings_impacts, io_docs, io_impacts, segment_offsets,
                    segment_impacts, segment_ends, forward_offsets, forward_terms,
                    forward_impacts, accumulator32, dense, marks, candidates, k,
                    estimate_postings, estimate_candidates, cut_ratio, bound_slack,
                    out_docs[q], out_scores[q], out_stats[q])


class PrunedSearcher:
    """Runs the pruned kernel over one :class:`~sparse_ir.index.impact_index.ImpactIndex`.

    Holds the memory-mapped search layout and per-thread scratch arrays (an accumulator over
    the documents, a dense query vector, marks), so repeated searches allocate nothing large.
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
        if not hasattr(local, "dense"):
            n_docs = self.index.num_documents
            local.dense = np.zeros(self.index.vocab_size, np.int64)
            local.marks = np.zeros(n_docs, np.uint8)
            local.candidates = np.empty(n_docs, np.int32)
        name = "acc64" if use_int64 else "acc32"
        accumulator = getattr(local, name, None)
        if accumulator is None:
            accumulator = np.zeros(self.index.num_documents,
                                   np.int64 if use_int64 else np.int32)
            setattr(local, name, accumulator)
        return accumulator, local.dense, local.marks, local.candidates

    def search(self, terms: np.ndarray, weights: np.ndarray, k: int, params: PrunedParams,
               use_int64: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(docs, scores, stats)`` of one prepared query (see :func:`pruned_search_one`)."""
        index, layout = self.index, self.layout
        accumulator, dense, marks, candidates = self._scratch(use_int64)
        docs = np.empty(k, np.int64)
        scores = np.empty(k, np.int64)
        stats = np.zeros(6, np.int64)
        count = pruned_search_one(
            terms, weights, index.term_offsets, index.postings_docs, index.postings_impacts,
            layout.impact_order_docs, layout.impact_order_impacts, layout.segment_offsets,
            layout.segment_impacts, layout.segment_ends, layout.forward_offsets,
            layout.forward_terms, layout.forward_impacts, accumulator, dense, marks,
            candidates, k, *params.as_tuple(), docs, scores, stats)
        if count == kernels.CORRUPT:
            raise IndexCorruptError(f"{index.directory}: a posting points outside the index; "
                                    "run verify()")
        return docs[:count], scores[:count], stats

    def search_many(self, indptr: np.ndarray, terms: np.ndarray, weights: np.ndarray,
                    use_int64: np.ndarray, k: int, params: PrunedParams
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(docs [Q, k], scores [Q, k], counts [Q], stats [Q, 6])`` over numba's threads."""
        index, layout = self.index, self.layout
        n_queries = len(indptr) - 1
        out_docs = np.empty((n_queries, k), np.int64)
        out_scores = np.empty((n_queries, k), np.int64)
        out_counts = np.empty(n_queries, np.int64)
        out_stats = np.zeros((n_queries, 6), np.int64)
        pruned_search_many(
            indptr, terms, weights, use_int64, index.term_offsets, index.postings_docs,
            index.postings_impacts, layout.impact_order_docs, layout.impact_order_impacts,
            layout.segment_offsets, layout.segment_impacts, layout.segment_ends,
            layout.forward_offsets, layout.forward_terms, layout.forward_impacts,
            index.vocab_size, k, *params.as_tuple(), out_docs, out_scores, out_counts,
            out_stats)
        if np.any(out_counts == kernels.CORRUPT):
            raise IndexCorruptError(f"{index.directory}: a posting points outside the index; "
                                    "run verify()")
        return out_docs, out_scores, out_counts, out_stats
