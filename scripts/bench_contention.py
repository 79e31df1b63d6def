#!/usr/bin/env python3
"""Encoding on a busy machine: throughput and one-query latency, threads vs processes.

    python scripts/bench_contention.py --docs 500 --queries 60 --rounds 3

Two phases: the machine as it is, then with --busy competing processes (bounded pure-Python
busy loops started and stopped here). In each phase the configurations take turns within each
round (medians reported):
  2 threads (before)      SpladeEncoder, one process, torch.get_num_threads() threads: the
                          former default of every document encode
  N processes x 1 thread  ParallelSpladeEncoder (what ``--processes auto`` picks for a large input)
  query, all threads      one query at a time (the hybrid search and service path) with every
                          thread (single_thread_tokens=0: the former default)
  query, one thread       the same with the default single_thread_tokens (one thread for small
                          inputs)
  dense query, ...        the same for the dense encoder (--dense), the other side of hybrid
                          search
Documents: the first --docs SciFact documents (title + text, 256 tokens); queries: SciFact's test
queries, each encoded alone, latency median and 90th percentile.
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
    encoder = SpladeEncoder.from_pretrained(args.model, precision=args.precision)
    before = SpladeEncoder(
        encoder.model, encoder.tokenizer, precision=args.precision, single_thread_tokens=0
    )
    print(
        f"{len(texts)} documents, {len(queries)} queries, model {args.model}, precision "
        f"{encoder.precision}, {cores} usable cores, torch threads {torch.get_num_threads()}",
        flush=True,
    )
    started = time.perf_counter()
    parallel = ParallelSpladeEncoder(args.model, precision=args.precision)
    parallel.encode_documents(texts[:8], show_progress=False)
    print(f"{parallel.processes} workers ready in {time.perf_counter() - started:.1f} s")
    configurations = {
        "2 threads (before)": lambda: rate(encoder, texts),
        f"{parallel.processes} processes x 1 thread": lambda: rate(parallel, texts),
        "query, all threads (before)": lambda: latency(before, queries),
        "query, one thread (after)": lambda: latency(encoder, queries),
    }
    if args.dense != "none":
        from sparse_ir.encoders.dense import DenseEncoder

        dense = DenseEncoder.from_pretrained(args.dense)
        dense_before = DenseEncoder.from_pretrained(args.dense, single_thread_tokens=0)
        configurations["dense query, all threads (before)"] = lambda: latency(dense_before, queries)
        configurations["dense query, one thread (after)"] = lambda: latency(dense, queries)
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
                report(phase, configurations, args.rounds)
            finally:
                for competitor in competitors:
                    competitor.kill()
                    competitor.wait()
    finally:
        parallel.close()
    return 0


def report(phase: str, configurations: dict, rounds: int) -> None:
    figures: dict[str, list] = {label: [] for label in configurations}
    loads = []
    for _ in range(rounds):
        for label, measure in configurations.items():
            figures[label].append(measure())
        loads.append(os.getloadavg()[0])
    print(f"\n{phase} (load average {min(loads):.1f}-{max(loads):.1f} during the rounds)")
    for label, values in figures.items():
        if isinstance(values[0], tuple):
            median = statistics.median(v[0] for v in values)
            p90 = statistics.median(v[1] for v in values)
            print(f"  {label:<34} median {median:7.1f} ms  p90 {p90:7.1f} ms")
        else:
            print(f"  {label:<34} {statistics.median(values):7.1f} docs/s")


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


if __name__ == "__main__":
    sys.exit(main())
