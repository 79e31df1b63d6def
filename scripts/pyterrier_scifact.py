"""pt.Experiment on SciFact (test): a SPLADE index against a BM25 index, both through
sparse_ir.pyterrier, with PyTerrier's paired t-test.

    python scripts/pyterrier_scifact.py --splade indexes/scifact --bm25 indexes/scifact-bm25 \
        --data data/scifact [--model splade-tiny]

BM25 is sparse_ir's own BM25 index (``sparse-ir index --bm25``): PyTerrier's Terrier BM25 needs
the Terrier jars, which PyTerrier downloads from Maven at first use.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import _common  # noqa: F401  (puts the repository first on sys.path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splade", required=True, help="SPLADE impact index directory")
    parser.add_argument("--bm25", required=True, help="BM25 index directory")
    parser.add_argument("--data", required=True, help="SciFact in BEIR layout")
    parser.add_argument("--model", default=None, help="query model (default: the recorded one)")
    args = parser.parse_args()

    import pyterrier as pt
    from ir_measures import RR, R, nDCG

    from sparse_ir.pyterrier import SparseIR, read_qrels, read_topics

    data = Path(args.data)
    qrels = read_qrels(data / "qrels" / "test.tsv")
    topics = read_topics(data / "queries.jsonl")
    topics = topics[topics["qid"].isin(set(qrels["qid"]))].reset_index(drop=True)
    started = time.perf_counter()
    table = pt.Experiment(
        [SparseIR(args.bm25), SparseIR(args.splade, model=args.model)],
        topics,
        qrels,
        [nDCG @ 10, RR @ 10, R @ 100],
        names=["BM25 (sparse_ir)", "SPLADE (sparse_ir)"],
        baseline=0,
        round=4,
    )
    print(f"{len(topics)} queries, {time.perf_counter() - started:.1f}s")
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()
