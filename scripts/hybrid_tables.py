#!/usr/bin/env python3
"""BM25, SPLADE and dense, alone, in pairs and all three: nDCG@10 and R@100 per development set.

    python scripts/hybrid_tables.py --work bench-data --output bench-results/hybrid_tables.json

For each collection (SciFact, TREC DL19 pooled, NFCorpus; BEIR layout) the script builds, once
(cached under ``--work``/hybrid/NAME/), three indexes of its corpus with the library's own
command line: BM25 (``sparse-ir index --bm25``: k1 0.9, b 0.4), the bundled splade-tiny
(``sparse-ir index``) and the bundled all-MiniLM-L6-v2 (``sparse-ir dense-index``). It searches
each with its recorded query encoder (top 1000, cached as TREC runs) and reports, for each
single system, every pair and the triple:

- **convex**: min-max normalized scores, weights on a 0.05 grid of the simplex, tuned for
  nDCG@10 on queries that are NOT the ones reported. SciFact: tuned on the train split's
  queries, reported on test. DL19 and NFCorpus have test queries only: 2-fold
  cross-validation with a fixed seed (tune on one half, fuse the other half with those
  weights, and the reverse); the reported run is the merge of the two halves.
- **RRF**: k = 60, no tuning.

Metrics (ir_measures): nDCG@10 and R@100 (DL19: relevance >= 2 for R@100, as TREC does).
Every tuned weight vector and its validation score go to the JSON ``--output``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from pathlib import Path

import _common  # puts the repository first on sys.path
import numpy as np

HERE = Path(__file__).resolve().parent
# $SPARSE_IR_DATA, else ../shared/data beside the repository or the working directory.
DATA = next(
    (
        p
        for p in (
            Path(os.environ.get("SPARSE_IR_DATA", "/nonexistent")),
            HERE.parent.parent / "shared" / "data",
            Path.cwd().parent / "shared" / "data",
        )
        if (p / "scifact").is_dir() or (p / "nfcorpus").is_dir()
    ),
    HERE.parent.parent / "shared" / "data",
)
DATASETS = {
    "scifact": DATA / "scifact",
    "dl19-pooled": DATA / "trec-dl19-pooled",
    "nfcorpus": DATA / "nfcorpus",
}
#: Tuning queries: a split of their own, or 2-fold cross-validation over the test queries.
TUNING_SPLIT = {"scifact": "train"}
#: Minimum relevance of a binary metric (TREC DL counts grade >= 2 as relevant).
BINARY_RELEVANCE = {"dl19-pooled": 2}
#: The systems: name -> (index directory name, sparse-ir command building it).
SYSTEMS = {
    "bm25": ("bm25", ["index", "--bm25"]),
    "splade": ("splade-tiny", ["index", "--model", "splade-tiny"]),
    "dense": ("minilm", ["dense-index", "--model", "minilm"]),
}
DEPTH = 1000


def metrics_for(name: str) -> dict[str, str]:
    """Labels -> ir_measures names of the reported metrics on collection ``name``."""
    rel = BINARY_RELEVANCE.get(name)
    return {"nDCG@10": "nDCG@10", "R@100": f"R(rel={rel})@100" if rel else "R@100"}


# -- indexes and runs -------------------------------------------------------------------------


def is_index(path: Path) -> bool:
    from sparse_ir.hybrid import index_format

    try:
        index_format(path)
    except Exception:
        return False
    return True


def build_index(corpus: Path, output: Path, command: list[str]) -> None:
    """``sparse-ir COMMAND --input corpus --output output`` unless the index is there."""
    from sparse_ir.cli import main as cli

    if is_index(output):
        return
    started = time.perf_counter()
    print(f"building {output} ...", file=sys.stderr, flush=True)
    status = cli(["-q", *command, "--input", str(corpus), "--output", str(output)])
    if status:
        raise SystemExit(f"building {output} failed (exit status {status})")
    print(f"built {output} in {time.perf_counter() - started:.0f}s", file=sys.stderr, flush=True)


def build_from_vectors(vectors: Path, output: Path) -> None:
    """The splade-tiny index of SciFact from its pre-encoded vectors (``doc_vectors.json.gz``:
    the bundled model, title + " " + text, 256 tokens, float32), instead of encoding the
    corpus again: the same settings ``sparse-ir index`` records, so the index is searched with
    the bundled splade-tiny query encoder."""
    from sparse_ir.encoders.splade import SpladeEncoder
    from sparse_ir.index.impact_index import ImpactIndex
    from sparse_ir.pipeline import encoder_settings
    from sparse_ir.sparse_batch import SparseBatch

    if is_index(output):
        return
    encoder = SpladeEncoder.from_pretrained("splade-tiny")
    docs, _ = _common.read_vectors(vectors)
    batch = SparseBatch.from_dicts(docs.values(), encoder.vocab, ids=list(docs))
    ImpactIndex.build(
        batch,
        output,
        settings={**encoder_settings(encoder), "vectors": str(vectors)},
        show_progress=False,
    )
    print(f"built {output} from {vectors}", file=sys.stderr, flush=True)


def cached_run(index: Path, queries, run_path: Path, *, model: str | None = None):
    """The index's top-DEPTH run of ``queries`` (its recorded query encoder, or ``model``),
    read from ``run_path`` when cached (a TREC run file)."""
    from sparse_ir.hybrid import open_searcher
    from sparse_ir.results import Run

    if not run_path.exists():
        searcher = open_searcher(index, model=model)
        run = searcher.search_batch(
            [q.text for q in queries], DEPTH, query_ids=[q.id for q in queries], show_progress=False
        )
        run_path.parent.mkdir(parents=True, exist_ok=True)
        partial = run_path.with_suffix(".partial")
        run.write_trec(partial, tag=run_path.stem)
        partial.replace(run_path)
    return Run.read_trec(run_path, name=run_path.stem)


# -- fusion and its tuning --------------------------------------------------------------------


def subset(run, query_ids):
    from sparse_ir.results import Run

    keep = set(query_ids)
    return Run(name=run.name, results={q: h for q, h in run.results.items() if q in keep})


def tune(runs, qrels, step: float) -> tuple[tuple[float, ...], float]:
    """Convex weights with the best nDCG@10 on ``qrels``' queries (min-max, depth 1000)."""
    from sparse_ir.fusion import tune_weights

    result = tune_weights(runs, qrels, "nDCG@10", step=step, depth=DEPTH, k=10)
    return tuple(round(w, 4) for w in result.weights), result.score


