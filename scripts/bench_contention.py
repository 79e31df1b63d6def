#!/usr/bin/env python3
"""Encoding on a busy machine: throughput and one-query latency, before and after.

    python scripts/bench_contention.py --docs 200 --queries 60 --rounds 3 \
        --sparse-index INDEX --dense-index DENSE_INDEX

Two phases: the machine as it is, then with --busy competing processes (bounded pure-Python
busy loops started and stopped here). In each phase the configurations take turns within each
round (medians reported, and the median of the per-round after/before ratios):
  documents, before       SpladeEncoder, one process, torch.get_num_threads() threads whatever
                          the machine does (adapt_threads=False): the former default
  documents, after        the default: each batch on no more threads than the cores other
                          processes leave free (adapt_threads=True)
  documents, N processes  ParallelSpladeEncoder, N x 1 thread (``--processes auto`` for 2,000+
                          texts); worker start-up not counted (printed once)
  query, before / after   one SPLADE query at a time with every thread (single_thread_tokens=0,
                          the former default) / the default one thread
  dense query, ...        the same for the dense encoder (--dense), hybrid search's other side
  hybrid query, ...       one text query end to end through HybridSearcher (both encoders,
                          both searches, fusion) with the indexes of --sparse-index and
                          --dense-index, the encoders as before / as after
Documents: the first --docs SciFact documents (title + text, 256 tokens); queries: SciFact's test
queries, each alone, latency median and 90th percentile.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

import _common
import numpy as np
import torch

from sparse_ir.corpus import load_corpus
from sparse_ir.encoders.parallel import ParallelSpladeEncoder, usable_cores
from sparse_ir.encoders.splade import SpladeEncoder
from sparse_ir.eval import load_beir

BUSY_LOOP = (
    "import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end:\n    pass\n"
)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="BEIR dataset (default SciFact)")
    parser.add_argument("--model", default="splade-tiny", help="default: %(default)s")
    parser.add_argument("--precision", default="auto", help="default: %(default)s")
    parser.add_argument("--docs", type=int, default=500, help="default: %(default)s")
    parser.add_argument("--queries", type=int, default=60, help="default: %(default)s")
    parser.add_argument("--rounds", type=int, default=3, help="default: %(default)s")
    parser.add_argument(
        "--dense",
        default="minilm",
        help="also time one-query encoding of this dense model, the hybrid search's other "
        "side ('none': skip) (default: %(default)s)",
    )
    parser.add_argument("--sparse-index", default=None, help="SPLADE index for --dense-index")
    parser.add_argument(
        "--dense-index",
        default=None,
        help="with --sparse-index: time one hybrid query end to end (default: skipped)",
    )
    parser.add_argument(
        "--processes",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time the worker processes (default: %(default)s)",
    )
    parser.add_argument(
        "--busy", type=int, default=1, help="competing busy processes (default: %(default)s)"
    )
    parser.add_argument(
        "--busy-seconds",
        type=float,
        default=1200.0,
        help="upper bound on each busy process's life (default: %(default)s)",
    )
    args = parser.parse_args(argv)

    data = _common.scifact_data(parser, args.data)
    texts = [d.full_text for d in load_corpus(data / "corpus.jsonl")[: args.docs]]
    queries = [q.text for q in load_beir(data, "test").queries[: args.queries]]
    cores = usable_cores()
    torch.set_num_threads(cores)
    after = SpladeEncoder.from_pretrained(args.model, precision=args.precision)
    before = SpladeEncoder(after.model, after.tokenizer, precision=args.precision, **BEFORE)
    print(
        f"{len(texts)} documents, {len(queries)} queries, model {args.model}, precision "
        f"{after.precision}, {cores} usable cores, torch threads {torch.get_num_threads()}",
        flush=True,
    )
    pairs = {
        "documents": (lambda: rate(before, texts), lambda: rate(after, texts)),
        "SPLADE query": (lambda: latency(before, queries), lambda: latency(after, queries)),
    }
    dense = dense_before = hybrid_before = hybrid_after = None
    if args.dense != "none":
        from sparse_ir.encoders.dense import DenseEncoder

        dense = DenseEncoder.from_pretrained(args.dense)
        dense_before = DenseEncoder.from_pretrained(args.dense, **BEFORE)
        pairs["dense query"] = (
            lambda: latency(dense_before, queries),
            lambda: latency(dense, queries),
        )
    if args.sparse_index and args.dense_index:
        hybrid_before = hybrid(args.sparse_index, args.dense_index, BEFORE)
        hybrid_after = hybrid(args.sparse_index, args.dense_index, {})
        pairs["hybrid query"] = (
            lambda: hybrid_latency(hybrid_before, queries),
            lambda: hybrid_latency(hybrid_after, queries),
        )
    # Warm-up (compiled kernels, first pages of the indexes, first calls of each model).
    rate(before, texts[:8])
    rate(after, texts[:8])
    for encoder in (before, after, dense, dense_before, hybrid_before, hybrid_after):
        if encoder is not None:
            (hybrid_latency if hasattr(encoder, "searchers") else latency)(encoder, queries[:3])
    parallel = None
    if args.processes:
        started = time.perf_counter()
        parallel = ParallelSpladeEncoder(args.model, precision=args.precision)
        parallel.encode_documents(texts[:8], show_progress=False)
        print(f"{parallel.processes} workers ready in {time.perf_counter() - started:.1f} s")
        pairs[f"documents, {parallel.processes} processes x 1 thread"] = (
            lambda: rate(before, texts),
            lambda: rate(parallel, texts),
        )
    try:
        for phase, busy in (("as is", 0), (f"{args.busy} busy process(es)", args.busy)):
            competitors = [
                subprocess.Popen(
                    [sys.executable, "-c", BUSY_LOOP.format(seconds=args.busy_seconds)]
                )
                for _ in range(busy)
            ]
            try:
                time.sleep(1.0 if busy else 0.0)
                report(phase, pairs, args.rounds)
            finally:
                for competitor in competitors:
                    competitor.kill()
                    competitor.wait()
    finally:
        if parallel is not None:
            parallel.close()
    return 0


#: The former defaults: every thread for every batch, whatever the machine does.
BEFORE = {"single_thread_tokens": 0, "adapt_threads": False}


def hybrid(sparse_index: str, dense_index: str, options: dict):
    from sparse_ir.hybrid import HybridSearcher, open_searcher

    return HybridSearcher(
        [open_searcher(sparse_index, **options), open_searcher(dense_index, **options)]
    )


def report(phase: str, pairs: dict, rounds: int) -> None:
    """Run every pair's before and after in turn (which goes first alternates by round)."""
    figures: dict[str, list] = {label: [] for label in pairs}
    loads = [os.getloadavg()[0]]
    for r in range(rounds):
        for label, (before, after) in pairs.items():
            if r % 2:
                second, first = after(), before()
            else:
                first, second = before(), after()
            figures[label].append((first, second))
        loads.append(os.getloadavg()[0])
    print(f"\n{phase} (load average {min(loads):.1f}-{max(loads):.1f} during the rounds)")
    for label, values in figures.items():
        if isinstance(values[0][0], tuple):  # latencies: (median, p90) ms; gain = before/after
            b = statistics.median(v[0][0] for v in values)
            b90 = statistics.median(v[0][1] for v in values)
            a = statistics.median(v[1][0] for v in values)
            a90 = statistics.median(v[1][1] for v in values)
            gains = [v[0][0] / v[1][0] for v in values]
            print(
                f"  {label:<36} before median {b:7.1f} ms (p90 {b90:7.1f})  after {a:7.1f} ms "
                f"(p90 {a90:7.1f})  gain {statistics.median(gains):.2f}x "
                f"({min(gains):.2f}-{max(gains):.2f})"
            )
        else:  # rates: docs/s; gain = after/before
            b = statistics.median(v[0] for v in values)
            a = statistics.median(v[1] for v in values)
            gains = [v[1] / v[0] for v in values]
            print(
                f"  {label:<36} before {b:7.1f} docs/s  after {a:7.1f} docs/s  gain "
                f"{statistics.median(gains):.2f}x ({min(gains):.2f}-{max(gains):.2f})"
            )


def rate(encoder, texts) -> float:
    started = time.perf_counter()
    encoder.encode_documents(texts, show_progress=False)
    return len(texts) / (time.perf_counter() - started)


def latency(encoder, queries) -> tuple[float, float]:
    times = []
    for query in queries:
        started = time.perf_counter()
        encoder.encode_queries([query], show_progress=False)
        times.append((time.perf_counter() - started) * 1000)
    return float(np.median(times)), float(np.percentile(times, 90))


def hybrid_latency(searcher, queries) -> tuple[float, float]:
    times = []
    for query in queries:
        started = time.perf_counter()
        searcher.search(query, 10)
        times.append((time.perf_counter() - started) * 1000)
    return float(np.median(times)), float(np.percentile(times, 90))


if __name__ == "__main__":
    sys.exit(main())
