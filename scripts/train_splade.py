#!/usr/bin/env python3
"""Fine-tune a SPLADE model on a BEIR training split, then report it on the test split.

    python scripts/train_splade.py --output runs/scifact-ft --max-minutes 30 --baseline

Defaults: SciFact (../shared/data/scifact), splade-tiny. Training uses the train split only:
validation queries are held out of it (``--holdout``), the best checkpoint is chosen on them.
The test split is touched once, after training, to report the starting model (``--baseline``)
and the best checkpoint on the full corpus with this repo's pipeline (encode at 256 tokens,
impact index, exact search). Prints the validation curve (nDCG@10 and average terms at each
evaluation), the training wall time and step rate, and the test table.

Every option of ``sparse-ir train`` is accepted (see ``--help``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import _common

from sparse_ir.cli.train import add_training_arguments, print_curve, train_from_args


def test_measurement(
    model: str, data: Path, split: str, *, mode: str, precision: str, work_dir: Path
):
    """Full-corpus measurement of ``model`` on ``split`` (fresh index, removed afterwards)."""
    from sparse_ir.encoders.splade import SpladeEncoder
    from sparse_ir.eval import load_beir
    from sparse_ir.training.validation import measure

    dataset = load_beir(data, split)
    encoder = SpladeEncoder.from_pretrained(model, precision=precision)
    query_encoder = encoder
    if mode == "inference-free":
        from sparse_ir.training.inference_free import IdfQueryEncoder

        query_encoder = IdfQueryEncoder.from_pretrained(model)
    return measure(
        encoder,
        query_encoder,
        dataset.corpus,
        dataset.queries,
        dataset.qrels,
        work_dir=work_dir,
        latency_repeats=3,
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_training_arguments(parser, data_required=False)
    parser.add_argument(
        "--test-split",
        default="test",
        help="split reported after training (never used for training or selection); 'none' to skip",
    )
    parser.add_argument(
        "--baseline", action="store_true", help="also report the starting model on the test split"
    )
    parser.add_argument("--quiet-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    if not args.data and not args.train_jsonl:
        args.data = str(_common.scifact_data(parser, None))
    args.show_progress = False if args.quiet_progress else None

    started = time.perf_counter()
    result = train_from_args(args)
    train_seconds = time.perf_counter() - started
    print("\nvalidation curve (held-out training queries; selection uses these only)")
    print_curve(result.history)
    print(
        f"training: {result.steps} steps in {train_seconds / 60:.1f} min wall time "
        f"(setup, mining, evaluations included), stopped by {result.stopped}; "
        f"{result.step_seconds / max(1, result.steps_this_run):.2f} s/step over "
        f"{result.steps_this_run} steps, {result.eval_seconds / 60:.1f} min evaluating"
    )
    print(f"best checkpoint: {result.best_checkpoint}  last: {result.last_checkpoint}")

    if args.test_split == "none" or not args.data:
        return 0
    report = []
    models = [("start: " + args.model, args.model, "siamese")] if args.baseline else []
    chosen = result.best_checkpoint or result.last_checkpoint
    models.append((f"fine-tuned: {chosen}", str(chosen), args.mode))
    for label, model, mode in models:
        measured = test_measurement(
            model,
            Path(args.data),
            args.test_split,
            mode=mode,
            precision=args.eval_precision,
            work_dir=Path(args.output),
        )
        report.append((label, measured))
    print(
        f"\n{args.test_split} split, full corpus ({report[0][1].documents} documents, "
        f"{report[0][1].queries} queries), encoded at {args.eval_document_max_length} "
        "tokens, exact impact search:"
    )
    print(
        f"{'model':<48} {'nDCG@10':>8} {'R@100':>7} {'terms/doc':>9} {'terms/q':>8} "
        f"{'FLOPS':>7} {'ms/query':>8}"
    )
    for label, m in report:
        print(
            f"{label[-48:]:<48} {m.ndcg_at_10:>8.4f} {m.recall_at_100:>7.4f} "
            f"{m.document_terms:>9.1f} {m.query_terms:>8.1f} {m.flops:>7.2f} "
            f"{m.query_latency_ms:>8.2f}"
        )
    with open(Path(args.output) / "test_report.json", "w") as handle:
        json.dump({label: m.to_dict() for label, m in report}, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
