"""Live index on the 1M synthetic corpus: adding documents vs rebuilding, and searching
segments with deletions vs the force-merged index.

    flock /work/wt/bench.lock python scripts/bench_live.py --work /work/bench-data

1. Build the first N - 10,000 documents; time a full rebuild of all N; then open a writer on
   the first index, add the last 10,000 documents and commit. Reported: the add + commit time
   and the open + add + commit + close time, as shares of the full rebuild (same run).
2. Write the N documents through a writer as 10 segments (10 commits, no merge policy),
   delete 10% of them at random (one commit), copy the index (hard links) and
   ``force_merge(1)`` the copy; then time exact search (``exhaustive`` and ``pruned``, 300
   queries, k = 10, one query at a time) on both, their passes alternating (median of the
   passes' mean latencies), and check that both give the same hits.

Indexes go under ``WORK/live/`` and are deleted at the end (``--keep`` keeps them).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import time
from pathlib import Path

import _common  # noqa: F401 - puts the repository first on sys.path
import numpy as np

from sparse_ir.index.impact_index import ImpactIndex
from sparse_ir.index.writer import IndexWriter
from sparse_ir.quantize import Quantizer
from sparse_ir.sparse_batch import SparseBatch
from sparse_ir.synthetic import NpzCorpus

ADDED = 10_000


def timed(label: str, figures: dict, action):
    started = time.perf_counter()
    result = action()
    figures[label] = round(time.perf_counter() - started, 3)
    print(f"{label}: {figures[label]:.3f}s", flush=True)
    return result


def add_vs_rebuild(corpus: NpzCorpus, work: Path, n: int, budget: str) -> dict:
    figures: dict = {}
    quantizer = Quantizer(scale=100)
    base, full = work / "base", work / "full"
    timed(
        "base build seconds",
        figures,
        lambda: ImpactIndex.build(
            corpus.documents(100_000, limit=n - ADDED), base, quantizer=quantizer,
            memory_budget=budget, show_progress=False,
        ),
    )  # fmt: skip
    timed(
        "full rebuild seconds",
        figures,
        lambda: ImpactIndex.build(
            corpus.documents(100_000, limit=n), full, quantizer=quantizer,
            memory_budget=budget, show_progress=False,
        ),
    )  # fmt: skip
    shutil.rmtree(full)
    last = SparseBatch.concatenate(list(corpus.documents(100_000, limit=n))[-1:])
    added = last.select(np.arange(len(last) - ADDED, len(last)))
    started = time.perf_counter()
    writer = timed("writer open seconds", figures, lambda: IndexWriter.open(base))
    timed("add + commit seconds", figures, lambda: (writer.add(added), writer.commit()))
    writer.close()
    figures["open + add + commit + close seconds"] = round(time.perf_counter() - started, 3)
    full_seconds = figures["full rebuild seconds"]
    figures["add + commit / rebuild"] = round(figures["add + commit seconds"] / full_seconds, 4)
    figures["open + add + commit + close / rebuild"] = round(
        figures["open + add + commit + close seconds"] / full_seconds, 4
    )
    index = ImpactIndex.open(base)
    assert index.num_documents == n and len(index.segments) == 2
    shutil.rmtree(base)
    return figures


def latencies(
    index, queries: SparseBatch, mode: str, passes: int, *, warm: bool = True
) -> tuple[float, list]:
    """Median over passes of the mean per-query latency (ms), and the warm-up's hits."""
    rows = [queries.select([i]) for i in range(len(queries))]
    results = [index.search(q, 10, mode=mode) for q in rows] if warm else []
    means = []
    for _ in range(passes):
        times = []
        for q in rows:
            started = time.perf_counter()
            index.search(q, 10, mode=mode)
            times.append(time.perf_counter() - started)
        means.append(1000 * statistics.fmean(times))
    return (statistics.median(means) if means else 0.0), results


def segments_vs_merged(corpus: NpzCorpus, work: Path, n: int, passes: int) -> dict:
    figures: dict = {}
    path, merged_path = work / "segments", work / "merged"
    quantizer = Quantizer(scale=100)
    started = time.perf_counter()
    with IndexWriter.open(
        path, vocab=corpus.vocab, quantizer=quantizer, merge_policy=None
    ) as writer:
        for shard in corpus.documents(n // 10, limit=n):
            writer.add(shard)
            writer.commit()
        chosen = np.random.default_rng(16).choice(n, n // 10, replace=False)
        writer.delete([str(d) for d in chosen.tolist()])
    figures["10 segments write seconds"] = round(time.perf_counter() - started, 3)
    # The merged index is a copy (hard links: segments are never modified) merged in place,
    # so both stay open and their timed passes alternate: load changes hit both alike.
    shutil.copytree(
        path, merged_path, copy_function=os.link, ignore=shutil.ignore_patterns(".lock")
    )
    with IndexWriter.open(merged_path) as writer:
        timed("force_merge(1) seconds", figures, lambda: writer.force_merge(1))
    indexes = {"10 segments + 10% deleted": ImpactIndex.open(path)}
    indexes["force-merged"] = ImpactIndex.open(merged_path)
    figures["segments"] = len(indexes["10 segments + 10% deleted"].segments)
    figures["deleted"] = indexes["10 segments + 10% deleted"].num_deleted
    assert len(indexes["force-merged"].segments) == 1
    queries = corpus.queries()
    for mode in ("exhaustive", "pruned"):
        found = {name: latencies(index, queries, mode, 0) for name, index in indexes.items()}
        means: dict = {name: [] for name in indexes}
        for _ in range(passes):
            for name, index in indexes.items():
                means[name].append(latencies(index, queries, mode, 1, warm=False)[0])
        for name in indexes:
            figures[f"{mode} ms, {name}"] = round(statistics.median(means[name]), 3)
        ratio = (
            figures[f"{mode} ms, 10 segments + 10% deleted"] / figures[f"{mode} ms, force-merged"]
        )
        figures[f"{mode} ratio segments / merged"] = round(ratio, 3)
        hits = [[[(h.doc_id, h.score) for h in q] for q in found[name][1]] for name in indexes]
        figures[f"{mode} same hits"] = hits[0] == hits[1]
        print(f"{mode}: {figures}", flush=True)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--work", default="/work/bench-data", help="holds synth1m/ (default: %(default)s)"
    )
    parser.add_argument(
        "--limit", type=int, default=None, help="documents used (default: all of them)"
    )
    parser.add_argument(
        "--passes", type=int, default=3, help="timed search passes (default: %(default)s)"
    )
    parser.add_argument(
        "--memory-budget", default="2GB", help="build memory budget (default: %(default)s)"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the indexes under WORK/live (default: delete)"
    )
    parser.add_argument(
        "--part", choices=("add", "search", "both"), default="both",
        help="which measurement to run (default: %(default)s)",
    )  # fmt: skip
    args = parser.parse_args()
    corpus = NpzCorpus(Path(args.work) / "synth1m")
    n = corpus.num_documents if args.limit is None else min(args.limit, corpus.num_documents)
    work = Path(args.work) / "live"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    figures = {"documents": n, "load before": os.getloadavg()}
    try:
        if args.part in ("add", "both"):
            figures.update(add_vs_rebuild(corpus, work, n, args.memory_budget))
        if args.part in ("search", "both"):
            figures.update(segments_vs_merged(corpus, work, n, args.passes))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    figures["load after"] = os.getloadavg()
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
