"""What validating an index costs: open time, the first pass over the queries (each term's
postings checked once before its first search) and steady-state latency, for two copies of
sparse_ir (e.g. before and after a change), alternated in fresh processes so both see the
same machine load.

    python scripts/bench_validation.py --index INDEX --queries queries.jsonl \\
        --code before=/path/to/old/checkout --code after=. --rounds 2

Each round runs every copy in its own process; the report gives medians per copy and the
after/before ratios (the last ``--code`` over the first). ``--full-check`` also times the
per-term checks of every term at once (what checking the postings at open would cost).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path


def _child(args) -> dict:
    """Measure in this process (the copy of sparse_ir on sys.path)."""
    import numpy as np

    from sparse_ir import ImpactIndex

    started = time.perf_counter()
    index = ImpactIndex.open(args.index)
    first_open = time.perf_counter() - started
    opens = []
    for _ in range(args.opens):
        started = time.perf_counter()
        ImpactIndex.open(args.index)
        opens.append(time.perf_counter() - started)
    queries = []
    with open(args.queries) as handle:
        for line in handle:
            record = json.loads(line)
            queries.append({t: int(w) for t, w in record["vector"].items()})
    queries = queries[: args.limit]
    result = {"first_open_s": first_open, "open_ms": statistics.median(opens) * 1e3}
    index = ImpactIndex.open(args.index)  # a fresh index: no term checked yet
    for mode, count in (("pruned", len(queries)), ("exhaustive", args.exhaustive_queries)):
        chosen = queries[:count]
        started = time.perf_counter()
        for query in chosen:
            index.search_arrays(query, k=10, mode=mode)
        result[f"{mode}_first_pass_s"] = time.perf_counter() - started
        latencies = []
        for _ in range(args.passes):
            for query in chosen:
                begin = time.perf_counter()
                index.search_arrays(query, k=10, mode=mode)
                latencies.append(time.perf_counter() - begin)
        result[f"{mode}_median_ms"] = float(np.median(latencies) * 1e3)
        result[f"{mode}_mean_ms"] = float(np.mean(latencies) * 1e3)
    if args.full_check:
        try:
            from sparse_ir.index.validate import TermCheck

            fresh = ImpactIndex.open(args.index)
            check = TermCheck(fresh)
            started = time.perf_counter()
            check.ensure(np.arange(fresh.vocab_size, dtype=np.int32))
            result["all_terms_check_s"] = time.perf_counter() - started
        except ImportError:
            pass
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--index", required=True, help="the index to open (read only)")
    parser.add_argument("--queries", required=True, help="JSONL of {'id', 'vector': {token: int}}")
    parser.add_argument(
        "--code",
        action="append",
        default=[],
        help="NAME=DIRECTORY of a copy of sparse_ir (repeatable; default: this checkout)",
    )
    parser.add_argument("--rounds", type=int, default=2, help="rounds (default: %(default)s)")
    parser.add_argument("--opens", type=int, default=20, help="timed opens (default: %(default)s)")
    parser.add_argument("--passes", type=int, default=2, help="timed passes (default: %(default)s)")
    parser.add_argument("--limit", type=int, default=300, help="queries (default: %(default)s)")
    parser.add_argument(
        "--exhaustive-queries",
        type=int,
        default=30,
        help="queries searched exhaustively (default: %(default)s)",
    )
    parser.add_argument(
        "--full-check", action="store_true", help="time the checks of every term at once"
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args)))
        return 0
    codes = [c.split("=", 1) for c in args.code] or [["this", str(Path(__file__).parents[1])]]
    rows: dict[str, list[dict]] = {name: [] for name, _ in codes}
    for _ in range(args.rounds):
        for name, directory in codes:
            env = {**os.environ, "PYTHONPATH": str(Path(directory).resolve())}
            env.setdefault("OMP_NUM_THREADS", "1")
            command = [sys.executable, __file__, "--child", *_forwarded(args)]
            output = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
            rows[name].append(json.loads(output.stdout.strip().splitlines()[-1]))
    summary = {
        name: {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        for name, runs in rows.items()
    }
    if len(codes) >= 2:
        first, last = codes[0][0], codes[-1][0]
        summary["ratio"] = {
            key: summary[last][key] / summary[first][key]
            for key in summary[first]
            if key in summary[last] and summary[first][key]
        }
    summary["uptime"] = os.getloadavg()
    print(json.dumps(summary, indent=1))
    return 0


def _forwarded(args) -> list[str]:
    forwarded = [
        "--index", args.index, "--queries", args.queries, "--opens", str(args.opens),
        "--passes", str(args.passes), "--limit", str(args.limit),
        "--exhaustive-queries", str(args.exhaustive_queries),
    ]  # fmt: skip
    return forwarded + (["--full-check"] if args.full_check else [])


if __name__ == "__main__":
    sys.exit(main())
