"""Binary heaps on parallel arrays, shared by every search kernel (numba, no allocation).

Two kinds:

* **k-best heap**: ``heap_scores``/``heap_docs`` [:size] keep the best ``k`` (score, document)
  pairs seen so far, the *worst* at the root, so a newcomer is compared with one entry. "Best"
  is our ranking order: score descending, then document number ascending. :func:`offer` adds a
  pair, :func:`drain` empties the heap into the outputs best first.
* **max-heap by key**: ``keys``/``values`` [:size], the largest key at the root (ties in any
  order); :func:`max_heapify` builds it, :func:`max_sift_down` restores it after the root
  changed. The pruned kernel orders its candidates by bound and its cut steps by gain with it.

Checked against :mod:`heapq` and :func:`sorted` in ``tests/test_heaps.py``.
"""

from __future__ import annotations

import numba

__all__ = [
    "better",
    "drain",
    "max_heapify",
    "max_sift_down",
    "offer",
    "sift_down",
    "sift_up",
    "worse",
]


@numba.njit(cache=True, nogil=True, inline="always")
def worse(score_a, doc_a, score_b, doc_b):
    """True when (score_a, doc_a) ranks below (score_b, doc_b)."""
    return score_a < score_b or (score_a == score_b and doc_a > doc_b)


@numba.njit(cache=True, nogil=True, inline="always")
def better(score_a, doc_a, score_b, doc_b):
    """True when (score_a, doc_a) ranks above (score_b, doc_b)."""
    return score_a > score_b or (score_a == score_b and doc_a < doc_b)


@numba.njit(cache=True, nogil=True)
def sift_down(heap_scores, heap_docs, size, position):
    """Move the entry at ``position`` down until no child ranks below it (k-best heap)."""
    while True:
        left = 2 * position + 1
        if left >= size:
            return
        child = left
        right = left + 1
        if right < size and worse(
            heap_scores[right], heap_docs[right], heap_scores[left], heap_docs[left]
        ):
            child = right
        if worse(heap_scores[child], heap_docs[child], heap_scores[position], heap_docs[position]):
            heap_scores[child], heap_scores[position] = heap_scores[position], heap_scores[child]
            heap_docs[child], heap_docs[position] = heap_docs[position], heap_docs[child]
            position = child
        else:
            return


@numba.njit(cache=True, nogil=True)
def sift_up(heap_scores, heap_docs, position):
    """Move the entry at ``position`` up until its parent does not rank below it."""
    while position > 0:
        parent = (position - 1) // 2
        if worse(
            heap_scores[position], heap_docs[position], heap_scores[parent], heap_docs[parent]
        ):
            heap_scores[parent], heap_scores[position] = heap_scores[position], heap_scores[parent]
            heap_docs[parent], heap_docs[position] = heap_docs[position], heap_docs[parent]
            position = parent
        else:
            return


@numba.njit(cache=True, nogil=True)
def offer(heap_scores, heap_docs, size, k, score, doc):
    """Offer (score, doc) to a k-best heap of ``size`` entries; return the new size."""
    if size < k:
        heap_scores[size] = score
        heap_docs[size] = doc
        sift_up(heap_scores, heap_docs, size)
        return size + 1
    if better(score, doc, heap_scores[0], heap_docs[0]):
        heap_scores[0] = score
        heap_docs[0] = doc
        sift_down(heap_scores, heap_docs, size, 0)
    return size


@numba.njit(cache=True, nogil=True)
def drain(heap_scores, heap_docs, size, out_docs, out_scores):
    """Empty a k-best heap into the outputs, best first; return the count.

    Popping the worst repeatedly fills the outputs from the back.
    """
    count = size
    while size > 0:
        size -= 1
        out_docs[size] = heap_docs[0]
        out_scores[size] = heap_scores[0]
        heap_scores[0] = heap_scores[size]
        heap_docs[0] = heap_docs[size]
        sift_down(heap_scores, heap_docs, size, 0)
    return count


@numba.njit(cache=True, nogil=True)
def max_sift_down(keys, values, size, position):
    """Move the entry at ``position`` down until no child has a larger key (max-heap)."""
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


@numba.njit(cache=True, nogil=True)
def max_heapify(keys, values, size):
    """Arrange ``keys``/``values`` [:size] as a max-heap by key (in place, O(size))."""
    for position in range(size // 2 - 1, -1, -1):
        max_sift_down(keys, values, size, position)
