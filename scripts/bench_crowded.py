#!/usr/bin/env python3
"""Search latency on a crowded machine: quiet, CPU, RAM and memory-bandwidth pressure.

    python scripts/bench_crowded.py --ours INDEX --seismic SEISMIC.index.seismic \\
        --data synth1m --work bench-data --resident none --rounds 3

Each condition starts one bounded competing process (a child of this script, stopped after the
condition):

* ``quiet``: none.
* ``cpu``: a busy loop that touches no memory (the control: what sharing a core costs).
* ``ram``: holds ``--ram-gb`` of memory (never more than MemAvailable less ``--margin-gb``),
  touched once and then idle: the page cache, where a memory-mapped index lives, shrinks.
* ``stream``: streams through a ``--stream-mb`` buffer (far larger than the caches) in a loop:
  memory-bandwidth contention, no memory pressure.
* ``crowded``: holds ``--ram-gb`` and streams through all of it (both at once, as in the
  original report).

Within a condition the engines take turns (order rotated per round); conditions are rotated
too. For every pass the table records the mean latency, the major page faults (a major fault
is a page read from disk: eviction) and minor faults of this process (``getrusage``), and the
share of our index's search arrays in RAM at the start of the pass (``mincore``). A slowdown
with major faults is eviction; one without, under ``stream`` but not ``cpu``, is bandwidth.

``--resident`` opens our index with ``ImpactIndex.open(path, resident=...)`` ("none": mapped
only). Run once per setting: a locked index keeps its pages in the shared page cache, which
would also shelter a second, mapped copy in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import _common  # noqa: F401 - puts the repository first on sys.path
import numpy as np

K = 10
GB = 1 << 30


# -- competitors (run as children: --compete KIND) -------------------------------------------------


def mem_available() -> int:
    with open("/proc/meminfo") as handle:
        for line in handle:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def compete(kind: str, ram_gb: float, margin_gb: float, stream_mb: int) -> None:
    """Run one competitor until terminated; print ``ready ...`` once it is at full pressure."""
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    held = []
    if kind in ("ram", "crowded"):
        target = int(min(ram_gb * GB, mem_available() - margin_gb * GB))
        chunk = 256 << 20
        for _ in range(max(0, target // chunk)):
            held.append(np.ones(chunk // 8))  # written, so really resident
        print(f"ready holding {len(held) * chunk / GB:.1f} GB", flush=True)
    buffer = held if kind == "crowded" else []
    if kind == "stream":
        buffer = [np.ones((stream_mb << 20) // 8)]
        print(f"ready streaming {stream_mb} MB", flush=True)
    if kind == "cpu":
        print("ready busy loop", flush=True)
    if kind == "quiet":
        print("ready", flush=True)
    streamed, started = 0, time.perf_counter()
    x = 0
    while not stop:
        if buffer:
            for block in buffer:
                np.add(block, 1.0, out=block)  # reads and writes every byte
                streamed += 2 * block.nbytes
                if stop:
                    break
        elif kind == "cpu":
            for _ in range(100_000):
                x += 1
        else:
            time.sleep(0.2)
    seconds = time.perf_counter() - started
    print(f"streamed {streamed / seconds / 1e9:.1f} GB/s", flush=True)


class Competitor:
    def __init__(self, kind: str, args):
        self.kind = kind
        self.process = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--compete", kind,
             "--ram-gb", str(args.ram_gb), "--margin-gb", str(args.margin_gb),
             "--stream-mb", str(args.stream_mb)],
            stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        if args.pin:
            os.sched_setaffinity(self.process.pid, {args.pin[1]})
        self.ready = self.process.stdout.readline().strip()
        time.sleep(args.settle)

    def stop(self) -> str:
        self.process.terminate()
        tail = self.process.stdout.read().strip()
        self.process.wait()
        return tail


# -- engines ---------------------------------------------------------------------------------------


def our_engines(args, queries, n_queries):
    from sparse_ir.index.impact_index import ImpactIndex

    resident = {"none": False, "true": True}.get(args.resident, args.resident)
    started = time.perf_counter()
    index = ImpactIndex.open(args.ours, resident=resident)
    opened = time.perf_counter() - started
    label = "mapped" if resident is False else f"resident={index.residency.how}"
    print(f"our index opened ({label}) in {opened:.1f}s", flush=True)
    if args.advise:
        from sparse_ir.index import residency

        for name, advice in (a.split("=") for a in args.advise.split(",")):
            target = getattr(index._layout, name, None)
            target = getattr(index, name) if target is None else target
            print(f"  madvise {name} {advice}: {residency.advise(target, advice)}")
    prepared = [index.prepare_query(queries.select([q])) for q in range(n_queries)]
    engines = {}
    for mode in args.modes.split(","):

        def search(q, mode=mode):
            return index.search_arrays(prepared[q], K, mode=mode).docnos

        engines[f"ours {mode} ({label})"] = search
    return index, engines


def seismic_engine(args, queries, n_queries):
    import seismic

    string_type = seismic.get_seismic_string()
    index = seismic.SeismicIndex.load(args.seismic)
    cut, heap = args.seismic_setting.split(":")
    arrays = []
    for q in range(n_queries):
        terms, values = queries.row(q)
        arrays.append(
            (
                str(q),
                np.array([str(t) for t in terms.tolist()], string_type),
                values.astype(np.float32),
            )
        )

    def search(q):
        qid, toks, vals = arrays[q]
        return index.search(
            qid, toks, vals, k=K, query_cut=int(cut), heap_factor=float(heap), sorted=False
        )

    return {f"Seismic (query_cut={cut}, heap_factor={heap})": search}


def resident_share(index) -> float | None:
    """Share of the bytes of our index's search arrays now in RAM."""
    from sparse_ir.index.residency import resident_bytes

    doc_ordered = [index._postings_docs, index._postings_impacts]  # None when not stored
    arrays = [a for a in doc_ordered if a is not None] + [
        a for a in index._layout if isinstance(a, np.ndarray)
    ]
    present = [resident_bytes(a) for a in arrays]
    if any(p is None for p in present):
        return None
    return sum(present) / sum(a.nbytes for a in arrays)


