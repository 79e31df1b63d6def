#!/usr/bin/env python3
"""Scale-out on Ray, measured on one machine: encoding throughput and search overhead.

    flock /work/wt/bench.lock python scripts/bench_scale.py --work /tmp/bench-ray \\
        --synth /work/bench-data/synth1m --synth-index /work/bench-data/scale/synth1m-4 \\
        --reference-index /work/bench-data/scale/synth1m-single --json

Starts a local Ray cluster (``--cpus`` CPUs, no dashboard, a small object store) and measures:

1. **Encoding throughput** with 1 and 2 splade-tiny encoder actors (1 thread each) on the
   first ``--encode-docs`` SciFact documents in parts of ``--part-size`` (default "auto": four
   parts per actor): documents per second over the same span for both, from the first part
   started to the last part finished. Ray Data has read the corpus and every actor has loaded
   its model before the first part is handed out, so the span is encoding only (reading, actor
   start and model loading are before it, writing the manifest and the exactly-once check
   after it); each actor takes one part at a time from the driver. Also
   shown: each actor's parts and busy seconds, and the whole job's wall time. A round runs
   both jobs back to back, in alternating order from round to round (``--encode-rounds``,
   default 5); the figure is the median of the rounds' ratios of the two throughputs
   (target 1.7).
2. **Ray's own costs** (``ray-costs``): the round trip to one actor around 0, 2 and 9 ms of
   busy work (no search: on a loaded machine the added time grows with the time the client
   sleeps), and the client's cost per call with many calls in flight.
3. **Search overhead on SciFact**: the pre-encoded 300 test queries, one at a time (k=10),
   against 4 shards searched in this process (:class:`ShardedIndex`) and through Ray
   (:class:`DistributedIndex`) with its default placement (one actor per Ray node, searching its
   shards on as many threads as the node has free CPUs: here 1 actor of 4 shards on 2
   threads), and for comparison with one actor on 1 thread, 2 actors of 2 shards (the default
   before), and one actor per shard. Each query is searched in process and through Ray one
   after the other, so both latencies are taken under the same load; the figure is the added
   p50 (Ray p50 minus in-process p50; target <= 2 ms).
4. **The same on the 1M synthetic corpus** (``--synth``) split into 4 shards of 250,000
   documents (built in ``--synth-index``, kept and reused; or under ``--work``), with the
   per-shard latency and bytes per document docs/scale.md extrapolates from. Its top-10 is
   checked against the single 1M index (``--reference-index``, built there if missing) for the
   first queries, and Ray's answers against the in-process ones.

Prints a table whose last lines are the acceptance figures, or one JSON object with ``--json``
(the table then goes to stderr). The load average is recorded before and after each part.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

import _common  # noqa: F401  (puts the repository first on sys.path)
import numpy as np

from sparse_ir.index.impact_index import ImpactIndex
from sparse_ir.index.sharded import ShardedIndex
from sparse_ir.quantize import Quantizer


def _percentiles(seconds: list[float]) -> dict:
    ordered = sorted(seconds)
    return {
        "p50_ms": round(1000 * statistics.median(ordered), 3),
        "p90_ms": round(1000 * ordered[int(0.9 * (len(ordered) - 1))], 3),
        "p99_ms": round(1000 * ordered[int(0.99 * (len(ordered) - 1))], 3),
    }


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _private_mb(pid: int) -> float | None:
    """Resident memory of a process that is its own (not the mapped index files), in MB."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("RssAnon:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def _rows(queries) -> list:
    return [queries.select([i]) for i in range(len(queries))]


def _latencies(search, queries, k: int, passes: int, clock=time.perf_counter) -> list[float]:
    rows = _rows(queries)
    for row in rows:  # warm-up: a full pass, so the pages the queries read are mapped
        search(row, k)
    seconds = []
    for _ in range(passes):
        for row in rows:
            started = clock()
            search(row, k)
            seconds.append(clock() - started)
    return seconds


def _paired_latencies(local, remote, queries, k: int, passes: int) -> tuple[list, list]:
    """Each query in process, then through Ray: both series under the same load."""
    rows = _rows(queries)
    # Warm-up: one full pass each, so that both processes have mapped the pages the queries
    # read (a fresh actor process takes a page fault for every page it touches first, even
    # when the page cache holds it).
    for row in rows:
        local(row, k)
        remote(row, k)
    here, there = [], []
    for _ in range(passes):
        for row in rows:
            started = time.perf_counter()
            local(row, k)
            middle = time.perf_counter()
            remote(row, k)
            there.append(time.perf_counter() - middle)
            here.append(middle - started)
    return here, there


