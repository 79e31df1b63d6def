"""Index manifests as typed records: one dataclass per index kind, beside its format version.

A manifest is the checksummed JSON of one generation (see :mod:`.storage` for its byte form).
Each record here says which keys a kind writes and how they are typed; :meth:`to_dict` gives
the JSON body the builder writes, :meth:`from_dict` reads it back and refuses a missing or
mistyped key with an :class:`~sparse_ir.errors.IndexCorruptError` naming the file and the key
(never a ``KeyError`` or ``TypeError`` from deep inside an index class).

Changing what a kind writes means changing its record, and, when older readers could not read
the result, bumping its ``FORMAT_VERSION`` (recorded in the CHANGELOG).

No numpy here: the records are plain data.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from sparse_ir.errors import IndexCorruptError, IndexFormatError

__all__ = [
    "DENSE_FORMAT",
    "DENSE_FORMAT_VERSION",
    "IMPACT_FORMAT",
    "IMPACT_FORMAT_VERSION",
    "IMPACT_FORMAT_VERSIONS",
    "LAYOUT_VERSION",
    "DenseManifest",
    "FileRecord",
    "ImpactManifest",
    "SearchLayoutRecord",
]

IMPACT_FORMAT = "sparse-ir-impact-index"
#: Version 2: the manifest says whether the document-ordered postings are stored
#: (``doc_ordered_postings``; new builds with a search layout omit them). Version 1 (always
#: with them) is still read, and still written for an index that keeps them.
IMPACT_FORMAT_VERSION = 2
#: Every impact format version this sparse_ir reads.
IMPACT_FORMAT_VERSIONS = (1, 2)
DENSE_FORMAT = "sparse-ir-dense-index"
DENSE_FORMAT_VERSION = 1
#: Version of the search layout's arrays (the impact manifest's ``search_layout`` entry).
LAYOUT_VERSION = 1


@dataclass(frozen=True)
class FileRecord:
    """Size and CRC32 of one published file, as recorded in the manifest."""

    name: str
    size: int
    crc32: int

    def to_dict(self) -> dict:
        return {"size": self.size, "crc32": self.crc32}


class _Fields:
    """Typed reads of one JSON object of a manifest; every failure names the file and the key."""

    def __init__(self, body: object, source: str | os.PathLike, where: str = ""):
        self.source = source
        self.where = where
        if not isinstance(body, Mapping):
            raise self._error(f"{where or 'the manifest'} is {_kind(body)}, not a JSON object")
        self.body = body

    def _error(self, message: str) -> IndexCorruptError:
        return IndexCorruptError(f"{self.source}: {message}; the manifest is corrupt")

    def _key(self, key: str) -> str:
        return f"{self.where}[{key!r}]" if self.where else repr(key)

    def _get(self, key: str, default: Any) -> Any:
        if key in self.body:
            return self.body[key]
        if default is _REQUIRED:
            raise self._error(f"manifest key {self._key(key)} is missing")
        return default

    def _typed(self, key: str, value: Any, expected: str, ok: bool) -> Any:
        if not ok:
            raise self._error(
                f"manifest key {self._key(key)} is {value!r} ({_kind(value)}), expected {expected}"
            )
        return value

    def integer(self, key: str, default: Any = None, *, minimum: int = 0) -> int:
        default = _REQUIRED if default is None else default
        value = self._get(key, default)
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= minimum
        return self._typed(key, value, f"an integer >= {minimum}", ok)

    def string(self, key: str, default: Any = None) -> str:
        value = self._get(key, _REQUIRED if default is None else default)
        return self._typed(key, value, "a string", isinstance(value, str))

    def boolean(self, key: str, default: Any = None) -> bool:
        value = self._get(key, _REQUIRED if default is None else default)
        return self._typed(key, value, "true or false", isinstance(value, bool))

    def mapping(self, key: str, default: Any = None, *, optional: bool = False) -> dict | None:
        value = self._get(key, _REQUIRED if default is None and not optional else default)
        if value is None and optional:
            return None
        self._typed(key, value, "a JSON object", isinstance(value, Mapping))
        return dict(value)

    def files(self) -> dict[str, FileRecord]:
        """The ``files`` entry: ``{name: {"size": int, "crc32": int}}``."""
        listed = self.mapping("files")
        records = {}
        for name, record in listed.items():
            fields = _Fields(record, self.source, f"files[{name!r}]")
            records[name] = FileRecord(name, fields.integer("size"), fields.integer("crc32"))
        return records


_REQUIRED = object()


def _kind(value: object) -> str:
    names = {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        type(None): "null",
    }
    return names.get(
        type(value), "an object" if isinstance(value, Mapping) else type(value).__name__
    )


def _files_dict(files: Mapping[str, FileRecord]) -> dict:
    return {name: record.to_dict() for name, record in sorted(files.items())}


@dataclass(frozen=True)
class SearchLayoutRecord:
    """The impact manifest's ``search_layout`` entry: shape of the pruned-search arrays
    (:mod:`sparse_ir.index.layout`), with the layout's own version."""

    num_segments: int
    term_dtype: str
    window_bits: int
    num_windows: int
    version: int = LAYOUT_VERSION

    VERSION: ClassVar[int] = LAYOUT_VERSION

    def to_dict(self) -> dict:
        return {
            "version": self.version,
            "num_segments": self.num_segments,
            "term_dtype": self.term_dtype,
            "window_bits": self.window_bits,
            "num_windows": self.num_windows,
        }

    @classmethod
    def from_dict(cls, d: object, *, source: str | os.PathLike) -> SearchLayoutRecord:
        """Read the entry; a layout version this sparse_ir does not know is refused
        (:class:`IndexFormatError` naming both versions)."""
        fields = _Fields(d, source, "search_layout")
        version = fields.body.get("version")
        if version != cls.VERSION:
            raise IndexFormatError(
                f"{source}: search layout version {version!r}; this sparse_ir reads version "
                f"{cls.VERSION}. Rebuild the index with this version, or use the sparse_ir "
                "that wrote it."
            )
        return cls(
            num_segments=fields.integer("num_segments"),
            term_dtype=fields.string("term_dtype"),
            window_bits=fields.integer("window_bits"),
            num_windows=fields.integer("num_windows"),
            version=version,
        )


