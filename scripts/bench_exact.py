#!/usr/bin/env python3
"""Exact search on SciFact: our numba kernel vs scipy brute force, single thread, same integers.

    python scripts/bench_exact.py [--vectors ../shared/data/scifact-splade-tiny]

Uses the real splade-tiny vectors of SciFact (documents and the 300 test queries), quantized with
the default Quantizer (scale 100). Checks that, for every query, the top-100 of our kernel equals
brute-force scipy scoring of the same integers (ids, scores and order), then times both (median of
--repeats runs over all queries) and prints queries/s and the ratio.
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sparse_ir.eval import find_scifact  # noqa: E402
from sparse_ir.index.impact_index import ImpactIndex  # noqa: E402
from sparse_ir.quantize import Quantizer  # noqa: E402
from sparse_ir.sparse_batch import SparseBatch  # noqa: E402


def load_vectors(directory: Path) -> tuple[SparseBatch, SparseBatch]:
    """Documents and queries of the pre-encoded SciFact vectors, over one shared vocabulary."""
    with gzip.open(directory / "doc_vectors.json.gz", "rt") as handle:
        docs = json.load(handle)
    with gzip.open(directory / "query_vectors.json.gz", "rt") as handle:
        queries = json.load(handle)
    vocab = sorted({t for v in docs.values() for t in v} | {t for v in queries.values() for t in v})
    doc_batch = SparseBatch.from_dicts(docs.values(), vocab, ids=list(docs))
    query_batch = SparseBatch.from_dicts(queries.values(), vocab, ids=list(queries))
    return doc_batch, query_batch


def scipy_top_k(matrix, query_matrix, k):
    """Brute force: q · Dᵀ with scipy, then a full tie-broken sort per query."""
    scores = (query_matrix @ matrix.T).toarray()
    results = []
    for row in scores:
        candidates = np.flatnonzero(row > 0)
        order = np.lexsort((candidates, -row[candidates]))[:k]
        results.append((candidates[order], row[candidates[order]]))
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vectors", default=None, help="directory with doc_vectors.json.gz and "
                        "query_vectors.json.gz (default: beside SciFact)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("-k", type=int, default=10, help="hits per query for timing")
    args = parser.parse_args(argv)
    directory = Path(args.vectors) if args.vectors else \
        (find_scifact() or Path("missing")).parent / "scifact-splade-tiny"
    docs, queries = load_vectors(directory)
    quantizer = Quantizer()
    qdocs, qqueries = quantizer.quantize(docs), quantizer.quantize(queries)

    with tempfile.TemporaryDirectory() as tmp:
        index = ImpactIndex.build(qdocs, Path(tmp) / "scifact", quantizer=quantizer,
                                  show_progress=False)
        matrix = qdocs.to_scipy().astype(np.int64).tocsr()
        query_matrix = qqueries.to_scipy().astype(np.int64).tocsr()

        # Agreement: top-100 of every query, ids, scores and order.
        ours = index.search_batch(qqueries, 100, threads=1)
        reference = scipy_top_k(matrix, query_matrix, 100)
        mismatches = 0
        for q, qid in enumerate(qqueries.ids):
            docs_ref, scores_ref = reference[q]
            hits = ours[qid]
            if [h.docno for h in hits] != docs_ref.tolist() or \
                    [h.score for h in hits] != scores_ref.tolist():
                mismatches += 1
        print(f"agreement: top-100 of {len(qqueries)} queries, numba vs scipy brute force: "
              f"{len(qqueries) - mismatches} identical, {mismatches} different")

        def time_ours_batch():
            started = time.perf_counter()
            index.search_batch(qqueries, args.k, threads=1)
            return time.perf_counter() - started

        single = [qqueries.select([i]) for i in range(len(qqueries))]

        def time_ours_single():
            started = time.perf_counter()
            for query in single:
                index.search(query, args.k)
            return time.perf_counter() - started

        def time_scipy():
            started = time.perf_counter()
            scipy_top_k(matrix, query_matrix, args.k)
            return time.perf_counter() - started

        time_ours_batch(), time_ours_single()  # compile and warm
        rows = []
        for label, timer in (("sparse-ir search_batch (1 thread)", time_ours_batch),
                             ("sparse-ir search() one query at a time", time_ours_single),
                             ("scipy q·Dᵀ + sort", time_scipy)):
            seconds = statistics.median(timer() for _ in range(args.repeats))
            rows.append((label, len(qqueries) / seconds))
        print(f"SciFact: {index.num_documents} docs, {index.num_postings} postings, "
              f"{len(qqueries)} queries, top-{args.k}, median of {args.repeats} runs")
        for label, rate in rows:
            print(f"  {label:<40} {rate:>10,.0f} queries/s")
        print(f"  ratio search_batch / scipy: {rows[0][1] / rows[2][1]:.1f}x; "
              f"search() / scipy: {rows[1][1] / rows[2][1]:.1f}x")
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
