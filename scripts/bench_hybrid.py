#!/usr/bin/env python3
"""Latency of one hybrid text query on SciFact, stage by stage; HNSW recall against exact.

    python scripts/bench_hybrid.py --sparse-index indexes/scifact-splade-tiny \\
        --dense-index indexes/scifact-minilm

    # three-way (BM25 + SPLADE + dense), each of the 300 test queries once:
    python scripts/bench_hybrid.py --index indexes/scifact-bm25 \\
        --index indexes/scifact-splade-tiny --index indexes/scifact-minilm --passes 1 --no-hnsw

``--index`` (repeatable) takes any number >= 2 of indexes of any kinds, fused in that order
(``--weights``; default equal); without it, ``--sparse-index`` and ``--dense-index``.

Each test query is searched alone, end to end (SPLADE query encoding, impact-index search,
dense query encoding, dense search, fusion), after a warm-up. Prints the median, p90 and p99
of every stage and of the total, over ``--passes`` passes through the queries (the median of
the per-pass medians is the headline figure). Then compares the dense index's exact search with
a faiss HNSW graph built over the same vectors: recall@10 against exact, and latency of each.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import _common
import numpy as np


def percentile(values, q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000, q))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="BEIR dataset (default SciFact)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--sparse-index", default="indexes/scifact-splade-tiny")
    parser.add_argument("--dense-index", default="indexes/scifact-minilm")
    parser.add_argument(
        "--index",
        dest="indexes",
        action="append",
        default=[],
        help="an index of any kind (repeat for each; replaces --sparse-index and --dense-index)",
    )
    parser.add_argument(
        "--weights",
        default=None,
        help="convex weights, one per index, comma-separated (default: equal; "
        "two indexes: --alpha)",
    )
    parser.add_argument("-k", type=int, default=10, help="fused hits returned")
    parser.add_argument("--depth", type=int, default=1000, help="hits per index before fusion")
    parser.add_argument("--fusion", choices=["convex", "rrf"], default="convex")
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="threads for torch and BLAS (default 1: one short query gains "
        "nothing from more, and extra threads wait on busy cores; "
        "0 keeps the libraries' defaults)",
    )
    parser.add_argument(
        "--dense-precision",
        choices=["float32", "bfloat16"],
        default="float32",
        help="arithmetic of the dense query encoder",
    )
    parser.add_argument(
        "--parallel",
        action="store_true",
        help="run the sparse and dense branches side by side on two threads "
        "(default: one after the other)",
    )
    parser.add_argument("--no-hnsw", action="store_true", help="skip the HNSW comparison")
    parser.add_argument(
        "--goal",
        type=float,
        default=None,
        help="target median in ms (default: 30 for two indexes, 40 for more)",
    )
    args = parser.parse_args(argv)

    import torch

    from sparse_ir.eval import load_beir
    from sparse_ir.fusion import Fusion
    from sparse_ir.hybrid import HybridSearcher

    if args.threads:
        torch.set_num_threads(args.threads)
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            print("threadpoolctl not installed: BLAS keeps its default threads")
        else:
            threadpool_limits(args.threads)
        try:
            import numba
        except ImportError:
            pass
        else:
            numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    data = _common.scifact_data(parser, args.data)
    queries = [q.text for q in load_beir(data, args.split).queries]
    paths = args.indexes or [args.sparse_index, args.dense_index]
    if len(paths) < 2:
        parser.error("give at least two --index")
    weights = (
        tuple(float(w) for w in args.weights.split(","))
        if args.weights
        else ((args.alpha, 1 - args.alpha) if len(paths) == 2 else None)
    )
    fusion = (
        Fusion.rrf(depth=args.depth)
        if args.fusion == "rrf"
        else Fusion(weights=weights, depth=args.depth)
    )
    searcher = HybridSearcher.from_paths(
        paths, fusion, parallel=args.parallel, dense_precision=args.dense_precision
    )
    for text in queries[: args.warmup]:
        searcher.search(text, args.k)

    stages = tuple(searcher.timings.stages())
    per_pass_medians = []
    samples: dict[str, list[float]] = {stage: [] for stage in (*stages, "total")}
    cpu_times, sums = [], []
    for _ in range(args.passes):
        totals = []
        for text in queries:
            cpu_started = time.process_time()
            started = time.perf_counter()
            searcher.search(text, args.k)
            elapsed = time.perf_counter() - started
            cpu_times.append(time.process_time() - cpu_started)
            sums.append(searcher.timings.total)
            totals.append(elapsed)
            for stage in stages:
                samples[stage].append(searcher.timings.stages()[stage])
            samples["total"].append(elapsed)
        per_pass_medians.append(statistics.median(totals) * 1000)

    print(
        f"hybrid query latency: {data.name} {args.split}, {len(queries)} queries x "
        f"{args.passes} passes, {fusion.describe()}, top {args.k}, "
        f"{'parallel' if searcher.parallel else 'sequential'} branches; "
        f"torch threads {torch.get_num_threads()}, BLAS threads {args.threads or 'default'}; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    for label, component in zip(searcher.timings.branches, searcher.searchers):
        index = component.index
        if component.kind == "dense":
            print(
                f"  {label}: {index.num_documents} x {index.dim} ({component.encoder.name}, "
                f"queries encoded in {component.encoder.precision}) {index.directory}"
            )
        else:
            print(
                f"  {label}: {index.num_documents} docs, query encoder "
                f"{index.settings.get('query_encoder', 'splade')} "
                f"({getattr(component.encoder, 'name', type(component.encoder).__name__)}) "
                f"{index.directory}"
            )
    print(f"\n{'stage':<16}{'median ms':>11}{'p90 ms':>9}{'p99 ms':>9}")
    for stage in (*stages, "total"):
        values = samples[stage]
        print(
            f"{stage:<16}{percentile(values, 50):>11.2f}{percentile(values, 90):>9.2f}"
            f"{percentile(values, 99):>9.2f}"
        )
    print(
        f"{'(sum of stages)':<16}{percentile(sums, 50):>11.2f}{percentile(sums, 90):>9.2f}"
        f"{percentile(sums, 99):>9.2f}"
    )
    print(
        f"{'(CPU time)':<16}{percentile(cpu_times, 50):>11.2f}"
        f"{percentile(cpu_times, 90):>9.2f}{percentile(cpu_times, 99):>9.2f}"
    )
    print(
        f"\nmedian end-to-end latency per pass: "
        f"{', '.join(f'{m:.2f}' for m in per_pass_medians)} ms -> median "
        f"{statistics.median(per_pass_medians):.2f} ms (goal < "
        f"{args.goal or (30 if len(paths) == 2 else 40):g} ms)"
    )

    if not args.no_hnsw and any(c.kind == "dense" for c in searcher.searchers):
        compare_hnsw(searcher, queries)
    return 0


def compare_hnsw(searcher, queries) -> None:
    """Build an HNSW graph over the dense vectors; recall@10 and latency against exact."""
    from sparse_ir.index.dense import DenseIndex, HnswOptions

    try:
        import faiss  # noqa: F401
    except ImportError:
        print("\nfaiss not installed: HNSW comparison skipped (pip install faiss-cpu)")
        return
    component = next(c for c in searcher.searchers if c.kind == "dense")
    dense = component.index
    vectors = component.encoder.encode_queries(queries, show_progress=False)
    options = HnswOptions()
    with tempfile.TemporaryDirectory() as scratch:
        started = time.perf_counter()
        graph = (
            dense
            if dense.has_hnsw
            else DenseIndex.build(
                np.asarray(dense.vectors),
                Path(scratch) / "hnsw",
                ids=dense.doc_ids,
                hnsw=options,
                show_progress=False,
            )
        )
        build_seconds = time.perf_counter() - started
        print(
            f"\ndense backends ({len(queries)} queries, one at a time; HNSW M={options.m}, "
            f"efConstruction={options.ef_construction}, built in {build_seconds:.1f}s)"
        )
        print(f"{'method':<22}{'recall@10':>10}{'median ms':>11}")
        exact_top = [graph.search(v, 10) for v in vectors]
        for method, ef in (("exact", None), ("hnsw", 16), ("hnsw", 64), ("hnsw", 128)):
            times, recalls = [], []
            for vector, truth in zip(vectors, exact_top):
                started = time.perf_counter()
                hits = graph.search(vector, 10, mode=method, ef_search=ef)
                times.append(time.perf_counter() - started)
                recalls.append(len({h.docno for h in hits} & {h.docno for h in truth}) / 10)
            label = method if ef is None else f"{method} efSearch={ef}"
            print(f"{label:<22}{np.mean(recalls):>10.4f}{percentile(times, 50):>11.3f}")


if __name__ == "__main__":
    sys.exit(main())