def _encode_once(corpus: Path, work: Path, actors: int, part_size) -> dict:
    """One encoding job with ``actors`` actors: its throughput over the encoding span."""
    from sparse_ir.distributed.encode import EncodeJob, encode_corpus_on_ray

    output = work / f"encoded-{actors}"
    shutil.rmtree(output, ignore_errors=True)
    result = encode_corpus_on_ray(EncodeJob(corpus, output, actors=actors, threads=1,
                                            part_size=part_size))  # fmt: skip
    shutil.rmtree(output, ignore_errors=True)
    return {
        "documents": result.encoded_documents,
        "parts": result.encoded,
        "part_size": result.part_size,
        "encode_seconds": round(result.encode_seconds, 2),
        "docs_per_second": round(result.documents_per_second, 1),
        "wall_seconds": result.seconds,
        "workers": list(result.workers.values()),
        "load": _load(),
    }


def bench_encoding(args, work: Path) -> dict:
    """``--encode-rounds`` rounds of a 1-actor and a 2-actor job back to back, in alternating
    order (1, 2 then 2, 1...), so a neighbour's load on a shared machine falls on both jobs of
    a round alike; the figure is the median of the rounds' ratios."""
    corpus = work / "encode-corpus.jsonl"
    with open(Path(args.scifact) / "corpus.jsonl", encoding="utf-8") as source:
        lines = [line for line in source if line.strip()][: args.encode_docs]
    corpus.write_text("".join(lines), encoding="utf-8")
    figures: dict = {"load_before": _load(), "rounds": []}
    for number in range(args.encode_rounds):
        order = (1, 2) if number % 2 == 0 else (2, 1)
        jobs = {actors: _encode_once(corpus, work, actors, args.part_size) for actors in order}
        one, two = jobs[1]["docs_per_second"], jobs[2]["docs_per_second"]
        figures["rounds"].append(
            {
                "order": list(order),
                "actors_1": jobs[1],
                "actors_2": jobs[2],
                "speedup": round(two / one, 3) if one else None,
            }
        )
    ratios = [r["speedup"] for r in figures["rounds"] if r["speedup"] is not None]
    figures["speedups"] = ratios
    figures["speedup"] = round(statistics.median(ratios), 3) if ratios else None
    figures["load_after"] = _load()
    return figures


def bench_search(name: str, sharded: ShardedIndex, queries, args, single=None) -> dict:
    from sparse_ir.distributed.search import DistributedIndex

    figures = {"documents": sharded.num_documents, "shards": sharded.num_shards}
    figures["bytes_per_document"] = round(sharded.size_bytes() / sharded.num_documents, 1)
    figures["load_before"] = _load()
    local = _latencies(sharded.search, queries, args.k, args.passes)
    figures["in_process"] = _percentiles(local)
    shard = sharded.shards[0]
    figures["one_shard"] = _percentiles(_latencies(shard.search, queries, args.k, args.passes))
    # CPU time of the same searches (this thread's): what one query costs a core of its own,
    # whatever the neighbours do; docs/scale.md extrapolates from it.
    cpu = _latencies(shard.search, queries, args.k, args.passes, clock=time.thread_time)
    figures["one_shard"]["cpu"] = _percentiles(cpu)
    figures["one_shard"]["documents"] = shard.num_documents
    figures["one_shard"]["bytes"] = shard.size_bytes()
    if single is not None:
        figures["single_index"] = _percentiles(
            _latencies(single.search, queries, args.k, args.passes)
        )
    placements = (
        # the default: one actor per node (here: one), on the node's free CPUs as threads
        ("ray", {}),
        ("ray_one_actor", {"actors": 1, "num_cpus": args.cpus, "threads": 1}),
        ("ray_two_actors", {"actors": 2, "num_cpus": args.cpus / 2, "threads": 1}),
        ("ray_per_shard", {"actors": sharded.num_shards, "num_cpus": args.cpus / 4}),
    )
    for label, options in placements:
        with DistributedIndex(sharded.directory, **options) as distributed:
            for row in range(min(len(queries), 50)):  # the answers are the in-process ones
                query = queries.select([row])
                if distributed.search(query, args.k) != sharded.search(query, args.k):
                    raise SystemExit(f"{name}: Ray and in-process answers differ, query {row}")
            here, there = _paired_latencies(
                sharded.search, distributed.search, queries, args.k, args.passes
            )
            figures[label] = {
                "actors": len(distributed.actors),
                "threads": distributed.placement.threads,
                **_percentiles(there),
            }
            figures[label]["actor_private_mb"] = [_private_mb(pid) for pid in distributed.pids()]
            # Ray's own floor for this placement: the same scatter-gather of calls that do
            # nothing (one to every actor, one ray.get), under the same load.
            figures[label]["round_trip_p50_ms"] = _percentiles(
                _latencies(lambda row, k: distributed.pids(), queries, args.k, 1)
            )["p50_ms"]
        figures[label]["in_process_p50_ms"] = _percentiles(here)["p50_ms"]
        added = figures[label]["p50_ms"] - figures[label]["in_process_p50_ms"]
        figures[label]["added_p50_ms"] = round(added, 3)
        figures[label]["load"] = _load()
    figures["added_p50_ms"] = figures["ray"]["added_p50_ms"]
    figures["load_after"] = _load()
    return figures


