#!/usr/bin/env python3
"""Filtered search speed: a selective filter against the same search unfiltered.

    flock /work/wt/bench.lock python scripts/bench_filter.py \\
        --index /work/bench-data/indexes/synth1m/ours \\
        --queries /work/bench-data/synth1m/queries.jsonl --json

Each query is searched single-threaded, warm (one untimed pass first), with and without a
random mask allowing ``--selectivity`` of the documents (a mask filter: the synthetic index has no
metadata); the two searches of a query run back to back, in alternating order, so load on a shared
machine hits both alike. Reported per mode: median, mean and p90 latency in ms over queries, each
query's latency being the best of ``--repeats`` passes (the least disturbed by other processes on
a shared machine; ``--per-query median`` takes the median of the passes), and the ratio filtered /
unfiltered of the medians. Every filtered result is checked to hold allowed documents only.

``--unfiltered-only`` times plain searches alone (runs on a tree without filters too: for the
"no slowdown without a filter" comparison of two checkouts).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import _common  # noqa: F401  (puts the repository first on sys.path)
import numpy as np


def read_queries(path: Path, limit: int | None) -> list[tuple[str, dict[str, int]]]:
    """``(id, {token: impact})`` per line of a JSONL of quantized query vectors."""
    queries = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            record = json.loads(line)
            if "id" not in record or "vector" not in record:
                raise SystemExit(f"{path}:{number}: expected keys 'id' and 'vector'")
            queries.append((str(record["id"]), {t: int(w) for t, w in record["vector"].items()}))
            if limit is not None and len(queries) >= limit:
                break
    return queries


def time_once(function) -> float:
    started = time.perf_counter()
    function()
    return (time.perf_counter() - started) * 1000.0


def measure(index, queries, mode: str, k: int, mask, repeats: int, per_query=np.min) -> dict:
    """Latency figures (ms) of plain and (when ``mask`` is given) filtered searches."""
    plain = np.zeros((len(queries), repeats))
    filtered = np.zeros((len(queries), repeats))
    for q, (_, query) in enumerate(queries):
        index.search_arrays(query, k, mode=mode)  # warm: page cache, compiled kernels
        if mask is not None:
            top = index.search_arrays(query, k, mode=mode, filter=mask)
            if not mask[top.docnos].all():
                raise SystemExit(f"query {q}: a filtered-out document was returned")
        for r in range(repeats):
            runs = [("plain", lambda q=query: index.search_arrays(q, k, mode=mode))]
            if mask is not None:
                runs.append(
                    ("filtered", lambda q=query: index.search_arrays(q, k, mode=mode, filter=mask))
                )
            if (q + r) % 2:
                runs.reverse()
            for name, function in runs:
                (plain if name == "plain" else filtered)[q, r] = time_once(function)
    result = {"plain": _summary(per_query(plain, axis=1))}
    if mask is not None:
        result["filtered"] = _summary(per_query(filtered, axis=1))
        result["ratio_of_medians"] = round(
            result["filtered"]["median_ms"] / result["plain"]["median_ms"], 3
        )
    return result


def _summary(per_query: np.ndarray) -> dict:
    return {
        "median_ms": round(float(np.median(per_query)), 3),
        "mean_ms": round(float(per_query.mean()), 3),
        "p90_ms": round(float(np.percentile(per_query, 90)), 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--index", required=True, help="an impact index directory (read-only)")
    parser.add_argument("--queries", required=True, help="JSONL of {id, vector: {token: int}}")
    parser.add_argument(
        "--num-queries", type=int, default=100, help="first N queries (default: 100)"
    )
    parser.add_argument(
        "--selectivity",
        type=float,
        default=0.1,
        help="share of documents the filter allows (default: 0.1)",
    )
    parser.add_argument("--k", type=int, default=10, help="result depth (default: 10)")
    parser.add_argument(
        "--modes", default="pruned,exhaustive", help="comma-separated (default: pruned,exhaustive)"
    )
    parser.add_argument("--repeats", type=int, default=5, help="passes per query (default: 5)")
    parser.add_argument(
        "--per-query",
        choices=("best", "median"),
        default="best",
        help="a query's latency over its passes (default: %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random mask (default: 0)")
    parser.add_argument(
        "--unfiltered-only",
        action="store_true",
        help="time plain searches only (default: off)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON (default: a table)")
    args = parser.parse_args(argv)
    if not 0.0 < args.selectivity <= 1.0:
        parser.error(f"--selectivity must be in (0, 1], got {args.selectivity}")

    from sparse_ir.index.impact_index import ImpactIndex

    index = ImpactIndex.open(args.index)
    queries = read_queries(Path(args.queries), args.num_queries)
    mask = None
    if not args.unfiltered_only:
        rng = np.random.default_rng(args.seed)
        # A live index's mask covers every document number (deleted ones too).
        mask = rng.random(getattr(index, "num_docnos", index.num_documents)) < args.selectivity
    report = {
        "index": str(args.index),
        "documents": index.num_documents,
        "queries": len(queries),
        "k": args.k,
        "selectivity": None if mask is None else round(float(mask.mean()), 4),
        "repeats": args.repeats,
        "per_query": args.per_query,
        "load_average": os.getloadavg(),
        "modes": {},
    }
    for mode in args.modes.split(","):
        per_query = np.min if args.per_query == "best" else np.median
        report["modes"][mode] = measure(index, queries, mode, args.k, mask, args.repeats, per_query)
    report["load_average_after"] = os.getloadavg()
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    print(
        f"{report['documents']} documents, {len(queries)} queries, k={args.k}, "
        f"selectivity {report['selectivity']}, load {report['load_average']}"
    )
    for mode, figures in report["modes"].items():
        line = f"{mode:>11}: plain median {figures['plain']['median_ms']} ms"
        if "filtered" in figures:
            line += (
                f", filtered median {figures['filtered']['median_ms']} ms, "
                f"ratio {figures['ratio_of_medians']}"
            )
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
