"""Inverted indexes on disk: the impact-scored sparse index (and the dense index)."""

from sparse_ir.index.impact_index import ImpactIndex, TermContribution

__all__ = ["ImpactIndex", "TermContribution"]