@dataclass(frozen=True)
class ImpactManifest:
    """The manifest of an :class:`~sparse_ir.index.ImpactIndex` generation.

    Attributes:
        created_by: ``"sparse_ir <version>"`` of the writer.
        quantizer: the :class:`~sparse_ir.quantize.Quantizer` as a dict (``to_dict`` form).
        vocab_size, vocab_hash: the vocabulary's size and hash (see ``builder.vocab_hash``).
        num_documents, num_postings: counts.
        impact_dtype: numpy dtype string of the impacts (``"|u1"``, ``"<u2"``...).
        max_impact: the largest impact stored.
        has_contents: titles and texts are stored.
        search_layout: the pruned-search arrays' record, or None when they were not built.
        build: what the build recorded (timings, spills, the caller's settings).
        files: every file of the generation, by name.
        doc_ordered_postings: ``postings_docs.bin``/``postings_impacts.bin`` are stored. When
            False (format version 2 only) the search layout holds the postings: its impact
            order and forward index are the only copies.

    An index with the document-ordered postings is written as format version 1 (the bytes
    of earlier versions of sparse_ir, which can still read it); one without them as version
    2, which earlier versions refuse by its version instead of missing a file.
    """

    FORMAT: ClassVar[str] = IMPACT_FORMAT
    FORMAT_VERSION: ClassVar[int] = IMPACT_FORMAT_VERSION
    READ_VERSIONS: ClassVar[tuple[int, ...]] = IMPACT_FORMAT_VERSIONS

    created_by: str
    quantizer: dict
    vocab_size: int
    vocab_hash: str
    num_documents: int
    num_postings: int
    impact_dtype: str
    max_impact: int
    has_contents: bool
    build: dict
    files: dict[str, FileRecord]
    search_layout: SearchLayoutRecord | None = None
    doc_ordered_postings: bool = True

    @property
    def format_version(self) -> int:
        """The version this manifest is written as: 1 with the document-ordered postings."""
        return 1 if self.doc_ordered_postings else self.FORMAT_VERSION

    def to_dict(self) -> dict:
        """The JSON body written as ``manifest.json`` (before its checksum is added)."""
        body = {
            "format": self.FORMAT,
            "format_version": self.format_version,
            "created_by": self.created_by,
            "quantizer": dict(self.quantizer),
            "vocab_size": self.vocab_size,
            "vocab_hash": self.vocab_hash,
            "num_documents": self.num_documents,
            "num_postings": self.num_postings,
            "impact_dtype": self.impact_dtype,
            "max_impact": self.max_impact,
            "has_contents": self.has_contents,
            "build": dict(self.build),
            "files": _files_dict(self.files),
        }
        if self.search_layout is not None:
            body["search_layout"] = self.search_layout.to_dict()
        if not self.doc_ordered_postings:
            body["doc_ordered_postings"] = False
        return body

    @classmethod
    def from_dict(cls, d: object, *, source: str | os.PathLike) -> ImpactManifest:
        """Read a manifest body; ``source`` (the file) is named in every error."""
        fields = _Fields(d, source)
        version = _check_format(fields, cls.FORMAT, cls.READ_VERSIONS)
        layout = fields.mapping("search_layout", optional=True)
        # Version 1 always stored them; version 2 says so.
        doc_ordered = True if version == 1 else fields.boolean("doc_ordered_postings", True)
        return cls(
            created_by=fields.string("created_by", ""),
            quantizer=fields.mapping("quantizer"),
            vocab_size=fields.integer("vocab_size"),
            vocab_hash=fields.string("vocab_hash"),
            num_documents=fields.integer("num_documents"),
            num_postings=fields.integer("num_postings"),
            impact_dtype=fields.string("impact_dtype"),
            max_impact=fields.integer("max_impact"),
            has_contents=fields.boolean("has_contents", False),
            build=fields.mapping("build", {}),
            files=fields.files(),
            search_layout=None
            if layout is None
            else SearchLayoutRecord.from_dict(layout, source=source),
            doc_ordered_postings=doc_ordered,
        )


