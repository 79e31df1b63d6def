"""The trainer's option types, importable without torch (``sparse-ir train`` builds its choices
from them with ``typing.get_args``; the ranking losses and regularizers are named beside their
registries in :mod:`sparse_ir.training.losses`, which also loads without torch).
"""

from __future__ import annotations

from typing import Literal

__all__ = ["Implementation", "Mode", "TrainingPrecision"]

#: ``"siamese"``: queries and documents through the model; ``"inference-free"``: documents only.
Mode = Literal["siamese", "inference-free"]
#: ``"chunked"``: :class:`~sparse_ir.training.representation.MaxPooledProjection` (ours);
#: ``"reference"``: full logits + autograd.
Implementation = Literal["chunked", "reference"]
#: The vocabulary projection while training: ``"float32"``; ``"mixed"`` (bfloat16 screen +
#: float32 recompute, same values); ``"auto"`` (mixed where bfloat16 is fast).
TrainingPrecision = Literal["auto", "float32", "mixed"]