class _Spinner:
    """A Ray actor's body that keeps its CPU busy for a given time and answers 160 bytes
    (the size of a packed top-10): Ray's cost around a call, without any search."""

    def work(self, milliseconds: float) -> bytes:
        end = time.perf_counter() + milliseconds / 1000
        while time.perf_counter() < end:
            pass
        return bytes(160)


def bench_ray_costs(args) -> dict:
    """Ray's own costs on this machine: the round trip to one actor around 0, 2 and 9 ms of
    work (the time of one shard / of four 250k shards), and the driver's cost per call (many
    calls in flight to ``--cpus`` actors, divided by their number)."""
    import ray

    figures = {"load_before": _load()}
    remote = ray.remote(_Spinner).options(num_cpus=1, enable_task_events=False)
    actors = [remote.remote() for _ in range(args.cpus)]
    ray.get([actor.work.remote(0) for actor in actors])
    for milliseconds in (0, 2, 9):
        seconds = []
        for _ in range(150):
            started = time.perf_counter()
            ray.get(actors[0].work.remote(milliseconds), timeout=60)
            seconds.append(time.perf_counter() - started)
        p50 = _percentiles(seconds)["p50_ms"]
        figures[f"round_trip_{milliseconds}ms_work_p50_ms"] = p50
        figures[f"added_around_{milliseconds}ms_work_ms"] = round(p50 - milliseconds, 3)
    calls = 2000
    started, cpu = time.perf_counter(), time.process_time()
    ray.get([actors[i % len(actors)].work.remote(0) for i in range(calls)], timeout=120)
    figures["driver_us_per_call"] = round(1e6 * (time.perf_counter() - started) / calls, 1)
    # The client's own CPU time per call (all its threads, Ray's included): what one client
    # spends for every actor a query is scattered to.
    figures["driver_cpu_us_per_call"] = round(1e6 * (time.process_time() - cpu) / calls, 1)
    for actor in actors:
        ray.kill(actor)
    figures["load_after"] = _load()
    return figures


def bench_scifact(args, work: Path) -> dict:
    from _common import scifact_vectors

    docs, queries = scifact_vectors()
    quantizer = Quantizer()
    edges = np.linspace(0, len(docs), 5).astype(int)
    parts = [docs.select(range(a, b)) for a, b in zip(edges[:-1], edges[1:])]
    sharded = ShardedIndex.build(parts, work / "scifact", quantizer=quantizer, show_progress=False)
    single = ImpactIndex.build(docs, work / "scifact-single", show_progress=False)
    return bench_search("scifact", sharded, quantizer.quantize(queries), args, single)


