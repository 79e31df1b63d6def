#!/usr/bin/env python3
"""SPLADE encoding throughput: the textbook formula vs each mode of SpladeEncoder, in one run.

    python scripts/bench_encode.py --docs 1000 --threads 2
    python scripts/bench_encode.py --model-config bert-base --docs 100 --rounds 3 \\
        --modes reference,default,int8

Encodes the first --docs SciFact documents (title + text, max_length 256) with:
  reference   full [batch, length, vocab] logits, then ReLU, log1p, masked max (the definition)
  default     SpladeEncoder as a user gets it (precision "auto", resolved on this machine)
  float32     SpladeEncoder: tiled projection, max before activation, length-sorted batches
  mixed       low-precision screen + float32 rescoring of candidate terms (equals float32);
              "mixed:int8" / "mixed:bfloat16" pick the screen (default: int8 with VNNI)
  bfloat16    as mixed, with the transformer in bfloat16 autocast (approximate)
  int8        the transformer's linear layers in dynamic int8, the projection in float32
  MODE@openvino  the same precision with the transformer body on OpenVINO (float32, mixed,
              bfloat16; converted once per model into $SPARSE_IR_CACHE_DIR or ~/.cache/sparse_ir,
              before any timing)
  processes   --processes workers running "mixed", then "bfloat16" (if --processes > 1)
Every mode is warmed up on one batch, then the modes take turns within each of --rounds rounds
(so they share the machine's load); the table gives median docs/s, the ratio to the reference,
the largest difference of each mode's weights from the float32 weights, and the mean and lowest
share of each document's 64 heaviest float32 terms that the mode also ranks in its top 64. The
float32 weights are those of the float32 mode, else of a PyTorch "mixed" mode (default where a
screen is fast: equal to float32's to float32 rounding), else of one extra float32 pass.

--model-config bert-base builds a randomly initialised BertForMaskedLM with bert-base-uncased's
configuration (110M parameters; the bundled splade-tiny tokenizer, same 30,522-token vocabulary)
and shifts its output bias so that about --active-terms terms per document are non-zero, as in a
trained SPLADE model (with the random bias nearly every term would be, and the screens' cost
depends on that sparsity). Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import _common
import numpy as np
import torch

from sparse_ir.corpus import load_corpus
from sparse_ir.encoders.reference import reference_encode
from sparse_ir.encoders.screen import int8_supported
from sparse_ir.encoders.splade import EncodeStats, SpladeEncoder, bf16_supported

BERT_BASE = {
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="BEIR dataset (default SciFact)")
    parser.add_argument("--model", default="splade-tiny", help="default: %(default)s")
    parser.add_argument(
        "--model-config",
        choices=["bert-base"],
        default=None,
        help="a random model of this configuration instead of --model (default: none)",
    )
    parser.add_argument(
        "--active-terms",
        type=int,
        default=294,
        help="--model-config: mean non-zero terms per document (default: %(default)s)",
    )
    parser.add_argument("--docs", type=int, default=1000, help="default: %(default)s")
    parser.add_argument("--threads", type=int, default=2, help="default: %(default)s")
    parser.add_argument("--batch-size", type=int, default=32, help="default: %(default)s")
    parser.add_argument("--max-length", type=int, default=256, help="default: %(default)s")
    parser.add_argument(
        "--rounds",
        "--repeats",
        type=int,
        default=1,
        help="rounds, every mode timed once per round (median reported) (default: %(default)s)",
    )
    parser.add_argument(
        "--reference-repeats",
        type=int,
        default=None,
        help="rounds that time the reference too (default: every round)",
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=0,
        help="also time the multi-process encoder with this many workers (default: off)",
    )
    parser.add_argument(
        "--modes",
        default="reference,float32,mixed:bfloat16,mixed,bfloat16,int8",
        help="comma-separated: reference, default, float32, mixed[:SCREEN], "
        "bfloat16[:SCREEN], int8 (SCREEN: int8 or bfloat16), each optionally followed by "
        "@openvino (the body on OpenVINO) (default: %(default)s)",
    )
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    data = _common.scifact_data(parser, args.data)
    texts = [d.full_text for d in load_corpus(data / "corpus.jsonl")[: args.docs]]
    base = SpladeEncoder.from_pretrained(args.model, precision="float32")
    model = base.model
    if args.model_config:
        model = random_model(base, texts[: args.batch_size], args)
    parameters = sum(p.numel() for p in model.parameters())
    print(
        f"{len(texts)} documents of {data.name}, max_length {args.max_length}, "
        f"model {args.model_config or args.model} ({parameters / 1e6:.1f}M parameters), "
        f"{args.threads} threads, batch {args.batch_size}, bf16 fast here: "
        f"{bf16_supported()}, int8 (VNNI) fast here: {int8_supported()}, "
        f"load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    runners, exact_mode = {}, {}
    for mode in args.modes.split(","):
        runners[mode] = runner(mode, model, base.tokenizer, texts, args)
        exact_mode[mode] = getattr(runners[mode], "exact", False)
    seconds: dict[str, list[float]] = {mode: [] for mode in runners}
    results = {}
    for run in runners.values():
        run(texts[: args.batch_size])  # warm-up
    for round_number in range(max(args.rounds, 1)):
        for mode, run in runners.items():
            if mode == "reference" and round_number >= (args.reference_repeats or args.rounds):
                continue
            started = time.perf_counter()
            results[mode] = run(texts)
            seconds[mode].append(time.perf_counter() - started)
        print(
            f"round {round_number + 1}: "
            + ", ".join(f"{m} {len(texts) / s[-1]:.2f}" for m, s in seconds.items() if s)
            + f" docs/s, load average {os.getloadavg()[0]:.2f}",
            flush=True,
        )
    if args.processes > 1:
        for precision in ("mixed", "bfloat16"):
            label = f"{args.processes} processes, {precision}"
            seconds[label], results[label] = time_processes(texts, args, precision)

    exact = results.get("float32")
    if exact is None:
        # "mixed" on PyTorch computes the float32 weights (its screen is proven exact).
        exact = next((results[m] for m in runners if exact_mode.get(m)), None)
    if exact is None:
        exact = runner("float32", model, base.tokenizer, texts, args)(texts)
    print(f"load average {os.getloadavg()[0]:.2f}")
    reference_rate = (
        len(texts) / statistics.median(seconds["reference"]) if "reference" in seconds else None
    )
    print(
        f"{'mode':<34} {'docs/s':>8} {'x ref':>7} {'max |diff|':>11} "
        f"{'top-64 mean':>12} {'min':>6} {'terms/doc':>10}"
    )
    for label, times in seconds.items():
        rate = len(texts) / statistics.median(times)
        ratio = f"{rate / reference_rate:.2f}" if reference_rate else "-"
        weights = results[label]
        mean, lowest = top_agreement(exact, weights, 64)
        print(
            f"{label:<34} {rate:>8.2f} {ratio:>7} {np.abs(weights - exact).max():>11.2e} "
            f"{mean:>12.4f} {lowest:>6.3f} {(weights > 0).sum(1).mean():>10.1f}"
        )
    return 0


def runner(mode: str, model, tokenizer, texts, args):
    """A function texts -> dense [n, vocab] weights for one mode."""
    if mode == "reference":
        return lambda chosen: reference_encode(
            model, tokenizer, chosen, max_length=args.max_length, batch_size=args.batch_size
        ).numpy()
    mode, _, runtime = mode.partition("@")
    precision, _, screen = mode.partition(":")
    options = {"batch_size": args.batch_size}
    if runtime:
        options["runtime"] = runtime
    if precision != "default":
        options["precision"] = precision
    if screen:
        options["screen"] = screen
    encoder = SpladeEncoder(model, tokenizer, **options)
    if precision == "default":
        print(f"default: precision {encoder.precision!r}, screen {encoder.screen!r}", flush=True)

    def run(chosen):
        batch = encoder.encode(chosen, max_length=args.max_length, show_progress=False)
        return batch.to_scipy().toarray()

    run.exact = encoder.precision in ("float32", "mixed") and encoder.runtime == "torch"
    return run


def random_model(base: SpladeEncoder, sample: list[str], args) -> torch.nn.Module:
    """A random BertForMaskedLM of --model-config, its output bias set for --active-terms."""
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(base.vocab), **BERT_BASE)
    model = BertForMaskedLM(config).eval()
    # The max over each text's tokens of every term's logit (bias 0): shift the bias so that
    # --active-terms per text are positive on average.
    probe = SpladeEncoder(model, base.tokenizer, precision="float32", batch_size=args.batch_size)
    ids, _ = probe._tokenize_non_empty(
        sample, list(range(len(sample))), args.max_length, EncodeStats()
    )
    decoder = model.get_output_embeddings()
    with torch.no_grad():
        decoder.bias.zero_()
        logits = []
        for row in ids:
            hidden = model.cls.predictions.transform(
                model.bert(input_ids=torch.tensor([row])).last_hidden_state
            )[0]
            logits.append((hidden @ decoder.weight.T).amax(dim=0))
        logits = torch.stack(logits).flatten()
        cut = torch.topk(logits, args.active_terms * len(sample)).values[-1]
        decoder.bias -= cut
    return model


def time_processes(texts, args, precision):
    from sparse_ir.encoders.parallel import ParallelSpladeEncoder

    with ParallelSpladeEncoder(
        args.model,
        processes=args.processes,
        threads=max(1, args.threads // args.processes),
        batch_size=args.batch_size,
        precision=precision,
    ) as parallel:
        parallel.encode_documents(texts[:64], max_length=args.max_length)
        times = []
        for _ in range(max(args.rounds, 1)):
            started = time.perf_counter()
            batch = parallel.encode_documents(
                texts, max_length=args.max_length, show_progress=False
            )
            times.append(time.perf_counter() - started)
    return times, batch.to_scipy().toarray()


def top_agreement(exact: np.ndarray, weights: np.ndarray, k: int) -> tuple[float, float]:
    """Mean and lowest share, over documents, of the k heaviest exact terms also in the k
    heaviest of ``weights`` (documents with fewer than k exact terms compare all of theirs)."""
    shares = []
    for a, b in zip(exact, weights):
        depth = min(k, int((a > 0).sum()))
        if depth == 0:
            continue
        top_a = set(np.argsort(-a, kind="stable")[:depth].tolist())
        top_b = set(np.argsort(-b, kind="stable")[:depth].tolist())
        shares.append(len(top_a & top_b) / depth)
    return (float(np.mean(shares)), float(np.min(shares))) if shares else (1.0, 1.0)


if __name__ == "__main__":
    sys.exit(main())
