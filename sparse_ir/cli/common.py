"""Options and helpers shared by several subcommands."""

from __future__ import annotations

import argparse
import contextlib
import typing
from collections.abc import Iterator

from sparse_ir.encoders.options import Pooling, Precision, Runtime
from sparse_ir.encoders.parallel import AUTO_PROCESSES_MIN_TEXTS, auto_processes


def add_model_options(
    parser: argparse.ArgumentParser, *, default_model: str | None = "splade-tiny"
) -> None:
    """--model, --device, --batch-size, --precision, --runtime, --pooling, --processes,
    --threads."""
    group = parser.add_argument_group("model")
    group.add_argument(
        "--model",
        default=default_model,
        help="bundled name (splade-tiny), local directory or Hugging Face id "
        "(e.g. naver/splade-v3)" + (f"; default {default_model}" if default_model else ""),
    )
    group.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, mps (default cpu)")
    group.add_argument(
        "--batch-size", type=int, default=32, help="texts per forward pass (default: %(default)s)"
    )
    group.add_argument(
        "--precision",
        choices=typing.get_args(Precision),
        default="auto",
        help="mixed = int8/bfloat16 screen of the vocabulary + float32 "
        "for the candidate terms (same weights as float32, faster); "
        "bfloat16 = mixed with the transformer in bfloat16 (fastest, "
        "weights within ~1%%); int8 = the transformer's linear layers in int8, the "
        "vocabulary in float32 (CPU; for BERT-base-size models: ~1.5x float32 here, "
        "weights within a few %%); auto = mixed where int8 (VNNI) or bfloat16 is fast, else "
        "float32 (default: %(default)s)",
    )
    group.add_argument(
        "--runtime",
        choices=typing.get_args(Runtime),
        default="torch",
        help="what runs the transformer body: torch, or openvino (CPU; pip install "
        "'sparse-ir[openvino]'; converted once per model into ~/.cache/sparse_ir or "
        "$SPARSE_IR_CACHE_DIR): with --precision bfloat16 the fastest body for BERT-base-size "
        "models on CPUs with AVX512-BF16 (docs/encoding.md) (default: %(default)s)",
    )
    group.add_argument(
        "--pooling",
        choices=typing.get_args(Pooling),
        default=None,
        help="max (SPLADE v2/++/v3) or sum (SPLADE v1) (default: the model's "
        "own setting for a sentence-transformers model, else max)",
    )
    group.add_argument(
        "--processes",
        type=processes_option,
        default="auto",
        help="worker processes for CPU encoding, each with cores/N threads; 1 = one "
        "process, its threads on every core; auto = one single-threaded worker per core "
        f"for an input of >= {AUTO_PROCESSES_MIN_TEXTS} texts (they keep their speed on a "
        "busy machine, where threads wait for one another), else 1 (default: %(default)s)",
    )
    group.add_argument(
        "--threads",
        type=processes_option,
        default="auto",
        help="PyTorch threads of each encoding process: auto = every usable core (split "
        "among --processes), but each batch on no more threads than the cores other "
        "processes leave free, measured as the encode goes (a thread sharing its core with "
        "a busy process holds the others up); N = exactly N threads, whatever the machine "
        "does (default: %(default)s)",
    )


def load_encoder(args: argparse.Namespace, model: str | None = None):
    """The SpladeEncoder described by the model options (a ParallelSpladeEncoder for
    ``--processes`` > 1: close it, or use :func:`opened_encoder`)."""
    options = {"batch_size": args.batch_size, "precision": args.precision}
    if getattr(args, "runtime", "torch") != "torch":
        options["runtime"] = args.runtime
    if getattr(args, "pooling", None) is not None:
        options["pooling"] = args.pooling
    if getattr(args, "document_max_length", None) is not None:
        options["document_max_length"] = args.document_max_length
    threads = getattr(args, "threads", "auto")
    if threads != "auto":
        options["adapt_threads"] = False
    processes = getattr(args, "processes", 1)
    if processes == "auto":
        processes = auto_processes(_input_texts(args), args.device)
    if processes > 1:
        from sparse_ir.encoders.parallel import ParallelSpladeEncoder

        if args.device != "cpu":
            raise ValueError(
                f"--processes runs CPU workers; it does not combine with --device {args.device}"
            )
        return ParallelSpladeEncoder(
            model or args.model,
            processes=processes,
            threads=None if threads == "auto" else threads,
            **options,
        )
    from sparse_ir.encoders.splade import SpladeEncoder

    if threads != "auto":
        import torch

        torch.set_num_threads(threads)

    return SpladeEncoder.from_pretrained(model or args.model, device=args.device, **options)


@contextlib.contextmanager
def opened_encoder(args: argparse.Namespace, model: str | None = None) -> Iterator:
    """:func:`load_encoder` for a ``with`` block: worker processes stop at its end."""
    encoder = load_encoder(args, model)
    try:
        yield encoder
    finally:
        close = getattr(encoder, "close", None)
        if close is not None:
            close()


def _input_texts(args: argparse.Namespace) -> int | None:
    """Lines of the command's ``--input`` file (None when it has none or it is unreadable)."""
    from pathlib import Path

    from sparse_ir.pipeline import count_lines

    path = getattr(args, "input", None)
    if not path or not Path(path).is_file():
        return None
    try:
        return count_lines(path)
    except OSError:
        return None


def processes_option(text: str) -> int | str:
    """argparse type of ``--processes`` and ``--threads``: ``auto`` or an integer >= 1."""
    if text == "auto":
        return text
    try:
        return positive_int(text)
    except (ValueError, argparse.ArgumentTypeError):
        raise argparse.ArgumentTypeError(
            f"must be 'auto' or a positive integer, got {text!r}"
        ) from None


def add_json_option(parser: argparse.ArgumentParser) -> None:
    """``--json``: print the command's result as one JSON object (schemas in docs/cli.md)."""
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object instead of text (schema in docs/cli.md) (default: text)",
    )


def print_json(data: object, out=None) -> None:
    """``data`` as indented JSON on stdout (non-ASCII kept), the machine form of a command."""
    import json
    import sys

    print(json.dumps(data, indent=1, ensure_ascii=False), file=out or sys.stdout)


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value
