"""The low-precision screens: their bounds hold, and the rescoring that follows is exact."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sparse_ir.encoders import screen as screen_module
from sparse_ir.encoders.screen import Bfloat16Screen, Int8Screen, rescore


def _true_max(hidden: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """max over tokens of hidden·Wᵀ in float64: [batch, vocab]."""
    return torch.einsum("blh,vh->blv", hidden.double(), weight.double()).amax(dim=1)


def _data(seed: int, batch: int, length: int, width: int, vocab: int, scale: float, outliers: bool):
    generator = torch.Generator().manual_seed(seed)
    hidden = torch.randn(batch, length, width, generator=generator) * scale
    if outliers:  # a few dimensions far larger than the rest, as in some transformers
        hidden[..., :2] *= 30
    weight = torch.randn(vocab, width, generator=generator) * 0.07
    weight[3] = 0  # an all-zero row
    return hidden, weight


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    batch=st.integers(1, 5),
    length=st.integers(1, 19),
    width=st.sampled_from([8, 24, 64]),
    vocab=st.integers(4, 90),
    scale=st.sampled_from([1e-6, 0.3, 1.0, 40.0]),
    outliers=st.booleans(),
    kind=st.sampled_from(["int8", "bfloat16"]),
)
def test_upper_bound_holds(seed, batch, length, width, vocab, scale, outliers, kind):
    hidden, weight = _data(seed, batch, length, width, vocab, scale, outliers)
    screen = Int8Screen(weight, columns=8) if kind == "int8" else Bfloat16Screen(weight, columns=8)
    bound = screen.upper_bound(hidden).double()
    assert bound.shape == (batch, vocab)
    assert (bound >= _true_max(hidden, weight)).all()


def test_int8_screen_tiles_over_texts_and_columns(monkeypatch):
    """Small tiles: several text groups and column tiles give the same bound as one tile."""
    hidden, weight = _data(7, 9, 13, 32, 203, 1.0, False)
    whole = Int8Screen(weight).upper_bound(hidden)
    monkeypatch.setattr(screen_module, "_TILE_VALUES", 13 * 16 * 2)
    tiled = Int8Screen(weight, columns=16).upper_bound(hidden)
    assert torch.equal(whole, tiled)
    assert (tiled.double() >= _true_max(hidden, weight)).all()


def test_int8_bound_is_tight_on_splade_tiny(splade_tiny, scifact_docs):
    """The margin is small next to the logits: a few hundred candidates per document."""
    from sparse_ir.encoders.splade import _pad, _skip_vocab_projection

    texts = [d.full_text for d in scifact_docs[:8]]
    ids = splade_tiny.tokenizer(texts, truncation=True, max_length=256)["input_ids"]
    input_ids, mask = _pad(ids, 0, torch.device("cpu"))
    head = splade_tiny.model.get_output_embeddings()
    with torch.inference_mode(), _skip_vocab_projection(splade_tiny.model):
        hidden = splade_tiny.model(input_ids=input_ids, attention_mask=mask).logits
        hidden = torch.where(mask.bool()[..., None], hidden, hidden[:, :1, :])
        exact = _true_max(hidden, head.weight) + head.bias.double()
        bound = Int8Screen(head.weight).upper_bound(hidden).double() + head.bias.double()
    assert (bound >= exact).all()
    assert (bound - exact).amax() < 2.0
    candidates = (bound > 0).sum(dim=1).float().mean().item()
    active = (exact > 0).sum(dim=1).float().mean().item()
    assert active <= candidates < 4 * active + 100, (active, candidates)


def test_rescore_is_the_float32_max_of_the_candidates():
    rng = np.random.default_rng(3)
    hidden = torch.from_numpy(rng.normal(size=(3, 6, 16)).astype(np.float32))
    weight = torch.from_numpy(rng.normal(size=(40, 16)).astype(np.float32))
    bias = torch.from_numpy(rng.normal(size=40).astype(np.float32))
    candidates = torch.from_numpy(rng.random((3, 40)) < 0.3)
    candidates[1] = False  # a text with no candidate at all
    lengths = [6, 2, 4]
    out = rescore(hidden, lengths, candidates, weight, bias)
    for row in range(3):
        tokens = hidden[row, : lengths[row]]
        expected = (tokens @ weight.T).amax(dim=0) + bias
        assert torch.allclose(out[row][candidates[row]], expected[candidates[row]], atol=1e-5)
        assert (out[row][~candidates[row]] == 0).all()


@pytest.mark.parametrize("kind", ["int8", "bfloat16"])
def test_zero_hidden_states_give_a_valid_bound(kind):
    weight = torch.randn(20, 8)
    hidden = torch.zeros(2, 3, 8)
    screen = Int8Screen(weight) if kind == "int8" else Bfloat16Screen(weight)
    bound = screen.upper_bound(hidden)
    assert torch.isfinite(bound).all() and (bound >= 0).all()


def test_without_int8_products_auto_falls_back_and_int8_is_a_clear_error(monkeypatch):
    from sparse_ir.encoders.screen import int8_supported

    monkeypatch.delattr(torch, "_int_mm")
    assert not int8_supported()
    with pytest.raises(RuntimeError, match="screen='bfloat16'"):
        Int8Screen(torch.randn(8, 4))
