#!/usr/bin/env python3
"""Sparse (SPLADE), dense and fused retrieval on a BEIR dataset: one table, every run written.

    python scripts/hybrid_search.py --data ../shared/data/scifact

Builds (or reuses, with --reuse) a SPLADE impact index and a dense index over the corpus,
searches the test queries with both, and fuses the two rankings:

* convex, alpha 0.5: min-max normalization, alpha · sparse + (1 − alpha) · dense (untuned);
* convex, alpha tuned: alpha picked by grid search on the TRAIN split (its own queries and
  qrels; the test qrels are never looked at), then applied to the test split;
* RRF: Reciprocal Rank Fusion, k = 60.

Prints nDCG@10, MRR@10, R@100 and R@1000 of each, and writes each run as a TREC file.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import _common


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data",
        default=None,
        help="BEIR dataset directory (default: SciFact at ../shared/data/scifact)",
    )
    parser.add_argument("--split", default="test", help="evaluation split (default test)")
    parser.add_argument(
        "--tune-split",
        default="train",
        help="split whose qrels pick alpha (default train; never the test)",
    )
    parser.add_argument("--sparse-model", default="splade-tiny")
    parser.add_argument("--dense-model", default="minilm")
    parser.add_argument(
        "--sparse-index",
        default=None,
        help="impact index (default indexes/<dataset>-<sparse model>)",
    )
    parser.add_argument(
        "--dense-index", default=None, help="dense index (default indexes/<dataset>-<dense model>)"
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="reuse indexes that already exist instead of rebuilding them",
    )
    parser.add_argument("--dense-precision", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--depth", type=int, default=1000, help="hits per run before fusion")
    parser.add_argument("-k", type=int, default=1000, help="hits per query in every run")
    parser.add_argument(
        "--normalization",
        default="min-max",
        choices=["min-max", "z-score", "midpoint", "none"],
        help="normalization of the convex fusions",
    )
    parser.add_argument("--step", type=float, default=0.05, help="alpha grid spacing")
    parser.add_argument("--tune-metric", default="nDCG@10")
    parser.add_argument("--runs", default="runs/hybrid", help="directory for the run files")
    args = parser.parse_args(argv)

    from sparse_ir.corpus import load_queries
    from sparse_ir.eval import evaluate, load_beir, read_qrels
    from sparse_ir.fusion import Fusion, tune_weights

    if args.tune_split == args.split:
        parser.error(
            "--tune-split must differ from --split: tuning on the evaluation "
            "queries would overstate the result"
        )
    data = _common.scifact_data(parser, args.data)
    runs_dir = Path(args.runs)
    runs_dir.mkdir(parents=True, exist_ok=True)
    dataset = load_beir(data, args.split)
    tune_qrels = read_qrels(data / "qrels" / f"{args.tune_split}.tsv")
    tune_queries = [q for q in load_queries(data / "queries.jsonl") if q.id in tune_qrels]
    sparse_path = Path(args.sparse_index or f"indexes/{data.name}-{Path(args.sparse_model).name}")
    dense_path = Path(args.dense_index or f"indexes/{data.name}-{Path(args.dense_model).name}")

    from sparse_ir.encoders.dense import DenseEncoder
    from sparse_ir.encoders.splade import SpladeEncoder
    from sparse_ir.hybrid import HybridSearcher
    from sparse_ir.index.dense import DenseIndex
    from sparse_ir.index.impact_index import ImpactIndex
    from sparse_ir.pipeline import dense_index_corpus, index_corpus
    from sparse_ir.search import DenseSearcher, Searcher

    splade = SpladeEncoder.from_pretrained(args.sparse_model, device=args.device)
    dense_encoder = DenseEncoder.from_pretrained(
        args.dense_model, device=args.device, precision=args.dense_precision
    )
    timings = {}
    if args.reuse and sparse_path.exists():
        sparse_index = ImpactIndex.open(sparse_path)
    else:
        started = time.perf_counter()
        sparse_index, _ = index_corpus(
            splade,
            dataset.corpus,
            sparse_path,
            total=len(dataset.corpus),
            settings={"dataset": str(data)},
        )
        timings["sparse index build"] = time.perf_counter() - started
    if args.reuse and dense_path.exists():
        dense_index = DenseIndex.open(dense_path)
    else:
        started = time.perf_counter()
        dense_index, _ = dense_index_corpus(
            dense_encoder,
            dataset.corpus,
            dense_path,
            total=len(dataset.corpus),
            settings={"dataset": str(data)},
        )
        timings["dense index build"] = time.perf_counter() - started
    searcher = HybridSearcher(
        [Searcher(sparse_index, splade), DenseSearcher(dense_index, dense_encoder)],
        Fusion.convex(0.5, normalization=args.normalization, depth=args.depth),
    )

    def component_runs(queries):
        ids = [q.id for q in queries]
        started = time.perf_counter()
        _, (sparse_run, dense_run) = searcher.search_batch_components(
            [q.text for q in queries], args.k, query_ids=ids, show_progress=False
        )
        return sparse_run, dense_run, time.perf_counter() - started

    tune_sparse, tune_dense, _ = component_runs(tune_queries)
    sparse_run, dense_run, search_seconds = component_runs(dataset.queries)
    timings[f"encode + search {len(dataset.queries)} queries, both indexes"] = search_seconds

    tuned = tune_weights(
        [tune_sparse, tune_dense],
        tune_qrels,
        args.tune_metric,
        step=args.step,
        normalization=args.normalization,
        depth=args.depth,
    )
    alpha = tuned.weights[0]
    runs = {
        f"sparse ({args.sparse_model})": sparse_run,
        f"dense ({args.dense_model})": dense_run,
        f"convex, alpha 0.50, {args.normalization}": Fusion.convex(
            0.5, normalization=args.normalization, depth=args.depth
        ).fuse([sparse_run, dense_run], k=args.k, name="convex-0.5"),
        f"convex, alpha {alpha:.2f} (tuned on {args.tune_split})": Fusion.convex(
            alpha, normalization=args.normalization, depth=args.depth
        ).fuse([sparse_run, dense_run], k=args.k, name="convex-tuned"),
        "RRF, k 60": Fusion.rrf(60, depth=args.depth).fuse(
            [sparse_run, dense_run], k=args.k, name="rrf-60"
        ),
    }
    files = ["sparse", "dense", "convex-0.5", "convex-tuned", "rrf-60"]
    table = []
    for (label, run), stem in zip(runs.items(), files):
        run.name = stem
        path = runs_dir / f"{data.name}.{stem}.{args.split}.trec"
        run.write_trec(path)
        table.append((label, evaluate(run, dataset.qrels), path))

    print(
        f"\n{data.name}, {args.split} split: {len(dataset.queries)} queries, "
        f"{sparse_index.num_documents} documents; alpha = weight of the sparse run"
    )
    print(
        f"alpha tuned on {args.tune_split} ({len(tune_queries)} queries, "
        f"{args.tune_metric}, step {args.step}): {alpha:.2f} "
        f"({args.tune_metric} {tuned.score:.4f} on {args.tune_split})"
    )
    metrics = list(table[0][1])
    print(f"\n{'run':<40}" + "".join(f"{m:>9}" for m in metrics))
    for label, scores, _ in table:
        print(f"{label:<40}" + "".join(f"{scores[m]:>9.4f}" for m in metrics))
    print("\n" + "\n".join(f"{name}: {seconds:.1f}s" for name, seconds in timings.items()))
    print("runs: " + ", ".join(str(path) for _, _, path in table))
    grid = ", ".join(f"{w[0]:.2f}:{s:.4f}" for w, s in tuned.table[::2])
    print(f"train grid (alpha:{args.tune_metric}): {grid}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