def timed_pass(search, n_queries):
    """Latencies (ms) of one pass over the queries, and the pass's major faults, minor faults,
    involuntary context switches (the kernel took the core from this process) and CPU share
    (CPU seconds / wall seconds: below 1 the search waited for a core, CPU sharing; near 1
    while slower, it waited for memory) from ``getrusage``."""
    before = resource.getrusage(resource.RUSAGE_SELF)
    wall = time.perf_counter()
    latencies = np.empty(n_queries)
    for q in range(n_queries):
        started = time.perf_counter()
        search(q)
        latencies[q] = (time.perf_counter() - started) * 1e3
    wall = time.perf_counter() - wall
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return (
        latencies,
        after.ru_majflt - before.ru_majflt,
        after.ru_minflt - before.ru_minflt,
        after.ru_nivcsw - before.ru_nivcsw,
        cpu / wall,
    )


# -- the benchmark ---------------------------------------------------------------------------------


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--ours", help="our index directory (required unless --compete)")
    add("--seismic", default=None, help="a Seismic index file to compare with (default: none)")
    add(
        "--seismic-setting",
        default="10:0.8",
        help="Seismic query_cut:heap_factor (default: 10:0.8)",
    )
    add("--data", default="synth1m", help="data set name under --work (default: synth1m)")
    add("--work", default="bench-data", help="directory holding the data (default: bench-data)")
    add("--queries", type=int, default=300, help="first N queries (default: 300)")
    add("--modes", default="pruned", help="our modes, comma-separated (default: pruned)")
    add(
        "--resident",
        default="none",
        choices=["none", "true", "lock", "copy", "auto"],
        help="open our index resident (default: none)",
    )
    add(
        "--advise",
        default="",
        help="madvise hints on our arrays, name=advice,... e.g. forward_terms=random "
        "(default: none)",
    )
    add(
        "--conditions",
        default="quiet,cpu,ram,stream,crowded",
        help="conditions to run (default: quiet,cpu,ram,stream,crowded)",
    )
    add("--rounds", type=int, default=3, help="rounds over the conditions (default: 3)")
    add(
        "--ram-gb",
        type=float,
        default=12.0,
        help="memory the ram/crowded competitor holds at most (default: 12)",
    )
    add(
        "--margin-gb",
        type=float,
        default=4.0,
        help="MemAvailable the competitor leaves free at least (default: 4)",
    )
    add(
        "--stream-mb",
        type=int,
        default=2048,
        help="buffer the stream competitor streams through (default: 2048)",
    )
    add(
        "--settle",
        type=float,
        default=2.0,
        help="seconds between starting a competitor and timing (default: 2)",
    )
    add(
        "--pin",
        action="store_true",
        help="pin this process to the first usable core and each competitor to the second "
        "(one core each: what remains is memory, not CPU sharing) (default: off)",
    )
    add("--json", default=None, help="also write every figure to this JSON file (default: none)")
    add("--compete", choices=["quiet", "cpu", "ram", "stream", "crowded"], help=argparse.SUPPRESS)
    return parser.parse_args(argv)  # fmt: skip


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.compete:
        compete(args.compete, args.ram_gb, args.margin_gb, args.stream_mb)
        return 0
    if not args.ours:
        sys.exit("--ours is required")
    if args.pin:
        cores = sorted(os.sched_getaffinity(0))
        if len(cores) < 2:
            sys.exit("--pin needs 2 usable cores")
        args.pin = cores[:2]
        os.sched_setaffinity(0, {cores[0]})
    import numba

    numba.set_num_threads(1)
    from sparse_ir.synthetic import NpzCorpus

    queries = NpzCorpus(Path(args.work) / args.data).queries()
    n_queries = min(args.queries, len(queries))
    print(f"load average {os.getloadavg()}; MemAvailable {mem_available() / GB:.1f} GB")
    index, engines = our_engines(args, queries, n_queries)
    if args.seismic:
        engines.update(seismic_engine(args, queries, n_queries))
    for search in engines.values():  # warm-up (compiles, pages in)
        timed_pass(search, n_queries)
    names = list(engines)
    conditions = args.conditions.split(",")
    records = []
    for r in range(args.rounds):
        shift = r % len(conditions)
        for condition in conditions[shift:] + conditions[:shift]:
            competitor = Competitor(condition, args)
            order = names[r % len(names) :] + names[: r % len(names)]
            for name in order:
                share = resident_share(index)
                latencies, major, minor, switches, cpu = timed_pass(engines[name], n_queries)
                records.append(
                    {"round": r, "condition": condition, "engine": name,
                     "mean_ms": float(latencies.mean()), "p50_ms": float(np.median(latencies)),
                     "major_faults": major, "minor_faults": minor, "involuntary_switches":
                     switches, "cpu_share": cpu,
                     "cpu_ms": float(latencies.mean()) * cpu, "resident_share": share,
                     "load": os.getloadavg()[0],
                     "competitor": competitor.ready}
                )  # fmt: skip
            tail = competitor.stop()
            print(f"  round {r + 1} {condition:8s} {competitor.ready:28s} {tail:20s} "
                  + "; ".join(f"{x['engine'][:24]} {x['mean_ms']:.2f} ms maj {x['major_faults']}"
                              f" min {x['minor_faults']} ivcs {x['involuntary_switches']}"
                              f" cpu {x['cpu_share']:.0%}"
                              for x in records[-len(names):]), flush=True)  # fmt: skip
    summary = summarize(records, names, conditions)
    if args.json:
        Path(args.json).write_text(json.dumps({"records": records, "summary": summary}, indent=1))
    return 0


