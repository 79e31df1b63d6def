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
"""

from __future__ import annotations

from sparse_ir.index.pruned import EXACT, PrunedParams

__all__ = ["DEFAULT_BOUND_WEIGHT", "DEFAULT_CUT_RATIO", "MODES", "search_params"]

MODES = ("exhaustive", "pruned", "approximate")
# Defaults of approximate mode, chosen on the 1M synthetic SPLADE benchmark (docs/performance.md):
# Recall@10 0.994 at 0.75× the exact mode's latency (β = 0.85 kept recall 1.0 but was no faster
# than exact search; β = 0.6 gave 0.979).
DEFAULT_CUT_RATIO = 0.75
DEFAULT_BOUND_WEIGHT = 0.7


def search_params(mode: str, cut_ratio: float | None = None,
                  bound_weight: float | None = None) -> PrunedParams:
    """Kernel settings of a search mode, validated (exact modes get the exact settings).

    Raises:
        ValueError: an unknown mode, or approximation knobs given to an exact mode, or values
            out of range (ρ > 0, 0 <= β <= 1).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
    if mode != "approximate":
        if cut_ratio is not None or bound_weight is not None:
            raise ValueError(f"cut_ratio and bound_weight apply to mode='approximate', not "
                             f"{mode!r} (which is exact)")
        return EXACT
    rho = DEFAULT_CUT_RATIO if cut_ratio is None else float(cut_ratio)
    alpha = DEFAULT_BOUND_WEIGHT if bound_weight is None else float(bound_weight)
    if not rho > 0:
        raise ValueError(f"cut_ratio must be > 0, got {cut_ratio!r}")
    if not 0 <= alpha <= 1:
        raise ValueError(f"bound_weight must be in [0, 1], got {bound_weight!r}")
    return PrunedParams(EXACT.estimate_postings, EXACT.estimate_candidates, rho, alpha)
