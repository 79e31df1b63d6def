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
import sys
import tempfile
from pathlib import Path

import _common
import numpy as np

from sparse_ir.index.impact_index import ImpactIndex
from sparse_ir.quantize import Quantizer


def scipy_top_k(matrix, query_matrix, k):
    """Brute force: q · Dᵀ with scipy, then the tie-broken top-k of each query."""
    scores = (query_matrix @ matrix.T).toarray()
    results = []
    for row in scores:
        docs = _common.top_k_exact(row, k)
        results.append((docs, row[docs]))
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--vectors",
        default=None,
        help="directory with doc_vectors.json.gz and "
        "query_vectors.json.gz (default: beside SciFact)",
    )
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("-k", type=int, default=10, help="hits per query for timing")
    args = parser.parse_args(argv)
    docs, queries = _common.scifact_vectors(_common.scifact_vectors_dir(args.vectors))
    quantizer = Quantizer()
    qdocs, qqueries = quantizer.quantize(docs), quantizer.quantize(queries)

    with tempfile.TemporaryDirectory() as tmp:
        index = ImpactIndex.build(
            qdocs, Path(tmp) / "scifact", quantizer=quantizer, show_progress=False
        )
        matrix = qdocs.to_scipy().astype(np.int64).tocsr()
        query_matrix = qqueries.to_scipy().astype(np.int64).tocsr()

        # Agreement: top-100 of every query, ids, scores and order.
        ours = index.search_batch(qqueries, 100, threads=1)
        reference = scipy_top_k(matrix, query_matrix, 100)
        mismatches = 0
        for q, qid in enumerate(qqueries.ids):
            docs_ref, scores_ref = reference[q]
            hits = ours[qid]
            if [h.docno for h in hits] != docs_ref.tolist() or [
                h.score for h in hits
            ] != scores_ref.tolist():
                mismatches += 1
        print(
            f"agreement: top-100 of {len(qqueries)} queries, numba vs scipy brute force: "
            f"{len(qqueries) - mismatches} identical, {mismatches} different"
        )

        def ours_batch():
            index.search_batch(qqueries, args.k, threads=1)

        single = [qqueries.select([i]) for i in range(len(qqueries))]

        def ours_single():
            for query in single:
                index.search(query, args.k)

        def scipy_batch():
            scipy_top_k(matrix, query_matrix, args.k)

        ours_batch(), ours_single()  # compile and warm
        rows = []
        for label, function in (
            ("sparse-ir search_batch (1 thread)", ours_batch),
            ("sparse-ir search() one query at a time", ours_single),
            ("scipy q·Dᵀ + sort", scipy_batch),
        ):
            seconds, _ = _common.median_seconds(function, args.repeats)
            rows.append((label, len(qqueries) / seconds))
        print(
            f"SciFact: {index.num_documents} docs, {index.num_postings} postings, "
            f"{len(qqueries)} queries, top-{args.k}, median of {args.repeats} runs"
        )
        for label, rate in rows:
            print(f"  {label:<40} {rate:>10,.0f} queries/s")
        print(
            f"  ratio search_batch / scipy: {rows[0][1] / rows[2][1]:.1f}x; "
            f"search() / scipy: {rows[1][1] / rows[2][1]:.1f}x"
        )
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
