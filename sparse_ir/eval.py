"""Evaluation: BEIR datasets, qrels, and metrics computed by ir_measures (pytrec_eval inside).

Metrics are never hand-written here. Queries judged in the qrels but absent from a run (or with
no hits) count as 0 — trec_eval would silently skip them and flatter the run.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sparse_ir.corpus import Document, Query, load_corpus, load_queries
from sparse_ir.errors import InputError, MissingDependencyError
from sparse_ir.jsonl import TRUNCATION_HINT, SkipReport, read_lines, warn_if_skipped
from sparse_ir.results import Run
from sparse_ir.validation import id_problem

__all__ = [
    "BeirDataset",
    "load_beir",
    "read_qrels",
    "evaluate",
    "per_query",
    "DEFAULT_METRICS",
    "MAX_RELEVANCE",
    "Qrels",
    "find_scifact",
]

Qrels = dict[str, dict[str, int]]

#: The largest relevance (in absolute value) a qrels line may give. trec_eval (inside
#: pytrec_eval) allocates 8 bytes per relevance level up to the largest one: 10^23 raised
#: ``SystemError``, 2^31 - 1 would take 17 GB; graded judgments use a handful of levels.
MAX_RELEVANCE = 1_000_000

#: Our names for the reported metrics, mapped to ir_measures' names.
DEFAULT_METRICS = {"nDCG@10": "nDCG@10", "MRR@10": "RR@10", "R@100": "R@100", "R@1000": "R@1000"}


@dataclass
class BeirDataset:
    """A BEIR dataset split: the corpus, the split's judged queries and their qrels."""

    corpus: list[Document]
    queries: list[Query]
    qrels: Qrels
    split: str
    path: Path


def read_qrels(
    path: str | os.PathLike, *, skip_invalid: bool = False, report: SkipReport | None = None
) -> Qrels:
    """Read qrels: BEIR TSV (``query-id corpus-id score`` with a header) or TREC (4 columns).

    Raises :class:`InputError` naming the file and line for invalid UTF-8, a wrong column
    count, an invalid id, a non-integer relevance or one beyond ±:data:`MAX_RELEVANCE`, the
    same (query, document) judged twice, or a file with no judgment at all. With
    ``skip_invalid`` a bad line is counted in ``report`` and skipped instead (an empty file is
    still an error; so are a BOM, an over-long line and a file that is not a regular file).
    """
    qrels: Qrels = {}
    owned = skip_invalid and report is None
    report = SkipReport() if owned else report
    for line, raw in read_lines(path):
        try:
            parsed = _qrels_line(raw, line, path)
            if parsed is None:
                continue
            qid, doc_id, value = parsed
            judged = qrels.setdefault(qid, {})
            if doc_id in judged:
                raise InputError(
                    f"duplicate judgment: ({qid}, {doc_id}) judged twice", path=path, line=line
                )
            judged[doc_id] = value
        except InputError as error:
            if not skip_invalid:
                raise
            report.add(error)
    if not qrels:
        raise InputError("no judgments: the qrels file holds no valid line", path=path)
    warn_if_skipped(report, path, owned)
    return qrels


def _qrels_line(raw: bytes, line: int, path: object) -> tuple[str, str, int] | None:
    hint = "" if raw.endswith(b"\n") else TRUNCATION_HINT
    try:
        text = raw.decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise InputError(
            f"invalid UTF-8: byte 0x{raw[exc.start]:02x} at column {exc.start + 1}{hint}",
            path=path,
            line=line,
        ) from None
    if not text:
        return None
    parts = [p.strip() for p in (text.split("\t") if "\t" in text else text.split())]
    if line == 1 and parts[0].lower() in ("query-id", "query_id", "qid"):
        return None
    if len(parts) == 4:
        qid, _, doc_id, relevance = parts
    elif len(parts) == 3:
        qid, doc_id, relevance = parts
    else:
        raise InputError(
            f"invalid line: expected 3 (BEIR) or 4 (TREC) columns, got {len(parts)}{hint}",
            path=path,
            line=line,
        )
    for value in (qid, doc_id):
        if problem := id_problem(value):
            raise InputError(f"invalid id: {problem}", path=path, line=line)
    if not _INTEGER.fullmatch(relevance):
        raise InputError(
            f"invalid line: relevance {relevance!r} is not an integer{hint}", path=path, line=line
        )
    value = int(relevance) if len(relevance) <= 20 else MAX_RELEVANCE + 1
    if not -MAX_RELEVANCE <= value <= MAX_RELEVANCE:
        # pytrec_eval fails (or allocates per level) deep inside: refused here, named.
        raise InputError(
            f"invalid relevance: {relevance} is outside [-{MAX_RELEVANCE}, {MAX_RELEVANCE}]",
            path=path,
            line=line,
        )
    return qid, doc_id, value


