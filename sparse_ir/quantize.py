"""Float weights ⇄ integer impacts: one object decides, for documents and queries alike.

impact = round(weight × scale), clipped to ``max_impact``; impacts of 0 are dropped. Pyserini's
SPLADE indexes use scale 100, our default. The 8-bit mode (:meth:`Quantizer.for_max_weight` /
:meth:`Quantizer.fit`) picks the scale so that the largest document weight maps to 255.

The index stores ``to_dict()`` of the quantizer it was built with, and the Lucene export writes
exactly these integers, so our scores and Lucene's are the same integers.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

from sparse_ir.errors import InputError
from sparse_ir.sparse_batch import SparseBatch

__all__ = ["Quantizer", "QuantizeStats", "DEFAULT_SCALE", "ImpactBits"]

logger = logging.getLogger(__name__)

DEFAULT_SCALE = 100.0
#: The impact widths of :meth:`Quantizer.for_max_weight` and :meth:`Quantizer.fit`.
ImpactBits = Literal[8, 16]
_MAX_SUPPORTED_IMPACT = 2**31 - 1


@dataclass
class QuantizeStats:
    """What happened to the weights: how many became 0 (dropped) or hit ``max_impact``."""

    weights: int = 0
    zeros_dropped: int = 0
    saturated: int = 0

    def __str__(self) -> str:
        return (
            f"{self.weights} weights quantized, {self.zeros_dropped} rounded to 0 and "
            f"dropped, {self.saturated} saturated at the maximum impact"
        )


@dataclass(frozen=True)
class Quantizer:
    """Maps float weights to integer impacts by ``round(weight × scale)``.

    Args:
        scale: multiplier applied before rounding (Pyserini's SPLADE indexes: 100).
        max_impact: largest impact; bigger products are clipped to it and counted as saturated.
            65,535 (16 bits) by default; 255 in the 8-bit mode.

    Rounding is half-to-even (numpy's ``rint``) on float64 products, the same for every caller.

    Example:
        >>> from sparse_ir import Quantizer, SparseBatch
        >>> batch = SparseBatch.from_dicts([{"cell": 1.234, "gene": 0.004}], ["cell", "gene"])
        >>> quantizer = Quantizer()  # scale 100, as Pyserini's SPLADE indexes
        >>> impacts = quantizer.quantize(batch)
        >>> impacts.decode(0)  # 0.004 × 100 rounds to 0: dropped
        [('cell', 123)]
        >>> Quantizer.for_max_weight(3.0)  # 8 bits: the largest weight maps to 255
        Quantizer(scale=85.0, max_impact=255)
    """

    scale: float = DEFAULT_SCALE
    max_impact: int = 65_535

    def __post_init__(self) -> None:
        if not (
            isinstance(self.scale, (int, float)) and math.isfinite(self.scale) and self.scale > 0
        ):
            raise ValueError(f"scale must be a finite number > 0, got {self.scale!r}")
        if (
            not isinstance(self.max_impact, (int, np.integer))
            or not 1 <= self.max_impact <= _MAX_SUPPORTED_IMPACT
        ):
            raise ValueError(
                f"max_impact must be an integer in [1, {_MAX_SUPPORTED_IMPACT}], "
                f"got {self.max_impact!r}"
            )
        object.__setattr__(self, "scale", float(self.scale))
        object.__setattr__(self, "max_impact", int(self.max_impact))

    @classmethod
    def for_max_weight(cls, max_weight: float, bits: ImpactBits = 8) -> Quantizer:
        """The quantizer whose scale maps ``max_weight`` to the top of a ``bits``-bit range."""
        if not (math.isfinite(max_weight) and max_weight > 0):
            raise ValueError(f"max_weight must be a finite number > 0, got {max_weight!r}")
        if bits not in get_args(ImpactBits):
            raise ValueError(f"bits must be 8 or 16, got {bits!r}")
        top = 2**bits - 1
        return cls(scale=top / float(max_weight), max_impact=top)

    @classmethod
    def fit(cls, batches: SparseBatch | Iterable[SparseBatch], bits: ImpactBits = 8) -> Quantizer:
        """The ``bits``-bit quantizer for the largest weight found in ``batches`` (documents)."""
        if isinstance(batches, SparseBatch):
            batches = [batches]
        top = 0.0
        for batch in batches:
            if len(batch.values):
                top = max(top, float(batch.values.max()))
        if top <= 0:
            raise InputError("cannot fit a quantizer: the vectors have no positive weight")
        return cls.for_max_weight(top, bits)

    @property
    def impact_dtype(self) -> np.dtype:
        """The smallest unsigned integer type that holds every impact."""
        return smallest_unsigned_dtype(self.max_impact)

    def quantize_values(
        self, weights: np.ndarray, stats: QuantizeStats | None = None
    ) -> np.ndarray:
        """Impacts (int32) of an array of weights, zeros kept in place (not dropped)."""
        weights = np.asarray(weights)
        if weights.dtype.kind == "f" and len(weights) and not np.all(np.isfinite(weights)):
            raise InputError("cannot quantize NaN or infinite weights")
        if len(weights) and weights.min() < 0:
            raise InputError(f"cannot quantize negative weight {weights.min()!r}")
        scaled = np.rint(weights.astype(np.float64) * self.scale)
        saturated = scaled > self.max_impact
        impacts = np.minimum(scaled, self.max_impact).astype(np.int32)
        if stats is not None:
            stats.weights += len(weights)
            stats.saturated += int(saturated.sum())
            stats.zeros_dropped += int((impacts == 0).sum())
        return impacts

    def quantize(self, batch: SparseBatch, stats: QuantizeStats | None = None) -> SparseBatch:
        """The batch with integer impacts; entries that round to 0 are removed.

        Saturated entries (weight × scale > ``max_impact``) are clipped, counted in ``stats``
        and reported in a warning.
        """
        local = QuantizeStats()
        impacts = self.quantize_values(batch.values, local)
        if stats is not None:
            stats.weights += local.weights
            stats.saturated += local.saturated
            stats.zeros_dropped += local.zeros_dropped
        if local.saturated:
            logger.warning(
                "%d weight(s) exceeded max_impact=%d at scale %g and were clipped",
                local.saturated,
                self.max_impact,
                self.scale,
            )
        keep = impacts > 0
        if keep.all():
            return SparseBatch(batch.indptr, batch.indices, impacts, batch.vocab, batch.ids)
        rows = np.repeat(np.arange(len(batch)), batch.row_lengths())
        counts = np.bincount(rows[keep], minlength=len(batch))
        indptr = np.zeros(len(batch) + 1, np.int64)
        np.cumsum(counts, out=indptr[1:])
        return SparseBatch(indptr, batch.indices[keep], impacts[keep], batch.vocab, batch.ids)

    def dequantize(self, batch: SparseBatch) -> SparseBatch:
        """Approximate float weights back from impacts (impact / scale)."""
        if not batch.is_quantized:
            raise InputError("dequantize expects integer impacts")
        return SparseBatch(
            batch.indptr,
            batch.indices,
            (batch.values / self.scale).astype(np.float32),
            batch.vocab,
            batch.ids,
        )

    def to_dict(self) -> dict:
        """A JSON-ready description, stored in every index manifest."""
        return {"scale": self.scale, "max_impact": self.max_impact}

    @classmethod
    def from_dict(cls, data: dict) -> Quantizer:
        """The quantizer described by :meth:`to_dict` output."""
        unknown = set(data) - {"scale", "max_impact"}
        if unknown:
            raise InputError(f"unknown quantizer settings {sorted(unknown)}")
        return cls(scale=data["scale"], max_impact=data["max_impact"])


def smallest_unsigned_dtype(max_value: int) -> np.dtype:
    """uint8, uint16 or uint32: the smallest that holds ``max_value``."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if max_value <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    raise ValueError(f"{max_value} does not fit in 32 bits")
