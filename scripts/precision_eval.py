#!/usr/bin/env python3
"""Effectiveness of an encoder precision against float32 on a BEIR dataset, exact scoring.

    python scripts/precision_eval.py --data ../shared/data/scifact --precision int8 \\
        --float32-vectors ../shared/data/scifact-splade-tiny

Encodes the corpus and the judged queries with --precision (and with float32, unless
--float32-vectors gives the pre-encoded float32 vectors), scores every query against every
document exactly (float weights, no quantization, no pruning), and prints nDCG@10, MRR@10 and
R@100 of both, their difference, the top-64-term agreement per document, and the encoding rate.
--processes N encodes with N single-threaded worker processes (faster on a busy machine).
"""

from __future__ import annotations

import argparse
import sys
import time
import typing
from pathlib import Path

import _common
import numpy as np
import scipy.sparse as sp

from sparse_ir.encoders.options import Precision, Runtime
from sparse_ir.eval import evaluate, load_beir
from sparse_ir.results import Run

METRICS = ("nDCG@10", "MRR@10", "R@100")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="BEIR dataset (default SciFact)")
    parser.add_argument("--split", default="test", help="default: %(default)s")
    parser.add_argument("--model", default="splade-tiny", help="default: %(default)s")
    parser.add_argument(
        "--precision",
        default="int8",
        choices=typing.get_args(Precision),
        help="default: %(default)s",
    )
    parser.add_argument(
        "--float32-vectors",
        default=None,
        help="directory of pre-encoded float32 doc_vectors.json.gz/query_vectors.json.gz "
        "(default: encode with float32)",
    )
    parser.add_argument(
        "--runtime",
        default="torch",
        choices=typing.get_args(Runtime),
        help="what runs the transformer body of --precision (float32 always on torch) "
        "(default: %(default)s)",
    )
    parser.add_argument("--processes", type=int, default=1, help="default: %(default)s")
    args = parser.parse_args(argv)

    data = _common.scifact_data(parser, args.data)
    dataset = load_beir(data, args.split)
    documents = [d.full_text for d in dataset.corpus]
    doc_ids = [d.id for d in dataset.corpus]
    queries = [q.text for q in dataset.queries]
    query_ids = [q.id for q in dataset.queries]
    print(f"{data.name}: {len(documents)} documents, {len(queries)} queries", flush=True)

    fast, rate, vocab = encode(args, args.precision, documents, queries, args.runtime)
    if args.float32_vectors:
        exact = from_vectors(Path(args.float32_vectors), doc_ids, query_ids, vocab)
    else:
        exact = encode(args, "float32", documents, queries)[0]
    figures = {}
    for label, (docs, qs) in (("float32", exact), (args.precision, fast)):
        scores = (qs @ docs.T).toarray()
        run = {
            qid: {doc_ids[j]: float(row[j]) for j in np.argsort(-row, kind="stable")[:1000]}
            for qid, row in zip(query_ids, scores)
        }
        figures[label] = evaluate(Run.from_dict(run), dataset.qrels, METRICS)
    agreement = top_agreement(exact[0], fast[0], 64)
    print(f"{args.precision} ({args.runtime}): {rate:.1f} docs/s encoding")
    print(f"{'':<10}" + "".join(f"{m:>10}" for m in METRICS))
    for label, values in figures.items():
        print(f"{label:<10}" + "".join(f"{values[m]:>10.4f}" for m in METRICS))
    difference = {m: figures[args.precision][m] - figures["float32"][m] for m in METRICS}
    print(f"{'diff':<10}" + "".join(f"{difference[m]:>+10.5f}" for m in METRICS))
    print(f"top-64 agreement per document: mean {agreement[0]:.4f}, lowest {agreement[1]:.3f}")
    return 0


def encode(args, precision, documents, queries, runtime="torch"):
    """(documents, queries) CSR matrices, docs/s, vocabulary."""
    if args.processes > 1:
        from sparse_ir.encoders.parallel import ParallelSpladeEncoder

        encoder = ParallelSpladeEncoder(
            args.model, processes=args.processes, threads=1, precision=precision, runtime=runtime
        )
    else:
        from sparse_ir.encoders.splade import SpladeEncoder

        encoder = SpladeEncoder.from_pretrained(args.model, precision=precision, runtime=runtime)
    try:
        started = time.perf_counter()
        docs = encoder.encode_documents(documents, show_progress=False).to_scipy()
        rate = len(documents) / (time.perf_counter() - started)
        qs = encoder.encode_queries(queries, show_progress=False).to_scipy()
    finally:
        if hasattr(encoder, "close"):
            encoder.close()
    return (docs.tocsr(), qs.tocsr()), rate, encoder.vocab


def from_vectors(directory: Path, doc_ids, query_ids, vocab):
    """Pre-encoded vectors as CSR matrices over ``vocab``."""
    documents, queries = _common.read_vectors(directory)
    column = {token: j for j, token in enumerate(vocab)}

    def matrix(vectors, ids):
        rows, cols, values = [], [], []
        for i, key in enumerate(ids):
            for token, weight in vectors.get(key, {}).items():
                rows.append(i)
                cols.append(column[token])
                values.append(weight)
        return sp.csr_matrix((values, (rows, cols)), shape=(len(ids), len(vocab)), dtype=np.float32)

    return matrix(documents, doc_ids), matrix(queries, query_ids)


def top_agreement(exact, fast, k: int) -> tuple[float, float]:
    """Mean and lowest share of each row's k heaviest exact terms among its k heaviest fast."""
    shares = []
    for i in range(exact.shape[0]):
        a, b = exact.getrow(i), fast.getrow(i)
        depth = min(k, a.nnz)
        if depth == 0:
            continue
        top_a = set(a.indices[np.argsort(-a.data, kind="stable")[:depth]].tolist())
        top_b = set(b.indices[np.argsort(-b.data, kind="stable")[:depth]].tolist())
        shares.append(len(top_a & top_b) / depth)
    return float(np.mean(shares)), float(np.min(shares))


if __name__ == "__main__":
    sys.exit(main())