def two_folds(query_ids, seed: int) -> list[list[str]]:
    """The query ids in two halves, shuffled with ``seed``."""
    order = np.random.default_rng(seed).permutation(sorted(query_ids))
    half = (len(order) + 1) // 2
    return [sorted(order[:half].tolist()), sorted(order[half:].tolist())]


def fuse_convex(runs, weights, k: int = DEPTH):
    from sparse_ir.fusion import Fusion

    return Fusion(method="convex", weights=weights, depth=DEPTH).fuse(runs, k=k, name="convex")


def fuse_rrf(runs, k: int = DEPTH):
    from sparse_ir.fusion import Fusion

    return Fusion.rrf(60, depth=DEPTH).fuse(runs, k=k, name="rrf")


def combination_figures(names, test_runs, test_qrels, tuning, metrics, step: float) -> dict:
    """Figures of one combination of systems: convex (tuned as ``tuning`` says) and RRF.

    ``tuning``: ``("split", runs of the tuning queries, their qrels)`` or ``("folds", folds)``.
    """
    from sparse_ir.eval import evaluate
    from sparse_ir.results import Run

    runs = [test_runs[n] for n in names]
    if len(runs) == 1:
        scores = evaluate(runs[0], test_qrels, metrics)
        return {"systems": list(names), "single": scores}
    out = {"systems": list(names)}
    if tuning[0] == "split":
        _, tuning_runs, tuning_qrels = tuning
        weights, validation = tune([tuning_runs[n] for n in names], tuning_qrels, step)
        fused = fuse_convex(runs, weights)
        out["convex_tuning"] = {
            "method": "train split",
            "weights": list(weights),
            "validation_nDCG@10": validation,
        }
    else:
        folds = tuning[1]
        fused = Run(name="convex")
        out["convex_tuning"] = {"method": "2-fold cross-validation", "folds": []}
        for tune_on, apply_to in ((0, 1), (1, 0)):
            tune_ids, apply_ids = folds[tune_on], folds[apply_to]
            tune_qrels = {q: test_qrels[q] for q in tune_ids if q in test_qrels}
            weights, validation = tune([subset(r, tune_ids) for r in runs], tune_qrels, step)
            fused.results.update(fuse_convex([subset(r, apply_ids) for r in runs], weights).results)
            out["convex_tuning"]["folds"].append(
                {
                    "tuned_on": len(tune_ids),
                    "applied_to": len(apply_ids),
                    "weights": list(weights),
                    "validation_nDCG@10": validation,
                }
            )
    out["convex"] = evaluate(fused, test_qrels, metrics)
    out["rrf"] = evaluate(fuse_rrf(runs), test_qrels, metrics)
    return out


