"""Evaluation: BEIR datasets, qrels, and metrics computed by ir_measures (pytrec_eval inside).

Metrics are never hand-written here. Queries judged in the qrels but absent from a run (or with
no hits) count as 0 — trec_eval would silently skip them and flatter the run.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sparse_ir.corpus import Document, Query, load_corpus, load_queries
from sparse_ir.errors import InputError, MissingDependencyError
from sparse_ir.jsonl import open_text_binary
from sparse_ir.results import Run

__all__ = ["BeirDataset", "load_beir", "read_qrels", "evaluate", "per_query",
           "DEFAULT_METRICS", "Qrels", "find_scifact"]

Qrels = dict[str, dict[str, int]]

#: Our names for the reported metrics, mapped to ir_measures' names.
DEFAULT_METRICS = {"nDCG@10": "nDCG@10", "MRR@10": "RR@10", "R@100": "R@100",
                   "R@1000": "R@1000"}


@dataclass
class BeirDataset:
    """A BEIR dataset split: the corpus, the split's judged queries and their qrels."""

    corpus: list[Document]
    queries: list[Query]
    qrels: Qrels
    split: str
    path: Path


def read_qrels(path: str | os.PathLike) -> Qrels:
    """Read qrels: BEIR TSV (``query-id corpus-id score`` with a header) or TREC (4 columns).

    Raises :class:`InputError` for a wrong column count, a non-integer relevance, or the same
    (query, document) judged twice.
    """
    qrels: Qrels = {}
    with open_text_binary(path) as handle:
        for line, raw in enumerate(handle, start=1):
            try:
                text = raw.decode("utf-8").strip()
            except UnicodeDecodeError as exc:
                raise InputError(f"invalid UTF-8 at column {exc.start + 1}", path=path,
                                 line=line) from None
            if not text:
                continue
            parts = text.split("\t") if "\t" in text else text.split()
            if line == 1 and parts[0].lower() in ("query-id", "query_id", "qid"):
                continue
            if len(parts) == 4:
                qid, _, doc_id, relevance = parts
            elif len(parts) == 3:
                qid, doc_id, relevance = parts
            else:
                raise InputError(f"expected 3 (BEIR) or 4 (TREC) columns, got {len(parts)}",
                                 path=path, line=line)
            try:
                value = int(relevance)
            except ValueError:
                raise InputError(f"relevance {relevance!r} is not an integer", path=path,
                                 line=line) from None
            judged = qrels.setdefault(qid.strip(), {})
            if doc_id in judged:
                raise InputError(f"({qid}, {doc_id}) judged twice", path=path, line=line)
            judged[doc_id.strip()] = value
    return qrels


def load_beir(data_dir: str | os.PathLike, split: str = "test", *,
              skip_invalid: bool = False) -> BeirDataset:
    """Load a BEIR-layout dataset: ``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``.

    Only the queries judged in the split are returned, in the order of ``queries.jsonl``.
    """
    root = Path(data_dir)
    qrels_path = root / "qrels" / f"{split}.tsv"
    for need in (root / "corpus.jsonl", root / "queries.jsonl", qrels_path):
        if not need.exists():
            raise FileNotFoundError(f"{need} not found: {root} is not a BEIR dataset with a "
                                    f"{split!r} split")
    qrels = read_qrels(qrels_path)
    queries = [q for q in load_queries(root / "queries.jsonl", skip_invalid=skip_invalid)
               if q.id in qrels]
    missing = set(qrels) - {q.id for q in queries}
    if missing:
        raise InputError(f"{len(missing)} judged queries have no text in queries.jsonl "
                         f"(e.g. {sorted(missing)[:3]})", path=qrels_path)
    corpus = load_corpus(root / "corpus.jsonl", skip_invalid=skip_invalid)
    return BeirDataset(corpus, queries, qrels, split, root)


def find_scifact(explicit: str | os.PathLike | None = None) -> Path | None:
    """The SciFact directory: ``explicit``, ``$SPARSE_IR_SCIFACT``, or ``../shared/data/scifact``
    next to the repository or the working directory; None when none exists."""
    candidates = [explicit, os.environ.get("SPARSE_IR_SCIFACT")]
    here = Path(__file__).resolve().parent.parent
    candidates += [here.parent / "shared" / "data" / "scifact",
                   Path.cwd().parent / "shared" / "data" / "scifact"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "corpus.jsonl").is_file():
            return Path(candidate)
    return None


def _measures(metrics: Sequence[str] | dict[str, str] | None) -> dict[str, object]:
    try:
        import ir_measures
    except ImportError:
        raise MissingDependencyError("evaluation", "ir-measures", "eval") from None
    if metrics is None:
        metrics = DEFAULT_METRICS
    if not isinstance(metrics, dict):
        metrics = {m: DEFAULT_METRICS.get(m, m) for m in metrics}
    return {label: ir_measures.parse_measure(name) for label, name in metrics.items()}


def per_query(run: Run | dict, qrels: Qrels, metrics: Sequence[str] | None = None
              ) -> dict[str, dict[str, float]]:
    """``{metric: {query_id: value}}`` for every judged query (missing queries score 0)."""
    import ir_measures

    measures = _measures(metrics)
    scores = run.to_dict() if isinstance(run, Run) else run
    judged = [q for q, docs in qrels.items() if any(r > 0 for r in docs.values())]
    result = {label: dict.fromkeys(judged, 0.0) for label in measures}
    by_measure = {measure: label for label, measure in measures.items()}
    present = {q: d for q, d in scores.items() if d}
    for metric in ir_measures.iter_calc(list(measures.values()), qrels, present):
        label = by_measure[metric.measure]
        if metric.query_id in result[label]:
            result[label][metric.query_id] = float(metric.value)
    return result


def evaluate(run: Run | dict, qrels: Qrels, metrics: Sequence[str] | None = None
             ) -> dict[str, float]:
    """Mean of each metric over the judged queries (default: nDCG@10, MRR@10, R@100, R@1000)."""
    table = per_query(run, qrels, metrics)
    return {label: (sum(values.values()) / len(values) if values else 0.0)
            for label, values in table.items()}
