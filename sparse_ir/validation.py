"""Rules for the values every reader and writer shares: ids, terms, weights.

One place decides what a valid document id, term (token) and weight is, so the corpus readers,
the index builder and the Lucene export (:mod:`sparse_ir.export.tokens` delegates here) refuse
the same things with the same words. Each
``*_problem`` function returns None for a valid value or a short reason; each ``check_*``
raises :class:`~sparse_ir.errors.InputError` with that reason, the file and the line.

Lucene's limits, and why they are ours:

* A term of more than :data:`LUCENE_MAX_TERM_BYTES` (32,766) UTF-8 bytes is refused by Lucene's
  ``IndexWriter`` ("immense term"), whatever the analyzer.
* Anserini indexes learned sparse vectors (``JsonVectorCollection``, ``-impact -pretokenized``)
  through Lucene's ``WhitespaceAnalyzer``: a term containing whitespace becomes several terms,
  and its tokenizer cuts a token longer than :data:`LUCENE_MAX_TOKEN_CHARS` (255 UTF-16 code
  units) into pieces. Both would make Lucene score differently from our index without any
  error (checked against Anserini 1.7.1: a 300-character term scored twice its impact), so
  such a term is refused here, where the input is read, instead.

Whitespace is Python's ``str.isspace`` (a superset of Java's ``Character.isWhitespace``), so
the rule is never looser than Lucene's.

An id is any non-empty string without control characters or line breaks (a Wikipedia title
with spaces is an id). Only the formats whose columns are separated by whitespace (TREC run
files, TSV topics, Lucene's whitespace-analyzed fields) cannot hold an id with whitespace:
their writers check :func:`column_id_problem` and name the id they refuse.
"""

from __future__ import annotations

import math
import numbers
import re
import unicodedata

from sparse_ir.errors import InputError

__all__ = [
    "LUCENE_MAX_TERM_BYTES",
    "LUCENE_MAX_TOKEN_CHARS",
    "MAX_ID_BYTES",
    "MAX_QUERY_IMPACT",
    "check_column_id",
    "check_id",
    "check_query_weights",
    "check_batch_query_weights",
    "check_term",
    "check_weight",
    "first_duplicate",
    "column_id_problem",
    "first_id_problem",
    "id_problem",
    "term_problem",
    "weight_problem",
]

#: Lucene's ``IndexWriter.MAX_TERM_LENGTH``: the longest term, in UTF-8 bytes.
LUCENE_MAX_TERM_BYTES = 32_766
#: Lucene's ``CharTokenizer`` default ``maxTokenLen`` (``WhitespaceAnalyzer``), in UTF-16 units.
LUCENE_MAX_TOKEN_CHARS = 255
#: Document and query ids are stored by Lucene as one term: the same byte limit applies.
MAX_ID_BYTES = LUCENE_MAX_TERM_BYTES
#: The largest integer query weight a query file may hold (the quantizer's largest impact).
MAX_QUERY_IMPACT = 2**31 - 1
_INT64_MAX = 2**63 - 1
# No control character (Cc), no line or paragraph separator, no lone surrogate (Cs), no BOM.
_PLAIN_ID = re.compile(r"[^\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff\ufeff]+")


def _shown(value: str, limit: int = 40) -> str:
    return repr(value) if len(value) <= limit else repr(value[:limit]) + f"... ({len(value)} chars)"


def term_problem(token: object) -> str | None:
    """Why ``token`` cannot be a term of an index (or of a Lucene export); None if it can."""
    if not isinstance(token, str):
        return f"term {token!r} is a {type(token).__name__}, not a string"
    if not token:
        return "empty term"
    if any(c.isspace() for c in token):
        return (
            f"term {_shown(token)} contains whitespace (Lucene's whitespace analyzer would "
            "split it into several terms)"
        )
    try:
        encoded = token.encode("utf-8")
    except UnicodeEncodeError:
        return f"term {_shown(token)} is not valid Unicode (lone surrogate)"
    if len(encoded) > LUCENE_MAX_TERM_BYTES:
        return (
            f"term {_shown(token)} is {len(encoded)} UTF-8 bytes; Lucene's limit is "
            f"{LUCENE_MAX_TERM_BYTES}"
        )
    units = len(token.encode("utf-16-le")) // 2
    if units > LUCENE_MAX_TOKEN_CHARS:
        return (
            f"term {_shown(token)} is {units} characters; Lucene's whitespace tokenizer "
            f"cuts tokens longer than {LUCENE_MAX_TOKEN_CHARS}"
        )
    return None


