"""Training SPLADE models: losses, λ schedules, differentiable pooling, data, trainer.

Submodules:

* :mod:`.losses` — ranking (contrastive, listwise, pairwise), distillation (MarginMSE, KL) and
  sparsity (FLOPS, ℓ1, IDF-aware FLOPS) losses, one registry each (``RANKING_LOSSES``,
  ``REGULARIZERS``); :class:`SpladeLoss` composes them.
* :mod:`.options` — the trainer's option types (``Mode``...), importable without torch.
* :mod:`.schedules` — λ's quadratic warm-up, the learning-rate shape.
* :mod:`.representation` — SPLADE weights with a memory-light custom backward.
* :mod:`.data`, :mod:`.negatives`, :mod:`.prepare` — examples, hard negatives, validation sets.
* :mod:`.inference_free` — the IDF query side of document-only models.
* :mod:`.trainer`, :mod:`.checkpoint`, :mod:`.validation` — the loop and what it saves/measures.

Names are imported lazily: ``import sparse_ir.training`` loads no torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "SpladeLoss": "sparse_ir.training.losses",
    "LossTerms": "sparse_ir.training.losses",
    "RANKING_LOSSES": "sparse_ir.training.losses",
    "REGULARIZERS": "sparse_ir.training.losses",
    "QuadraticWarmup": "sparse_ir.training.schedules",
    "MaxPooledProjection": "sparse_ir.training.representation",
    "splade_weights": "sparse_ir.training.representation",
    "TrainingExample": "sparse_ir.training.data",
    "ValidationSet": "sparse_ir.training.data",
    "IdfQueryEncoder": "sparse_ir.training.inference_free",
    "TrainingConfig": "sparse_ir.training.trainer",
    "Trainer": "sparse_ir.training.trainer",
    "TrainingResult": "sparse_ir.training.trainer",
    "prepare_beir": "sparse_ir.training.prepare",
    "prepare_jsonl": "sparse_ir.training.prepare",
    "mine_bm25_negatives": "sparse_ir.training.negatives",
    "mine_index_negatives": "sparse_ir.training.negatives",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'sparse_ir.training' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
