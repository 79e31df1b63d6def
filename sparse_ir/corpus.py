"""Reading documents and queries: BEIR JSONL (``_id``, ``title``, ``text``) and TSV topics.

Every record is checked; a bad one raises :class:`~sparse_ir.errors.InputError` naming the file,
the line and the rule, or is counted in a :class:`~sparse_ir.jsonl.SkipReport` when the caller
passed ``skip_invalid=True``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import NamedTuple

from sparse_ir.errors import InputError
from sparse_ir.jsonl import (
    TRUNCATION_HINT,
    SkipReport,
    read_jsonl,
    read_lines,
    warn_if_skipped,
)
from sparse_ir.validation import check_id, id_problem

__all__ = [
    "Document",
    "Query",
    "full_text",
    "read_corpus",
    "read_queries",
    "load_corpus",
    "load_queries",
]


class Document(NamedTuple):
    """One document of a collection.

    ``metadata``: the record's ``metadata`` object (scalar values, checked by
    :func:`sparse_ir.index.metadata.check_metadata`), or None when it has none; stored in the
    index and filterable (``filter="year>=2020"``).
    """

    id: str
    title: str
    text: str
    metadata: dict | None = None

    @property
    def full_text(self) -> str:
        """``title + " " + text`` (the BEIR convention for encoding): :func:`full_text`."""
        return full_text(self.title, self.text)


def full_text(title: str, text: str) -> str:
    """What a document's encoder reads: ``title + " " + text``, without stray spaces.

    Example:
        >>> full_text("Title", "Body."), full_text("", "Body."), full_text("Title", "")
        ('Title Body.', 'Body.', 'Title')
    """
    if title and text:
        return f"{title} {text}"
    return title or text


class Query(NamedTuple):
    """One query (topic)."""

    id: str
    text: str


def _record_id(record: dict, path: object, line: int) -> str:
    for key in ("_id", "id", "docid"):
        if key in record:
            value = record[key]
            if isinstance(value, bool) or not isinstance(value, (str, int)):
                raise InputError(
                    f"invalid id: {key!r} must be a string or integer, got {value!r}",
                    path=path,
                    line=line,
                )
            value = str(value)
            if not value.strip():
                raise InputError(f"missing id: {key!r} is empty", path=path, line=line)
            check_id(value, path=path, line=line)
            return value
    raise InputError("missing id: no '_id' field (BEIR JSONL needs \"_id\")", path=path, line=line)


def _string_field(record: dict, key: str, path: object, line: int) -> str | None:
    if key not in record:
        return None
    value = record[key]
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InputError(
            f"invalid field: {key!r} must be a string, got {type(value).__name__}",
            path=path,
            line=line,
        )
    return value


def _metadata_field(record: dict, doc_id: str, path: object, line: int) -> dict | None:
    """The record's checked ``metadata`` object, or None when absent or null."""
    value = record.get("metadata")
    if value is None:
        return None
    from sparse_ir.index.metadata import check_metadata

    try:
        return check_metadata(value, doc_id)
    except InputError as error:
        raise InputError(error.reason, path=path, line=line) from None