def synth_indexes(args, work: Path):
    """``(corpus, 4-shard index, single index or None, build seconds or None)`` of synth1m,
    built where they are missing (not timed: ``--prepare`` builds them outside the lock)."""
    from sparse_ir.synthetic import NpzCorpus

    corpus = NpzCorpus(args.synth)
    # The corpus holds integer impacts (weights x 100): indexed as they are.
    quantizer = Quantizer(scale=1.0)
    directory = Path(args.synth_index) if args.synth_index else work / "synth1m-4"
    build_seconds = None
    if (directory / "manifest.json").is_file():
        sharded = ShardedIndex.open(directory)
    else:
        started = time.perf_counter()
        sharded = ShardedIndex.build(
            ([batch] for batch in corpus.documents(shard_size=-(-corpus.num_documents // 4))),
            directory,
            quantizer=quantizer,
            memory_budget="1GB",
            show_progress=False,
        )
        build_seconds = round(time.perf_counter() - started, 1)
    reference = None
    if args.reference_index:
        path = Path(args.reference_index)
        if (path / "CURRENT").is_file():
            reference = ImpactIndex.open(path)
        else:
            reference = ImpactIndex.build(
                corpus.documents(shard_size=100_000),
                path,
                quantizer=quantizer,
                memory_budget="1GB",
                show_progress=False,
            )
    return corpus, sharded, reference, build_seconds


def bench_synth(args, work: Path) -> dict:
    corpus, sharded, reference, build_seconds = synth_indexes(args, work)
    queries = corpus.queries()
    queries = queries.select(range(min(args.synth_queries, len(queries))))
    if reference is not None:
        for row in range(min(20, len(queries))):
            query = queries.select([row])
            if sharded.search(query, 10) != reference.search(query, 10):
                raise SystemExit(f"synth1m: 4 shards and the 1M index differ for query {row}")
    figures = bench_search("synth1m", sharded, queries, args)
    figures["build_seconds"] = build_seconds
    if reference is not None:
        figures["checked_against_single_index"] = min(20, len(queries))
        figures["single_index_bytes_per_document"] = round(
            reference.size_bytes() / reference.num_documents, 1
        )
    return figures


def acceptance(results: dict) -> dict:
    """The issue's figures: encoding ratio 1 -> 2 actors (target >= 1.7) and the added p50 of
    Ray search with the default placement (target <= 2 ms) on SciFact and on synth1m."""
    figures = {}
    if "encoding" in results:
        figures["encoding_speedup_2_vs_1_actor"] = results["encoding"]["speedup"]
    for name in ("scifact", "synth1m"):
        if name in results:
            figures[f"{name}_added_p50_ms"] = results[name]["added_p50_ms"]
            figures[f"{name}_actors"] = results[name]["ray"]["actors"]
            figures[f"{name}_threads"] = results[name]["ray"]["threads"]
    figures["targets"] = {"encoding_speedup": ">= 1.7", "added_p50_ms": "<= 2"}
    return figures


def _table(results: dict) -> str:
    lines = []
    if "encoding" in results:
        e = results["encoding"]
        for number, r in enumerate(e["rounds"], 1):
            lines.append(
                f"encoding round {number} (order {r['order']}; first part started to last "
                f"finished): 1 actor {r['actors_1']['docs_per_second']} docs/s, 2 actors "
                f"{r['actors_2']['docs_per_second']} docs/s: {r['speedup']}x; wall "
                f"{r['actors_1']['wall_seconds']} / {r['actors_2']['wall_seconds']} s (load "
                f"after {r['actors_1']['load']} / {r['actors_2']['load']})"
            )
            for n in (1, 2):
                split = ", ".join(
                    f"{w['parts']} parts busy {w['busy']} s from +{w['first_started']} s "
                    f"({w.get('page_faults', 0)} page faults, {w.get('system_seconds', 0)} s "
                    "system)"
                    for w in r[f"actors_{n}"]["workers"]
                )
                lines.append(f"  {n} actor(s): {split}")
        lines.append(
            f"encoding: median of {len(e['speedups'])} rounds {e['speedup']}x "
            f"(rounds {e['speedups']}; load {e['load_before']} -> {e['load_after']})"
        )
    if "ray_costs" in results:
        c = results["ray_costs"]
        lines.append(
            "Ray round trip, 1 actor, p50: "
            + ", ".join(
                f"{c[f'round_trip_{w}ms_work_p50_ms']} ms around {w} ms of work" for w in (0, 2, 9)
            )
            + f"; client {c['driver_us_per_call']} us per call in flight "
            f"({c['driver_cpu_us_per_call']} us of its CPU)"
        )
    for name in ("scifact", "synth1m"):
        if name not in results:
            continue
        r = results[name]
        lines.append(
            f"{name} ({r['documents']} docs, {r['shards']} shards, "
            f"{r['bytes_per_document']:.0f} B/doc): in-process p50 {r['in_process']['p50_ms']} "
            f"ms; one shard ({r['one_shard']['documents']} docs, "
            f"{r['one_shard']['bytes'] / 1e6:.0f} MB) p50 {r['one_shard']['p50_ms']} ms, "
            f"CPU p50/p99 {r['one_shard']['cpu']['p50_ms']}/{r['one_shard']['cpu']['p99_ms']} ms"
        )
        for label in ("ray", "ray_one_actor", "ray_two_actors", "ray_per_shard"):
            f = r[label]
            lines.append(
                f"  {label:15} {f['actors']} actor(s) x {f['threads']} thread(s): p50 "
                f"{f['p50_ms']} ms / p90 {f['p90_ms']} ms, in process "
                f"{f['in_process_p50_ms']} ms: added "
                f"{f['added_p50_ms']} ms; Ray round trip, no work {f['round_trip_p50_ms']} ms "
                f"(load {f['load']})"
            )
    lines.append(f"load: {results['load']}")
    for key, value in results["acceptance"].items():
        lines.append(f"acceptance: {key} = {value}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", required=True, help="scratch directory (deleted at the end)")
    parser.add_argument("--scifact", default=None, help="SciFact (default: found as usual)")
    parser.add_argument("--synth", default=None, help="synth1m directory (default: skipped)")
    parser.add_argument(
        "--synth-index",
        default=None,
        help="the 4-shard synth1m index: reused if there, else built there and kept "
        "(default: built under --work)",
    )
    parser.add_argument(
        "--reference-index",
        default=None,
        help="the single 1M index, built there if missing (default: no check)",
    )
    parser.add_argument(
        "--cpus",
        type=int,
        default=2,
        help="CPUs of the local Ray cluster (one node): DistributedIndex's default placement "
        "is one actor per node, searching its shards on min(shards, the node's free CPUs) "
        "threads with as many CPUs reserved (default: 2)",
    )
    parser.add_argument(
        "--encode-docs", type=int, default=2000, help="SciFact docs encoded (default: 2000)"
    )
    parser.add_argument(
        "--encode-rounds",
        type=int,
        default=5,
        help="rounds of a 1-actor and a 2-actor job, in alternating order; the figure is the "
        "median of the rounds' ratios (default: 3)",
    )
    parser.add_argument(
        "--part-size",
        default="auto",
        type=lambda text: text if text == "auto" else int(text),
        help="documents per encoded part, or 'auto' (the library's: four parts per actor, "
        "100..1000 documents) (default: auto)",
    )
    parser.add_argument("--k", type=int, default=10, help="result depth (default: 10)")
    parser.add_argument("--passes", type=int, default=1, help="passes over queries (default 1)")
    parser.add_argument(
        "--synth-queries", type=int, default=100, help="synth1m queries (default: 100)"
    )
    parser.add_argument(
        "--skip",
        action="append",
        default=[],
        choices=("encoding", "ray-costs", "scifact", "synth1m"),
        help="leave a part out (repeatable) (default: none)",
    )
    parser.add_argument("--keep", action="store_true", help="keep --work (default: delete)")
    parser.add_argument(
        "--prepare",
        action="store_true",
        help="only build the synth1m indexes (--synth-index, --reference-index) and exit: "
        "a long build that need not hold the benchmark lock",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.encode_rounds < 1:
        parser.error(f"--encode-rounds must be >= 1, got {args.encode_rounds}")
    args.scifact = str(_common.scifact_data(parser, args.scifact))
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if args.prepare:
        if not args.synth:
            parser.error("--prepare needs --synth")
        corpus, sharded, reference, seconds = synth_indexes(args, work)
        print(json.dumps({"sharded": str(sharded.directory), "build_seconds": seconds}))
        return 0
    from sparse_ir.distributed.cluster import init_ray

    # Ray runs its workers at niceness 15 by default: on a machine shared with other jobs
    # (at 0) they would get a small share of the cores and measure the neighbours' load.
    os.environ.setdefault("RAY_worker_niceness", "0")
    ray = init_ray(num_cpus=args.cpus, object_store_memory=300 << 20)
    results: dict = {}
    try:
        if "encoding" not in args.skip:
            results["encoding"] = bench_encoding(args, work)
        if "ray-costs" not in args.skip:
            results["ray_costs"] = bench_ray_costs(args)
        if "scifact" not in args.skip:
            results["scifact"] = bench_scifact(args, work)
        if args.synth and "synth1m" not in args.skip:
            results["synth1m"] = bench_synth(args, work)
    finally:
        ray.shutdown()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    results["load"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    results["acceptance"] = acceptance(results)
    if args.json:
        print(_table(results), file=sys.stderr)
        print(json.dumps(results, indent=1))
    else:
        print(_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
