"""Several sub-indexes searched as one: the exact merge of their top-k lists.

A *composite* index is a list of parts, each an index of its own with document numbers
``0 .. n_part - 1``. Segments of a live index and shards of a scaled-out index are both
composites: each part is searched by today's kernels and the per-part top-k lists are merged
here, so the two share one tie-break (score descending, then global document number ascending,
or a *tie key* given per document: a live index's ordinals) and one definition of "exact".

Global document numbers are the parts laid end to end: part ``p``'s document ``d`` is
``offsets[p] + d`` with ``offsets = part_offsets(sizes)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sparse_ir.index.impact_index import TopK

__all__ = ["merge_topk", "part_offsets"]


def part_offsets(sizes: Sequence[int]) -> np.ndarray:
    """Where each part's document numbers start in the global numbering.

    Example:
        >>> part_offsets([3, 0, 5]).tolist()
        [0, 3, 3, 8]
    """
    sizes_array = np.asarray(sizes, dtype=np.int64)
    if np.any(sizes_array < 0):
        raise ValueError(f"part sizes must be >= 0, got {sizes_array.tolist()}")
    return np.concatenate([[0], np.cumsum(sizes_array)]).astype(np.int64)


def merge_topk(
    parts: Sequence[TopK],
    offsets: Sequence[int],
    k: int,
    tie_keys: Sequence[np.ndarray] | None = None,
) -> TopK:
    """Merge per-part top-k lists into the global top-k, exactly.

    Args:
        parts: one :class:`~sparse_ir.index.impact_index.TopK` per part, with part-local
            document numbers (any order within a part).
        offsets: the global number of each part's document 0 (``part_offsets(sizes)[:-1]``).
        k: result depth (>= 1).
        tie_keys: None, or per part the tie key of each document it returned (aligned with
            its ``docnos``; distinct over all parts): equal scores are then ordered by key
            ascending instead of by global number. Exact when each part's own top-k broke
            its ties in the same key order (a live segment's documents are in ordinal order).

    Returns:
        ``TopK`` with global document numbers: scores descending, equal scores by global
        document number ascending — the order every search in sparse_ir uses — or by tie
        key. If each part returned its own exact top-k, the result equals the top-k of
        searching all parts' documents as one collection.

    Example:
        >>> a = TopK(np.array([1, 0]), np.array([9, 5]))
        >>> b = TopK(np.array([0]), np.array([9]))
        >>> top = merge_topk([a, b], offsets=[0, 2], k=2)
        >>> top.docnos.tolist(), top.scores.tolist()
        ([1, 2], [9, 9])
        >>> keyed = merge_topk([a, b], offsets=[0, 2], k=2, tie_keys=[[5, 1], [3]])
        >>> keyed.docnos.tolist()
        [2, 1]
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if len(parts) != len(offsets):
        raise ValueError(f"{len(parts)} parts but {len(offsets)} offsets")
    if tie_keys is not None and len(tie_keys) != len(parts):
        raise ValueError(f"{len(parts)} parts but {len(tie_keys)} tie key arrays")
    if not parts:
        return TopK(np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64))
    shifted = [np.asarray(part.docnos, np.int64) + int(at) for part, at in zip(parts, offsets)]
    docnos = np.concatenate(shifted)
    # Integer scores (impact indexes) merge as int64; float scores (dense) keep their type.
    scores = np.concatenate([_scores(part.scores) for part in parts])
    if tie_keys is None:
        keys = docnos
    else:
        for part, key in zip(parts, tie_keys):
            if len(key) != len(part.docnos):
                raise ValueError(f"{len(key)} tie keys for {len(part.docnos)} documents")
        keys = np.concatenate([np.asarray(key, np.int64) for key in tie_keys])
    order = np.lexsort((keys, -scores))[:k]
    return TopK(docnos[order], scores[order])


def _scores(values) -> np.ndarray:
    array = np.asarray(values)
    return array.astype(np.int64) if array.dtype.kind in "iub" else array
