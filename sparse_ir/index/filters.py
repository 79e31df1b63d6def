"""Filtered search: which documents a search may return.

A search's ``filter=`` argument (every ``search``/``search_batch`` of the indexes and searchers)
takes one of:

* a :class:`Filter` value: :class:`IdFilter` (a set of external ids), :class:`MaskFilter` (a
  boolean mask over document numbers), :class:`FieldCondition` (a predicate on a stored
  metadata field), or several of them combined with ``&`` (:class:`AllOf`);
* the text of a metadata predicate, read by :func:`parse_filter` (``"year>=2020"``,
  ``"tenant=a AND 2019<=year<2022"``);
* a numpy bool or uint8 array of ``num_documents`` entries (as :class:`MaskFilter`);
* a ``set``/``frozenset`` of external ids (as :class:`IdFilter`);
* None: every document.

``filter.mask(index)`` turns a filter into a bool array over the index's document numbers; the
kernels take it as their ``allowed`` mask (:mod:`.kernels`), so a filtered search returns exactly
the top-k of the allowed documents, under every mode.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_left
from collections.abc import Set
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

from sparse_ir.errors import InputError

__all__ = [
    "AllOf",
    "FieldCondition",
    "Filter",
    "FilterLike",
    "FilterSyntaxError",
    "IdFilter",
    "MaskFilter",
    "Operator",
    "allowed_documents",
    "as_filter",
    "check_floor",
    "parse_filter",
]

#: Comparison operators of a :class:`FieldCondition`.
Operator = Literal["=", "!=", "<", "<=", ">", ">="]
_RANGE_OPERATORS = ("<", "<=", ">", ">=")
#: Largest integer a metadata number holds exactly (they are stored as float64).
MAX_EXACT_INTEGER = 2**53


class FilterSyntaxError(InputError):
    """A filter text that :func:`parse_filter` cannot read (names the text, position, rule)."""


class Filter:
    """Which documents a search may return. ``filter.mask(index)`` is a bool array over the
    index's document numbers; ``a & b`` allows the documents both allow (:class:`AllOf`).

    The index argument needs ``num_documents``, ``docno(id)`` (KeyError when absent; for
    :class:`IdFilter`) and ``metadata_column(field)`` (for :class:`FieldCondition`): an
    :class:`~sparse_ir.index.impact_index.ImpactIndex` or a
    :class:`~sparse_ir.index.dense.DenseIndex`.
    """

    def mask(self, index) -> np.ndarray:
        """Bool [index.num_documents]: True for the documents this filter allows."""
        raise NotImplementedError

    def __and__(self, other) -> AllOf:
        other = as_filter(other)
        if other is None:
            return AllOf(_parts(self))
        return AllOf(_parts(self) + _parts(other))


def _parts(value: Filter) -> tuple[Filter, ...]:
    return value.parts if isinstance(value, AllOf) else (value,)


@dataclass(frozen=True)
class IdFilter(Filter):
    """The documents with these external ids (ids the index does not hold match nothing: a
    document of a live index lives in one of its segments).

    Example:
        >>> IdFilter({"d1", "d3"})
        IdFilter(ids=frozenset({'d1', 'd3'}))
    """

    ids: frozenset[str]

    def __init__(self, ids):
        if isinstance(ids, str):
            raise TypeError("IdFilter takes a collection of ids, not one string")
        values = frozenset(ids)
        for value in values:
            if not isinstance(value, str):
                raise InputError(f"IdFilter: document ids are strings, got {value!r}")
        object.__setattr__(self, "ids", values)

    def __repr__(self) -> str:
        return f"IdFilter(ids=frozenset({sorted(self.ids)!r}))".replace("[", "{").replace("]", "}")

    def mask(self, index) -> np.ndarray:
        out = np.zeros(index.num_documents, bool)
        for doc_id in self.ids:
            try:
                out[index.docno(doc_id)] = True
            except KeyError:
                continue
        return out


@dataclass(frozen=True, eq=False)
class MaskFilter(Filter):
    """A bool (or 0/1 uint8) array over document numbers: True = may be returned.

    Example:
        >>> import numpy as np
        >>> MaskFilter(np.array([True, False])).allowed.tolist()
        [True, False]
    """

    allowed: np.ndarray

    def __init__(self, allowed):
        array = np.asarray(allowed)
        if array.ndim != 1 or array.dtype not in (np.bool_, np.uint8):
            raise InputError(
                f"MaskFilter: a 1-d bool or uint8 array, got dtype {array.dtype} "
                f"and shape {array.shape}"
            )
        object.__setattr__(self, "allowed", array.astype(bool))

    def __repr__(self) -> str:
        return f"MaskFilter(<{int(self.allowed.sum())} of {len(self.allowed)} documents>)"

    def mask(self, index) -> np.ndarray:
        if len(self.allowed) != index.num_documents:
            raise InputError(
                f"MaskFilter: {len(self.allowed)} entries for an index of "
                f"{index.num_documents} documents"
            )
        return self.allowed


@dataclass(frozen=True)
class FieldCondition(Filter):
    """A predicate on one metadata field: ``field op value``.

    Numbers compare with every operator; strings and booleans with ``=`` and ``!=``. A
    condition matches only documents whose field holds a value of the compared kind (a
    document without the field, or with a string where a number is compared, never matches,
    for ``!=`` too). A field absent from every document, or never holding the compared kind,
    is an error, never an empty result.

    Example:
        >>> FieldCondition("year", ">=", 2020)
        FieldCondition(field='year', op='>=', value=2020)
        >>> str(FieldCondition("tenant", "=", "a"))
        "tenant='a'"
    """

    field: str
    op: Operator
    value: str | int | float | bool

    def __post_init__(self):
        if not isinstance(self.field, str) or not self.field:
            raise InputError(f"a filter field is a non-empty string, got {self.field!r}")
        if self.op not in get_args(Operator):
            raise InputError(
                f"filter operator must be one of {get_args(Operator)}, got {self.op!r}"
            )
        value = self.value
        if not isinstance(value, (str, int, float, bool, np.integer, np.floating)):
            raise InputError(
                f"filter value of {self.field!r} must be a string, number or boolean, got {value!r}"
            )
        if isinstance(value, (np.integer, np.floating)):
            object.__setattr__(self, "value", value.item())
            value = self.value
        is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if self.op in _RANGE_OPERATORS and not is_number:
            raise InputError(
                f"filter {self.field}{self.op}{value!r}: {self.op} compares numbers; "
                "strings and booleans take = or !="
            )
        if is_number and not math.isfinite(value):
            raise InputError(f"filter value of {self.field!r} must be finite, got {value!r}")
        if (
            isinstance(value, int)
            and not isinstance(value, bool)
            and abs(value) > MAX_EXACT_INTEGER
        ):
            raise InputError(
                f"filter value {value} of {self.field!r}: metadata integers are exact up to "
                f"±2^53 only"
            )

    def __str__(self) -> str:
        value = self.value
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, str):
            text = repr(value)
        else:
            text = repr(value)
        return f"{self.field}{self.op}{text}"

    def mask(self, index) -> np.ndarray:
        from sparse_ir.index.metadata import BOOL, NUMBER, STRING

        column = index.metadata_column(self.field)
        value = self.value
        if isinstance(value, bool):
            kind, target, label = BOOL, float(value), "booleans"
        elif isinstance(value, (int, float)):
            kind, target, label = NUMBER, float(value), "numbers"
        else:
            kind, label = STRING, "strings"
            position = bisect_left(column.strings, value)
            found = position < len(column.strings) and column.strings[position] == value
            target = float(position) if found else math.nan
        if kind not in column.kinds_present:
            raise InputError(
                f"filter {self}: field {self.field!r} of {column.source} holds no {label} "
                f"(it holds {', '.join(column.kind_names()) or 'nothing'})"
            )
        has = np.asarray(column.kinds) == kind
        values = np.asarray(column.values)
        with np.errstate(invalid="ignore"):
            compared = _COMPARE[self.op](values, target)
        if self.op == "!=":
            compared = ~(values == target)
        return has & compared


_COMPARE = {
    "=": np.equal,
    "!=": np.not_equal,
    "<": np.less,
    "<=": np.less_equal,
    ">": np.greater,
    ">=": np.greater_equal,
}


@dataclass(frozen=True)
class AllOf(Filter):
    """The documents every part allows (``a & b``).

    Example:
        >>> both = FieldCondition("year", ">=", 2019) & FieldCondition("year", "<", 2022)
        >>> str(both)
        'year>=2019 AND year<2022'
    """

    parts: tuple[Filter, ...]

    def __post_init__(self):
        if not self.parts:
            raise InputError("AllOf needs at least one filter")
        for part in self.parts:
            if not isinstance(part, Filter):
                raise TypeError(f"AllOf combines Filter values, got {type(part).__name__}")

    def __str__(self) -> str:
        return " AND ".join(str(part) for part in self.parts)

    def mask(self, index) -> np.ndarray:
        out = None
        for part in self.parts:
            part_mask = np.asarray(part.mask(index), bool)
            out = part_mask.copy() if out is None else out & part_mask
        return out


FilterLike = Filter | str | np.ndarray | Set | None


def as_filter(value) -> Filter | None:
    """The :class:`Filter` of a ``filter=`` argument (None stays None).

    Example:
        >>> as_filter("year>=2020")
        FieldCondition(field='year', op='>=', value=2020)
        >>> as_filter({"d1"})
        IdFilter(ids=frozenset({'d1'}))
    """
    if value is None or isinstance(value, Filter):
        return value
    if isinstance(value, str):
        return parse_filter(value)
    if isinstance(value, np.ndarray):
        return MaskFilter(value)
    if isinstance(value, Set):
        return IdFilter(value)
    raise TypeError(
        f"filter must be a Filter, a filter text, a bool mask over the documents or a set of "
        f"document ids, not {type(value).__name__}"
    )


# -- the filter text ---------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<op><=|>=|!=|==|=|<|>)
      | (?P<and>&&|,|(?:AND|and)(?![\w.\-]))
      | (?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)(?![\w.])
      | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      | (?P<word>[A-Za-z_][\w.\-]*)
    )""",
    re.VERBOSE,
)


