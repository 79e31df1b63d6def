"""Document metadata: a small JSON dict per document, stored with the index, filterable.

A document may carry ``{"year": 2021, "tenant": "a", "peer_reviewed": true}``: scalar values
only (str, int, float, bool; no null, lists or objects), at most :data:`MAX_FIELDS` fields and
:data:`MAX_BYTES` bytes of canonical JSON per document, field names that a filter text can name
(a letter or ``_``, then letters, digits, ``_``, ``.``, ``-``; see
:func:`~sparse_ir.index.filters.parse_filter`). Integers are exact up to ±2^53.

Files of a generation with metadata (all checksummed through the manifest; an index without
them has no metadata and refuses filters on fields)::

    doc_metadata.{offsets,bytes}.bin   canonical JSON of each document's dict ("{}" for none)
    metadata_fields.bin                JSON: the fields, sorted, each with the kinds it holds
                                       and its distinct strings, sorted
    metadata_kinds.bin                 uint8 [F × N]: field f of document d at f·N + d:
                                       0 absent, 1 number, 2 string, 3 boolean
    metadata_values.bin                float64 [F × N]: the number, 0/1 for a boolean, the
                                       position of a string in the field's sorted strings

so a predicate on a field is a numpy comparison over one column
(:class:`~sparse_ir.index.filters.FieldCondition`).
"""

from __future__ import annotations

import json
import math
import re
from array import array
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from sparse_ir.errors import IndexCorruptError, InputError
from sparse_ir.index.storage import FileRecord, open_array, write_array
from sparse_ir.index.strings import StringColumn, StringColumnWriter

__all__ = [
    "BOOL",
    "KIND_NAMES",
    "MAX_BYTES",
    "MAX_FIELDS",
    "MISSING",
    "NUMBER",
    "STRING",
    "MetadataColumn",
    "MetadataStore",
    "MetadataWriter",
    "MetadataAccess",
    "check_metadata",
    "concat_columns",
    "take_metadata",
]

#: Kinds of a value in ``metadata_kinds.bin``.
MISSING, NUMBER, STRING, BOOL = 0, 1, 2, 3
KIND_NAMES = {NUMBER: "numbers", STRING: "strings", BOOL: "booleans"}
#: At most this many fields per document.
MAX_FIELDS = 32
#: At most this many bytes of canonical JSON (UTF-8) per document.
MAX_BYTES = 4096
#: At most this many distinct fields over a whole collection (F × N columns are stored).
MAX_COLLECTION_FIELDS = 256
_FIELD_NAME = re.compile(r"[A-Za-z_][\w.\-]*", re.ASCII)
_MAX_EXACT_INTEGER = 2**53
_FILES = (
    "doc_metadata.offsets.bin",
    "doc_metadata.bytes.bin",
    "metadata_fields.bin",
    "metadata_kinds.bin",
    "metadata_values.bin",
)


def check_metadata(value, doc_id: str, docno: int | None = None) -> dict:
    """The checked metadata dict of one document (None: ``{}``).

    Raises :class:`InputError` naming the document, the field and the rule.

    Example:
        >>> check_metadata({"year": 2021, "tenant": "a"}, "d1")
        {'year': 2021, 'tenant': 'a'}
        >>> check_metadata({"tags": ["x"]}, "d1")
        Traceback (most recent call last):
        ...
        sparse_ir.errors.InputError: metadata of document 'd1': field 'tags' is a list; ...
    """
    where = f"metadata of document {doc_id!r}"
    if docno is not None:
        where += f" (document {docno})"
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InputError(f"{where}: must be a JSON object (a dict), got {type(value).__name__}")
    if len(value) > MAX_FIELDS:
        raise InputError(f"{where}: {len(value)} fields, at most {MAX_FIELDS} are allowed")
    out = {}
    for name, item in value.items():
        if not isinstance(name, str) or not _FIELD_NAME.fullmatch(name):
            raise InputError(
                f"{where}: field name {name!r} must start with a letter or _ and hold only "
                "letters, digits, _, . and - (so that a filter can name it)"
            )
        if isinstance(item, (np.integer, np.floating, np.bool_)):
            item = item.item()
        if isinstance(item, bool) or isinstance(item, str):
            pass
        elif isinstance(item, int):
            if abs(item) > _MAX_EXACT_INTEGER:
                raise InputError(
                    f"{where}: field {name!r} = {item}: integers are exact up to ±2^53 only"
                )
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise InputError(f"{where}: field {name!r} is {item!r}; numbers must be finite")
        else:
            kind = "null" if item is None else type(item).__name__
            raise InputError(
                f"{where}: field {name!r} is a {kind}; values are strings, numbers or booleans"
            )
        out[name] = item
    size = len(_canonical(out).encode("utf-8"))
    if size > MAX_BYTES:
        raise InputError(f"{where}: {size} bytes of JSON, at most {MAX_BYTES} are allowed")
    return out