def read_corpus(
    path: str | os.PathLike,
    *,
    skip_invalid: bool = False,
    report: SkipReport | None = None,
    allow_empty: bool = False,
) -> Iterator[Document]:
    """Yield the documents of a BEIR ``corpus.jsonl`` (``.gz`` allowed), checked.

    Each line needs an ``_id`` (string or integer; no whitespace, see
    :func:`sparse_ir.validation.id_problem`) and a ``text`` (``contents`` is accepted for
    Pyserini-style files); ``title`` is optional. Duplicate ids are an error. A document whose
    title and text are both empty (or blank) is an error too, unless ``allow_empty`` (then it
    is indexed as an empty vector, which no query retrieves, and counted by the encoder).
    An optional ``metadata`` object (``{"year": 2021, "tenant": "a"}``: strings, numbers,
    booleans) is checked and passed through as :attr:`Document.metadata`.
    """
    seen: set[str] = set()
    owned = skip_invalid and report is None
    report = SkipReport() if owned else report
    for line, record in read_jsonl(path, skip_invalid=skip_invalid, report=report):
        try:
            doc_id = _record_id(record, path, line)
            text = _string_field(record, "text", path, line)
            if text is None:
                text = _string_field(record, "contents", path, line)
            title = _string_field(record, "title", path, line) or ""
            if text is None:
                raise InputError("missing text: no 'text' field", path=path, line=line)
            if not allow_empty and not (text.strip() or title.strip()):
                raise InputError(
                    f"empty document: {doc_id!r} has no title and no text (pass "
                    "allow_empty / --allow-empty to index it as an empty vector, "
                    "or --skip-invalid to skip it)",
                    path=path,
                    line=line,
                )
            if doc_id in seen:
                raise InputError(
                    f"duplicate id: {doc_id!r} appears more than once", path=path, line=line
                )
            metadata = _metadata_field(record, doc_id, path, line)
        except InputError as error:
            if not skip_invalid:
                raise
            report.add(error)
            continue
        seen.add(doc_id)
        yield Document(doc_id, title, text, metadata)
    warn_if_skipped(report, path, owned)


def read_queries(
    path: str | os.PathLike, *, skip_invalid: bool = False, report: SkipReport | None = None
) -> Iterator[Query]:
    """Yield queries from BEIR ``queries.jsonl`` or a TSV file of ``qid<TAB>text`` lines."""
    path_str = os.fspath(path)
    owned = skip_invalid and report is None
    report = SkipReport() if owned else report
    seen: set[str] = set()
    if path_str.endswith((".tsv", ".tsv.gz", ".txt")):
        records = _read_tsv_queries(path, skip_invalid, report)
    else:
        records = (
            (line, _jsonl_query(rec, path, line))
            for line, rec in read_jsonl(path, skip_invalid=skip_invalid, report=report)
        )
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
    warn_if_skipped(report, path, owned)


def _jsonl_query(record: dict, path: object, line: int) -> Query | InputError:
    try:
        query_id = _record_id(record, path, line)
        text = _string_field(record, "text", path, line)
        if text is None:
            text = _string_field(record, "contents", path, line)
        if text is None:
            raise InputError("missing text: no 'text' field", path=path, line=line)
        if not text.strip():
            raise InputError(f"empty query: {query_id!r} has no text", path=path, line=line)
        return Query(query_id, text)
    except InputError as error:
        return error


def _read_tsv_queries(path, skip_invalid, report) -> Iterator[tuple[int, Query | InputError]]:
    for line, raw in read_lines(path):
        if not raw.strip():
            continue
        hint = "" if raw.endswith(b"\n") else TRUNCATION_HINT
        try:
            text = raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError as exc:
            yield (
                line,
                InputError(
                    f"invalid UTF-8: byte 0x{raw[exc.start]:02x} at column {exc.start + 1}{hint}",
                    path=path,
                    line=line,
                ),
            )
            continue
        parts = text.split("\t", 1)
        if len(parts) != 2:
            yield (
                line,
                InputError(
                    f"invalid line: expected 2 tab-separated columns (qid, text), got 1{hint}",
                    path=path,
                    line=line,
                ),
            )
            continue
        query_id, query_text = parts[0].strip(), parts[1]
        if not query_id:
            yield line, InputError("missing id: the first column is empty", path=path, line=line)
        elif problem := id_problem(query_id):
            yield line, InputError(f"invalid id: {problem}", path=path, line=line)
        elif not query_text.strip():
            yield (
                line,
                InputError(f"empty query: {query_id!r} has no text{hint}", path=path, line=line),
            )
        else:
            yield line, Query(query_id, query_text)


def load_corpus(path: str | os.PathLike, **options) -> list[Document]:
    """All documents of a corpus file, as a list (see :func:`read_corpus`)."""
    return list(read_corpus(path, **options))


def load_queries(path: str | os.PathLike, **options) -> list[Query]:
    """All queries of a queries file, as a list (see :func:`read_queries`)."""
    return list(read_queries(path, **options))