class _Token:
    __slots__ = ("kind", "position", "text", "value")

    def __init__(self, kind, text, value, position):
        self.kind, self.text, self.value, self.position = kind, text, value, position


def _tokens(text: str) -> list[_Token]:
    tokens = []
    position = 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            start = len(text) - len(text[position:].lstrip())
            raise _syntax(
                text,
                start,
                "expected a field, a number, a quoted string, an "
                "operator (=, !=, <, <=, >, >=) or AND",
            )
        kind = match.lastgroup
        raw = match.group(kind)
        start = match.start(kind)
        tokens.append(_Token(kind, raw, _token_value(kind, raw), start))
        position = match.end()
    return tokens


def _token_value(kind: str, raw: str):
    if kind == "number":
        if re.fullmatch(r"[-+]?\d+", raw):
            return int(raw)
        return float(raw)
    if kind == "string":
        body = raw[1:-1]
        return re.sub(r"\\(.)", r"\1", body)
    if kind == "op":
        return "=" if raw == "==" else raw
    return raw


def _syntax(text: str, position: int, rule: str) -> FilterSyntaxError:
    return FilterSyntaxError(
        f"filter {text!r}: position {position + 1}: {rule}\n  {text}\n  {' ' * position}^"
    )


def _value(token: _Token):
    if token.kind == "word":
        lowered = token.text.lower()
        if lowered in ("true", "false"):
            return lowered == "true"
    return token.value


