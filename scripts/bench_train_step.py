#!/usr/bin/env python3
"""Training step time and memory kept for backward: straightforward SPLADE vs ours, one run.

    python scripts/bench_train_step.py            # splade-tiny, SciFact train texts

One step = encode 16 queries and 32 documents (1 positive + 1 hard negative each, 128 tokens),
contrastive loss + FLOPS on both sides, backward, AdamW step. Implementations, interleaved round
by round so that machine load hits them alike, median over rounds:

* ``reference``: model(...).logits (float32 [batch, length, vocab]), log1p(relu), mask, amax;
* ``chunked-fp32``: :class:`~sparse_ir.training.representation.MaxPooledProjection`, float32 tiles;
* ``chunked-mixed``: the same with a bfloat16 screen ruling out the certain zeros and the rest
  recomputed in float32 (same values and gradients as float32);
* ``chunked-int8``: the same with the int8 screen (CPUs with VNNI; what ``auto`` picks there).

"saved for backward" is the total size of the tensors autograd keeps for the backward pass
(counted with torch.autograd.graph.saved_tensors_hooks), the memory the issue is about.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time

import _common  # noqa: F401 - the repository's sparse_ir first on sys.path
import torch

from sparse_ir.training.losses import SpladeLoss
from sparse_ir.training.representation import splade_weights

VARIANTS = {
    "reference": {"implementation": "reference"},
    "chunked-fp32": {"implementation": "chunked", "compute_dtype": torch.float32},
    "chunked-mixed": {"implementation": "chunked", "compute_dtype": torch.bfloat16},
    "chunked-int8": {"implementation": "chunked", "compute_dtype": torch.int8},
}


def texts(batch: int) -> tuple[list[str], list[str]]:
    """Queries and documents from SciFact train (or filler text when SciFact is absent)."""
    from sparse_ir.eval import find_scifact, load_beir

    data = find_scifact()
    if data is None:
        words = "cells protein expression increased risk cancer patients treatment " * 40
        return [words[:80]] * batch, [words] * (2 * batch)
    dataset = load_beir(data, "train")
    queries = [q.text for q in dataset.queries[:batch]]
    documents = [d.full_text for d in dataset.corpus[: 2 * batch]]
    return queries, documents


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="splade-tiny")
    parser.add_argument("--batch", type=int, default=16, help="queries per step")
    parser.add_argument("--doc-length", type=int, default=128)
    parser.add_argument("--query-length", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args(argv)

    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from sparse_ir.encoders.registry import quiet_transformers, resolve_model

    path = resolve_model(args.model)
    with quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(path)
        base = AutoModelForMaskedLM.from_pretrained(path, use_safetensors=True)
    queries, documents = texts(args.batch)
    q = tokenizer(
        queries,
        padding="max_length",
        truncation=True,
        max_length=args.query_length,
        return_tensors="pt",
    )
    d = tokenizer(
        documents,
        padding="max_length",
        truncation=True,
        max_length=args.doc_length,
        return_tensors="pt",
    )
    loss_fn = SpladeLoss(lambda_q=5e-4, lambda_d=3e-4)
    models = {}
    for name in args.variants:
        model = copy.deepcopy(base).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
        models[name] = (model, optimizer)

    def step(name: str, count_saved: bool = False) -> tuple[float, int]:
        model, optimizer = models[name]
        saved = [0]

        def pack(tensor):
            saved[0] += tensor.numel() * tensor.element_size()
            return tensor

        hooks = (
            torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t) if count_saved else _null()
        )
        started = time.perf_counter()
        with hooks:
            wq = splade_weights(model, q["input_ids"], q["attention_mask"], **VARIANTS[name])
            wd = splade_weights(model, d["input_ids"], d["attention_mask"], **VARIANTS[name])
            loss = loss_fn(wq, wd[: args.batch], wd[args.batch :], step=1000)
        loss.total.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - started, saved[0]

    saved_bytes = {}
    for name in args.variants:  # warm-up round, and the memory count
        _, saved_bytes[name] = step(name, count_saved=True)
    times: dict[str, list[float]] = {name: [] for name in args.variants}
    for _ in range(args.rounds):
        for name in args.variants:
            times[name].append(step(name)[0])

    reference = statistics.median(times[args.variants[0]])
    print(
        f"train step: {args.batch} queries ({args.query_length} tokens) + "
        f"{2 * args.batch} documents ({args.doc_length} tokens), {args.model}, "
        f"{torch.get_num_threads()} threads, median of {args.rounds} rounds"
    )
    print(f"{'implementation':<14} {'step s':>8} {'speed-up':>9} {'saved for backward':>19}")
    for name in args.variants:
        median = statistics.median(times[name])
        print(
            f"{name:<14} {median:>8.3f} {reference / median:>8.2f}x "
            f"{saved_bytes[name] / 2**20:>15.0f} MiB"
        )
    return 0


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


if __name__ == "__main__":
    sys.exit(main())