def _canonical(value: dict) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _kind(value) -> int:
    if isinstance(value, bool):
        return BOOL
    if isinstance(value, str):
        return STRING
    return NUMBER


class _FieldBuffer:
    """One field's values while building: (document, kind, value) in document order."""

    __slots__ = ("docs", "kinds", "strings", "values")

    def __init__(self):
        self.docs = array("q")
        self.kinds = array("B")
        self.values = array("d")
        self.strings: dict[str, int] = {}  # string -> code in order of appearance


class MetadataWriter:
    """Collect documents' metadata during a build; :meth:`finish` writes the files.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> writer = MetadataWriter(Path(tempfile.mkdtemp()))
        >>> writer.add([{"year": 2020}, None], ["a", "b"])
        >>> sorted(record.name for record in writer.finish())[:2]
        ['doc_metadata.bytes.bin', 'doc_metadata.offsets.bin']
    """

    def __init__(self, directory: Path):
        self.directory = directory
        self.count = 0
        self._json = StringColumnWriter(directory, "doc_metadata")
        self._fields: dict[str, _FieldBuffer] = {}

    def add(self, records: Sequence, ids: Sequence[str]) -> None:
        """Append the metadata of the next ``len(ids)`` documents (None or ``{}``: none)."""
        if len(records) != len(ids):
            raise InputError(
                f"metadata ended before the vectors did (documents from {self.count}: "
                f"{len(records)} metadata records for {len(ids)} documents)"
            )
        texts = []
        for offset, (record, doc_id) in enumerate(zip(records, ids)):
            docno = self.count + offset
            checked = check_metadata(record, doc_id, docno)
            texts.append(_canonical(checked))
            for name, value in checked.items():
                self._add_value(name, value, docno, doc_id)
        self._json.extend(texts)
        self.count += len(ids)

    def _add_value(self, name: str, value, docno: int, doc_id: str) -> None:
        buffer = self._fields.get(name)
        if buffer is None:
            if len(self._fields) >= MAX_COLLECTION_FIELDS:
                raise InputError(
                    f"metadata of document {doc_id!r} (document {docno}): field {name!r} would "
                    f"be field number {MAX_COLLECTION_FIELDS + 1} of the collection; at most "
                    f"{MAX_COLLECTION_FIELDS} distinct fields are stored"
                )
            buffer = self._fields[name] = _FieldBuffer()
        kind = _kind(value)
        buffer.docs.append(docno)
        buffer.kinds.append(kind)
        if kind == STRING:
            buffer.values.append(float(buffer.strings.setdefault(value, len(buffer.strings))))
        else:
            buffer.values.append(float(value))

    def finish(self) -> list[FileRecord]:
        """Write the files; returns their records for the manifest.

        When no document has a field, nothing is written (an index without metadata, whose
        every ``metadata(docno)`` is ``{}``): a corpus whose records carry empty metadata
        objects (SciFact's) builds the same files as one without them.
        """
        if not self._fields:
            self._json.abort()
            scratch = self._json._scratch_path
            if scratch.exists():
                scratch.unlink()
            return []
        records = list(self._json.finish())
        names = sorted(self._fields)
        n = self.count
        kinds = np.zeros(len(names) * n, np.uint8)
        values = np.full(len(names) * n, np.nan)
        described = []
        for f, name in enumerate(names):
            buffer = self._fields[name]
            docs = np.frombuffer(buffer.docs, np.int64)
            field_kinds = np.frombuffer(buffer.kinds, np.uint8)
            field_values = np.frombuffer(buffer.values, np.float64).copy()
            ordered = sorted(buffer.strings)
            if ordered:
                # Codes in order of appearance -> positions in the sorted strings.
                remap = np.empty(len(ordered), np.float64)
                for position, text in enumerate(ordered):
                    remap[buffer.strings[text]] = position
                is_string = field_kinds == STRING
                field_values[is_string] = remap[field_values[is_string].astype(np.int64)]
            kinds[f * n + docs] = field_kinds
            values[f * n + docs] = field_values
            present = sorted({int(k) for k in np.unique(field_kinds)})
            described.append({"name": name, "kinds": present, "strings": ordered})
        body = json.dumps({"fields": described}, ensure_ascii=False, sort_keys=True)
        data = np.frombuffer(body.encode("utf-8"), np.uint8)
        records.append(write_array(self.directory / "metadata_fields.bin", "metadata_fields", data))
        records.append(write_array(self.directory / "metadata_kinds.bin", "metadata_kinds", kinds))
        records.append(
            write_array(self.directory / "metadata_values.bin", "metadata_values", values)
        )
        return records

    def abort(self) -> None:
        """Close the scratch file (the temporary directory is removed by the build)."""
        self._json.abort()


