"""Options and helpers shared by several subcommands."""

from __future__ import annotations

import argparse


def add_model_options(parser: argparse.ArgumentParser, *, default_model: str | None = "splade-tiny"
                      ) -> None:
    """--model, --device, --batch-size, --precision, --pooling."""
    group = parser.add_argument_group("model")
    group.add_argument("--model", default=default_model,
                       help="bundled name (splade-tiny), local directory or Hugging Face id "
                            "(e.g. naver/splade-v3)" + (f"; default {default_model}"
                                                        if default_model else ""))
    group.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, mps (default cpu)")
    group.add_argument("--batch-size", type=int, default=32, help="texts per forward pass")
    group.add_argument("--precision", choices=["auto", "float32", "mixed", "bfloat16"],
                       default="auto",
                       help="mixed = int8/bfloat16 screen of the vocabulary + float32 "
                            "for the candidate terms (same weights as float32, faster); "
                            "bfloat16 = mixed with the transformer in bfloat16 (fastest, "
                            "weights within ~1%%); auto = mixed where int8 (VNNI) or bfloat16 "
                            "is fast, else float32")
    group.add_argument("--pooling", choices=["max", "sum"], default="max",
                       help="max (SPLADE v2/++/v3, default) or sum (SPLADE v1)")


def load_encoder(args: argparse.Namespace, model: str | None = None):
    """The SpladeEncoder described by the model options."""
    from sparse_ir.encoders.splade import SpladeEncoder

    return SpladeEncoder.from_pretrained(model or args.model, device=args.device,
                                         batch_size=args.batch_size, precision=args.precision,
                                         pooling=args.pooling)


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value
