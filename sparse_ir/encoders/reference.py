"""The straightforward SPLADE formula, kept as the reference the fast encoder is checked against.

It materialises the full [batch, length, vocab] logits, exactly as the papers write it. Slow and
memory hungry on purpose: it is the definition, not the implementation.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["reference_encode"]


@torch.inference_mode()
def reference_encode(
    model,
    tokenizer,
    texts: Sequence[str],
    *,
    max_length: int,
    pooling: str = "max",
    batch_size: int = 32,
) -> torch.Tensor:
    """Dense [len(texts), vocab] SPLADE weights by the textbook formula.

    w_j = max_l log(1 + ReLU(z_lj)) (or Σ_l for ``pooling="sum"``) over non-padding tokens l,
    with z = model(text).logits. Empty texts give zero rows, like the fast encoder.
    """
    model.eval()
    device = next(model.parameters()).device
    rows = []
    for start in range(0, len(texts), batch_size):
        chunk = list(texts[start : start + batch_size])
        out = torch.zeros(len(chunk), model.get_output_embeddings().weight.shape[0])
        keep = [i for i, text in enumerate(chunk) if text and not text.isspace()]
        if keep:
            enc = tokenizer(
                [chunk[i] for i in keep],
                truncation=True,
                max_length=max_length,
                padding=True,
                return_tensors="pt",
            )
            enc = {k: v.to(device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
            logits = model(**enc).logits.float()
            activation = torch.log1p(torch.relu(logits)) * enc["attention_mask"][..., None]
            pooled = activation.amax(dim=1) if pooling == "max" else activation.sum(dim=1)
            out[keep] = pooled.cpu()
        rows.append(out)
    return torch.cat(rows)