class MetadataColumn(NamedTuple):
    """One field over every document, as :class:`~sparse_ir.index.filters.FieldCondition`
    reads it.

    Attributes:
        name: the field.
        kinds: uint8 [num_documents]: MISSING, NUMBER, STRING or BOOL.
        values: float64 [num_documents]: the number, 0/1, or the position in ``strings``.
        strings: the field's distinct strings, sorted.
        kinds_present: the kinds some document holds.
        source: where the column comes from (an index directory), for error messages.
    """

    name: str
    kinds: np.ndarray
    values: np.ndarray
    strings: tuple[str, ...]
    kinds_present: frozenset[int]
    source: str

    def kind_names(self) -> list[str]:
        """Names of the kinds present, e.g. ``["numbers"]``."""
        return [KIND_NAMES[k] for k in sorted(self.kinds_present)]


def concat_columns(columns: Sequence[MetadataColumn], source: str) -> MetadataColumn:
    """Parts' columns of one field laid end to end (a composite index: segments, shards).

    String positions are renumbered into the union of the parts' strings.

    Example:
        >>> a = MetadataColumn("t", np.array([2], np.uint8), np.array([0.0]), ("x",),
        ...                    frozenset({2}), "a")
        >>> b = MetadataColumn("t", np.array([2, 0], np.uint8), np.array([0.0, np.nan]),
        ...                    ("w",), frozenset({2}), "b")
        >>> both = concat_columns([a, b], "ab")
        >>> both.strings, both.values[:2].tolist()
        (('w', 'x'), [1.0, 0.0])
    """
    if not columns:
        raise ValueError("concat_columns needs at least one column")
    strings = tuple(sorted(set().union(*(column.strings for column in columns))))
    position = {text: i for i, text in enumerate(strings)}
    values = []
    for column in columns:
        part = np.array(column.values, np.float64)
        if column.strings:
            remap = np.array([position[text] for text in column.strings], np.float64)
            is_string = np.asarray(column.kinds) == STRING
            part[is_string] = remap[part[is_string].astype(np.int64)]
        values.append(part)
    return MetadataColumn(
        columns[0].name,
        np.concatenate([np.asarray(column.kinds, np.uint8) for column in columns]),
        np.concatenate(values),
        strings,
        frozenset().union(*(column.kinds_present for column in columns)),
        source,
    )