def label(names) -> str:
    return " + ".join(
        {"bm25": "BM25", "splade": "SPLADE", "dense": "dense"}.get(n, n) for n in names
    )


def table(name: str, rows: list[dict], systems: dict[str, str]) -> str:
    """A Markdown table of one collection's figures."""
    lines = [
        f"**{name}** ({', '.join(f'{k} = {v}' for k, v in systems.items())})",
        "",
        "| systems | convex nDCG@10 | convex R@100 | RRF nDCG@10 | RRF R@100 | tuned weights |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        if "single" in row:
            s = row["single"]
            lines.append(
                f"| {label(row['systems'])} | {s['nDCG@10']:.4f} | {s['R@100']:.4f} | | | |"
            )
            continue
        tuning = row["convex_tuning"]
        if "weights" in tuning:
            weights = "(" + ", ".join(f"{w:.2f}" for w in tuning["weights"]) + ")"
        else:
            weights = " / ".join(
                "(" + ", ".join(f"{w:.2f}" for w in f["weights"]) + ")" for f in tuning["folds"]
            )
        c, r = row["convex"], row["rrf"]
        lines.append(
            f"| {label(row['systems'])} | {c['nDCG@10']:.4f} | {c['R@100']:.4f} | "
            f"{r['nDCG@10']:.4f} | {r['R@100']:.4f} | {weights} |"
        )
    return "\n".join(lines)


def targets(rows: list[dict]) -> dict:
    """The issue's targets: the triple (convex) beats the best single system and BM25 + dense."""
    by = {tuple(r["systems"]): r for r in rows}
    best_single = max(r["single"]["nDCG@10"] for r in rows if "single" in r)
    triple = max(rows, key=lambda r: len(r["systems"]))
    pair = by.get(("bm25", "dense"))
    return {
        "best_single_nDCG@10": best_single,
        "triple_convex_nDCG@10": triple["convex"]["nDCG@10"],
        "triple_rrf_nDCG@10": triple["rrf"]["nDCG@10"],
        "bm25_dense_convex_nDCG@10": pair["convex"]["nDCG@10"] if pair else None,
        "triple_beats_best_single": triple["convex"]["nDCG@10"] > best_single,
        "triple_beats_bm25_dense": bool(pair)
        and triple["convex"]["nDCG@10"] > pair["convex"]["nDCG@10"],
    }


def run_collection(
    name: str,
    data: Path,
    work: Path,
    *,
    step: float,
    seed: int,
    systems: dict[str, Path] | None = None,
    splade_vectors: Path | None = None,
) -> dict:
    """Build (or reuse) the indexes, search, fuse and evaluate one collection.

    ``systems``: name -> an existing index directory, instead of :data:`SYSTEMS` built here.
    """
    from sparse_ir.eval import load_beir

    root = work / "hybrid" / name
    if systems is None:
        systems = {}
        for system, (directory, command) in SYSTEMS.items():
            if system == "splade" and splade_vectors is not None:
                build_from_vectors(splade_vectors, root / directory)
            build_index(data / "corpus.jsonl", root / directory, command)
            systems[system] = root / directory
    test = load_beir(data, "test")
    metrics = metrics_for(name)
    runs_dir = root / "runs"
    test_runs = {
        s: cached_run(path, test.queries, runs_dir / f"{Path(path).name}.test.trec")
        for s, path in systems.items()
    }
    split = TUNING_SPLIT.get(name)
    if split:
        tuning_set = load_beir(data, split)
        tuning_runs = {
            s: cached_run(path, tuning_set.queries, runs_dir / f"{Path(path).name}.{split}.trec")
            for s, path in systems.items()
        }
        tuning = ("split", tuning_runs, tuning_set.qrels)
        tuning_note = f"weights tuned on the {split} split ({len(tuning_set.queries)} queries)"
    else:
        judged = [
            q.id for q in test.queries if any(r > 0 for r in test.qrels.get(q.id, {}).values())
        ]
        tuning = ("folds", two_folds(judged, seed))
        tuning_note = f"weights tuned by 2-fold cross-validation on test (seed {seed})"
    rows = []
    names = list(systems)
    for size in range(1, len(names) + 1):
        for combination in itertools.combinations(names, size):
            started = time.perf_counter()
            rows.append(
                combination_figures(combination, test_runs, test.qrels, tuning, metrics, step)
            )
            print(
                f"{name}: {label(combination)} in {time.perf_counter() - started:.1f}s",
                file=sys.stderr,
                flush=True,
            )
    return {
        "collection": name,
        "data": str(data),
        "test_queries": len(test.queries),
        "tuning": tuning_note,
        "metrics": metrics,
        "step": step,
        "seed": seed,
        "indexes": {s: str(p) for s, p in systems.items()},
        "rows": rows,
        "targets": targets(rows),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--datasets",
        nargs="+",
        default=list(DATASETS),
        help=f"names ({', '.join(DATASETS)}); data from $SPARSE_IR_DATA or ../shared/data",
    )
    parser.add_argument(
        "--work", default="bench-data", help="cache of indexes and runs (default: %(default)s)"
    )
    parser.add_argument(
        "--step",
        type=float,
        default=0.05,
        help="grid spacing of the weight search (default: %(default)s)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the cross-validation folds (default: %(default)s)",
    )
    parser.add_argument(
        "--scifact-vectors",
        default=None,
        help="SciFact only: build its splade-tiny index from these pre-encoded "
        "vectors (the shared scifact-splade-tiny directory) instead of "
        "encoding the corpus",
    )
    parser.add_argument(
        "--output", help="write every figure, weight and validation score here (JSON)"
    )
    args = parser.parse_args(argv)
    results = []
    for name in args.datasets:
        if name not in DATASETS:
            parser.error(f"unknown collection {name!r} (known: {', '.join(DATASETS)})")
        vectors = Path(args.scifact_vectors) if args.scifact_vectors and name == "scifact" else None
        result = run_collection(
            name,
            DATASETS[name],
            Path(args.work),
            step=args.step,
            seed=args.seed,
            splade_vectors=vectors,
        )
        results.append(result)
        print(
            table(
                f"{name} test ({result['test_queries']} queries; {result['tuning']})",
                result["rows"],
                {"SPLADE": "splade-tiny", "dense": "all-MiniLM-L6-v2", "BM25": "k1 0.9, b 0.4"},
            )
        )
        print(f"targets: {json.dumps(result['targets'])}\n", flush=True)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps({"results": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
