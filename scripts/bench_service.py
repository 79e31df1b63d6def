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


class Connection:
    """One keep-alive HTTP/1.1 connection speaking just what the benchmark needs: a
    request's bytes out, the status and body back. Much cheaper per request than a general
    client (httpx costs ~0.3-0.5 ms of CPU per request here), so the figures measure the
    server, not the client sharing its cores."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer)

    async def request(self, data: bytes) -> tuple[int, bytes]:
        self.writer.write(data)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status, length = parse_head(head)
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


def parse_head(head: bytes) -> tuple[int, int]:
    """The status and Content-Length of a response head."""
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return status, int(value)
    raise ValueError(f"no Content-Length in the response head {head[:200]!r}")


def post(path: str, body: bytes) -> bytes:
    """The bytes of a keep-alive POST request with a JSON body."""
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def run_level(
    port: int, texts: list[str], clients: int, requests: int, seconds: float
) -> dict:
    """``clients`` concurrent loops of text queries until ``requests`` are sent or time is up."""
    latencies: list[float] = []
    errors = 0
    sent = 0
    deadline = time.perf_counter() + seconds
    bodies = [post("/search", json.dumps({"text": t, "k": 10}).encode()) for t in texts]
    connections = await asyncio.gather(*(Connection.open(port) for _ in range(clients)))

    async def loop(connection: Connection, start: int) -> None:
        nonlocal errors, sent
        i = start
        while sent < requests and time.perf_counter() < deadline:
            sent += 1
            body = bodies[i % len(bodies)]
            i += clients
            began = time.perf_counter()
            try:
                status, _ = await connection.request(body)
                ok = status == 200
            except (OSError, asyncio.IncompleteReadError, ValueError):
                ok = False
            if ok:
                latencies.append(time.perf_counter() - began)
            else:
                errors += 1

    started = time.perf_counter()
    try:
        await asyncio.gather(*(loop(c, i) for i, c in enumerate(connections)))
    finally:
        for connection in connections:
            connection.close()
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


class SocketClient:
    """A blocking keep-alive connection on a raw socket (for one request at a time)."""

    def __init__(self, port: int):
        self.socket = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    def request(self, data: bytes) -> tuple[int, bytes]:
        self.socket.sendall(data)
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self._receive()
        head, _, rest = self.buffer.partition(b"\r\n\r\n")
        status, length = parse_head(head + b"\r\n\r\n")
        while len(rest) < length:
            rest += self._receive()
        self.buffer = rest[length:]
        return status, rest[:length]

    def _receive(self) -> bytes:
        chunk = self.socket.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        return chunk

    def close(self) -> None:
        self.socket.close()


def pre_encoded_overhead(port: int, index_path: Path, queries: list[dict], repeats: int) -> dict:
    """Pre-encoded queries through the service (one keep-alive connection, one request at a
    time) and the same searches in this process, alternating query by query so both see the
    same machine load; and ``GET /healthz`` (the HTTP round trip with no work) beside them.
    Returns their p50s (ms) and the median of the per-query differences."""
    from sparse_ir.index.impact_index import ImpactIndex

    index = ImpactIndex.open(index_path)
    client = SocketClient(port)
    bodies = [post("/search", json.dumps({"query": query, "k": 10}).encode()) for query in queries]
    health = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"

    def remote(body: bytes) -> float:
        began = time.perf_counter()
        status, _ = client.request(body)
        if status != 200:
            raise SystemExit(f"request failed: {status}")
        return time.perf_counter() - began

    def local(query: dict) -> float:
        began = time.perf_counter()
        index.search(query, 10)
        return time.perf_counter() - began

    try:
        for query, body in zip(queries[:30], bodies[:30]):  # compile the kernels, warm up
            local(query)
            remote(body)
            remote(health)
        service, in_process, floor = [], [], []
        for _ in range(repeats):
            for query, body in zip(queries, bodies):
                in_process.append(local(query))
                service.append(remote(body))
                floor.append(remote(health))
    finally:
        client.close()
    service, in_process = np.asarray(service) * 1000, np.asarray(in_process) * 1000
    return {
        "queries": len(service),
        "service_p50_ms": float(np.median(service)),
        "in_process_p50_ms": float(np.median(in_process)),
        "added_p50_ms": float(np.median(service) - np.median(in_process)),
        "added_median_per_query_ms": float(np.median(service - in_process)),
        "healthz_p50_ms": float(np.median(np.asarray(floor) * 1000)),
    }


def encoder_costs(texts: list[str], draws: int, batch_sizes=(6, 8, 12)) -> dict:
    """CPU milliseconds per query of splade-tiny on one PyTorch thread (the service's
    setting): each of 16 random test queries encoded alone, and the same 16 in one call
    sorted by length and encoded in passes of each batch size. Medians over ``draws``
    draws: what micro-batching can gain at most, before HTTP and searching."""
    import torch

    from sparse_ir.encoders.splade import SpladeEncoder

    torch.set_num_threads(1)
    encoder = SpladeEncoder.from_pretrained("splade-tiny")
    rng = np.random.default_rng(0)
    encoder.encode_queries(texts[:16], show_progress=False)

    def cpu_ms(function) -> float:
        began = time.thread_time()
        function()
        return (time.thread_time() - began) * 1000 / 16

    costs: dict[str, list[float]] = {}
    for _ in range(draws):
        batch = [str(t) for t in rng.choice(texts, 16)]
        costs.setdefault("alone", []).append(
            cpu_ms(lambda b=batch: [encoder.encode_queries([t], show_progress=False) for t in b])
        )
        for size in batch_sizes:
            costs.setdefault(f"passes_of_{size}", []).append(
                cpu_ms(
                    lambda size=size, b=batch: encoder.encode_queries(
                        b, show_progress=False, batch_size=size
                    )
                )
            )
    return {name: float(np.median(values)) for name, values in costs.items()}


def server_stats(port: int) -> dict:
    """The server's ``GET /stats``."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("GET", "/stats")
    return json.loads(connection.getresponse().read())


