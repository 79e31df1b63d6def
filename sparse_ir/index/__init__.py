"""Indexes on disk: the impact-scored sparse index and the dense index.

Names load lazily, so ``from sparse_ir.index import DenseIndex`` does not start numba.
"""

from __future__ import annotations

import importlib

__all__ = ["ImpactIndex", "TermContribution", "DenseIndex"]

_EXPORTS = {
    "ImpactIndex": "sparse_ir.index.impact_index",
    "TermContribution": "sparse_ir.index.impact_index",
    "DenseIndex": "sparse_ir.index.dense",
}


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'sparse_ir.index' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
