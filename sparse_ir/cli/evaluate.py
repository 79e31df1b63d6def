"""``sparse-ir evaluate``: metrics of one or more runs against qrels, with paired significance
tests against the first run."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    """Add the evaluate subcommand."""
    parser = subparsers.add_parser(
        "evaluate",
        help="nDCG@10, MRR@10, R@100, R@1000 of runs, compared",
        description="Evaluate run files (TREC, or JSON lines from 'sparse-ir search --queries') "
        "against qrels (BEIR TSV or TREC format) with ir_measures. Judged queries "
        "missing from a run count as 0. With several runs, a table compares them "
        "with the first: per metric, the difference and the p-value of a paired "
        "two-sided t-test over the judged queries (scipy).",
    )
    parser.add_argument(
        "--run",
        required=True,
        action="append",
        help="run file (repeatable; the first is the baseline of the tests)",
    )
    parser.add_argument("--qrels", required=True, help="qrels file")
    parser.add_argument(
        "--metric",
        action="append",
        default=None,
        help="ir_measures metric (repeatable), e.g. nDCG@10, RR@10, R@100, "
        "P@5; default: nDCG@10 MRR@10 R@100 R@1000",
    )
    parser.add_argument(
        "--skip-invalid",
        action="store_true",
        help="skip invalid lines of the run and qrels (counted and reported)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print the scores (and tests) as JSON (default: a table)",
    )
    parser.set_defaults(handler=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> int:
    import json
    import sys

    from sparse_ir.eval import per_query, read_qrels
    from sparse_ir.jsonl import SkipReport

    report = SkipReport()
    runs = [read_run(path, skip_invalid=args.skip_invalid, report=report) for path in args.run]
    qrels = read_qrels(args.qrels, skip_invalid=args.skip_invalid, report=report)
    if report.total:
        print(report.summary(), file=sys.stderr)
    tables = [per_query(run, qrels, args.metric) for run in runs]
    metrics = list(tables[0])
    judged = len(next(iter(tables[0].values()))) if metrics else 0
    result = []
    for path, run, table in zip(args.run, runs, tables):
        entry = {
            "run": path,
            "queries": len(run),
            "judged": judged,
            "scores": {m: _mean(table[m]) for m in metrics},
        }
        if table is not tables[0]:
            entry["vs_first"] = {m: paired_test(tables[0][m], table[m]) for m in metrics}
        result.append(entry)
    if args.json:
        print(json.dumps(result if len(result) > 1 else result[0], indent=1))
        return 0
    if len(result) == 1:
        print(f"{args.run[0]}: {len(runs[0])} queries in the run, {judged} judged")
        for name, value in result[0]["scores"].items():
            print(f"{name:<10} {value:.4f}")
        return 0
    print(f"{judged} judged queries; p: paired two-sided t-test against {args.run[0]}")
    width = max(len(p) for p in args.run)
    print(f"{'run':<{width}}  " + "  ".join(f"{m:>18}" for m in metrics))
    for entry in result:
        cells = []
        for m in metrics:
            cell = f"{entry['scores'][m]:.4f}"
            test = entry.get("vs_first", {}).get(m)
            if test is not None:
                cell += f" (p={test['p_value']:.3f})" if test["p_value"] is not None else " (p=-)"
            cells.append(f"{cell:>18}")
        print(f"{entry['run']:<{width}}  " + "  ".join(cells))
    return 0


def read_run(path: str, *, skip_invalid: bool = False, report=None):
    """A run from a TREC file, or from JSON lines ``{"query_id", "hits": [{"doc_id",
    "score"}]}`` (``.jsonl``, as ``sparse-ir search --queries`` writes)."""
    from sparse_ir.results import Hit, Run

    if not str(path).endswith((".jsonl", ".jsonl.gz")):
        return Run.read_trec(path, skip_invalid=skip_invalid, report=report)
    from sparse_ir.jsonl import read_jsonl

    results = {}
    for _, record in read_jsonl(path, skip_invalid=skip_invalid, report=report):
        results[str(record["query_id"])] = [
            Hit(str(h["doc_id"]), h["score"]) for h in record["hits"]
        ]
    return Run(results, name=str(path))


def paired_test(baseline: dict[str, float], other: dict[str, float]) -> dict:
    """Mean difference and the two-sided paired t-test p-value over the same queries."""
    from scipy import stats

    queries = sorted(baseline)
    a = [baseline[q] for q in queries]
    b = [other.get(q, 0.0) for q in queries]
    difference = _mean(dict(enumerate(y - x for x, y in zip(a, b))))
    if len(queries) < 2 or all(x == y for x, y in zip(a, b)):
        return {"difference": difference, "p_value": None}
    p_value = float(stats.ttest_rel(b, a).pvalue)
    return {"difference": difference, "p_value": p_value if p_value == p_value else None}


def _mean(values: dict) -> float:
    return sum(values.values()) / len(values) if values else 0.0