def parse_filter(text: str) -> Filter:
    """Read a metadata predicate: conditions joined by ``AND`` (also ``and``, ``&&``, ``,``).

    A condition is ``field op value`` or ``value op field`` (``op``: ``=`` (or ``==``), ``!=``,
    ``<``, ``<=``, ``>``, ``>=``), or a range ``low <= field < high`` (both operators ``<``/``<=``,
    or both ``>``/``>=``). A value is a number (``2020``, ``-1.5``, ``1e3``), a quoted string
    (``"a b"``, ``'x'``), ``true``/``false``, or a bare word, read as a string (``tenant=a``).
    Fields are words: a letter or ``_``, then letters, digits, ``_``, ``.``, ``-``.

    Raises :class:`FilterSyntaxError` naming the text, the position (1-based) and the rule.

    Example:
        >>> parse_filter("year>=2020")
        FieldCondition(field='year', op='>=', value=2020)
        >>> str(parse_filter("tenant=a AND 2019<=year<2022"))
        "tenant='a' AND year>=2019 AND year<2022"
        >>> parse_filter("year>>2020")
        Traceback (most recent call last):
        ...
        sparse_ir.index.filters.FilterSyntaxError: filter 'year>>2020': position 6: ...
    """
    if not isinstance(text, str):
        raise TypeError(f"parse_filter takes a string, got {type(text).__name__}")
    tokens = _tokens(text)
    if not tokens:
        raise _syntax(text, 0, "empty filter: expected a condition such as year>=2020")
    conditions: list[Filter] = []
    position = 0
    while True:
        clause, position = _clause(text, tokens, position)
        conditions.extend(clause)
        if position == len(tokens):
            break
        token = tokens[position]
        if token.kind != "and":
            raise _syntax(
                text, token.position, f"expected AND after a condition, got {token.text!r}"
            )
        position += 1
        if position == len(tokens):
            raise _syntax(text, len(text.rstrip()), "expected a condition after AND")
    return conditions[0] if len(conditions) == 1 else AllOf(tuple(conditions))


