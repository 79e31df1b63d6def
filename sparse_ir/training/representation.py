"""Differentiable SPLADE vectors for training, without keeping [batch, length, vocab] logits.

SPLADE-max weights are w_j = log(1 + ReLU(max_l z_lj + b_j)) with z_lj = t(h_l)·W_j, where t is
the MLM head's transform, W the vocabulary projection and b its bias (see
:mod:`sparse_ir.encoders.splade` for why the max may be taken before the bias and activation).

Autograd on the straightforward formula stores the float32 logits z for every token, 4 bytes ×
batch × length × 30,522 (48 texts × 128 tokens: 750 MB, and ReLU/log/mask keep more copies), and
its backward runs two more matmuls of the same size. But the derivative of a max reaches only the
token that won it: ∂w_j/∂t(h_l) is non-zero for l = argmax_l z_lj alone, and only where the ReLU
is open. :class:`MaxPooledProjection` exploits that:

* forward: project the vocabulary in tiles, keep per (text, term) only the max and the *index* of
  the winning token (int32), never the tile's logits; the bias is added after the max;
* backward: the incoming gradient g_bj is zero wherever the ReLU is closed (most of the
  vocabulary), so for the few non-zero (b, j) it adds g_bj·W_j to the winning token's hidden
  state and g_bj·t(h_b,argmax) to W_j — a scatter of a few thousand rows, no matmul over
  the vocabulary.

With ``compute_dtype=torch.int8`` or ``torch.bfloat16`` a low-precision screen
(:mod:`sparse_ir.encoders.screen`, the encoder's "mixed" precision) rules out the terms that are
certainly zero; the few hundred others per text are recomputed in float32, so values and
gradients are float32's.

:func:`reference_splade_weights` is the straightforward formula (full logits, autograd), the
definition the tests check both the values and the gradients of the fast path against.
"""

from __future__ import annotations

from typing import get_args

import torch

from sparse_ir.training.options import Implementation

__all__ = [
    "Implementation",
    "MaxPooledProjection",
    "reference_splade_weights",
    "splade_weights",
    "transformed_hidden",
]


class MaxPooledProjection(torch.autograd.Function):
    """max_l (hidden[b, l] · weight[j]) + bias[j] for every text b and vocabulary row j, by tiles.

    Inputs: ``hidden`` [batch, length, hidden] (padding positions must not win the max: fill them
    with a copy of a real token), ``weight`` [vocab, hidden], ``bias`` [vocab] or None, ``chunk``
    (vocabulary rows per tile), ``compute_dtype`` (dtype of the tile matmuls). Output: [batch,
    vocab] float32 pre-activation logits.

    Saved for backward: ``hidden``, ``weight`` (both alive anyway for the model's own graph) and
    the int32 argmax [batch, vocab] — never a logits tile.

    With ``compute_dtype=torch.int8`` or ``torch.bfloat16`` a screen
    (:class:`~sparse_ir.encoders.screen.Int8Screen`, :class:`~.Bfloat16Screen`) bounds every
    max from above with a proven margin; every entry whose bound plus bias is positive is
    recomputed in float32 over all the text's tokens (value and winning token). The others get
    their bound, so they are certainly ≤ 0 after the bias: closed by the ReLU, no gradient. So
    the weights and gradients are float32's, at close to the screen's cost (the encoder's
    "mixed" precision, for training).
    """

    @staticmethod
    def forward(
        ctx,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        chunk: int,
        compute_dtype: torch.dtype,
    ) -> torch.Tensor:
        batch = hidden.shape[0]
        vocab_size = weight.shape[0]
        out = torch.empty(batch, vocab_size, dtype=torch.float32, device=hidden.device)
        winners = torch.zeros(batch, vocab_size, dtype=torch.int32, device=hidden.device)
        if compute_dtype == torch.float32:
            for start in range(0, vocab_size, chunk):
                tile = weight[start : start + chunk].detach()
                best = torch.matmul(hidden.detach(), tile.T).max(dim=1)
                winners[:, start : start + tile.shape[0]] = best.indices
                out[:, start : start + tile.shape[0]] = best.values
        else:
            from sparse_ir.encoders.screen import Bfloat16Screen, Int8Screen, rescore

            screen = (
                Int8Screen(weight)
                if compute_dtype == torch.int8
                else Bfloat16Screen(weight, columns=chunk)
            )
            states = hidden.detach().float()
            out = screen.upper_bound(states)
            upper = out if bias is None else out + bias.detach().float()
            # Every position counts (padding holds a copy of a real token); the bias is added
            # below, to the bounds as well.
            rescore(
                states,
                [states.shape[1]] * batch,
                upper > 0,
                weight.detach(),
                None,
                out=out,
                winners=winners,
            )
        if bias is not None:
            out += bias.detach().float()
        ctx.save_for_backward(hidden, weight, winners)
        ctx.has_bias = bias is not None
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        hidden, weight, winners = ctx.saved_tensors
        batch, length, width = hidden.shape
        grad_hidden = grad_weight = grad_bias = None
        # Only (text, term) pairs with a non-zero incoming gradient matter; after the ReLU that
        # is a few hundred terms per text out of the whole vocabulary.
        texts, terms = torch.nonzero(grad_out, as_tuple=True)
        g = grad_out[texts, terms][:, None]
        tokens = winners[texts, terms].long()
        if ctx.needs_input_grad[0]:
            grad_hidden = torch.zeros(
                batch * length, width, dtype=hidden.dtype, device=hidden.device
            )
            grad_hidden.index_add_(
                0, texts * length + tokens, (g * weight[terms].float()).to(hidden.dtype)
            )
            grad_hidden = grad_hidden.view(batch, length, width)
        if ctx.needs_input_grad[1]:
            grad_weight = torch.zeros_like(weight)
            grad_weight.index_add_(0, terms, (g * hidden[texts, tokens].float()).to(weight.dtype))
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad_out.sum(dim=0)
        return grad_hidden, grad_weight, grad_bias, None, None


