"""Screens: cheap low-precision passes that find every vocabulary term a text can activate.

SPLADE max pooling keeps term j of a text only if its largest logit over the text's tokens,
``max_l h_l·W_j + b_j``, is positive, and for a document only ~250 of 30,522 terms are. A screen
computes ``max_l h_l·W_j`` in low precision over the whole vocabulary, adds a proven bound on
the low-precision error, and returns the terms whose bound plus bias is positive (~500 per
document): every other term is zero in float32 too. Only the candidates are then recomputed in
float32 (:func:`rescore`), so the result equals the float32 formula while nearly all of the
projection runs at low-precision speed.

Two screens:

* :class:`Int8Screen` — int8 × int8 products with int32 sums (``torch._int_mm``), faster than
  bfloat16 on CPUs with VNNI (AVX512-VNNI or AVX-VNNI; figures in docs/encoding.md), exact
  integer arithmetic;
* :class:`Bfloat16Screen` — bfloat16 products with float32 sums, for GPUs and CPUs with
  AVX512-BF16/AMX but without VNNI.

Int8 error bound. For a text, one scale s (its largest |h| / 127) and integer tokens q_l =
round(h_l / s) leave residuals e_l = h_l − s·q_l; each vocabulary row W_j = u_j·Q_j + f_j with its
own scale u_j. Then, exactly,

    h_l·W_j = s·u_j·(q_l·Q_j) + s·q_l·f_j + e_l·u_j·Q_j + e_l·f_j,

and by Cauchy–Schwarz the last three terms are at most P·F_j + E·(G_j + F_j), with
P = max_l ||s·q_l||, E = max_l ||e_l||, F_j = ||f_j||, G_j = ||u_j·Q_j||. One scale per text
(not per token) keeps the integer max over tokens meaningful, so the max is taken on the int32
products before any scaling. A relative slack covers float32 rounding in the bound and in the
float32 recomputation itself.
"""

from __future__ import annotations

import torch

__all__ = ["Int8Screen", "Bfloat16Screen", "int8_supported", "rescore"]

# Float32 rounding: a 1,024-term float32 dot product is within ~1024·2^-24·Σ|h_i·w_i| of the real
# value; this slack (times ||h||·||w||) is ten times that, and costs only a few extra candidates.
_ROUNDING_SLACK = 1e-3 * 2.0**-4
# bfloat16 keeps 8 significant bits: inputs are off by at most 2^-8 of themselves, and the
# float32 sums rounded to bfloat16 by 2^-8 again; the margins double both.
_BF16_INPUT_MARGIN = 2.0**-6
_BF16_OUTPUT_MARGIN = 2.0**-7
# Int32 products held at once: [tokens, columns] <= this many values (8 MB), so a tile of
# products stays in the core's cache while its max over tokens is taken.
_TILE_VALUES = 1 << 21


def int8_supported(device: torch.device | str = "cpu") -> bool:
    """True when int8 matrix products are fast here: a CPU with VNNI (AVX512-VNNI, AVX-VNNI)."""
    device = torch.device(device)
    # torch._int_mm is the int8 × int8 → int32 product; it is a private name, so a PyTorch
    # without it falls back to the bfloat16 screen instead of failing.
    if device.type != "cpu" or not hasattr(torch, "_int_mm"):
        return False
    try:
        return bool(torch.cpu._is_vnni_supported())
    except (AttributeError, RuntimeError):
        return False


