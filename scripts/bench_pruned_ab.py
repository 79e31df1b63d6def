#!/usr/bin/env python3
"""Exact pruned latency, two source trees taking turns: before/after a kernel change.

    python scripts/bench_pruned_ab.py --before /path/to/old/checkout --after . \\
        --index /path/to/1M-index [--rounds 8]

Starts one process per tree (``PYTHONPATH`` = the tree), each opening the same index and
checking that its pruned top-10 equals the exhaustive one for every query; then runs rounds in
which each process times every query once (``index.search_arrays(prepared, 10,
mode="pruned")``, the call ``bench_search.py`` times), alternating which goes first. Prints
each round's medians and ratio (before / after) and the median of the round medians.
Queries: ``queries.jsonl`` of the synthetic corpus (``--data``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

K = 10


def serve(index_path: str, data: str) -> None:
    """The child: check exactness, then time one round per line read from stdin."""
    from sparse_ir.index.impact_index import ImpactIndex
    from sparse_ir.synthetic import NpzCorpus

    index = ImpactIndex.open(index_path)
    queries = NpzCorpus(Path(data)).queries()
    prepared = [index.prepare_query(queries.select([q])) for q in range(len(queries))]
    same = 0
    for query in prepared:
        pruned = index.search_arrays(query, K, mode="pruned")
        exhaustive = index.search_arrays(query, K, mode="exhaustive")
        same += pruned.docnos.tolist() == exhaustive.docnos.tolist() and (
            pruned.scores.tolist() == exhaustive.scores.tolist()
        )
    print(json.dumps({"identical": same, "queries": len(prepared)}), flush=True)
    for _ in sys.stdin:
        times = []
        for query in prepared:
            started = time.perf_counter_ns()
            index.search_arrays(query, K, mode="pruned")
            times.append(time.perf_counter_ns() - started)
        print(json.dumps(times), flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="source tree of the old code")
    parser.add_argument("--after", default=".", help="source tree of the new code")
    parser.add_argument("--index", required=True, help="the index both search")
    parser.add_argument("--data", default="bench-data/synth1m", help="corpus with queries.jsonl")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.index, args.data)
        return 0
    children = {}
    for name in ("before", "after"):
        env = dict(os.environ, PYTHONPATH=str(Path(getattr(args, name)).resolve()))
        env["OMP_NUM_THREADS"] = "1"
        children[name] = subprocess.Popen(
            [sys.executable, __file__, "--serve", "--before", "-", "--index", args.index,
             "--data", args.data],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
    for name, child in children.items():
        check = json.loads(child.stdout.readline())
        print(f"{name}: pruned top-{K} = exhaustive for {check['identical']}/{check['queries']}")
    print("load:", os.getloadavg())
    medians: dict[str, list[float]] = {"before": [], "after": []}
    for r in range(args.rounds):
        for name in ("before", "after") if r % 2 == 0 else ("after", "before"):
            children[name].stdin.write("go\n")
            children[name].stdin.flush()
            medians[name].append(float(np.median(json.loads(children[name].stdout.readline()))))
        before, after = medians["before"][-1] / 1e6, medians["after"][-1] / 1e6
        print(f"round {r}: before {before:.3f} ms, after {after:.3f} ms, {before / after:.2f}x")
    for child in children.values():
        child.stdin.close()
        child.wait()
    ratios = np.array(medians["before"]) / np.array(medians["after"])
    print(
        f"median of round medians: before {np.median(medians['before']) / 1e6:.3f} ms, "
        f"after {np.median(medians['after']) / 1e6:.3f} ms; per-round ratio median "
        f"{np.median(ratios):.2f}x ({ratios.min():.2f}-{ratios.max():.2f}); load: {os.getloadavg()}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