_FLIPPED = {"=": "=", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}


def _clause(text: str, tokens: list[_Token], at: int) -> tuple[list[Filter], int]:
    """The condition(s) starting at ``tokens[at]``, and the position after them."""
    first = tokens[at]
    if first.kind in ("op", "and"):
        raise _syntax(text, first.position, f"expected a field or a value, got {first.text!r}")
    op = _expect(
        text, tokens, at + 1, "op", f"an operator (=, !=, <, <=, >, >=) after {first.text!r}"
    )
    second = _expect(
        text, tokens, at + 2, ("number", "string", "word"), f"a value after {op.text!r}"
    )
    if first.kind == "word" and first.text.lower() not in ("true", "false"):
        if second.kind == "word" and at + 3 < len(tokens) and tokens[at + 3].kind == "op":
            raise _syntax(
                text,
                tokens[at + 3].position,
                "a range reads low <= field < high, with numbers at both ends",
            )
        return [_condition(text, first, op.value, _value(second))], at + 3
    # value op field [op value]
    if second.kind != "word":
        raise _syntax(text, second.position, f"expected a field name, got {second.text!r}")
    low = _condition(text, second, _FLIPPED[op.value], _value(first))
    if at + 3 < len(tokens) and tokens[at + 3].kind == "op":
        op2 = tokens[at + 3]
        upper = _expect(
            text, tokens, at + 4, ("number", "string", "word"), f"a value after {op2.text!r}"
        )
        ascending = op.value in ("<", "<=") and op2.value in ("<", "<=")
        descending = op.value in (">", ">=") and op2.value in (">", ">=")
        if not (ascending or descending):
            raise _syntax(
                text,
                op2.position,
                "a range uses < or <= twice, or > or >= twice (low <= field < high)",
            )
        return [low, _condition(text, second, op2.value, _value(upper))], at + 5
    return [low], at + 3


def _expect(text, tokens, at, kinds, what) -> _Token:
    kinds = (kinds,) if isinstance(kinds, str) else kinds
    if at >= len(tokens):
        raise _syntax(text, len(text.rstrip()), f"expected {what}, got the end of the text")
    token = tokens[at]
    if token.kind not in kinds:
        raise _syntax(text, token.position, f"expected {what}, got {token.text!r}")
    return token


def _condition(text: str, field: _Token, op: str, value) -> FieldCondition:
    try:
        return FieldCondition(field.text, op, value)
    except InputError as exc:
        raise _syntax(text, field.position, str(exc)) from None


def allowed_documents(filter, index) -> np.ndarray | None:  # noqa: A002 (the public name)
    """The kernels' ``allowed`` mask of a ``filter=`` argument: uint8 [num_documents]
    (writable, C-contiguous), or None when every document is allowed.

    Example:
        >>> class Index:  # anything with num_documents
        ...     num_documents = 3
        >>> allowed_documents(np.array([True, False, True]), Index()).tolist()
        [1, 0, 1]
        >>> allowed_documents(None, Index()) is None
        True
    """
    if filter is None:
        return None
    if isinstance(filter, np.ndarray):
        return _as_allowed(filter, index.num_documents, "filter mask")
    value = as_filter(filter)
    return _as_allowed(value.mask(index), index.num_documents, f"mask of {value!r}")


def _as_allowed(mask, num_documents: int, what: str) -> np.ndarray:
    array = np.asarray(mask)
    if array.ndim != 1 or len(array) != num_documents:
        raise InputError(
            f"{what}: needs one entry per document ({num_documents}), got shape {array.shape}"
        )
    if array.dtype == np.bool_:
        array = array.view(np.uint8)
    elif array.dtype != np.uint8:
        raise InputError(f"{what}: must be a bool or uint8 array, got dtype {array.dtype}")
    # The kernels take one array type: C-contiguous and writable (numba compiles read-only
    # arrays separately), so a read-only mask (a memory map) is copied once here.
    if not array.flags.c_contiguous or not array.flags.writeable:
        array = np.array(array, dtype=np.uint8, order="C")
    return array


def check_floor(floor) -> int:
    """``floor=`` of a search as an int (None: 0). Only documents scoring strictly above it
    are returned; 0 and below return every matching document.

    Example:
        >>> check_floor(None), check_floor(7)
        (0, 7)
    """
    if floor is None:
        return 0
    if isinstance(floor, bool) or not isinstance(floor, (int, np.integer)):
        raise ValueError(f"floor must be an integer score (or None), got {floor!r}")
    return max(int(floor), 0)
