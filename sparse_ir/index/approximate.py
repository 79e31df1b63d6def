"""Approximate search: the pruned kernel with its proof relaxed, for speed at a measured recall.

The pruned search (:mod:`.pruned`) keeps every document whose score could reach the k-th. Two
knobs give that up where it costs most:

* ``cut_ratio`` (ρ): the per-term cuts are lowered only until documents below all of them score
  at most ρ·θ₀ (θ₀: the k-th exact score found by the estimate step). Exact search needs ρ < 1;
  with ρ > 1 fewer postings are scored, and a document that reaches the top-k only through
  postings below the cuts is missed. This is the main knob.
* ``bound_weight`` (β ≤ 1): a document's bound is β·R + its excess above the cuts. The proof
  needs β = 1 (R is what a document could score below the cuts if it held every query term at
  the cut); real documents hold few of the query terms, so a smaller β verifies far fewer
  documents at little loss.

Both are measured on real and synthetic SPLADE vectors in ``docs/performance.md`` (Recall@10
against exact search, and latency).

The knobs are the fields of :class:`~sparse_ir.index.modes.Approximate`, the mode value
(``index.search(query, k, mode=Approximate(cut_ratio=1.2, bound_weight=0.6))``).
"""

from __future__ import annotations

from sparse_ir.index.modes import DEFAULT_BOUND_WEIGHT, DEFAULT_CUT_RATIO, Approximate

__all__ = ["DEFAULT_BOUND_WEIGHT", "DEFAULT_CUT_RATIO", "Approximate"]