def transformed_hidden(
    model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor
) -> torch.Tensor:
    """The MLM head's transformed hidden states t(h) [batch, length, hidden], with gradients.

    Runs the model with its vocabulary projection bypassed (the encoder's
    ``_skip_vocab_projection``), so no logits are computed here.
    """
    from sparse_ir.encoders.splade import _skip_vocab_projection

    with _skip_vocab_projection(model):
        return model(input_ids=input_ids, attention_mask=attention_mask).logits


def splade_weights(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    *,
    implementation: Implementation = "chunked",
    vocab_chunk: int = 2048,
    compute_dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """SPLADE-max weights w [batch, vocab] = log(1 + ReLU(max_l z_l + b)), differentiable.

    Args:
        model: a masked-LM model (``AutoModelForMaskedLM``), in train or eval mode.
        input_ids, attention_mask: [batch, length] token ids and mask (1 = real token).
        implementation: ``"chunked"`` (:class:`MaxPooledProjection`) or ``"reference"``
            (:func:`reference_splade_weights`, full logits).
        vocab_chunk: vocabulary rows per tile of the chunked projection.
        compute_dtype: ``torch.float32`` (plain tiles), or the screen's arithmetic:
            ``torch.int8`` (CPUs with VNNI) or ``torch.bfloat16``.
    """
    if implementation not in get_args(Implementation):
        raise ValueError(
            f"implementation must be one of {get_args(Implementation)}, got {implementation!r}"
        )
    if implementation == "reference":
        return reference_splade_weights(model, input_ids, attention_mask)
    head = model.get_output_embeddings()
    hidden = transformed_hidden(model, input_ids, attention_mask)
    # A copy of token 0 in every padding slot cannot change a max over tokens; the gradient
    # of torch.where routes anything it receives back to token 0.
    hidden = torch.where(attention_mask.bool()[..., None], hidden, hidden[:, :1, :])
    pooled = MaxPooledProjection.apply(hidden, head.weight, head.bias, vocab_chunk, compute_dtype)
    return torch.log1p(torch.relu(pooled))


def reference_splade_weights(
    model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor
) -> torch.Tensor:
    """The textbook formula: w_j = max_l log(1 + ReLU(z_lj)) · mask_l with z = model(x).logits.

    Materialises (and keeps for backward) the float32 [batch, length, vocab] logits.
    """
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits.float()
    activation = torch.log1p(torch.relu(logits)) * attention_mask[..., None].float()
    return activation.amax(dim=1)
