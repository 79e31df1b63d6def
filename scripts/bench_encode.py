#!/usr/bin/env python3
"""SPLADE encoding throughput: the textbook formula vs each mode of SpladeEncoder, in one run.

    python scripts/bench_encode.py --docs 1000 --threads 2

Encodes the first --docs SciFact documents (title + text, max_length 256) with:
  reference   full [batch, length, vocab] logits, then ReLU, log1p, masked max (the definition)
  float32         SpladeEncoder: tiled projection, max before activation, length-sorted batches
  mixed           low-precision screen + float32 rescoring of candidate terms (equals float32);
                  "mixed:int8" / "mixed:bfloat16" pick the screen (default: int8 with VNNI)
  bfloat16        as mixed, with the transformer in bfloat16 autocast (approximate)
  processes       --processes workers running "mixed", then "bfloat16" (if --processes > 1)
and prints docs/s (median of --repeats), the ratio to the reference, and the largest difference of
each mode's weights from the reference.
"""

from __future__ import annotations

import argparse
import os
import sys

import _common
import numpy as np
import torch
from _common import median_seconds as timed

from sparse_ir.corpus import load_corpus
from sparse_ir.encoders.reference import reference_encode
from sparse_ir.encoders.screen import int8_supported
from sparse_ir.encoders.splade import SpladeEncoder, bf16_supported


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="BEIR dataset (default SciFact)")
    parser.add_argument("--model", default="splade-tiny")
    parser.add_argument("--docs", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="timed runs per mode, after one warm-up batch (median reported)",
    )
    parser.add_argument(
        "--reference-repeats",
        type=int,
        default=None,
        help="timed runs of the reference (default: --repeats)",
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=0,
        help="also time the multi-process encoder with this many workers",
    )
    parser.add_argument(
        "--modes",
        default="reference,float32,mixed:bfloat16,mixed,bfloat16",
        help="comma-separated: reference, float32, mixed[:SCREEN], "
        "bfloat16[:SCREEN] (SCREEN: int8 or bfloat16)",
    )
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    data = _common.scifact_data(parser, args.data)
    texts = [d.full_text for d in load_corpus(data / "corpus.jsonl")[: args.docs]]
    modes = args.modes.split(",")
    print(
        f"{len(texts)} documents of {data.name}, max_length {args.max_length}, "
        f"{args.threads} threads, batch {args.batch_size}, bf16 fast here: "
        f"{bf16_supported()}, int8 fast here: {int8_supported()}, "
        f"load average {os.getloadavg()[0]:.2f}"
    )

    encoder = SpladeEncoder.from_pretrained(
        args.model, batch_size=args.batch_size, precision="float32"
    )
    default_screen = encoder.screen
    rows, reference = [], None
    if "reference" in modes:

        def run_reference(chosen):
            return reference_encode(
                encoder.model,
                encoder.tokenizer,
                chosen,
                max_length=args.max_length,
                batch_size=args.batch_size,
            ).numpy()

        run_reference(texts[: args.batch_size])  # warm-up, as for every mode
        seconds, reference = timed(
            lambda: run_reference(texts), args.reference_repeats or args.repeats
        )
        rows.append(("reference (textbook formula)", len(texts) / seconds, 0.0))
    for mode in modes:
        if mode == "reference":
            continue
        precision, _, screen = mode.partition(":")
        encoder.precision, encoder.screen = precision, screen or default_screen
        if precision != "float32":
            mode = f"{precision} ({encoder.screen} screen)"
        encoder.encode(texts[: args.batch_size], max_length=args.max_length, show_progress=False)
        seconds, batch = timed(
            lambda: encoder.encode(texts, max_length=args.max_length, show_progress=False),
            args.repeats,
        )
        difference = (
            float("nan")
            if reference is None
            else float(np.abs(batch.to_scipy().toarray() - reference).max())
        )
        rows.append((f"SpladeEncoder {mode}", len(texts) / seconds, difference))
    if args.processes > 1:
        from sparse_ir.encoders.parallel import ParallelSpladeEncoder

        for precision in ("mixed", "bfloat16"):
            with ParallelSpladeEncoder(
                args.model,
                processes=args.processes,
                threads=max(1, args.threads // args.processes),
                batch_size=args.batch_size,
                precision=precision,
            ) as parallel:
                parallel.encode_documents(texts[:64], max_length=args.max_length)
                seconds, batch = timed(
                    lambda: parallel.encode_documents(
                        texts, max_length=args.max_length, show_progress=False
                    ),
                    args.repeats,
                )
            difference = (
                float("nan")
                if reference is None
                else float(np.abs(batch.to_scipy().toarray() - reference).max())
            )
            rows.append(
                (f"{args.processes} processes, {precision}", len(texts) / seconds, difference)
            )

    print(f"load average {os.getloadavg()[0]:.2f}")
    base = rows[0][1] if reference is not None else None
    print(f"{'mode':<34} {'docs/s':>8} {'x ref':>7} {'max |diff|':>11}")
    for label, rate, difference in rows:
        ratio = f"{rate / base:.2f}" if base else "-"
        print(f"{label:<34} {rate:>8.1f} {ratio:>7} {difference:>11.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