@dataclass(frozen=True)
class DenseManifest:
    """The manifest of a :class:`~sparse_ir.index.DenseIndex` generation.

    Attributes:
        created_by: ``"sparse_ir <version>"`` of the writer.
        num_documents, dim: the matrix's shape.
        dtype, metric: ``"<f4"`` and ``"inner_product"`` (the only ones written so far).
        normalized: every non-zero row has unit L2 norm.
        zero_vectors: rows that are all zeros.
        hnsw: the HNSW graph's options (``HnswOptions.to_dict``), or None without a graph.
        build: what the build recorded (the encoder's settings, the corpus...).
        files: every file of the generation, by name.
    """

    FORMAT: ClassVar[str] = DENSE_FORMAT
    FORMAT_VERSION: ClassVar[int] = DENSE_FORMAT_VERSION

    created_by: str
    num_documents: int
    dim: int
    normalized: bool
    zero_vectors: int
    build: dict
    files: dict[str, FileRecord]
    hnsw: dict | None = None
    dtype: str = "<f4"
    metric: str = "inner_product"

    def to_dict(self) -> dict:
        """The JSON body written as ``manifest.json`` (before its checksum is added)."""
        return {
            "format": self.FORMAT,
            "format_version": self.FORMAT_VERSION,
            "created_by": self.created_by,
            "num_documents": self.num_documents,
            "dim": self.dim,
            "dtype": self.dtype,
            "metric": self.metric,
            "normalized": self.normalized,
            "zero_vectors": self.zero_vectors,
            "hnsw": None if self.hnsw is None else dict(self.hnsw),
            "build": dict(self.build),
            "files": _files_dict(self.files),
        }

    @classmethod
    def from_dict(cls, d: object, *, source: str | os.PathLike) -> DenseManifest:
        """Read a manifest body; ``source`` (the file) is named in every error."""
        fields = _Fields(d, source)
        _check_format(fields, cls.FORMAT, (cls.FORMAT_VERSION,))
        return cls(
            created_by=fields.string("created_by", ""),
            num_documents=fields.integer("num_documents"),
            dim=fields.integer("dim", minimum=1),
            dtype=fields.string("dtype", "<f4"),
            metric=fields.string("metric", "inner_product"),
            normalized=fields.boolean("normalized", False),
            zero_vectors=fields.integer("zero_vectors", 0),
            hnsw=fields.mapping("hnsw", optional=True),
            build=fields.mapping("build", {}),
            files=fields.files(),
        )


def versions_read(versions: tuple[int, ...]) -> str:
    """``"version 2 (and 1)"``: the newest version read first, as error messages say it."""
    newest = max(versions)
    older = sorted((v for v in versions if v != newest), reverse=True)
    return f"version {newest}" + (f" (and {', '.join(map(str, older))})" if older else "")


def _check_format(fields: _Fields, name: str, versions: tuple[int, ...]) -> int:
    """The format and version a record reads (``read_manifest`` checks them first, with the
    same errors; this keeps ``from_dict`` safe on its own); returns the version."""
    found = fields.body.get("format")
    if found != name:
        raise IndexFormatError(f"{fields.source}: a {found!r} index, not {name!r}")
    found = fields.body.get("format_version")
    if isinstance(found, bool) or found not in versions:
        raise IndexFormatError(
            f"{fields.source}: index format version {found!r}; this "
            f"sparse_ir reads {versions_read(versions)}"
        )
    return found
