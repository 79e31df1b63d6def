#!/usr/bin/env python3
"""Exact search latency and index size, before and after a change of the index layout, in
one run: two index + code pairs searched in turns.

    python scripts/bench_layout.py --data synth1m --work bench-data \
        --before-index OLD --before-src SRC --after-index NEW --rounds 5 --queries 300

Each side is a child process that imports ``sparse_ir`` from its own source tree (``--before-src``:
e.g. ``git archive`` of the commit before the change, unpacked; ``--after-src``: default this
repository), opens its index memory-mapped, prepares the queries, makes one untimed pass per
mode (compilation, page cache) and then answers "one timed pass of mode M" requests. In each
round every mode runs once on each side, the side going first alternating, so a burst of load
falls on both alike; the ratio after/before is taken within each round and reported as the
median over rounds with its range. Latency: single-threaded, warm, mean and p50 ms per query
(median over rounds). Every query's top-10 (documents and scores) must be the same on both
sides, or the run stops: the change must not alter a result.

Sizes: each index's files as its manifest lists them, and the bytes of each file mapped
resident in its child after the last pass (``/proc/self/smaps``).
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

REPO = Path(__file__).resolve().parent.parent
K = 10


# -- the child: one index, one source tree ----------------------------------------------------


def resident_bytes(directory: Path) -> dict[str, int]:
    """Resident bytes of each mapped file of ``directory`` in this process."""
    out: dict[str, int] = {}
    current = None
    with open("/proc/self/smaps") as handle:
        for line in handle:
            fields = line.split()
            if len(fields) >= 6 and "-" in fields[0] and fields[5].startswith("/"):
                path = Path(" ".join(fields[5:]))
                current = path.name if path.parent == directory else None
            elif current and line.startswith("Rss:"):
                out[current] = out.get(current, 0) + int(fields[1]) * 1024
    return out


def serve(args) -> None:
    """Answer requests on stdin, one JSON line each on stdout."""
    sys.path.insert(0, args.src)
    import numba
    import numpy as np

    numba.set_num_threads(1)
    import sparse_ir
    from sparse_ir.index.impact_index import ImpactIndex
    from sparse_ir.synthetic import NpzCorpus

    index = ImpactIndex.open(args.index)
    queries = NpzCorpus(Path(args.work) / args.data).queries()
    n = min(args.queries, len(queries))
    prepared = [index.prepare_query(queries.select([q])) for q in range(n)]
    files = {name: record.size for name, record in index.manifest.files.items()}

    def one_pass(mode: str) -> tuple[list[float], list]:
        latencies, results = [], []
        for terms, weights in prepared:
            started = time.perf_counter()
            top = index.search_arrays((terms, weights), K, mode=mode)
            latencies.append((time.perf_counter() - started) * 1e3)
            results.append((top.docnos.tolist(), top.scores.tolist()))
        return latencies, results

    for mode in args.modes.split(","):
        one_pass(mode)  # untimed: compilation and page cache
    out = sys.stdout
    out.write(
        json.dumps(
            {
                "sparse_ir": sparse_ir.__file__,
                "files": files,
                "queries": n,
                "postings": int(index.num_postings),
            }
        )
        + "\n"
    )
    out.flush()
    for line in sys.stdin:
        mode = line.strip()
        if not mode:
            break
        latencies, results = one_pass(mode)
        array = np.asarray(latencies)
        out.write(
            json.dumps(
                {
                    "mean": float(array.mean()),
                    "p50": float(np.median(array)),
                    "results": results,
                    "resident": resident_bytes(index.directory),
                }
            )
            + "\n"
        )
        out.flush()


class Side:
    """A serving child process."""

    def __init__(self, name: str, src: str, index: str, args):
        self.name = name
        command = [sys.executable, os.path.abspath(__file__), "--serve", "--src", src]
        command += ["--index", index, "--data", args.data, "--work", args.work]
        command += ["--queries", str(args.queries), "--modes", args.modes]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": src}
        # Each tree compiles into its own numba cache, never into the other's source tree.
        env["NUMBA_CACHE_DIR"] = str(Path(args.numba_cache) / name)
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )
        self.info = self._answer()

    def _answer(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the {self.name} child died (see its stderr above)")
        return json.loads(line)

    def timed_pass(self, mode: str) -> dict:
        self.process.stdin.write(mode + "\n")
        self.process.stdin.flush()
        return self._answer()

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="synth1m", help="data set under --work")
    parser.add_argument("--work", default="bench-data", help="data directory")
    parser.add_argument("--before-index", help="the index before (required)")
    parser.add_argument("--before-src", help="source tree of the code before (required)")
    parser.add_argument("--after-index", help="the index after (required)")
    parser.add_argument("--after-src", default=str(REPO), help="default: this repository")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--modes", default="exhaustive,pruned")
    parser.add_argument("--numba-cache", default="/tmp/bench_layout_numba")
    parser.add_argument("--json", default=None, help="also write the figures here")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--src", help=argparse.SUPPRESS)
    parser.add_argument("--index", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args)
        return 0
    if not (args.before_index and args.before_src and args.after_index):
        parser.error("--before-index, --before-src and --after-index are required")
    modes = args.modes.split(",")
    print(f"start: {load()}", flush=True)
    sides = [
        Side("before", args.before_src, args.before_index, args),
        Side("after", args.after_src, args.after_index, args),
    ]
    print(f"children ready: {load()}", flush=True)
    for side in sides:
        total = sum(side.info["files"].values())
        print(f"{side.name}: {side.info['sparse_ir']}, {total / 1e9:.3f} GB on disk")
    figures = {
        mode: {"before": [], "after": [], "p50": {"before": [], "after": []}} for mode in modes
    }
    last = {}
    for round_number in range(args.rounds):
        for mode in modes:
            order = sides if round_number % 2 == 0 else sides[::-1]
            answers = {side.name: side.timed_pass(mode) for side in order}
            if answers["before"]["results"] != answers["after"]["results"]:
                raise SystemExit(f"round {round_number}, mode {mode}: the top-{K} differ")
            for name, answer in answers.items():
                figures[mode][name].append(answer["mean"])
                figures[mode]["p50"][name].append(answer["p50"])
                last[name] = answer["resident"]
        print(
            f"round {round_number + 1}: "
            + ", ".join(
                f"{m} {figures[m]['before'][-1]:.2f} -> {figures[m]['after'][-1]:.2f} ms"
                for m in modes
            )
            + f" ({load()})",
            flush=True,
        )
    for side in sides:
        side.close()
    print(f"\nexact top-{K} identical before/after: every query, every mode, every round")
    print(f"{'mode':12s} {'before ms':>10s} {'after ms':>10s} {'p50 before':>11s} "
          f"{'p50 after':>10s} {'after/before (range)':>24s}")  # fmt: skip
    report = {"modes": {}, "sizes": {}, "load_end": os.getloadavg()}
    for mode in modes:
        f = figures[mode]
        ratios = [a / b for a, b in zip(f["after"], f["before"])]
        row = {
            "before_mean_ms": statistics.median(f["before"]),
            "after_mean_ms": statistics.median(f["after"]),
            "before_p50_ms": statistics.median(f["p50"]["before"]),
            "after_p50_ms": statistics.median(f["p50"]["after"]),
            "ratio_median": statistics.median(ratios),
            "ratio_range": [min(ratios), max(ratios)],
            "rounds": f,
        }
        report["modes"][mode] = row
        print(
            f"{mode:12s} {row['before_mean_ms']:10.2f} {row['after_mean_ms']:10.2f} "
            f"{row['before_p50_ms']:11.2f} {row['after_p50_ms']:10.2f} "
            f"{row['ratio_median']:10.3f} ({min(ratios):.3f}-{max(ratios):.3f})"
        )
    print(f"\n{'index (GB)':12s} {'on disk':>10s} {'resident after all passes':>26s}")
    for side in sides:
        disk = sum(side.info["files"].values())
        resident = sum(last[side.name].values())
        report["sizes"][side.name] = {
            "on_disk": side.info["files"],
            "resident": last[side.name],
        }
        print(f"{side.name:12s} {disk / 1e9:10.3f} {resident / 1e9:26.3f}")
    print(f"end: {load()}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
