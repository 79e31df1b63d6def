#!/usr/bin/env python3
"""Domain adaptation, end to end: fine-tune splade-tiny, build three indexes, tune fusion, test.

    python scripts/domain_adapt.py --data ../shared/data/scifact --work bench-data \\
        -- --max-minutes 60 --lr 1e-4 --negatives 3

1. **Fine-tune** splade-tiny on the collection's train split with ``sparse-ir train`` (options
   after ``--`` go to it), holding out ``--holdout`` train queries (chosen by ``--seed``, as
   the trainer chooses them) for checkpoint selection. With ``--model-dir`` a model already
   fine-tuned that way is used and this step is skipped (give the same ``--holdout`` and
   ``--seed`` it was trained with).
2. **Index** the corpus three ways: the fine-tuned SPLADE model, BM25 and all-MiniLM-L6-v2
   (the last two shared with ``scripts/hybrid_tables.py``, cached under ``--work``).
3. **Tune** convex fusion weights (min-max, a 0.05 grid of the simplex) for nDCG@10 on the
   held-out train queries only: the fine-tuned model never trained on them, and the test
   queries are never looked at.
4. **Report** nDCG@10 and R@100 on the test split: fine-tuned SPLADE alone, with dense, with
   BM25, and the triple (convex with the tuned weights, and RRF k = 60), beside the weights
   and their validation scores (also written as JSON with ``--output``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import _common  # noqa: F401  (puts the repository first on sys.path)
import hybrid_tables as tables


def held_out_queries(data: Path, holdout: float, seed: int) -> list[str]:
    """Ids of the train queries ``sparse-ir train --holdout H --seed S`` holds out."""
    from sparse_ir.training.prepare import prepare_beir

    prepared = prepare_beir(
        data, split="train", holdout=holdout, seed=seed, negatives_from="none", show_progress=False
    )
    if prepared.validation is None:
        raise SystemExit("--holdout 0 holds out no train query: nothing to tune fusion on")
    return [q.id for q in prepared.validation.queries]


def fine_tune(data: Path, output: Path, holdout: float, seed: int, extra: list[str]) -> Path:
    """``sparse-ir train`` on the train split; the best checkpoint's directory."""
    from sparse_ir.cli import main as cli

    best = output / "best"
    if best.is_dir():
        print(f"{best} exists: training skipped", file=sys.stderr)
        return best
    command = [
        "train",
        "--data",
        str(data),
        "--output",
        str(output),
        "--holdout",
        str(holdout),
        "--seed",
        str(seed),
        *extra,
    ]
    print("sparse-ir " + " ".join(command), file=sys.stderr, flush=True)
    status = cli(command)
    if status or not best.is_dir():
        raise SystemExit(f"training failed (exit status {status}; no {best})")
    return best


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="Options after -- go to 'sparse-ir train' (e.g. -- --max-minutes 60 --lr 1e-4).",
    )
    parser.add_argument(
        "--data",
        default=str(tables.DATASETS["scifact"]),
        help="BEIR dataset with train and test splits (default: SciFact)",
    )
    parser.add_argument(
        "--name",
        default=None,
        help="name of the collection in the cache (default: the directory's)",
    )
    parser.add_argument(
        "--work",
        default="bench-data",
        help="cache of models, indexes and runs (default: %(default)s)",
    )
    parser.add_argument(
        "--model-dir", default=None, help="an already fine-tuned model: skip training"
    )
    parser.add_argument(
        "--holdout",
        default="100",
        help="train queries held out of training, to tune fusion on (default: %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=0, help="training and holdout seed")
    parser.add_argument("--step", type=float, default=0.05, help="weight grid spacing")
    parser.add_argument("--output", help="write the figures as JSON here")
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    args = parser.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    holdout = float(args.holdout) if "." in args.holdout else int(args.holdout)
    data = Path(args.data)
    name = args.name or {"trec-dl19-pooled": "dl19-pooled"}.get(data.name, data.name)
    work = Path(args.work)
    root = work / "adapt" / name

    from sparse_ir.eval import load_beir

    started = time.perf_counter()
    model = (
        Path(args.model_dir)
        if args.model_dir
        else fine_tune(data, root / "model", holdout, args.seed, extra)
    )
    # The shared BM25 and dense indexes, and this model's own SPLADE index.
    shared = work / "hybrid" / name
    systems = {}
    for system in ("bm25", "dense"):
        directory, command = tables.SYSTEMS[system]
        tables.build_index(data / "corpus.jsonl", shared / directory, command)
        systems[system] = shared / directory
    splade = root / "splade-ft"
    tables.build_index(data / "corpus.jsonl", splade, ["index", "--model", str(model)])
    systems = {"splade-ft": splade, **systems}

    held = set(held_out_queries(data, holdout, args.seed))
    train = load_beir(data, "train")
    tuning_queries = [q for q in train.queries if q.id in held]
    tuning_qrels = {q: train.qrels[q] for q in held}
    test = load_beir(data, "test")
    runs_dir = root / "runs"
    test_runs = {
        s: tables.cached_run(p, test.queries, runs_dir / f"{p.name}.test.trec")
        for s, p in systems.items()
    }
    tuning_runs = {
        s: tables.cached_run(p, tuning_queries, runs_dir / f"{p.name}.heldout.trec")
        for s, p in systems.items()
    }
    metrics = tables.metrics_for(name)
    rows = []
    for size in (1, 2, 3):
        for combination in itertools.combinations(systems, size):
            rows.append(
                tables.combination_figures(
                    combination,
                    test_runs,
                    test.qrels,
                    ("split", tuning_runs, tuning_qrels),
                    metrics,
                    args.step,
                )
            )
    title = (
        f"{name} test ({len(test.queries)} queries); fine-tuned SPLADE = {model}; "
        f"weights tuned on the {len(held)} held-out train queries"
    )
    print(
        tables.table(
            title,
            rows,
            {"SPLADE-ft": str(model), "dense": "all-MiniLM-L6-v2", "BM25": "k1 0.9, b 0.4"},
        ).replace("splade-ft", "SPLADE-ft")
    )
    result = {
        "collection": name,
        "model": str(model),
        "holdout": holdout,
        "seed": args.seed,
        "held_out_queries": sorted(held),
        "metrics": metrics,
        "step": args.step,
        "indexes": {s: str(p) for s, p in systems.items()},
        "rows": rows,
        "seconds": time.perf_counter() - started,
    }
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
