"""The encoders' option types, importable without torch (the command line builds its choices
from them with ``typing.get_args``).

:mod:`sparse_ir.encoders.splade` and :mod:`sparse_ir.encoders.dense` re-export them; a new
option value is added here and handled there.
"""

from __future__ import annotations

from typing import Literal

__all__ = [
    "Activation",
    "DensePooling",
    "DensePrecision",
    "Pooling",
    "Precision",
    "Runtime",
    "Screen",
]

#: SPLADE pooling of the MLM logits over the tokens: ``"max"`` (v2, ++, v3) or ``"sum"`` (v1).
Pooling = Literal["max", "sum"]
#: SPLADE activation of the MLM logits z: ``"relu"`` gives log(1 + ReLU(z)) (every SPLADE);
#: ``"log1p_relu"`` gives log(1 + log(1 + ReLU(z))) (OpenSearch's models).
Activation = Literal["relu", "log1p_relu"]
#: SPLADE encoder precision (see :class:`~sparse_ir.encoders.splade.SpladeEncoder`).
Precision = Literal["auto", "float32", "mixed", "bfloat16", "int8"]
#: What runs the SPLADE encoder's transformer body: PyTorch, or OpenVINO (CPU; optional extra).
Runtime = Literal["torch", "openvino"]
#: The vocabulary screen of the mixed precisions.
Screen = Literal["auto", "int8", "bfloat16"]
#: Dense encoder pooling of the token embeddings.
DensePooling = Literal["mean", "cls", "max"]
#: Dense encoder precision.
DensePrecision = Literal["float32", "bfloat16"]
