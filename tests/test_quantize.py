"""Quantizer: weight -> impact, saturation, zeros, the 8-bit mode, persistence."""

import numpy as np
import pytest

from sparse_ir.errors import InputError
from sparse_ir.quantize import Quantizer, QuantizeStats, smallest_unsigned_dtype
from sparse_ir.sparse_batch import SparseBatch

VOCAB = ("a", "b", "c", "d")


def test_default_scale_is_pyserini_100_with_half_even_rounding():
    quantizer = Quantizer()
    impacts = quantizer.quantize_values(np.array([0.004, 0.005, 0.015, 1.234, 2.5]))
    # 0.4 -> 0, 0.5 -> 0 (half to even), 1.5 -> 2, 123.4 -> 123, 250 -> 250
    assert impacts.tolist() == [0, 0, 2, 123, 250]


def test_zeros_are_dropped_and_counted():
    batch = SparseBatch.from_dicts([{"a": 0.001, "b": 1.0}, {"c": 0.002}], VOCAB)
    stats = QuantizeStats()
    quantized = Quantizer().quantize(batch, stats)
    assert quantized.to_dicts() == [{"b": 100}, {}]
    assert stats.zeros_dropped == 2 and stats.weights == 3 and stats.saturated == 0


def test_saturation_is_clipped_counted_and_warned(caplog):
    batch = SparseBatch.from_dicts([{"a": 10.0, "b": 2.0}], VOCAB)
    stats = QuantizeStats()
    quantized = Quantizer(scale=100, max_impact=255).quantize(batch, stats)
    assert quantized.to_dicts() == [{"a": 255, "b": 200}]
    assert stats.saturated == 1
    assert "exceeded max_impact=255" in caplog.text


def test_8bit_mode_maps_the_largest_weight_to_255():
    batch = SparseBatch.from_dicts([{"a": 3.0, "b": 1.5}, {"c": 0.006}], VOCAB)
    quantizer = Quantizer.fit(batch, bits=8)
    assert quantizer.max_impact == 255 and quantizer.scale == pytest.approx(85.0)
    assert quantizer.quantize(batch).to_dicts() == [{"a": 255, "b": 128}, {"c": 1}]
    # Queries go through the same object: a heavier query weight saturates, counted.
    stats = QuantizeStats()
    quantizer.quantize(SparseBatch.from_dicts([{"a": 4.0}], VOCAB), stats)
    assert stats.saturated == 1


def test_round_trip_through_dict_and_dequantize():
    quantizer = Quantizer(scale=42.5, max_impact=1000)
    assert Quantizer.from_dict(quantizer.to_dict()) == quantizer
    batch = SparseBatch.from_dicts([{"a": 1.0, "d": 2.0}], VOCAB)
    back = quantizer.dequantize(quantizer.quantize(batch)).to_dicts()[0]
    assert back["a"] == pytest.approx(1.0, abs=0.5 / 42.5)
    assert back["d"] == pytest.approx(2.0, abs=0.5 / 42.5)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"scale": 0},
        {"scale": -1},
        {"scale": float("nan")},
        {"max_impact": 0},
        {"max_impact": 2**40},
    ],
)
def test_invalid_settings(kwargs):
    with pytest.raises(ValueError):
        Quantizer(**kwargs)


def test_bad_weights_and_unknown_settings():
    with pytest.raises(InputError, match="NaN"):
        Quantizer().quantize_values(np.array([np.nan]))
    with pytest.raises(InputError, match="negative"):
        Quantizer().quantize_values(np.array([-0.5]))
    with pytest.raises(InputError, match="unknown quantizer settings"):
        Quantizer.from_dict({"scale": 1, "max_impact": 5, "offset": 3})


def test_smallest_unsigned_dtype():
    assert smallest_unsigned_dtype(255) == np.uint8
    assert smallest_unsigned_dtype(256) == np.uint16
    assert smallest_unsigned_dtype(70_000) == np.uint32
