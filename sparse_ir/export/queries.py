"""Encoded query files: Anserini's pretokenized TSV and JSON weight maps, written and read.

Formats:

* **TSV** (Anserini ``-topicReader TsvString -pretokenized``): ``qid<TAB>tok tok tok ...``, each
  token repeated by its integer weight, so Lucene's query term count is the weight. Queries
  with no terms are left out (Anserini's reader fails on a line without a query) and counted.
* **JSONL**: one ``{"id": qid, "vector": {token: weight}}`` per line (``_id`` or ``qid`` are
  accepted for the id when reading).
* **JSON**: one object ``{qid: {token: weight}}`` (read only; e.g. files of float weights).

Integer weights are impacts; float weights (JSON only) are quantized by the index searched.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

from sparse_ir.errors import InputError
from sparse_ir.export.tokens import check_tokens, id_problem, split_like_lucene, token_problem
from sparse_ir.jsonl import SkipReport, read_json_file, read_jsonl, read_lines
from sparse_ir.sparse_batch import SparseBatch
from sparse_ir.validation import MAX_QUERY_IMPACT

__all__ = [
    "EncodedQuery",
    "iter_encoded_queries",
    "QueryFileReport",
    "queries_from_batch",
    "query_format",
    "read_encoded_queries",
    "write_query_jsonl",
    "write_query_tsv",
]


class EncodedQuery(NamedTuple):
    """One query as a sparse vector: ``{token: weight}`` (int impacts or float weights)."""

    id: str
    vector: dict[str, int | float]


@dataclass
class QueryFileReport:
    """What a query file writer did."""

    written: int = 0
    empty_omitted: int = 0

    def __str__(self) -> str:
        text = f"{self.written} queries written"
        if self.empty_omitted:
            text += f", {self.empty_omitted} with no terms left out (they match nothing)"
        return text


def queries_from_batch(batch: SparseBatch) -> list[EncodedQuery]:
    """The rows of a SparseBatch as EncodedQuery records (ids required)."""
    if batch.ids is None:
        raise InputError("the query vectors carry no ids; encode them with ids")
    return [EncodedQuery(qid, vector) for qid, vector in zip(batch.ids, batch.to_dicts())]


def query_format(path: str | os.PathLike) -> str:
    """``"tsv"``, ``"jsonl"`` or ``"json"`` from a file name (``.gz`` allowed)."""
    name = os.fspath(path).lower()
    name = name.removesuffix(".gz")
    for suffix, kind in ((".tsv", "tsv"), (".txt", "tsv"), (".jsonl", "jsonl"), (".json", "json")):
        if name.endswith(suffix):
            return kind
    raise InputError(
        "cannot tell the query file format from its name: use .tsv (Anserini "
        'pretokenized), .jsonl ({"id", "vector"} per line) or .json '
        "({qid: {token: weight}})",
        path=path,
    )


def write_query_tsv(queries: Iterable[EncodedQuery], path: str | os.PathLike) -> QueryFileReport:
    """Write Anserini's pretokenized TSV topics (``qid<TAB>tok tok ...``), atomically.

    Weights must be integers >= 0 (quantize float queries first); tokens and ids must be ones
    Lucene and Anserini take unchanged (:mod:`.tokens`).
    """
    report = QueryFileReport()

    def lines() -> Iterator[str]:
        for query in queries:
            _check_query_id(query.id, path)
            check_tokens(query.vector, context=f"query {query.id!r}")
            words = []
            for token, weight in query.vector.items():
                if isinstance(weight, bool) or not isinstance(weight, int) or weight < 0:
                    raise InputError(
                        f"query {query.id!r}: weight of {token!r} is {weight!r}; "
                        "the TSV format needs integer impacts >= 0 (quantize the "
                        "queries with the index's quantizer first)"
                    )
                words.extend([token] * weight)
            if not words:
                report.empty_omitted += 1
                continue
            report.written += 1
            yield f"{query.id}\t{' '.join(words)}\n"

    _write_atomically(path, lines())
    return report


def write_query_jsonl(queries: Iterable[EncodedQuery], path: str | os.PathLike) -> QueryFileReport:
    """Write ``{"id": qid, "vector": {token: weight}}`` lines, atomically. Every query is
    written, empty ones included."""
    report = QueryFileReport()

    def lines() -> Iterator[str]:
        for query in queries:
            _check_query_id(query.id, path)
            report.written += 1
            yield json.dumps({"id": query.id, "vector": query.vector}, ensure_ascii=False) + "\n"

    _write_atomically(path, lines())
    return report


def read_encoded_queries(
    path: str | os.PathLike, *, skip_invalid: bool = False, report: SkipReport | None = None
) -> list[EncodedQuery]:
    """Read a pre-encoded query file (TSV, JSONL or JSON, see the module docs), checked.

    Raises :class:`InputError` naming the file, the line (or query) and the rule for: a
    missing id or vector, a duplicate id, a weight that is not a number, is negative, is not
    finite or is an integer above :data:`~sparse_ir.validation.MAX_QUERY_IMPACT`, a token
    Lucene could not index. With ``skip_invalid`` such queries are counted in ``report`` and
    left out instead. :func:`iter_encoded_queries` reads the same one query at a time.
    """
    return list(iter_encoded_queries(path, skip_invalid=skip_invalid, report=report))


def iter_encoded_queries(
    path: str | os.PathLike, *, skip_invalid: bool = False, report: SkipReport | None = None
) -> Iterator[EncodedQuery]:
    """Yield the queries of a pre-encoded query file one by one (see
    :func:`read_encoded_queries`): a TSV or JSONL file of any length is read in bounded
    memory (a ``.json`` file is one document, read whole, up to 1 GiB)."""
    if skip_invalid and report is None:
        report = SkipReport()
    kind = query_format(path)
    if kind == "tsv":
        records = _read_tsv(path)
    elif kind == "jsonl":
        records = _read_jsonl(path, skip_invalid, report)
    else:
        records = _read_json(path)
    seen: set[str] = set()
    for line, parsed in records:
        try:
            if isinstance(parsed, InputError):
                raise parsed
            if parsed.id in seen:
                raise InputError(
                    f"duplicate id: query {parsed.id!r} appears more than once",
                    path=path,
                    line=line,
                )
        except InputError as error:
            if not skip_invalid:
                raise
            report.add(error)
            continue
        seen.add(parsed.id)
        yield parsed


# -- readers ------------------------------------------------------------------------------------


def _read_tsv(path) -> Iterator[tuple[int | None, EncodedQuery | InputError]]:
    for line, raw in read_lines(path):
        if not raw.strip():
            continue
        try:
            text = raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError as exc:
            yield (
                line,
                InputError(
                    f"invalid UTF-8: byte 0x{raw[exc.start]:02x} at column {exc.start + 1}",
                    path=path,
                    line=line,
                ),
            )
            continue
        parts = text.split("\t")
        if len(parts) != 2:
            yield (
                line,
                InputError(
                    f"expected 2 tab-separated columns (qid, tokens), got {len(parts)}",
                    path=path,
                    line=line,
                ),
            )
            continue
        qid = parts[0].strip()
        if (problem := id_problem(qid)) is not None:
            yield line, InputError(f"missing id: {problem}", path=path, line=line)
            continue
        vector: dict[str, int | float] = {}
        bad = None
        for token in split_like_lucene(parts[1]):
            if bad is None and (problem := token_problem(token)) is not None:
                bad = InputError(f"invalid token: {problem}", path=path, line=line)
            vector[token] = vector.get(token, 0) + 1
        yield line, bad if bad is not None else EncodedQuery(qid, vector)


def _read_jsonl(path, skip_invalid, report) -> Iterator[tuple[int, EncodedQuery | InputError]]:
    for line, record in read_jsonl(path, skip_invalid=skip_invalid, report=report):
        qid = None
        for key in ("id", "_id", "qid"):
            if key in record:
                qid = record[key]
                break
        if isinstance(qid, bool) or not isinstance(qid, (str, int)):
            yield (
                line,
                InputError(
                    'missing id: each line needs "id" (a string or integer)', path=path, line=line
                ),
            )
            continue
        if "vector" not in record:
            yield (
                line,
                InputError(
                    'missing vector: each line needs "vector": {token: weight}',
                    path=path,
                    line=line,
                ),
            )
            continue
        yield line, _checked_query(str(qid), record["vector"], path, line)


def _read_json(path) -> Iterator[tuple[None, EncodedQuery | InputError]]:
    # The same strictness as JSONL (UTF-8, duplicate keys, NaN, depth), size-capped.
    value = read_json_file(path)
    if not isinstance(value, dict):
        yield (
            None,
            InputError(
                f"expected a JSON object {{qid: {{token: weight}}}}, got {type(value).__name__}",
                path=path,
            ),
        )
        return
    for qid, vector in value.items():
        yield None, _checked_query(qid, vector, path, None)


def _checked_query(qid: str, vector: object, path, line) -> EncodedQuery | InputError:
    where = f"query {qid!r}: "
    if (problem := id_problem(qid)) is not None:
        return InputError(f"missing id: {problem}", path=path, line=line)
    if not isinstance(vector, dict):
        return InputError(
            f"invalid vector: {where}expected {{token: weight}}, got {type(vector).__name__}",
            path=path,
            line=line,
        )
    for token, weight in vector.items():
        if isinstance(weight, bool) or not isinstance(weight, (int, float)):
            return InputError(
                f"invalid weight: {where}weight of {token!r} is {weight!r}, not a number",
                path=path,
                line=line,
            )
        if weight < 0:
            return InputError(
                f"invalid weight: {where}weight of {token!r} is {weight!r}; weights must be >= 0",
                path=path,
                line=line,
            )
        if isinstance(weight, float) and not math.isfinite(weight):
            return InputError(
                f"invalid weight: {where}weight of {token!r} is {weight!r}, not finite",
                path=path,
                line=line,
            )
        if isinstance(weight, int) and weight > MAX_QUERY_IMPACT:
            return InputError(
                f"invalid weight: {where}weight of {token!r} is {weight}; integer "
                f"weights are impacts, at most {MAX_QUERY_IMPACT}",
                path=path,
                line=line,
            )
        if (problem := token_problem(token)) is not None:
            return InputError(f"invalid token: {where}{problem}", path=path, line=line)
    return EncodedQuery(qid, {t: w for t, w in vector.items() if w != 0})


# -- writing ------------------------------------------------------------------------------------


def _check_query_id(qid: str, path) -> None:
    if (problem := id_problem(qid)) is not None:
        raise InputError(f"query {problem}; it cannot be written to {os.fspath(path)}")


def _write_atomically(path: str | os.PathLike, lines: Iterable[str]) -> None:
    path = os.fspath(path)
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8", newline="\n") as out:
            out.writelines(lines)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
