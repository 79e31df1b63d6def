#!/usr/bin/env python3
"""Load test of the search service on loopback: throughput and latency of SciFact text queries.

    python scripts/bench_service.py [--index indexes/scifact-service] [--requests 400]

Starts two ``sparse-ir serve`` processes on free 127.0.0.1 ports (micro-batching on, and off)
over a SciFact impact index (built from the pre-encoded splade-tiny vectors when ``--index``
does not exist yet), and sends SciFact test queries as text from 1, 4, 16 and 64 concurrent
clients: throughput, p50/p99 latency and errors per level. The two servers take turns within
each level (``--rounds``), so both see the same machine load. Every round is bounded by
``--requests`` and ``--seconds``. Then pre-encoded queries, one at a time on a keep-alive
connection, against the same searches run in this process: the service's added p50.

Loopback only: the servers bind 127.0.0.1 and the clients connect there.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import _common
import numpy as np

LEVELS = (1, 4, 16, 64)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def build_index(path: Path, data: Path) -> None:
    """The SciFact index of the pre-encoded splade-tiny vectors, with titles and texts."""
    from sparse_ir.corpus import load_corpus
    from sparse_ir.encoders.splade import SpladeEncoder
    from sparse_ir.index.impact_index import ImpactIndex

    vocab = SpladeEncoder.from_pretrained("splade-tiny").vocab
    documents, _ = _common.scifact_vectors(_common.scifact_vectors_dir(data=data), vocab)
    corpus = {doc.id: doc for doc in load_corpus(data / "corpus.jsonl")}
    ImpactIndex.build(
        documents,
        path,
        show_progress=False,
        contents=[(corpus[i].title, corpus[i].text) for i in documents.ids],
        settings={
            "model": "splade-tiny",
            "query_encoder": "splade",
            "pooling": "max",
            "query_max_length": 64,
        },
    )


class Server:
    """``sparse-ir serve`` in a subprocess, on a free loopback port."""

    def __init__(self, index: Path, *options: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, PYTHONPATH=str(_common.REPO))
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sparse_ir",
                "-q",
                "serve",
                "--index",
                str(index),
                "--port",
                str(self.port),
                "--no-access-log",
                "--no-verify",
                *options,
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def wait_ready(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"the server exited: {self.process.stderr.read().decode()}")
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                connection.request("GET", "/readyz")
                if connection.getresponse().status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise SystemExit("the server was not ready in time")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


async def run_level(
    url: str, texts: list[str], clients: int, requests: int, seconds: float
) -> dict:
    """``clients`` concurrent loops of text queries until ``requests`` are sent or time is up."""
    import httpx

    latencies: list[float] = []
    errors = 0
    sent = 0
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:

        async def loop(start: int) -> None:
            nonlocal errors, sent
            i = start
            while sent < requests and time.perf_counter() < deadline:
                sent += 1
                text = texts[i % len(texts)]
                i += clients
                began = time.perf_counter()
                try:
                    response = await client.post("/search", json={"text": text, "k": 10})
                    ok = response.status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok:
                    latencies.append(time.perf_counter() - began)
                else:
                    errors += 1

        started = time.perf_counter()
        await asyncio.gather(*(loop(c) for c in range(clients)))
        elapsed = time.perf_counter() - started
    values = np.asarray(latencies) * 1000
    return {
        "latencies_ms": values,
        "clients": clients,
        "requests": len(latencies) + errors,
        "errors": errors,
        "seconds": elapsed,
        "throughput": len(latencies) / elapsed,
        "p50_ms": float(np.percentile(values, 50)) if len(values) else float("nan"),
        "p99_ms": float(np.percentile(values, 99)) if len(values) else float("nan"),
    }


def merge_rounds(results: list[dict]) -> dict:
    """One level's rounds: the median round's throughput, latency percentiles over every
    request of every round, errors summed."""
    values = np.concatenate([r["latencies_ms"] for r in results])
    throughputs = [r["throughput"] for r in results]
    return {
        "clients": results[0]["clients"],
        "requests": sum(r["requests"] for r in results),
        "errors": sum(r["errors"] for r in results),
        "throughput": float(np.median(throughputs)),
        "round_throughputs": throughputs,
        "p50_ms": float(np.percentile(values, 50)) if len(values) else float("nan"),
        "p99_ms": float(np.percentile(values, 99)) if len(values) else float("nan"),
    }


def pre_encoded_overhead(
    port: int, index_path: Path, queries: list[dict], repeats: int
) -> tuple[float, float, float]:
    """p50 (ms) of a pre-encoded query through the service (one keep-alive connection, one
    request at a time), of the same search in this process, and of their difference per
    query. The two alternate query by query, so both see the same machine load."""
    from sparse_ir.index.impact_index import ImpactIndex

    index = ImpactIndex.open(index_path)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/json"}
    bodies = [json.dumps({"query": query, "k": 10}) for query in queries]

    def remote(body: str) -> float:
        began = time.perf_counter()
        connection.request("POST", "/search", body, headers)
        response = connection.getresponse()
        response.read()
        if response.status != 200:
            raise SystemExit(f"pre-encoded query failed: {response.status}")
        return time.perf_counter() - began

    def local(query: dict) -> float:
        began = time.perf_counter()
        index.search(query, 10)
        return time.perf_counter() - began

    for query, body in zip(queries[:20], bodies[:20]):  # compile the kernels, warm up
        local(query)
        remote(body)
    service, in_process = [], []
    for _ in range(repeats):
        for query, body in zip(queries, bodies):
            in_process.append(local(query))
            service.append(remote(body))
    service, in_process = np.asarray(service) * 1000, np.asarray(in_process) * 1000
    return (
        float(np.median(service)),
        float(np.median(in_process)),
        float(np.median(service - in_process)),
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="SciFact in BEIR layout (default: found)")
    parser.add_argument(
        "--index",
        default="indexes/scifact-service",
        help="the impact index (built from the pre-encoded vectors if absent)",
    )
    parser.add_argument(
        "--levels",
        type=int,
        nargs="+",
        default=list(LEVELS),
        help="concurrent clients of each level",
    )
    parser.add_argument(
        "--requests",
        type=int,
        default=400,
        help="most requests per level and round (default: %(default)s)",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=30.0,
        help="most seconds per level and round (default: %(default)s)",
    )
    parser.add_argument(
        "--pre-encoded-repeats",
        type=int,
        default=3,
        help="passes over the test queries for the pre-encoded figure",
    )
    parser.add_argument(
        "--batch-window-ms",
        type=float,
        default=2.0,
        help="the micro-batching server's --batch-window-ms (default: %(default)s)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="rounds per level; the two servers take turns within each (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    data = _common.scifact_data(parser, args.data)
    index = Path(args.index)
    if not (index / "CURRENT").is_file():
        print(f"building {index} from the pre-encoded splade-tiny vectors", file=sys.stderr)
        build_index(index, data)

    from sparse_ir.eval import load_beir

    dataset = load_beir(data, "test")
    texts = [query.text for query in dataset.queries]
    _, query_vectors = _common.read_vectors(_common.scifact_vectors_dir(data=data))
    vectors = [query_vectors[q.id] for q in dataset.queries if q.id in query_vectors]

    # Both servers run side by side, and within each level the two take turns, round by
    # round: on a shared machine whose load moves, back-to-back runs of one then the other
    # would measure the load as much as the batching.
    servers = {}
    rows = []
    overhead = None
    try:
        for batching in ("on", "off"):
            options = (
                ["--batch-window-ms", str(args.batch_window_ms)]
                if batching == "on"
                else ["--no-micro-batching"]
            )
            servers[batching] = Server(index, *options)
        for server in servers.values():
            server.wait_ready()
            asyncio.run(run_level(server.url, texts, 4, 40, 30))  # warm-up
        for clients in args.levels:
            rounds = {"on": [], "off": []}
            for r in range(args.rounds):
                for batching in ("on", "off") if r % 2 == 0 else ("off", "on"):
                    rounds[batching].append(
                        asyncio.run(
                            run_level(
                                servers[batching].url, texts, clients, args.requests, args.seconds
                            )
                        )
                    )
            for batching in ("on", "off"):
                result = merge_rounds(rounds[batching])
                result["batching"] = batching
                rows.append(result)
                print(
                    f"batching {batching:3} clients {clients:3}: "
                    f"{result['throughput']:7.1f} q/s  p50 {result['p50_ms']:7.1f} ms  "
                    f"p99 {result['p99_ms']:7.1f} ms  errors {result['errors']}  "
                    f"(rounds: {', '.join(f'{x:.1f}' for x in result['round_throughputs'])} q/s)",
                    file=sys.stderr,
                    flush=True,
                )
        overhead = pre_encoded_overhead(
            servers["on"].port, index, vectors, args.pre_encoded_repeats
        )
    finally:
        for server in servers.values():
            server.stop()

    print(
        f"\nSciFact text queries ({len(texts)} test queries, k=10), loopback, "
        f"{os.cpu_count()} cores; at most {args.requests} requests or {args.seconds:g} s "
        f"per level and round, {args.rounds} rounds (servers taking turns; throughput: "
        "the median round's; latency: every request)\n"
    )
    print(
        "| micro-batching | clients | requests | errors | throughput (q/s) | p50 (ms) | p99 (ms) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['batching']} | {row['clients']} | {row['requests']} | {row['errors']} "
            f"| {row['throughput']:.1f} | {row['p50_ms']:.1f} | {row['p99_ms']:.1f} |"
        )
    by_key = {(row["batching"], row["clients"]): row for row in rows}
    print()
    for clients in args.levels:
        on, off = by_key.get(("on", clients)), by_key.get(("off", clients))
        if on and off and off["throughput"] > 0:
            print(
                f"micro-batching gain at {clients} clients: "
                f"{on['throughput'] / off['throughput']:.2f}x throughput"
            )
    if overhead is not None:
        service, local, added = overhead
        print(
            f"\npre-encoded queries ({len(vectors)} x {args.pre_encoded_repeats}, k=10, "
            f"alternating): service p50 {service:.3f} ms, in-process p50 {local:.3f} ms, "
            f"difference {service - local:.3f} ms (median of per-query differences "
            f"{added:.3f} ms)"
        )
    errors = sum(row["errors"] for row in rows)
    print(f"errors: {errors}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