class MetadataStore:
    """Read access to a generation's metadata files (memory-mapped)."""

    def __init__(self, directory: Path, num_documents: int):
        self.directory = directory
        self.num_documents = num_documents
        self._json = StringColumn(directory, "doc_metadata", num_documents)
        raw = open_array(directory / "metadata_fields.bin", name="metadata_fields", dtype=np.uint8)
        try:
            body = json.loads(bytes(raw).decode("utf-8"))
            fields = body["fields"]
            self.fields = {
                entry["name"]: (frozenset(entry["kinds"]), tuple(entry["strings"]))
                for entry in fields
            }
        except (UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
            raise IndexCorruptError(
                f"{directory / 'metadata_fields.bin'}: corrupt ({exc})"
            ) from None
        self._names = sorted(self.fields)
        count = len(self._names) * num_documents
        self._kinds = open_array(
            directory / "metadata_kinds.bin", name="metadata_kinds", dtype=np.uint8, count=count
        )
        self._values = open_array(
            directory / "metadata_values.bin",
            name="metadata_values",
            dtype=np.float64,
            count=count,
        )

    @staticmethod
    def present(files: Mapping[str, object]) -> bool:
        """True when a manifest's files include the metadata files."""
        return all(name in files for name in _FILES)

    def document(self, docno: int) -> dict:
        """The metadata dict of one document."""
        if not 0 <= docno < self.num_documents:
            raise IndexError(f"document number {docno} outside 0..{self.num_documents - 1}")
        try:
            return json.loads(self._json[docno])
        except ValueError as exc:
            raise IndexCorruptError(
                f"{self.directory}: metadata of document {docno} is not JSON ({exc})"
            ) from None

    def column(self, name: str) -> MetadataColumn:
        """One field's column; :class:`InputError` naming the known fields when absent."""
        if name not in self.fields:
            known = ", ".join(self._names) or "none"
            raise InputError(
                f"filter field {name!r} is not in the metadata of {self.directory} "
                f"(fields: {known})"
            )
        f = self._names.index(name)
        n = self.num_documents
        kinds_present, strings = self.fields[name]
        return MetadataColumn(
            name,
            self._kinds[f * n : (f + 1) * n],
            self._values[f * n : (f + 1) * n],
            strings,
            kinds_present,
            str(self.directory),
        )

    def check(self) -> str | None:
        """The first disagreement between the JSON dicts and the columns, or None."""
        if problem := self._json.check():
            return f"document metadata: {problem}"
        rebuilt: dict[str, list] = {name: [] for name in self._names}
        for docno in range(self.num_documents):
            try:
                record = json.loads(self._json[docno])
            except ValueError:
                return f"metadata of document {docno} is not JSON"
            if not isinstance(record, dict) or any(name not in rebuilt for name in record):
                return f"metadata of document {docno} names a field the columns lack"
            for name, value in record.items():
                rebuilt[name].append((docno, value))
        for name in self._names:
            column = self.column(name)
            kinds = np.zeros(self.num_documents, np.uint8)
            values = np.full(self.num_documents, np.nan)
            for docno, value in rebuilt[name]:
                kinds[docno] = _kind(value)
                if kinds[docno] == STRING:
                    position = _position(column.strings, value)
                    values[docno] = math.nan if position is None else position
                else:
                    values[docno] = float(value)
            if not np.array_equal(kinds, column.kinds) or not np.array_equal(
                values, column.values, equal_nan=True
            ):
                return f"metadata column {name!r} disagrees with the documents' metadata"
        return None


def _position(strings: tuple[str, ...], value: str) -> int | None:
    from bisect import bisect_left

    at = bisect_left(strings, value)
    return at if at < len(strings) and strings[at] == value else None


def take_metadata(iterator, count: int, ids: Iterable[str]) -> list:
    """The next ``count`` records of a metadata iterator (a build's ``metadata=``)."""
    records = [next(iterator, _END) for _ in range(count)]
    if any(record is _END for record in records):
        first = next(iter(ids), "?")
        raise InputError(
            f"metadata ended before the vectors did (the shard starting at document {first!r})"
        )
    return records


_END = object()


class MetadataAccess:
    """The metadata methods of an index kind (mixed into ImpactIndex and DenseIndex, which
    have ``directory``, ``manifest`` and ``num_documents``)."""

    _metadata_store: MetadataStore | None = None

    @property
    def has_metadata(self) -> bool:
        """True when the index stores document metadata (built with ``metadata=``)."""
        return MetadataStore.present(self.manifest.files)

    def _metadata(self) -> MetadataStore | None:
        if self._metadata_store is None and self.has_metadata:
            self._metadata_store = MetadataStore(self.directory, self.num_documents)
        return self._metadata_store

    @property
    def metadata_fields(self) -> tuple[str, ...]:
        """The metadata fields some document holds, sorted (empty without metadata)."""
        store = self._metadata()
        return () if store is None else tuple(sorted(store.fields))

    def metadata(self, docno: int) -> dict:
        """The metadata dict of a document (``{}`` when the index stores none).

        Example:
            >>> import tempfile
            >>> from sparse_ir import ImpactIndex, SparseBatch
            >>> docs = SparseBatch.from_dicts([{"cat": 1}, {"dog": 2}], ["cat", "dog"])
            >>> index = ImpactIndex.build(docs, tempfile.mkdtemp() + "/index",
            ...                           metadata=[{"year": 2021}, {"year": 2019}],
            ...                           show_progress=False)
            >>> index.metadata(0), index.metadata_fields
            ({'year': 2021}, ('year',))
        """
        if isinstance(docno, bool) or not isinstance(docno, (int, np.integer)):
            raise TypeError(f"docno must be an integer document number, got {docno!r}")
        store = self._metadata()
        if store is None:
            if not 0 <= docno < self.num_documents:
                raise IndexError(f"document number {docno} outside 0..{self.num_documents - 1}")
            return {}
        return store.document(int(docno))

    def metadata_column(self, field: str) -> MetadataColumn:
        """One metadata field over every document (what a field filter compares).

        Raises :class:`InputError` when the index stores no metadata or no such field.
        """
        store = self._metadata()
        if store is None:
            raise InputError(
                f"filter on field {field!r}: the index {self.directory} stores no document "
                "metadata (no document had metadata at build, or it was built before sparse_ir "
                "stored metadata); rebuild it with metadata= (a corpus whose records carry a "
                "'metadata' object)"
            )
        return store.column(field)

    def _verify_metadata(self) -> None:
        store = self._metadata()
        if store is not None and (problem := store.check()):
            raise IndexCorruptError(f"{self.directory}: {problem}")