def summarize(records, names, conditions) -> list[dict]:
    """Median over rounds per engine and condition, and the ratio to the same engine's quiet
    figure (per round, then the median)."""
    print("\nmedian over rounds: mean latency ms (× quiet, per-round ratio), major and minor "
          "faults, involuntary context switches and CPU share per pass, CPU ms per query "
          "(latency × CPU share: the work, whoever else holds the core; × quiet), index "
          "share in RAM at pass start")  # fmt: skip
    out = []
    for name in names:
        quiet = {x["round"]: x["mean_ms"] for x in records if x["engine"] == name
                 and x["condition"] == "quiet"}  # fmt: skip
        cells = []
        for condition in conditions:
            rows = [x for x in records if x["engine"] == name and x["condition"] == condition]
            mean = statistics.median(x["mean_ms"] for x in rows)
            ratios = [x["mean_ms"] / quiet[x["round"]] for x in rows if x["round"] in quiet]
            ratio = statistics.median(ratios) if ratios else None
            major = statistics.median(x["major_faults"] for x in rows)
            minor = statistics.median(x["minor_faults"] for x in rows)
            switches = statistics.median(x["involuntary_switches"] for x in rows)
            cpu = statistics.median(x["cpu_share"] for x in rows)
            cpu_ms = statistics.median(x["cpu_ms"] for x in rows)
            cpu_quiet = {x["round"]: x["cpu_ms"] for x in records if x["engine"] == name
                         and x["condition"] == "quiet"}  # fmt: skip
            cpu_ratios = [x["cpu_ms"] / cpu_quiet[x["round"]] for x in rows
                          if x["round"] in cpu_quiet]  # fmt: skip
            cpu_ratio = statistics.median(cpu_ratios) if cpu_ratios else None
            shares = [x["resident_share"] for x in rows if x["resident_share"] is not None]
            share = statistics.median(shares) if shares else None
            out.append(
                {"engine": name, "condition": condition, "mean_ms": mean, "x_quiet": ratio,
                 "major_faults": major, "minor_faults": minor, "involuntary_switches": switches,
                 "cpu_share": cpu, "cpu_ms": cpu_ms, "cpu_ms_x_quiet": cpu_ratio,
                 "resident_share": share}
            )  # fmt: skip
            cells.append(
                f"{condition} {mean:.2f}"
                + (f" ({ratio:.2f}×)" if ratio else "")
                + f" maj {major:.0f} min {minor:.0f} ivcs {switches:.0f} cpu {cpu:.0%}"
                + f" cpu-ms {cpu_ms:.2f}"
                + (f" ({cpu_ratio:.2f}×)" if cpu_ratio else "")
                + (f" in-RAM {share:.0%}" if share is not None else "")
            )
        print(f"  {name}\n      " + "; ".join(cells))
    return out


if __name__ == "__main__":
    sys.exit(main())