# An optional sign and ASCII digits; int() would also take "1_000" and non-ASCII digits.
_INTEGER = re.compile(r"[+-]?[0-9]+")


def load_beir(
    data_dir: str | os.PathLike,
    split: str = "test",
    *,
    skip_invalid: bool = False,
    report: SkipReport | None = None,
    allow_empty: bool = False,
) -> BeirDataset:
    """Load a BEIR-layout dataset: ``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``.

    Only the queries judged in the split are returned, in the order of ``queries.jsonl``.
    With ``skip_invalid``, invalid lines of the three files are counted in ``report`` (or
    logged as a warning when no report is given) and skipped. ``allow_empty`` keeps documents
    with no title and no text (see :func:`sparse_ir.corpus.read_corpus`).
    """
    root = Path(data_dir)
    qrels_path = root / "qrels" / f"{split}.tsv"
    for need in (root / "corpus.jsonl", root / "queries.jsonl", qrels_path):
        if not need.exists():
            raise FileNotFoundError(
                f"{need} not found: {root} is not a BEIR dataset with a {split!r} split"
            )
    qrels = read_qrels(qrels_path, skip_invalid=skip_invalid, report=report)
    queries = [
        q
        for q in load_queries(root / "queries.jsonl", skip_invalid=skip_invalid, report=report)
        if q.id in qrels
    ]
    missing = set(qrels) - {q.id for q in queries}
    if missing:
        raise InputError(
            f"{len(missing)} judged queries have no text in queries.jsonl "
            f"(e.g. {sorted(missing)[:3]})",
            path=qrels_path,
        )
    corpus = load_corpus(
        root / "corpus.jsonl", skip_invalid=skip_invalid, report=report, allow_empty=allow_empty
    )
    return BeirDataset(corpus, queries, qrels, split, root)


def find_scifact(explicit: str | os.PathLike | None = None) -> Path | None:
    """The SciFact directory: ``explicit``, ``$SPARSE_IR_SCIFACT``, or ``../shared/data/scifact``
    next to the repository or the working directory; None when none exists."""
    candidates = [explicit, os.environ.get("SPARSE_IR_SCIFACT")]
    here = Path(__file__).resolve().parent.parent
    candidates += [
        here.parent / "shared" / "data" / "scifact",
        Path.cwd().parent / "shared" / "data" / "scifact",
    ]
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


def per_query(
    run: Run | dict, qrels: Qrels, metrics: Sequence[str] | None = None
) -> dict[str, dict[str, float]]:
    """``{metric: {query_id: value}}`` for every judged query (missing queries score 0)."""
    import ir_measures

    measures = _measures(metrics)
    scores = run.to_dict() if isinstance(run, Run) else run
    judged = [q for q, docs in qrels.items() if any(r > 0 for r in docs.values())]
    result = {label: dict.fromkeys(judged, 0.0) for label in measures}
    by_measure = {measure: label for label, measure in measures.items()}
    present = {q: d for q, d in scores.items() if d}
    for metric in ir_measures.iter_calc(
        list(measures.values()), _safe_qrels(qrels, judged), present
    ):
        label = by_measure[metric.measure]
        if metric.query_id in result[label]:
            result[label][metric.query_id] = float(metric.value)
    return result


def _safe_qrels(qrels: Qrels, judged: list[str]) -> Qrels:
    """What trec_eval (inside pytrec_eval) may be given without reading or writing out of bounds.

    trec_eval assumes judged relevance is a small non-negative integer: it sizes arrays by the
    largest value of a query, uses -1 and -2 as its own markers (not in the pool, unjudged), and
    a query whose judgments are all below -1 made it crash (SIGSEGV) in a later evaluation. So
    only the queries with a relevant document are passed (the only ones reported), without
    their negative judgments (which trec_eval itself reads as unjudged).
    """
    safe: Qrels = {}
    for qid in judged:
        docs = qrels[qid]
        for doc_id, value in docs.items():
            if (
                isinstance(value, bool)
                or not isinstance(value, int)
                or not -MAX_RELEVANCE <= value <= MAX_RELEVANCE
            ):
                raise InputError(
                    f"invalid relevance: query {qid!r}, document {doc_id!r} has "
                    f"relevance {value!r} (an integer within ±{MAX_RELEVANCE})"
                )
        safe[qid] = {doc_id: value for doc_id, value in docs.items() if value >= 0}
    return safe


def evaluate(
    run: Run | dict, qrels: Qrels, metrics: Sequence[str] | None = None
) -> dict[str, float]:
    """Mean of each metric over the judged queries (default: nDCG@10, MRR@10, R@100, R@1000)."""
    table = per_query(run, qrels, metrics)
    return {
        label: (sum(values.values()) / len(values) if values else 0.0)
        for label, values in table.items()
    }
