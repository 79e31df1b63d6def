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
    parser.add_argument(
        "--qrels", required=True, help="qrels file (BEIR TSV or TREC) or irds:ID (ir_datasets)"
    )
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
        help="print the scores (and tests) as one JSON object (schema in "
        "docs/cli.md) (default: a table)",
    )
    parser.set_defaults(handler=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> int:
    import sys

    from sparse_ir.eval import per_query, read_qrels
    from sparse_ir.jsonl import SkipReport

    report = SkipReport()
    runs = [read_run(path, skip_invalid=args.skip_invalid, report=report) for path in args.run]
    qrels = read_qrels(args.qrels, skip_invalid=args.skip_invalid, report=report)
    if report.total:
        print(report.summary(), file=sys.stderr)
    tables = [per_query(run, qrels, args.metric) for run in runs]
    data = evaluate_data(args.run, runs, tables, args.qrels)
    if args.json:
        from sparse_ir.cli.common import print_json

        print_json(data)
    else:
        print_evaluate_text(data)
    return 0


def evaluate_data(paths, runs, tables, qrels_path) -> dict:
    """Scores of every run and paired tests against the first, as a JSON-ready dict (schema
    ``sparse-ir.evaluate/1``: ``schema``, ``qrels``, ``judged``, ``metrics``, ``runs``: one
    ``{"run", "queries", "scores": {metric: mean}}`` per run, and from the second run on
    ``"vs_first": {metric: {"difference", "p_value"}}`` (``p_value`` null when undefined))."""
    metrics = list(tables[0])
    judged = len(next(iter(tables[0].values()))) if metrics else 0
    entries = []
    for path, run, table in zip(paths, runs, tables):
        entry = {
            "run": str(path),
            "queries": len(run),
            "scores": {m: _mean(table[m]) for m in metrics},
        }
        if table is not tables[0]:
            entry["vs_first"] = {m: paired_test(tables[0][m], table[m]) for m in metrics}
        entries.append(entry)
    return {
        "schema": "sparse-ir.evaluate/1",
        "qrels": str(qrels_path),
        "judged": judged,
        "metrics": metrics,
        "runs": entries,
    }


def print_evaluate_text(data: dict) -> None:
    """The text form of :func:`evaluate_data`: a score list, or a comparison table."""
    entries, metrics = data["runs"], data["metrics"]
    if len(entries) == 1:
        entry = entries[0]
        print(f"{entry['run']}: {entry['queries']} queries in the run, {data['judged']} judged")
        for name, value in entry["scores"].items():
            print(f"{name:<10} {value:.4f}")
        return
    print(
        f"{data['judged']} judged queries; p: paired two-sided t-test against {entries[0]['run']}"
    )
    width = max(len(e["run"]) for e in entries)
    print(f"{'run':<{width}}  " + "  ".join(f"{m:>18}" for m in metrics))
    for entry in entries:
        cells = []
        for m in metrics:
            cell = f"{entry['scores'][m]:.4f}"
            test = entry.get("vs_first", {}).get(m)
            if test is not None:
                cell += f" (p={test['p_value']:.3f})" if test["p_value"] is not None else " (p=-)"
            cells.append(f"{cell:>18}")
        print(f"{entry['run']:<{width}}  " + "  ".join(cells))


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
