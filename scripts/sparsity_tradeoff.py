#!/usr/bin/env python3
"""Effectiveness vs sparsity: fine-tune at several λ_d and measure each model on our index.

    python scripts/sparsity_tradeoff.py --lambda-d 1e-4 3e-3 3e-2 --max-steps 100

For each λ_d (document FLOPS weight), the same starting model is fine-tuned with the same
seed, data and steps on the training split (SciFact train by default), then its documents are
encoded and indexed with this repo's pipeline and the held-out training queries searched.
Prints one row per λ_d: nDCG@10, R@100, average terms per document and per query, FLOPS
(expected multiplications per query-document pair), postings scored per query, and the
median single-thread query latency on the impact index (query encoding excluded).

``--report-split test`` measures on the full corpus with the test queries instead (a report
only: nothing is selected on it). The starting model is measured too (λ_d "start").
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import _common


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="BEIR dataset (default SciFact)")
    parser.add_argument("--model", default="splade-tiny")
    parser.add_argument("--output", default="runs/sparsity-tradeoff")
    parser.add_argument("--lambda-d", type=float, nargs="+", default=[1e-4, 3e-3, 3e-2])
    parser.add_argument("--lambda-q", type=float, default=5e-4)
    parser.add_argument("--max-steps", type=int, default=100)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--holdout", type=int, default=100, help="training queries held out for measuring"
    )
    parser.add_argument(
        "--corpus-size",
        type=int,
        default=1500,
        help="documents searched for the held-out queries (a sample keeping "
        "their judged and BM25-mined documents); 0 = the full corpus",
    )
    parser.add_argument(
        "--report-split",
        default=None,
        help="measure on this split over the full corpus instead (e.g. test)",
    )
    parser.add_argument("--no-start", action="store_true", help="do not measure the starting model")
    args = parser.parse_args(argv)

    from sparse_ir.encoders.splade import SpladeEncoder
    from sparse_ir.eval import load_beir
    from sparse_ir.training.prepare import prepare_beir
    from sparse_ir.training.trainer import Trainer, TrainingConfig, load_model
    from sparse_ir.training.validation import measure

    data = _common.scifact_data(parser, args.data)
    output = Path(args.output)
    prepared = prepare_beir(
        data,
        holdout=args.holdout,
        validation_corpus_size=args.corpus_size or None,
        seed=args.seed,
        show_progress=False,
    )
    if args.report_split:
        dataset = load_beir(data, args.report_split)
        corpus, queries, qrels = dataset.corpus, dataset.queries, dataset.qrels
        where = f"{args.report_split} split, full corpus"
    else:
        validation = prepared.validation
        corpus, queries, qrels = validation.corpus, validation.queries, validation.qrels
        where = "held-out training queries"

    def measured(model) -> object:
        encoder = SpladeEncoder.from_pretrained(model) if isinstance(model, (str, Path)) else model
        return measure(
            encoder,
            encoder,
            corpus,
            queries,
            qrels,
            work_dir=output,
            latency_repeats=5,
            show_progress=False,
        )

    rows = []
    if not args.no_start:
        rows.append(("start", measured(args.model), 0.0))
    for lambda_d in args.lambda_d:
        config = TrainingConfig(
            model=args.model,
            output_dir=str(output / f"lambda_d-{lambda_d:g}"),
            lambda_d=lambda_d,
            lambda_q=args.lambda_q,
            learning_rate=args.lr,
            max_steps=args.max_steps,
            batch_size=args.batch_size,
            seed=args.seed,
            eval_at_start=False,
            data=prepared.description,
        )
        model, tokenizer = load_model(args.model)
        started = time.perf_counter()
        result = Trainer(
            config, prepared.examples, None, model=model, tokenizer=tokenizer, show_progress=None
        ).train()
        seconds = time.perf_counter() - started
        rows.append((f"{lambda_d:g}", measured(result.last_checkpoint), seconds))
        print(f"λ_d={lambda_d:g}: {result.steps} steps in {seconds / 60:.1f} min", flush=True)

    print(
        f"\n{args.model} fine-tuned {args.max_steps} steps per λ_d (λ_q={args.lambda_q:g}); "
        f"measured on {where}: {rows[0][1].queries} queries, {rows[0][1].documents} docs"
    )
    print(
        f"{'λ_d':>8} {'nDCG@10':>8} {'R@100':>7} {'terms/doc':>9} {'terms/query':>11} "
        f"{'FLOPS':>7} {'postings/q':>10} {'ms/query':>8}"
    )
    for label, m, _ in rows:
        print(
            f"{label:>8} {m.ndcg_at_10:>8.4f} {m.recall_at_100:>7.4f} "
            f"{m.document_terms:>9.1f} {m.query_terms:>11.1f} {m.flops:>7.2f} "
            f"{m.postings_per_query:>10.0f} {m.query_latency_ms:>8.3f}"
        )
    trained = [m.document_terms for label, m, _ in rows if label != "start"]
    monotone = all(a > b for a, b in itertools.pairwise(trained))
    print(f"terms/doc strictly decreasing with λ_d: {'yes' if monotone else 'NO'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