def machine_load() -> dict:
    """The load average now (1, 5, 15 minutes) and the cores: the context of every figure."""
    one, five, fifteen = os.getloadavg()
    return {"load_1m": one, "load_5m": five, "load_15m": fifteen, "cores": os.cpu_count()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="SciFact in BEIR layout (default: found)")
    parser.add_argument(
        "--index",
        default="indexes/scifact-service",
        help="the impact index (built from the pre-encoded vectors if absent)",
    )
    parser.add_argument(
        "--only",
        choices=("all", "batching", "pre-encoded"),
        default="all",
        help="which measurements (default: %(default)s)",
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
        default=300,
        help="most requests per level and round (default: %(default)s)",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=6.0,
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
        default=5,
        help="rounds per level; the two servers take turns within each (default: %(default)s)",
    )
    parser.add_argument(
        "--access-log",
        action="store_true",
        help="servers write their access log (default: off, as --no-access-log)",
    )
    parser.add_argument(
        "--server-option",
        action="append",
        default=[],
        help="an option for both servers' sparse-ir serve, e.g. --server-option=--threads=2 "
        "(repeatable)",
    )
    parser.add_argument(
        "--encoder-draws",
        type=int,
        default=10,
        help="draws of 16 queries for the encoder's own costs, alone vs in passes "
        "(0: skip; default: %(default)s)",
    )
    parser.add_argument("--json", default=None, help="also write the summary to this file")
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
    load_before = machine_load()
    print(f"machine load before: {load_before}", file=sys.stderr, flush=True)
    encoder = None
    if args.encoder_draws > 0 and args.only != "pre-encoded":
        encoder = encoder_costs(texts, args.encoder_draws)
        print(f"encoder CPU ms per query: {encoder}", file=sys.stderr, flush=True)

    # Both servers run side by side, and within each level the two take turns, round by
    # round (the order alternating): on a shared machine whose load moves, one server after
    # the other would measure the load as much as the batching.
    servers = {}
    rows, gains = [], {}
    batching_stats: dict[int, dict] = {}
    overhead = None
    common = ([] if args.access_log else ["--no-access-log"]) + args.server_option
    modes = ("on", "off") if args.only in ("all", "batching") else ("on",)
    try:
        for batching in modes:
            options = (
                ["--batch-window-ms", str(args.batch_window_ms)]
                if batching == "on"
                else ["--no-micro-batching"]
            )
            servers[batching] = Server(index, *common, *options)
        for server in servers.values():
            server.wait_ready()
            asyncio.run(run_level(server.port, texts, 4, 40, 30))  # warm-up
        for clients in args.levels if args.only != "pre-encoded" else ():
            rounds = {"on": [], "off": []}
            before = server_stats(servers["on"].port)["micro_batching"]
            for r in range(args.rounds):
                for batching in ("on", "off") if r % 2 == 0 else ("off", "on"):
                    rounds[batching].append(
                        asyncio.run(
                            run_level(
                                servers[batching].port,
                                texts,
                                clients,
                                args.requests,
                                args.seconds,
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
            # each round's two runs are neighbours in time: their ratio sees one load
            ratios = [
                on["throughput"] / off["throughput"]
                for on, off in zip(rounds["on"], rounds["off"])
                if off["throughput"] > 0
            ]
            after = server_stats(servers["on"].port)["micro_batching"]
            calls = after["encoder_calls"] - before["encoder_calls"]
            batching_stats[clients] = {
                "encoder_calls": calls,
                "texts": after["texts"] - before["texts"],
                "mean_batch": (after["texts"] - before["texts"]) / calls if calls else None,
                "waited_for_window": after["waited_for_window"] - before["waited_for_window"],
            }
            gains[clients] = {
                "round_ratios": ratios,
                "median_round_ratio": float(np.median(ratios)) if ratios else float("nan"),
            }
        if args.only != "batching":
            overhead = pre_encoded_overhead(
                servers["on"].port, index, vectors, args.pre_encoded_repeats
            )
    finally:
        for server in servers.values():
            server.stop()
    load_after = machine_load()

    print(
        f"\nSciFact test queries ({len(texts)}, k=10), loopback, {os.cpu_count()} cores; "
        f"machine load (1/5/15 min) before {load_before['load_1m']:.2f}/"
        f"{load_before['load_5m']:.2f}/{load_before['load_15m']:.2f}, after "
        f"{load_after['load_1m']:.2f}/{load_after['load_5m']:.2f}/{load_after['load_15m']:.2f}"
    )
    if encoder is not None:
        print(
            "splade-tiny alone, CPU ms per query (16 random test queries, one thread, median "
            f"of {args.encoder_draws} draws): one text per call {encoder['alone']:.2f}; "
            + "; ".join(
                f"in passes of {name.rsplit('_', 1)[1]} {value:.2f}"
                for name, value in encoder.items()
                if name != "alone"
            )
        )
    if rows:
        print(
            f"text queries: at most {args.requests} requests or {args.seconds:g} s per level "
            f"and round, {args.rounds} rounds (servers taking turns; throughput: the median "
            "round's; latency: every request; gain: the median of the rounds' on/off ratios)\n"
        )
        print(
            "| micro-batching | clients | requests | errors | throughput (q/s) "
            "| p50 (ms) | p99 (ms) |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|")
        for row in rows:
            print(
                f"| {row['batching']} | {row['clients']} | {row['requests']} | {row['errors']} "
                f"| {row['throughput']:.1f} | {row['p50_ms']:.1f} | {row['p99_ms']:.1f} |"
            )
        print()
        for clients, gain in gains.items():
            level = batching_stats[clients]
            print(
                f"micro-batching gain at {clients} clients: {gain['median_round_ratio']:.2f}x "
                f"(rounds: {', '.join(f'{x:.2f}x' for x in gain['round_ratios'])}); "
                f"mean batch {level['mean_batch'] or 0:.2f} ({level['texts']} texts in "
                f"{level['encoder_calls']} calls, {level['waited_for_window']} waited)"
            )
    if overhead is not None:
        print(
            f"\npre-encoded queries ({overhead['queries']}, k=10, one keep-alive connection, "
            f"alternating with in-process searches): service p50 "
            f"{overhead['service_p50_ms']:.3f} ms, in-process p50 "
            f"{overhead['in_process_p50_ms']:.3f} ms, added {overhead['added_p50_ms']:.3f} ms "
            f"(median of per-query differences {overhead['added_median_per_query_ms']:.3f} ms); "
            f"GET /healthz round trip p50 {overhead['healthz_p50_ms']:.3f} ms"
        )
    errors = sum(row["errors"] for row in rows)
    print(f"errors: {errors}")
    summary = {
        "machine_load_before": load_before,
        "machine_load_after": load_after,
        "levels": [{k: v for k, v in row.items() if k != "latencies_ms"} for row in rows],
        "gains": {str(clients): gain for clients, gain in gains.items()},
        "pre_encoded": overhead,
        "micro_batching_by_level": {str(c): v for c, v in batching_stats.items()},
        "encoder_cpu_ms_per_query": encoder,
        "server_options": common,
        "errors": errors,
    }
    print()
    if 16 in gains:
        gain = gains[16]["median_round_ratio"]
        summary["acceptance_gain_16_clients"] = gain
        print(f"ACCEPTANCE micro-batching gain at 16 clients: {gain:.2f}x (target >= 2x)")
    if overhead is not None:
        added = overhead["added_p50_ms"]
        summary["acceptance_pre_encoded_added_p50_ms"] = added
        print(f"ACCEPTANCE pre-encoded queries, added p50: {added:.3f} ms (target <= 1 ms)")
    print("SUMMARY " + json.dumps(summary, sort_keys=True))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