def id_problem(value: object) -> str | None:
    """Why ``value`` cannot be a document or query id; None if it can.

    An id is any non-empty string without control characters or line breaks, of at most
    :data:`MAX_ID_BYTES` UTF-8 bytes (Lucene stores it as one term). Whitespace is allowed:
    the writers of whitespace-separated formats check :func:`column_id_problem` instead.
    U+FEFF (a byte order mark) is refused too: an id that carries one looks like the id
    without it and matches nothing.
    """
    if not isinstance(value, str):
        return f"id {value!r} is a {type(value).__name__}, not a string"
    if len(value) <= MAX_ID_BYTES // 4 and _PLAIN_ID.fullmatch(value):
        return None  # the common case, decided in C (ids are checked once per document)
    if not value:
        return "empty id"
    if any(unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp") for c in value):
        return f"id {_shown(value)} contains a control character, a line break or a lone surrogate"
    if "\ufeff" in value:
        return (
            f"id {_shown(value)} contains U+FEFF, a byte order mark (BOM) left by an "
            "editor or by concatenating files: save the file as UTF-8 without BOM"
        )
    if len(value.encode("utf-8")) > MAX_ID_BYTES:
        return f"id {_shown(value)} is longer than {MAX_ID_BYTES} UTF-8 bytes"
    return None


def column_id_problem(value: object) -> str | None:
    """Why ``value`` cannot be written as an id into a whitespace-separated format (a TREC run
    file, TSV topics, a Lucene whitespace-analyzed field); None if it can."""
    if problem := id_problem(value):
        return problem
    if any(c.isspace() for c in value):
        return (
            f"id {_shown(value)} contains whitespace, which this format uses to separate "
            "its columns (TREC run files, TSV topics); write JSON lines instead, map such "
            "ids (--id-map FILE, Run.write_trec(id_map=...)), or use ids without "
            "whitespace"
        )
    return None


# Anything an id may not contain except the newline that joins ids in first_id_problem.
_NOT_IN_JOINED_IDS = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff\ufeff]")


