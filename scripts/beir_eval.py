#!/usr/bin/env python3
"""Encode, index and search a BEIR dataset with a SPLADE model; print one table, write the run.

    python scripts/beir_eval.py --data ../shared/data/scifact --model splade-tiny

Prints nDCG@10, MRR@10, R@100, R@1000, average active terms per document and per query, index
size, encoding throughput (docs/s) and search throughput (queries/s, pre-encoded, and end to end
with query encoding).
"""

from __future__ import annotations

import argparse
import sys
import time
import typing
from pathlib import Path

import _common

from sparse_ir.encoders.options import Precision
from sparse_ir.encoders.splade import SpladeEncoder
from sparse_ir.eval import evaluate, load_beir
from sparse_ir.pipeline import index_corpus
from sparse_ir.quantize import Quantizer


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data",
        default=None,
        help="BEIR dataset directory (default: SciFact at ../shared/data/scifact)",
    )
    parser.add_argument("--split", default="test")
    parser.add_argument("--model", default="splade-tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="auto", choices=typing.get_args(Precision))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--scale", type=float, default=100.0)
    parser.add_argument(
        "--index", default=None, help="index directory (default indexes/<dataset>-<model>)"
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="reuse an existing index at --index instead of rebuilding",
    )
    parser.add_argument("--run", default=None, help="run file to write (default runs/...)")
    parser.add_argument("--threads", type=int, default=1, help="search threads")
    parser.add_argument("-k", type=int, default=1000, help="hits per query")
    args = parser.parse_args(argv)

    data = _common.scifact_data(parser, args.data)
    dataset = load_beir(data, args.split)
    name = f"{data.name}-{Path(args.model).name}"
    index_path = Path(args.index or f"indexes/{name}")
    run_path = Path(args.run or f"runs/{name}.{args.split}.trec")
    run_path.parent.mkdir(parents=True, exist_ok=True)

    encoder = SpladeEncoder.from_pretrained(
        args.model, device=args.device, precision=args.precision, batch_size=args.batch_size
    )
    from sparse_ir.index.impact_index import ImpactIndex

    if args.reuse and index_path.exists():
        index = ImpactIndex.open(index_path)
        encode_rate = float("nan")
    else:
        started = time.perf_counter()
        index, _ = index_corpus(
            encoder,
            dataset.corpus,
            index_path,
            quantizer=Quantizer(scale=args.scale),
            total=len(dataset.corpus),
            settings={"dataset": str(data)},
        )
        encode_rate = len(dataset.corpus) / (time.perf_counter() - started)

    ids = [q.id for q in dataset.queries]
    texts = [q.text for q in dataset.queries]
    started = time.perf_counter()
    queries = index.quantizer.quantize(encoder.encode_queries(texts, ids=ids, show_progress=False))
    encode_queries_seconds = time.perf_counter() - started
    index.search_batch(queries, 10, threads=args.threads)  # warm-up (numba compile)
    started = time.perf_counter()
    run = index.search_batch(queries, args.k, threads=args.threads)
    search_seconds = time.perf_counter() - started
    run.name = name
    run.write_trec(run_path)
    scores = evaluate(run, dataset.qrels)

    rows = [
        ("dataset", f"{data.name} ({args.split}, {len(ids)} queries, {index.num_documents} docs)"),
        ("model", f"{args.model} ({encoder.precision}, {args.device})"),
        *[(k, f"{v:.4f}") for k, v in scores.items()],
        ("avg terms / doc", f"{index.num_postings / index.num_documents:.1f}"),
        ("avg terms / query", f"{queries.nnz / len(queries):.1f}"),
        ("index size", f"{index.size_bytes() / 1e6:.1f} MB"),
        ("encode docs/s", f"{encode_rate:.1f}"),
        (
            f"queries/s (pre-encoded, k={args.k}, {args.threads} thread(s))",
            f"{len(ids) / search_seconds:.0f}",
        ),
        (
            "queries/s (with query encoding)",
            f"{len(ids) / (search_seconds + encode_queries_seconds):.0f}",
        ),
        ("run file", str(run_path)),
    ]
    width = max(len(r[0]) for r in rows)
    for label, value in rows:
        print(f"{label:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
