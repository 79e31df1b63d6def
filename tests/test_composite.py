"""The exact merge of per-part top-k lists equals searching all parts as one collection."""

import numpy as np
import pytest

from sparse_ir.index.composite import merge_topk, part_offsets
from sparse_ir.index.impact_index import TopK


def _topk(scores: np.ndarray, k: int) -> TopK:
    order = np.lexsort((np.arange(len(scores)), -scores))[:k]
    return TopK(order.astype(np.int64), scores[order].astype(np.int64))


@pytest.mark.parametrize("seed", range(50))
def test_merge_equals_one_collection(seed):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(0, 12, size=rng.integers(1, 6))
    scores = rng.integers(0, 5, size=int(sizes.sum()))  # many ties on purpose
    k = int(rng.integers(1, 15))
    offsets = part_offsets(sizes)
    parts = [_topk(scores[offsets[p] : offsets[p + 1]], k) for p in range(len(sizes))]
    merged = merge_topk(parts, offsets[:-1], k)
    expected = _topk(scores, k)
    assert merged.docnos.tolist() == expected.docnos.tolist()
    assert merged.scores.tolist() == expected.scores.tolist()


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="k must be"):
        merge_topk([], [], 0)
    with pytest.raises(ValueError, match="offsets"):
        merge_topk([TopK(np.array([0]), np.array([1]))], [], 1)
    with pytest.raises(ValueError, match="sizes"):
        part_offsets([1, -1])
    assert merge_topk([], [], 3).docnos.size == 0
