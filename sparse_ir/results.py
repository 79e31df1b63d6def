"""Typed search results: :class:`Hit` and :class:`Run`, and the TREC run file format.

A TREC run line is ``qid Q0 docid rank score tag`` (rank 1-based). Within a query, hits are
ordered by score descending, then by internal document number ascending (our tie-break).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from sparse_ir.errors import InputError
from sparse_ir.jsonl import TRUNCATION_HINT, SkipReport, read_lines, warn_if_skipped
from sparse_ir.validation import column_id_problem, id_problem

__all__ = ["Hit", "Run", "TrecRunWriter"]


class Hit(NamedTuple):
    """One retrieved document.

    Attributes:
        doc_id: the document's external id.
        score: its score (an integer for impact search, a float after fusion or dense search).
        docno: its internal document number in the index (-1 when unknown, e.g. read from a file).

    Example:
        >>> from sparse_ir import Hit
        >>> hit = Hit("d7", 42, docno=6)
        >>> hit.doc_id, hit.score
        ('d7', 42)
        >>> Hit("d9", 0.5)  # from a file or after fusion: no internal number
        Hit(doc_id='d9', score=0.5, docno=-1)
    """

    doc_id: str
    score: float
    docno: int = -1


@dataclass
class Run:
    """Ranked hits for a set of queries: ``results[query_id] = [Hit, ...]`` best first.

    Example:
        >>> from sparse_ir import Hit, Run
        >>> run = Run({"q1": [Hit("d2", 9), Hit("d1", 4)], "q2": [Hit("d1", 7)]}, name="mine")
        >>> len(run), [hit.doc_id for hit in run["q1"]]
        (2, ['d2', 'd1'])
        >>> run.to_dict()["q1"]  # the form pytrec_eval and ir_measures take
        {'d2': 9.0, 'd1': 4.0}
        >>> Run.from_dict({"q1": {"d1": 0.2, "d2": 0.7}})["q1"][0]
        Hit(doc_id='d2', score=0.7, docno=-1)
    """

    results: dict[str, list[Hit]] = field(default_factory=dict)
    name: str = "sparse-ir"

    def __len__(self) -> int:
        return len(self.results)

    def __getitem__(self, query_id: str) -> list[Hit]:
        return self.results[query_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self.results)

    def items(self):
        """``(query_id, hits)`` pairs."""
        return self.results.items()

    def to_dict(self) -> dict[str, dict[str, float]]:
        """``{query_id: {doc_id: score}}``, the form pytrec_eval and ir_measures take."""
        return {
            qid: {hit.doc_id: float(hit.score) for hit in hits}
            for qid, hits in self.results.items()
        }

    def write_trec(
        self,
        path: str | os.PathLike,
        *,
        tag: str | None = None,
        id_map: str | os.PathLike | None = None,
    ) -> None:
        """Write the run as a TREC run file (atomically: temporary file, then rename).

        TREC columns are separated by whitespace, so an id holding whitespace is refused,
        naming it, unless ``id_map`` names a JSON file: such ids are then written with ``%``
        escapes (``%`` as ``%25``, each whitespace character as ``%XX``) and the file records
        ``{"written id": "original id"}`` for every id changed (apply the same map to the
        qrels before evaluating).
        """
        with TrecRunWriter(path, tag=tag or self.name, id_map=id_map) as writer:
            writer.write(self)

    @classmethod
    def read_trec(
        cls,
        path: str | os.PathLike,
        *,
        name: str | None = None,
        skip_invalid: bool = False,
        report: SkipReport | None = None,
    ) -> Run:
        """Read a TREC run file; hits are re-sorted by score descending (ties: file order).

        Raises :class:`InputError` naming the file and line for invalid UTF-8, a wrong column
        count, an invalid id, a rank that is not an integer, a score that is not a
        finite number, or the same document twice for one query. With ``skip_invalid`` such a
        line is counted in ``report`` and skipped instead.
        """
        results: dict[str, list[tuple[float, int, str]]] = {}
        seen: set[tuple[str, str]] = set()
        tag = name
        owned = skip_invalid and report is None
        report = SkipReport() if owned else report
        for line_number, raw in read_lines(path):
            if not raw.strip():
                continue
            try:
                qid, doc_id, score, run_tag = _trec_line(raw, line_number, path)
                if (qid, doc_id) in seen:
                    raise InputError(
                        f"duplicate hit: document {doc_id!r} listed twice for query {qid!r}",
                        path=path,
                        line=line_number,
                    )
            except InputError as error:
                if not skip_invalid:
                    raise
                report.add(error)
                continue
            seen.add((qid, doc_id))
            tag = tag or run_tag
            results.setdefault(qid, []).append((score, line_number, doc_id))
        warn_if_skipped(report, path, owned)
        run = cls(name=tag or "run")
        for qid, rows in results.items():
            rows.sort(key=lambda r: (-r[0], r[1]))
            run.results[qid] = [Hit(doc_id, score) for score, _, doc_id in rows]
        return run

    @classmethod
    def from_dict(cls, scores: Mapping[str, Mapping[str, float]], name: str = "run") -> Run:
        """A run from ``{query_id: {doc_id: score}}``, sorted by score then doc id."""
        run = cls(name=name)
        for qid, docs in scores.items():
            ranked = sorted(docs.items(), key=lambda item: (-item[1], item[0]))
            run.results[qid] = [Hit(doc_id, score) for doc_id, score in ranked]
        return run


def _trec_line(raw: bytes, line: int, path: object) -> tuple[str, str, float, str]:
    """``(qid, doc_id, score, tag)`` of one run line, or an :class:`InputError` saying why not."""
    hint = "" if raw.endswith(b"\n") else TRUNCATION_HINT
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"invalid UTF-8: byte 0x{raw[exc.start]:02x} at column {exc.start + 1}{hint}",
            path=path,
            line=line,
        ) from None
    parts = text.split()
    if len(parts) != 6:
        raise InputError(
            f"invalid line: expected 6 columns (qid Q0 docid rank score tag), got "
            f"{len(parts)}{hint}",
            path=path,
            line=line,
        )
    qid, _, doc_id, rank_text, score_text, run_tag = parts
    for value in (qid, doc_id):
        if problem := id_problem(value):
            raise InputError(f"invalid id: {problem}", path=path, line=line)
    if not (rank_text.isascii() and rank_text.isdigit()):
        # trec_eval ignores ranks, but a rank that is not a number means a shifted column.
        raise InputError(
            f"invalid rank: {rank_text!r} is not a non-negative integer", path=path, line=line
        )
    try:
        score = float(score_text)
    except ValueError:
        raise InputError(
            f"invalid score: {score_text!r} is not a number{hint}", path=path, line=line
        ) from None
    if not math.isfinite(score):
        raise InputError(f"invalid score: {score_text!r} is not finite", path=path, line=line)
    return qid, doc_id, score, run_tag


class TrecRunWriter:
    """Write a TREC run file query by query, in bounded memory, published atomically.

    Lines go to a temporary file beside ``path``, which replaces ``path`` only when the
    ``with`` block ends without an error (an interrupted search leaves no half-written run).
    A batch search over many queries writes each chunk of results as it comes, so no more
    than one chunk of hits is ever held in memory.

    Example:
        >>> import tempfile, os
        >>> from sparse_ir import Hit, Run
        >>> path = os.path.join(tempfile.mkdtemp(), "run.trec")
        >>> with TrecRunWriter(path, tag="mine") as writer:
        ...     writer.write_hits("q1", [Hit("d2", 9), Hit("d1", 4)])
        ...     writer.write(Run({"q2": [Hit("d1", 7)]}))
        >>> open(path).read().splitlines()[2]
        'q2 Q0 d1 1 7 mine'
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        tag: str = "sparse-ir",
        id_map: str | os.PathLike | None = None,
    ):
        if not tag or any(c.isspace() for c in tag):
            raise ValueError(f"a TREC run tag must be non-empty, without whitespace: {tag!r}")
        self.path = os.fspath(path)
        self.tag = tag
        # Written id -> original id of every id escaped (see Run.write_trec); None: refuse.
        self.id_map = None if id_map is None else os.fspath(id_map)
        self._mapped: dict[str, str] | None = None if id_map is None else {}
        self.queries = 0
        self.hits = 0
        self._tmp = f"{self.path}.tmp-{os.getpid()}"
        self._out = None

    def __enter__(self) -> TrecRunWriter:
        self._out = open(self._tmp, "w", encoding="utf-8")
        return self

    def __exit__(self, kind, error, trace) -> None:
        out, self._out = self._out, None
        try:
            if kind is None:
                out.flush()
                os.fsync(out.fileno())  # a crash after the rename must not leave it empty
            out.close()
            if kind is None:
                if self._mapped is not None:
                    with open(self.id_map, "w", encoding="utf-8") as handle:
                        json.dump(self._mapped, handle, indent=1, ensure_ascii=False)
                        handle.write("\n")
                os.replace(self._tmp, self.path)
        finally:
            if os.path.exists(self._tmp):
                os.unlink(self._tmp)

    def write(self, run: Run) -> None:
        """Append every query of ``run``."""
        for qid, hits in run.results.items():
            self.write_hits(qid, hits)

    def _written(self, value: str) -> str:
        """The id as written: escaped when an id map is kept, refused if it cannot be held."""
        if self._mapped is not None and any(c.isspace() for c in value):
            escaped = "".join(f"%{ord(c):02X}" if c.isspace() or c == "%" else c for c in value)
            if self._mapped.setdefault(escaped, value) != value:
                raise ValueError(f"--id-map: {value!r} and {self._mapped[escaped]!r} escape alike")
            value = escaped
        # What read_trec would refuse is refused here, before it is written.
        if problem := column_id_problem(value):
            raise ValueError(f"cannot write a TREC run: {problem}")
        return value

    def write_hits(self, qid: str, hits) -> None:
        """Append one query's ranked hits (rank 1 first)."""
        if self._out is None:
            raise ValueError("TrecRunWriter.write_hits outside its with block")
        qid = self._written(qid)
        lines = []
        for rank, hit in enumerate(hits, start=1):
            score = hit.score
            doc_id = self._written(hit.doc_id)
            if not math.isfinite(score):
                raise ValueError(
                    f"cannot write a TREC run: query {qid!r}, "
                    f"document {hit.doc_id!r} has score {score!r}"
                )
            text = (
                str(int(score))
                if isinstance(score, int) or (float(score).is_integer() and abs(score) < 2**53)
                else repr(float(score))
            )
            lines.append(f"{qid} Q0 {doc_id} {rank} {text} {self.tag}\n")
        self._out.writelines(lines)
        self.queries += 1
        self.hits += len(lines)
