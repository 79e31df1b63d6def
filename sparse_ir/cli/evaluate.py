"""``sparse-ir evaluate``: metrics of a TREC run against qrels."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    """Add the evaluate subcommand."""
    parser = subparsers.add_parser(
        "evaluate", help="nDCG@10, MRR@10, R@100, R@1000 of a TREC run",
        description="Evaluate a TREC run file against qrels (BEIR TSV or TREC format) with "
                    "ir_measures. Judged queries missing from the run count as 0.")
    parser.add_argument("--run", required=True, help="TREC run file")
    parser.add_argument("--qrels", required=True, help="qrels file")
    parser.add_argument("--metric", action="append", default=None,
                        help="ir_measures metric (repeatable), e.g. nDCG@10, RR@10, R@100, "
                             "P@5; default: nDCG@10 MRR@10 R@100 R@1000")
    parser.add_argument("--skip-invalid", action="store_true",
                        help="skip invalid lines of the run and qrels (counted and reported)")
    parser.set_defaults(handler=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> int:
    import sys

    from sparse_ir.eval import evaluate, read_qrels
    from sparse_ir.jsonl import SkipReport
    from sparse_ir.results import Run

    report = SkipReport()
    run = Run.read_trec(args.run, skip_invalid=args.skip_invalid, report=report)
    qrels = read_qrels(args.qrels, skip_invalid=args.skip_invalid, report=report)
    if report.total:
        print(report.summary(), file=sys.stderr)
    scores = evaluate(run, qrels, args.metric)
    judged = sum(1 for q in qrels.values() if any(r > 0 for r in q.values()))
    print(f"{args.run}: {len(run)} queries in the run, {judged} judged")
    for name, value in scores.items():
        print(f"{name:<10} {value:.4f}")
    return 0