def first_id_problem(values) -> tuple[int, str] | None:
    """``(position, reason)`` of the first value that is not a valid id, or None.

    The same rule as :func:`id_problem`, for a whole list at once: the usual all-valid case is
    decided by a few scans in C over the ids joined by newlines (a builder checks millions).
    """
    values = list(values)
    if (
        all(isinstance(value, str) for value in values)
        and "" not in values
        and (not values or max(map(len, values)) <= MAX_ID_BYTES // 4)
    ):
        joined = "\n".join(values)
        if joined.count("\n") == len(values) - 1 and not _NOT_IN_JOINED_IDS.search(joined):
            return None
    for position, value in enumerate(values):
        if problem := id_problem(value):
            return position, problem
    return None


def weight_problem(value: object) -> str | None:
    """Why ``value`` cannot be a term weight (a finite number >= 0); None if it can."""
    # numbers.Real covers numpy's scalars too, and not numpy's bool_ (nor, here, Python's).
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return f"weight {value!r} is not a number"
    if not isinstance(value, numbers.Integral) and not math.isfinite(value):
        return f"weight {value!r} is not finite"
    if value < 0:
        return f"weight {value!r} is negative (weights must be >= 0)"
    return None


def _raise(problem: str | None, path: object, line: int | None, prefix: str = "") -> None:
    if problem is not None:
        raise InputError(prefix + problem, path=path, line=line)


def check_term(token: object, *, path: object = None, line: int | None = None) -> None:
    """Raise :class:`InputError` (naming ``path`` and ``line``) if ``token`` is not a valid term."""
    _raise(term_problem(token), path, line, "invalid term: ")


def check_id(value: object, *, path: object = None, line: int | None = None) -> None:
    """Raise :class:`InputError` (naming ``path`` and ``line``) if ``value`` is not a valid id."""
    _raise(id_problem(value), path, line, "invalid id: ")


def check_column_id(value: object, *, path: object = None, line: int | None = None) -> None:
    """Raise :class:`~sparse_ir.errors.InputError` if ``value`` cannot be written into a
    whitespace-separated format (:func:`column_id_problem`)."""
    _raise(column_id_problem(value), path, line)


def check_weight(value: object, *, path: object = None, line: int | None = None) -> None:
    """Raise :class:`InputError` (naming ``path`` and ``line``) if ``value`` is not a weight."""
    _raise(weight_problem(value), path, line, "invalid weight: ")


def first_duplicate(values) -> tuple[int, object] | None:
    """``(position, value)`` of the first value seen twice, or None."""
    seen = set()
    for position, value in enumerate(values):
        if value in seen:
            return position, value
        seen.add(value)
    return None


def check_query_weights(terms, weights, max_impact: int, vocab=None) -> None:
    """Raise :class:`InputError` if an integer query weight could make a score overflow.

    Scores are exact 64-bit integers: Σ query weight × document impact. With ``n`` query
    terms and impacts up to ``max_impact``, every weight must be at most
    ``(2**63 - 1) // (max_impact × n)`` for every score to be exact; a larger weight (2**62
    made every hit score 4611686018427387904) is refused, naming the term (its token when
    ``vocab`` is given) and the limit. Float weights are not checked: the quantizer clips them
    to ``max_impact``.
    """
    import numpy as np

    given = weights
    if isinstance(weights, (list, tuple)):  # Python numbers, maybe beyond 64 bits (10**30)
        if not weights or not all(
            isinstance(w, numbers.Integral) and not isinstance(w, bool) for w in weights
        ):
            return
        weights = np.array([min(int(w), _INT64_MAX) for w in weights], np.int64)
    weights = np.asarray(weights)
    if weights.dtype.kind not in "iu" or weights.size == 0:
        return
    limit = _INT64_MAX // (max(int(max_impact), 1) * weights.size)
    # A short query (every search of one text) in Python ints: several times cheaper than
    # numpy's comparison and search on a few elements, and as exact.
    if weights.size <= 64 and weights.ndim == 1 and max(weights.tolist()) <= limit:
        return
    over = np.flatnonzero(weights > limit)
    if len(over):
        position = int(over[0])
        term = int(np.asarray(terms)[position])
        name = (
            repr(vocab[term]) if vocab is not None and 0 <= term < len(vocab) else f"term id {term}"
        )
        raise InputError(
            f"query weight {int(given[position])} of {name} is above {limit:,}, "
            f"the largest weight for which {weights.size} term(s) × impacts up to "
            f"{max_impact} keep every score exact in 64 bits"
        )


def check_batch_query_weights(batch, max_impact: int) -> None:
    """:func:`check_query_weights` for every row of a quantized SparseBatch of queries (one
    vectorized pass); the error names the query id and the term.

    Example:
        >>> from sparse_ir import SparseBatch
        >>> top = 2**31 - 1
        >>> queries = SparseBatch.from_dicts([{"a": top, "b": top, "c": top}], ["a", "b", "c"],
        ...                                  ids=["q7"])
        >>> check_batch_query_weights(queries, top)
        Traceback (most recent call last):
        ...
        sparse_ir.errors.InputError: query 'q7': query weight 2147483647 of 'a' is above ...
    """
    import numpy as np

    from sparse_ir.errors import InputError

    values = np.asarray(batch.values)
    if values.dtype.kind not in "iu" or values.size == 0:
        return
    lengths = np.diff(np.asarray(batch.indptr, np.int64))
    limits = _INT64_MAX // (max(int(max_impact), 1) * np.maximum(lengths, 1))
    # uint64 against int64 compares as float64: exact here (limits are below 2^53).
    over = np.flatnonzero(values > np.repeat(limits, lengths))
    if not len(over):
        return
    row = int(np.searchsorted(batch.indptr, over[0], side="right") - 1)
    start, end = int(batch.indptr[row]), int(batch.indptr[row + 1])
    query = batch.ids[row] if batch.ids is not None else str(row)
    try:
        check_query_weights(
            batch.indices[start:end], [int(v) for v in values[start:end]], max_impact, batch.vocab
        )
    except InputError as exc:
        raise InputError(f"query {query!r}: {exc}") from None
    raise AssertionError("unreachable: a weight above the limit passed")  # pragma: no cover
