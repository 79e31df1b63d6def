"""The kernels' heaps (sparse_ir/index/heaps.py) against heapq and sorted."""

from __future__ import annotations

import heapq

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from sparse_ir.index import heaps

# Small score and document ranges make ties (equal scores, repeated pairs) common.
_PAIRS = st.lists(st.tuples(st.integers(-5, 5), st.integers(0, 20)), max_size=60)


def _k_best(pairs, k):
    """Our ranking order: score descending, then document ascending."""
    return sorted(pairs, key=lambda pair: (-pair[0], pair[1]))[:k]


def _offer_all(pairs, k):
    heap_scores = np.zeros(k, np.int64)
    heap_docs = np.zeros(k, np.int64)
    size = 0
    for score, doc in pairs:
        size = heaps.offer(heap_scores, heap_docs, size, k, score, doc)
    return heap_scores, heap_docs, size


@settings(max_examples=200, deadline=None)
@given(_PAIRS, st.integers(1, 12))
def test_offer_then_drain_gives_the_k_best_best_first(pairs, k):
    heap_scores, heap_docs, size = _offer_all(pairs, k)
    assert size == min(k, len(pairs))
    out_docs = np.full(k, -1, np.int64)
    out_scores = np.full(k, -1, np.int64)
    count = heaps.drain(heap_scores, heap_docs, size, out_docs, out_scores)
    assert count == size
    got = list(zip(out_scores[:count].tolist(), out_docs[:count].tolist()))
    assert got == _k_best(pairs, k)


@settings(max_examples=200, deadline=None)
@given(_PAIRS, st.integers(1, 12))
def test_the_root_is_the_worst_of_the_k_best(pairs, k):
    heap_scores, heap_docs, size = _offer_all(pairs, k)
    if size:
        assert (heap_scores[0], heap_docs[0]) == _k_best(pairs, k)[-1]
        # Every parent ranks at or below its children (a min-heap in our order).
        for child in range(1, size):
            parent = (child - 1) // 2
            assert not heaps.worse(
                heap_scores[child], heap_docs[child], heap_scores[parent], heap_docs[parent]
            )


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(-5, 5), st.integers(0, 20)), min_size=1, max_size=60))
def test_sift_up_and_down_order_as_heapq_does(pairs):
    """Pushing every pair with sift_up, then popping the root with sift_down, yields the pairs
    in heapq's order of (score, -doc): worst first."""
    n = len(pairs)
    heap_scores = np.empty(n, np.int64)
    heap_docs = np.empty(n, np.int64)
    for size, (score, doc) in enumerate(pairs):
        heap_scores[size] = score
        heap_docs[size] = doc
        heaps.sift_up(heap_scores, heap_docs, size)
    popped = []
    for size in range(n, 0, -1):
        popped.append((int(heap_scores[0]), int(heap_docs[0])))
        heap_scores[0] = heap_scores[size - 1]
        heap_docs[0] = heap_docs[size - 1]
        heaps.sift_down(heap_scores, heap_docs, size - 1, 0)
    reference = [(score, -doc) for score, doc in pairs]
    heapq.heapify(reference)
    expected = []
    while reference:
        score, negative_doc = heapq.heappop(reference)
        expected.append((score, -negative_doc))
    assert popped == expected


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-1000, 1000), max_size=80))
def test_max_heap_pops_keys_in_decreasing_order_with_their_values(keys):
    n = len(keys)
    key_array = np.array(keys, np.int64)
    values = np.arange(n, dtype=np.int64)  # each value remembers its key's position
    heaps.max_heapify(key_array, values, n)
    popped_keys, popped_values = [], []
    for remaining in range(n, 0, -1):
        popped_keys.append(int(key_array[0]))
        popped_values.append(int(values[0]))
        key_array[0] = key_array[remaining - 1]
        values[0] = values[remaining - 1]
        heaps.max_sift_down(key_array, values, remaining - 1, 0)
    assert popped_keys == sorted(keys, reverse=True)
    assert sorted(popped_values) == list(range(n))
    assert [keys[v] for v in popped_values] == popped_keys


def test_max_heap_takes_float_keys():
    keys = np.array([0.5, 3.25, -1.0, 3.25, 2.0])
    owners = np.arange(5, dtype=np.int64)
    heaps.max_heapify(keys, owners, 5)
    assert keys[0] == 3.25 and owners[0] in (1, 3)


def test_better_and_worse_rank_by_score_then_document():
    assert heaps.better(5, 9, 4, 0) and heaps.worse(4, 0, 5, 9)
    assert heaps.better(5, 1, 5, 2) and heaps.worse(5, 2, 5, 1)
    assert not heaps.better(5, 1, 5, 1) and not heaps.worse(5, 1, 5, 1)
