"""Numba kernels for exact top-k impact search (checked against :mod:`.reference`).

Term-at-a-time: each query term's postings add ``q_t × impact`` to a per-document accumulator,
then one pass over the accumulator keeps the k best in a heap. Documents are visited in
increasing number, so a newcomer replaces the heap's worst only with a strictly higher score,
which yields our tie-break (score descending, then document number ascending) for free.

The accumulator is int32 when the query's largest possible score fits, int64 otherwise, so
scores are exact whatever the impacts. Every posting's document number is bounds-checked: a
corrupt index yields an error, never a write outside the accumulator.

Two arguments restrict which documents may enter the top-k (every impact kernel takes them, the
pruned ones of :mod:`.pruned` too):

* ``allowed``: uint8 [num_documents], 0 = the document is never returned; an empty array
  (:data:`ALL_DOCUMENTS`) allows every document. Callers check its length.
* ``floor``: only documents scoring strictly above it are returned (0: every matching
  document). Parts of a composite index pass the running k-th score of the parts searched
  before, so a part returns only what can still enter the merged top-k.

Both are tested only for documents whose score already beats the heap, so they cost nothing
when absent.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

from sparse_ir.index import heaps

__all__ = ["ALL_DOCUMENTS", "CORRUPT", "admits", "search_many", "search_one"]

CORRUPT = -1
#: The ``allowed`` of a search without a filter (an empty mask admits everything). Writable,
#: like every mask handed to the kernels: numba compiles read-only arrays separately.
ALL_DOCUMENTS = np.zeros(0, np.uint8)


@numba.njit(cache=True, nogil=True, inline="always")
def admits(allowed, doc):
    """True when ``doc`` may be returned: ``allowed`` is empty (no filter) or marks it."""
    return len(allowed) == 0 or allowed[doc] != 0


@numba.njit(cache=True, nogil=True)
def _accumulate(
    query_terms, query_weights, term_offsets, postings_docs, postings_impacts, accumulator
):
    """Add every query term's contributions; False when a posting points outside the index."""
    limit = np.uint32(len(accumulator))
    for i in range(len(query_terms)):
        term = query_terms[i]
        weight = accumulator.dtype.type(query_weights[i])
        for p in range(term_offsets[term], term_offsets[term + 1]):
            doc = postings_docs[p]
            if np.uint32(doc) >= limit:
                return False
            accumulator[doc] += weight * accumulator.dtype.type(postings_impacts[p])
    return True


@numba.njit(cache=True, nogil=True)
def _select_top_k(accumulator, k, allowed, floor, out_docs, out_scores):
    """Write the k best allowed documents scoring above ``floor`` (>= 0) into the outputs,
    best first; return how many."""
    heap_scores = np.empty(k, np.int64)
    heap_docs = np.empty(k, np.int64)
    size = 0
    for doc in range(len(accumulator)):
        score = np.int64(accumulator[doc])
        # Documents arrive in increasing number: a newcomer must beat the worst strictly.
        if score > floor and (size < k or score > heap_scores[0]) and admits(allowed, doc):
            size = heaps.offer(heap_scores, heap_docs, size, k, score, doc)
    return heaps.drain(heap_scores, heap_docs, size, out_docs, out_scores)


@numba.njit(cache=True, nogil=True)
def search_one(
    query_terms,
    query_weights,
    term_offsets,
    postings_docs,
    postings_impacts,
    accumulator,
    k,
    allowed,
    floor,
    out_docs,
    out_scores,
):
    """Exact top-k of one query. ``accumulator`` must be zero; it is zero again on return.

    ``allowed``/``floor``: see the module docstring (``ALL_DOCUMENTS``, 0: no restriction).
    Returns the number of hits written, or ``CORRUPT`` (-1) when a posting is out of range.
    """
    ok = _accumulate(
        query_terms, query_weights, term_offsets, postings_docs, postings_impacts, accumulator
    )
    floor = max(np.int64(floor), np.int64(0))
    count = _select_top_k(accumulator, k, allowed, floor, out_docs, out_scores) if ok else -1
    accumulator[:] = 0
    return count


@numba.njit(cache=True, nogil=True, parallel=True)
def search_many(
    query_indptr,
    query_terms,
    query_weights,
    term_offsets,
    postings_docs,
    postings_impacts,
    num_documents,
    k,
    allowed,
    floor,
    use_int64,
    out_docs,
    out_scores,
    out_counts,
):
    """Exact top-k of many queries (CSR), spread over numba's threads (one ``allowed`` and
    ``floor`` for all)."""
    for q in prange(len(query_indptr) - 1):
        start = query_indptr[q]
        end = query_indptr[q + 1]
        if use_int64[q]:
            accumulator64 = np.zeros(num_documents, np.int64)
            out_counts[q] = search_one(
                query_terms[start:end],
                query_weights[start:end],
                term_offsets,
                postings_docs,
                postings_impacts,
                accumulator64,
                k,
                allowed,
                floor,
                out_docs[q],
                out_scores[q],
            )
        else:
            accumulator32 = np.zeros(num_documents, np.int32)
            out_counts[q] = search_one(
                query_terms[start:end],
                query_weights[start:end],
                term_offsets,
                postings_docs,
                postings_impacts,
                accumulator32,
                k,
                allowed,
                floor,
                out_docs[q],
                out_scores[q],
            )