class Int8Screen:
    """Int8 screen for one vocabulary projection ``weight`` [vocab, hidden] (see module doc).

    Args:
        weight: the float projection; it is quantized once, row by row.
        columns: vocabulary columns per int8 product when the input has many tokens.
    """

    def __init__(self, weight: torch.Tensor, *, columns: int = 256):
        if not hasattr(torch, "_int_mm"):
            raise RuntimeError(
                f"this PyTorch ({torch.__version__}) has no int8 matrix "
                "product (torch._int_mm); use screen='bfloat16'"
            )
        weight = weight.detach().float()
        self.vocab_size, self.hidden_size = weight.shape
        # Pad the vocabulary to a multiple of 8 (the int8 kernels want it); padded rows are 0.
        padded = -self.vocab_size % 8
        if padded:
            weight = torch.cat([weight, weight.new_zeros(padded, self.hidden_size)])
        scale = weight.abs().amax(dim=1).clamp_min(torch.finfo(torch.float32).tiny) / 127
        quantized = torch.round(weight / scale[:, None]).clamp_(-127, 127)
        residual = weight - quantized * scale[:, None]
        self.scale = scale[: self.vocab_size]  # u_j
        self.residual_norm = residual.norm(dim=1)[: self.vocab_size]  # F_j
        self.quantized_norm = (quantized * scale[:, None]).norm(dim=1)[: self.vocab_size]  # G_j
        self.weight_norm = weight.norm(dim=1)[: self.vocab_size]
        # Transposed [hidden, vocab] so that tiles are [hidden, columns] row-major slices.
        self.quantized_t = quantized.to(torch.int8).T.contiguous()
        self.columns = columns

    def upper_bound(self, hidden: torch.Tensor) -> torch.Tensor:
        """[batch, vocab] float32 upper bounds of ``max_l hidden[b, l]·W_j`` over all tokens.

        Args:
            hidden: [batch, length, hidden] float32; every position counts (callers fill
                padding with a copy of a real token).
        """
        batch, length, width = hidden.shape
        scale = hidden.abs().amax(dim=(1, 2)).clamp_min(torch.finfo(torch.float32).tiny) / 127
        tokens = torch.round(hidden / scale[:, None, None]).clamp_(-127, 127)
        residual = (hidden - tokens * scale[:, None, None]).norm(dim=-1).amax(dim=1)  # E
        token_norm = tokens.norm(dim=-1).amax(dim=1) * scale  # P
        tokens = tokens.to(torch.int8)
        best = torch.empty(batch, self.quantized_t.shape[1], dtype=torch.int32)
        # Tile over texts and columns so each int32 product block stays in cache.
        texts = max(1, min(batch, _TILE_VALUES // (length * self.columns)))
        columns = max(self.columns, _TILE_VALUES // (texts * length) // 8 * 8)
        for first in range(0, batch, texts):
            rows = tokens[first : first + texts].reshape(-1, width)
            count = rows.shape[0] // length
            for start in range(0, best.shape[1], columns):
                products = torch._int_mm(rows, self.quantized_t[:, start : start + columns])
                best[first : first + count, start : start + products.shape[1]] = products.view(
                    count, length, -1
                ).amax(dim=1)
        best = best[:, : self.vocab_size].float()
        bound = best * scale[:, None] * self.scale[None, :]
        bound += token_norm[:, None] * self.residual_norm[None, :]
        bound += residual[:, None] * (self.quantized_norm + self.residual_norm)[None, :]
        largest = hidden.norm(dim=-1).amax(dim=1)
        bound += largest[:, None] * self.weight_norm[None, :] * _ROUNDING_SLACK
        return bound


class Bfloat16Screen:
    """bfloat16 screen for one vocabulary projection ``weight`` [vocab, hidden].

    Args:
        weight: the float projection (a bfloat16 copy is kept).
        columns: vocabulary columns per product when the input has many tokens.
    """

    def __init__(self, weight: torch.Tensor, *, columns: int = 512):
        weight = weight.detach()
        self.weight = weight.to(torch.bfloat16)
        self.weight_norm = weight.float().norm(dim=1)
        self.vocab_size = weight.shape[0]
        self.columns = columns

    def upper_bound(self, hidden: torch.Tensor) -> torch.Tensor:
        """[batch, vocab] float32 upper bounds of ``max_l hidden[b, l]·W_j`` over all tokens."""
        batch, length, _ = hidden.shape
        low = hidden.to(torch.bfloat16)
        approx = torch.empty(batch, self.vocab_size, dtype=torch.bfloat16, device=hidden.device)
        columns = max(self.columns, (_TILE_VALUES // 2) // max(batch * length, 1))
        for start in range(0, self.vocab_size, columns):
            tile = self.weight[start : start + columns]
            approx[:, start : start + tile.shape[0]] = torch.matmul(low, tile.T).amax(dim=1)
        approx = approx.float()
        largest = hidden.float().norm(dim=-1).amax(dim=1)
        bound = approx + approx.abs() * _BF16_OUTPUT_MARGIN
        bound += (
            largest[:, None] * self.weight_norm[None, :] * (_BF16_INPUT_MARGIN + _ROUNDING_SLACK)
        )
        return bound


def rescore(
    hidden: torch.Tensor,
    lengths: list[int],
    candidates: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    *,
    out: torch.Tensor | None = None,
    winners: torch.Tensor | None = None,
) -> torch.Tensor:
    """Max-pooled float32 logits (bias added) of the candidate terms.

    Args:
        hidden: [batch, length, hidden] float32 token states.
        lengths: real tokens of each text (positions past them are ignored).
        candidates: [batch, vocab] bool, the terms to compute.
        weight: [vocab, hidden] projection; bias: [vocab] or None.
        out: [batch, vocab] float32 to write the candidates into (default: zeros).
        winners: [batch, vocab] int32 that receives, for each candidate, the token that won
            its max (training sends the gradient there).

    Returns:
        ``out``: ``max_l h_l·W_j + b_j`` where ``candidates``; other entries are left as given.
    """
    batch = hidden.shape[0]
    if out is None:
        out = torch.zeros(batch, weight.shape[0], dtype=torch.float32, device=hidden.device)
    for row in range(batch):
        columns = torch.nonzero(candidates[row]).squeeze(1)
        if not len(columns):
            continue
        products = torch.matmul(weight[columns].float(), hidden[row, : lengths[row]].float().T)
        if winners is None:
            exact = products.amax(dim=1)
        else:
            exact, tokens = products.max(dim=1)
            winners[row, columns] = tokens.to(winners.dtype)
        if bias is not None:
            exact += bias[columns].float()
        out[row, columns] = exact
    return out
