"""Which segments of a live index to merge: a tiered policy, and the groups of a forced merge.

Segments are grouped into *tiers* by size (tier ``t`` holds segments of ``floor × f^t`` up to
``floor × f^(t+1)`` live documents, ``f = segments_per_tier``). When ``segments_per_tier``
neighbouring segments share a tier, they are merged into one segment of the next tier, so an
index of ``n`` documents holds O(f · log_f n) segments and every document is rewritten
O(log_f n) times. A segment whose deleted share exceeds ``deletes_allowed`` is rewritten alone
(the merge drops deleted documents). Merges take neighbouring segments only, so the merged
documents keep their relative order: the document numbers of the result are those of a build
of the live documents in the same order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

__all__ = ["SegmentSize", "TieredMergePolicy", "forced_merge_groups"]


class SegmentSize(NamedTuple):
    """What the policy knows of a segment."""

    documents: int
    deleted: int

    @property
    def live(self) -> int:
        return self.documents - self.deleted


@dataclass(frozen=True)
class TieredMergePolicy:
    """Merge similar-sized neighbouring segments, tier by tier.

    Args:
        segments_per_tier: how many neighbouring segments of one tier trigger a merge (>= 2).
        floor_documents: segments smaller than this count as this size (tiny segments share
            the lowest tier).
        deletes_allowed: a segment with a larger share of deleted documents is rewritten.

    Example:
        >>> policy = TieredMergePolicy(segments_per_tier=3, floor_documents=10)
        >>> policy.find_merges([SegmentSize(100, 0), SegmentSize(5, 0), SegmentSize(4, 0),
        ...                     SegmentSize(6, 0)])
        [(1, 2, 3)]
        >>> policy.find_merges([SegmentSize(100, 60)])
        [(0,)]
    """

    segments_per_tier: int = 10
    floor_documents: int = 1000
    deletes_allowed: float = 0.33

    def __post_init__(self):
        if isinstance(self.segments_per_tier, bool) or self.segments_per_tier < 2:
            raise ValueError(f"segments_per_tier must be >= 2, got {self.segments_per_tier!r}")
        if self.floor_documents < 1:
            raise ValueError(f"floor_documents must be >= 1, got {self.floor_documents!r}")
        if not 0.0 <= self.deletes_allowed <= 1.0:
            raise ValueError(f"deletes_allowed must be in [0, 1], got {self.deletes_allowed!r}")

    def tier(self, segment: SegmentSize) -> int:
        """The tier of a segment (0 for the smallest)."""
        size = max(segment.live, self.floor_documents) / self.floor_documents
        return int(math.floor(math.log(size, self.segments_per_tier) + 1e-9))

    def find_merges(self, segments: Sequence[SegmentSize]) -> list[tuple[int, ...]]:
        """Positions of the segments to merge, one tuple of neighbours per merge."""
        merges: list[tuple[int, ...]] = []
        run: list[int] = []
        for position, segment in enumerate(segments):
            if run and self.tier(segments[run[0]]) != self.tier(segment):
                run = []
            run.append(position)
            if len(run) == self.segments_per_tier:
                merges.append(tuple(run))
                run = []
        taken = {p for merge in merges for p in merge}
        for position, segment in enumerate(segments):
            share = segment.deleted / segment.documents if segment.documents else 0.0
            if position not in taken and share > self.deletes_allowed:
                merges.append((position,))
        return sorted(merges)


def forced_merge_groups(
    segments: Sequence[SegmentSize], max_segments: int
) -> list[tuple[int, ...]]:
    """Neighbouring groups that leave at most ``max_segments`` segments, balanced by live
    documents; a group of one is listed only when it has deleted documents to drop.

    Example:
        >>> forced_merge_groups([SegmentSize(5, 0), SegmentSize(5, 1), SegmentSize(10, 0)], 2)
        [(0, 1)]
    """
    if isinstance(max_segments, bool) or not isinstance(max_segments, int) or max_segments < 1:
        raise ValueError(f"max_segments must be a positive integer, got {max_segments!r}")
    count = len(segments)
    groups: list[list[int]] = [[p] for p in range(count)]
    while len(groups) > max_segments:
        sizes = [sum(segments[p].live for p in g) for g in groups]
        pair = min(range(len(groups) - 1), key=lambda i: (sizes[i] + sizes[i + 1], i))
        groups[pair : pair + 2] = [groups[pair] + groups[pair + 1]]
    return [tuple(g) for g in groups if len(g) > 1 or (g and segments[g[0]].deleted > 0)]
