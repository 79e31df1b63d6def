"""Sharded indexes: N shard indexes named by one small checksummed manifest, searched as one.

A collection too large for one build (or one machine) is split into shards, each an ordinary
index (:class:`~sparse_ir.index.ImpactIndex` or :class:`~sparse_ir.index.DenseIndex`) built
on its own — in parallel, on Ray (:mod:`sparse_ir.distributed`), or here one after another.
The sharded-index directory holds them and a ``manifest.json`` naming them::

    manifest.json      format, version, kind facts (vocabulary hash + quantizer, or dim),
                       and per shard: its directory, pinned generation, the CRC32 of that
                       generation's manifest and its number of documents
    shard-00000/       an index directory (CURRENT, gen-000001/...)
    shard-00001/
    ...

Rules the manifest guarantees (checked when it is written, and again by :meth:`verify`):

* every sparse shard has the same vocabulary and the same :class:`~sparse_ir.quantize.Quantizer`
  (the *global* quantizer), so a document's integer impacts are those a single index over the
  whole collection would hold, and the shards' scores are comparable;
* every dense shard has the same dimension;
* document ids are unique across shards.

Global document numbers are the shards laid end to end (:func:`~sparse_ir.index.composite.
part_offsets`), and every search merges the shards' exact top-k lists with
:func:`~sparse_ir.index.composite.merge_topk` — the merge the live index uses for its segments —
so a sharded index returns exactly what one index over all documents (in shard order) returns.
Equal scores are ordered by global document number: shard order, then the shard's own document
number (a single build's ordinal is its document number).

Shards are single builds. A live index (:mod:`~sparse_ir.index.segments`: segments, deletions,
ordinals) is refused as a shard — by :func:`write_sharded_manifest` and when a manifest naming
one is opened — with an error naming it: its document numbers are not its tie order (ordinals),
and its documents change under a manifest that pins one generation.

The manifest pins one generation of each shard: rebuilding a shard in place publishes a new
generation that the manifest does not name, so the sharded index keeps searching the pinned
one (kept by the shard's ``keep_previous``) until :func:`write_sharded_manifest` names the new
one; once the pinned generation is gone, opening says so instead of mixing two builds.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterable, Sequence
from itertools import repeat
from pathlib import Path
from typing import ClassVar

import numpy as np

from sparse_ir.errors import IndexCorruptError, IndexFormatError, InputError
from sparse_ir.index.composite import merge_topk, part_offsets
from sparse_ir.index.impact_index import QueryLike, TopK
from sparse_ir.index.storage import (
    IndexDirectory,
    fsync_directory,
    read_manifest,
    read_manifest_unchecked,
    write_manifest,
)
from sparse_ir.quantize import Quantizer
from sparse_ir.results import Hit, Run
from sparse_ir.sparse_batch import SparseBatch

__all__ = [
    "SHARDED_IMPACT_FORMAT",
    "SHARDED_DENSE_FORMAT",
    "SHARDED_FORMAT_VERSION",
    "ShardRecord",
    "ShardedIndex",
    "ShardedDenseIndex",
    "shard_name",
    "global_quantizer",
    "write_sharded_manifest",
    "open_sharded",
    "open_sharded_kind",
]

SHARDED_IMPACT_FORMAT = "sparse-ir-sharded-impact-index"
SHARDED_DENSE_FORMAT = "sparse-ir-sharded-dense-index"
SHARDED_FORMAT_VERSION = 1


def shard_name(number: int) -> str:
    """The directory name of shard ``number`` inside a sharded index.

    Example:
        >>> shard_name(3)
        'shard-00003'
    """
    if number < 0:
        raise ValueError(f"shard numbers are >= 0, got {number}")
    return f"shard-{number:05d}"


def global_quantizer(
    max_weights: Iterable[float], *, bits: int | None = None, scale: float | None = None
) -> Quantizer:
    """The one quantizer of every shard, chosen so each shard's impacts equal a single build's.

    A fixed ``scale`` (the single-machine default, 100) needs no look at the data: every shard
    quantizes with ``Quantizer(scale)``. A fitted ``bits``-bit quantizer depends on the largest
    weight of the *whole* collection (:meth:`Quantizer.fit`): give each shard's largest weight
    (recorded when it was encoded) and the maximum of them decides, exactly as ``fit`` over all
    shards at once would.

    Example:
        >>> global_quantizer([1.5, 3.0, 2.0], bits=8)
        Quantizer(scale=85.0, max_impact=255)
        >>> global_quantizer([], scale=100.0)
        Quantizer(scale=100.0, max_impact=65535)
    """
    if bits is None:
        return Quantizer(scale=100.0 if scale is None else scale)
    if scale is not None:
        raise ValueError("give bits (a fitted quantizer) or scale (a fixed one), not both")
    top = max((float(w) for w in max_weights), default=0.0)
    if top <= 0:
        raise InputError("cannot fit a quantizer: the shards have no positive weight")
    return Quantizer.for_max_weight(top, bits)


class ShardRecord:
    """One shard as the manifest names it: directory (relative), generation, its manifest's
    CRC32 and number of documents."""

    __slots__ = ("path", "generation", "manifest_crc32", "num_documents")

    def __init__(self, path: str, generation: str, manifest_crc32: int, num_documents: int):
        self.path = path
        self.generation = generation
        self.manifest_crc32 = manifest_crc32
        self.num_documents = num_documents

    def to_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.__slots__}

    @classmethod
    def from_dict(cls, data: object, *, source: Path) -> ShardRecord:
        if not isinstance(data, dict) or set(data) != set(cls.__slots__):
            raise IndexCorruptError(f"{source}: a shard entry is not {list(cls.__slots__)}")
        path, generation = data["path"], data["generation"]
        for label, value in (("path", path), ("generation", generation)):
            if not isinstance(value, str) or not value or "/" in value or value.startswith("."):
                raise IndexCorruptError(f"{source}: shard {label} {value!r} is not a plain name")
        for label in ("manifest_crc32", "num_documents"):
            if not isinstance(data[label], int) or data[label] < 0:
                raise IndexCorruptError(f"{source}: shard {label} {data[label]!r} is invalid")
        return cls(path, generation, data["manifest_crc32"], data["num_documents"])


def _shard_facts(directory: Path, shard: str) -> tuple[ShardRecord, dict]:
    """The record of the live generation of ``directory / shard`` and its manifest body."""
    generation = IndexDirectory(directory / shard).current()
    body, problem = read_manifest_unchecked(generation)
    if problem:
        raise IndexCorruptError(f"{generation / 'manifest.json'}: {problem}")
    from sparse_ir.index.storage import _manifest_checksum

    record = ShardRecord(
        shard,
        generation.name,
        _manifest_checksum(body),
        int(body.get("num_documents", -1)),
    )
    return record, body


def write_sharded_manifest(
    path: str | os.PathLike, shards: Sequence[str], *, settings: dict | None = None
) -> Path:
    """Name the shard indexes in ``path`` (directory names, in document order) in a new
    manifest, after checking that they fit together (see the module's rules); publish it
    atomically. Returns the manifest's path.

    The shards' kind (impact or dense) decides the sharded index's kind.

    Raises:
        InputError: shards of different kinds, vocabularies, quantizers or dimensions, or a
            document id held by two shards (both shards named).
    """
    from sparse_ir.index.manifest import DENSE_FORMAT, IMPACT_FORMAT

    directory = Path(path)
    if not shards:
        raise InputError(f"{directory}: a sharded index needs at least one shard")
    records, bodies = zip(*(_shard_facts(directory, s) for s in shards))
    from sparse_ir.index.segments import SEGMENTS_FORMAT

    for record, shard_body in zip(records, bodies):
        if shard_body.get("format") == SEGMENTS_FORMAT:
            raise InputError(_LIVE_SHARD.format(where=directory, shard=record.path))
    kinds = {b.get("format") for b in bodies}
    if kinds == {IMPACT_FORMAT}:
        body = _impact_facts(records, bodies)
        body["format"] = SHARDED_IMPACT_FORMAT
    elif kinds == {DENSE_FORMAT}:
        body = _dense_facts(records, bodies)
        body["format"] = SHARDED_DENSE_FORMAT
    else:
        raise InputError(f"{directory}: shards of several kinds {sorted(map(str, kinds))}")
    _check_unique_ids(directory, records)
    body.update(
        format_version=SHARDED_FORMAT_VERSION,
        num_documents=sum(r.num_documents for r in records),
        shards=[r.to_dict() for r in records],
        settings=dict(settings or {}),
    )
    temporary = directory / f".tmp-manifest-{secrets.token_hex(4)}"
    temporary.mkdir()
    try:
        write_manifest(temporary, body)
        os.replace(temporary / "manifest.json", directory / "manifest.json")
        fsync_directory(directory)
    finally:
        with contextlib.suppress(OSError):
            (temporary / "manifest.json").unlink()
        with contextlib.suppress(OSError):
            temporary.rmdir()
    return directory / "manifest.json"


_LIVE_SHARD = (
    "{where}: shard {shard} is a live index (a commit of segments); a sharded index holds "
    "single builds only (ties by global document number, one pinned generation per shard). "
    "Build each shard with ImpactIndex.build or DenseIndex.build (ShardedIndex.build does), "
    "or search the live index on its own"
)


def _impact_facts(records, bodies) -> dict:
    first = bodies[0]
    for record, body in zip(records[1:], bodies[1:]):
        for key in ("vocab_hash", "quantizer"):
            if body.get(key) != first.get(key):
                raise InputError(
                    f"shard {record.path} has another {key} than shard {records[0].path} "
                    f"({body.get(key)!r} vs {first.get(key)!r}): build every shard with the "
                    "same model and the global quantizer"
                )
    return {
        "vocab_hash": first["vocab_hash"],
        "vocab_size": first["vocab_size"],
        "quantizer": first["quantizer"],
    }


def _dense_facts(records, bodies) -> dict:
    first = bodies[0]
    for record, body in zip(records[1:], bodies[1:]):
        if body.get("dim") != first.get("dim"):
            raise InputError(
                f"shard {record.path} holds {body.get('dim')}-d vectors, shard "
                f"{records[0].path} {first.get('dim')}-d: build every shard with one model"
            )
    return {"dim": first["dim"]}


def _check_unique_ids(directory: Path, records) -> None:
    from sparse_ir.index.strings import StringColumn

    owner: dict[str, str] = {}
    for record in records:
        generation = directory / record.path / record.generation
        for doc_id in StringColumn(generation, "doc_ids", record.num_documents).all():
            previous = owner.setdefault(doc_id, record.path)
            if previous != record.path:
                raise InputError(
                    f"document id {doc_id!r} is in shard {previous} and in shard {record.path}: "
                    "ids must be unique across shards"
                )
    total = sum(r.num_documents for r in records)
    if len(owner) != total:
        raise InputError(f"{directory}: a shard lists one of its own document ids twice")


class _ShardedBase:
    """What both sharded kinds share: the manifest, the shards, global numbering and ids."""

    FORMAT: ClassVar[str]

    @classmethod
    def _shard_class(cls) -> type:
        """The index class of one shard (imported when first needed: numba is not cheap)."""
        raise NotImplementedError

    def __init__(self, directory: Path, body: dict, shards: list):
        self.directory = directory
        self._body = body
        self.shards = shards
        self.records = [ShardRecord.from_dict(s, source=directory) for s in body["shards"]]
        self.offsets = part_offsets([shard.num_documents for shard in shards])
        self._doc_id_list: list[str] | None = None
        self._docnos: dict[str, int] | None = None

    @classmethod
    def open(cls, path: str | os.PathLike, *, verify: bool = False):
        """Open the sharded index at ``path``: its manifest, then each pinned shard.

        Raises:
            FileNotFoundError: nothing at ``path``.
            IndexFormatError: not this kind of sharded index, or another format version.
            IndexCorruptError: a damaged manifest, a missing shard, or a shard whose live
                generation is not the one the manifest names (rebuilt since).
        """
        directory = Path(path)
        body, records = cls.read_manifest(directory)
        shards = [cls._open_shard(directory, record) for record in records]
        index = cls(directory, body, shards)
        index._check_shards()
        if verify:
            index.verify()
        return index

    @classmethod
    def read_manifest(cls, path: str | os.PathLike) -> tuple[dict, list[ShardRecord]]:
        """The checked manifest body of the sharded index at ``path`` and its shard records
        (without opening any shard: what a coordinator needs to place shards)."""
        directory = Path(path)
        if not directory.exists():
            raise FileNotFoundError(f"no index at {directory}")
        body = read_manifest(directory, format_name=cls.FORMAT, version=SHARDED_FORMAT_VERSION)
        if not isinstance(body.get("shards"), list) or not body["shards"]:
            raise IndexCorruptError(f"{directory / 'manifest.json'}: no shard list")
        source = directory / "manifest.json"
        return body, [ShardRecord.from_dict(entry, source=source) for entry in body["shards"]]

    @classmethod
    def open_shards(cls, path: str | os.PathLike, numbers: Sequence[int]) -> list:
        """Open only the shards ``numbers`` (memory-mapped, checked against the manifest):
        what a worker holding a group of shards opens."""
        body, records = cls.read_manifest(path)
        for number in numbers:
            if not 0 <= number < len(records):
                raise ValueError(f"{path}: no shard {number} (it has {len(records)})")
        return [cls._open_shard(Path(path), records[number]) for number in numbers]

    @classmethod
    def _open_shard(cls, directory: Path, record: ShardRecord):
        from sparse_ir.index.storage import _manifest_checksum

        generation = directory / record.path / record.generation
        if not generation.is_dir():
            raise IndexCorruptError(
                f"{directory}: shard {record.path}'s generation {record.generation} is missing "
                "(the shard was rebuilt or removed; write the sharded manifest again)"
            )
        from sparse_ir.index.segments import is_commit

        if is_commit(generation):  # opened as a live index, it would tie by document number
            raise IndexFormatError(
                _LIVE_SHARD.format(where=directory, shard=f"{record.path}/{record.generation}")
            )
        shard = cls._shard_class().open(generation)
        if _manifest_checksum(shard.manifest.to_dict()) != record.manifest_crc32:
            raise IndexCorruptError(
                f"{directory}: shard {record.path} is not the index the manifest names "
                "(its manifest checksum differs)"
            )
        return shard

    def _check_shards(self) -> None:
        total = 0
        for record, shard in zip(self.records, self.shards):
            if shard.num_documents != record.num_documents:
                raise IndexCorruptError(
                    f"{self.directory}: shard {record.path} holds {shard.num_documents} "
                    f"documents, the manifest says {record.num_documents}"
                )
            total += shard.num_documents
        if total != self._body.get("num_documents"):
            raise IndexCorruptError(f"{self.directory}: the shards' sizes do not add up")

    def verify(self) -> None:
        """Every shard's :meth:`verify`, then the rules across shards (ids unique, one
        vocabulary and quantizer, or one dimension). Raises :class:`IndexCorruptError`."""
        for record, shard in zip(self.records, self.shards):
            try:
                shard.verify()
            except IndexCorruptError as error:
                raise IndexCorruptError(f"shard {record.path}: {error}") from None
        if len(set(self.doc_ids)) != self.num_documents:
            raise IndexCorruptError(f"{self.directory}: document ids are not unique across shards")

    # -- facts --------------------------------------------------------------------------------

    @property
    def num_documents(self) -> int:
        """Documents of all shards."""
        return int(self.offsets[-1])

    @property
    def num_shards(self) -> int:
        """Number of shards."""
        return len(self.shards)

    @property
    def settings(self) -> dict:
        """The first shard's build facts, overlaid with the sharded manifest's settings."""
        return {**self.shards[0].settings, **self._body.get("settings", {})}

    @property
    def doc_ids(self) -> list[str]:
        """External id of every document, by global document number."""
        if self._doc_id_list is None:
            self._doc_id_list = [doc_id for shard in self.shards for doc_id in shard.doc_ids]
        return self._doc_id_list

    def docno(self, doc_id: str) -> int:
        """Global number of an external id (KeyError if absent)."""
        if self._docnos is None:
            self._docnos = {d: i for i, d in enumerate(self.doc_ids)}
        return self._docnos[doc_id]

    def locate(self, docno: int) -> tuple[int, int]:
        """``(shard number, shard-local document number)`` of a global document number."""
        if not 0 <= docno < self.num_documents:
            raise IndexError(f"document {docno} is outside 0..{self.num_documents - 1}")
        shard = int(np.searchsorted(self.offsets, docno, side="right")) - 1
        return shard, int(docno - self.offsets[shard])

    def size_bytes(self) -> int:
        """Bytes on disk of the shards' pinned generations."""
        return sum(shard.size_bytes() for shard in self.shards)

    def metadata_column(self, field: str):
        """Field filters need metadata columns, which sharded indexes do not merge yet."""
        raise InputError(
            f"filter on field {field!r}: {self.directory} is a sharded index, and sharded "
            "indexes do not support metadata field filters yet; filter by ids or a mask"
        )

    def _shard_filters(self, filter) -> list:  # noqa: A002 (the public name)
        """Each shard's slice of a global ``filter=`` (None: every document allowed)."""
        from sparse_ir.index.filters import allowed_documents

        allowed = allowed_documents(filter, self)
        if allowed is None:
            return [None] * len(self.shards)
        bounds = zip(self.offsets[:-1].tolist(), self.offsets[1:].tolist())
        return [np.ascontiguousarray(allowed[a:b]).view(bool) for a, b in bounds]

    def _hits(self, top: TopK) -> list[Hit]:
        docs, scores = top.docnos.tolist(), top.scores.tolist()
        return list(
            map(
                tuple.__new__,
                repeat(Hit, len(docs)),
                zip(map(self.doc_ids.__getitem__, docs), scores, docs),
            )
        )

    def _merge_runs(self, runs: Sequence[Run], ids: Sequence[str], k: int, merge) -> Run:
        """One run from each shard's run (shard-local numbers), merged query by query."""
        merged = Run(name=runs[0].name if runs else "sparse-ir")
        starts = self.offsets[:-1]
        for qid in ids:
            parts = [_as_topk(run.results.get(qid, [])) for run in runs]
            merged.results[qid] = self._hits(merge(parts, starts, k))
        return merged

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({str(self.directory)!r}, shards={self.num_shards}, "
            f"documents={self.num_documents})"
        )


def _as_topk(hits: Sequence[Hit]) -> TopK:
    return TopK(
        np.fromiter((h.docno for h in hits), np.int64, len(hits)),
        np.array([h.score for h in hits]),
    )


class ShardedIndex(_ShardedBase):
    """Impact-index shards searched as one index (exactly: see the module docstring).

    The search API is :class:`~sparse_ir.index.ImpactIndex`'s (``search``, ``search_arrays``,
    ``search_batch``, ``explain``, ``prepare_query``, ``vocab``, ``quantizer``, ``doc_ids``,
    ``settings``...), so a :class:`~sparse_ir.search.Searcher` searches it unchanged.

    Example:
        >>> import tempfile
        >>> from sparse_ir import SparseBatch
        >>> vocab = ("cat", "dog")
        >>> shards = [SparseBatch.from_dicts([{"cat": 3, "dog": 1}, {"dog": 2}], vocab, ["a", "b"]),
        ...           SparseBatch.from_dicts([{"cat": 1}, {"cat": 3}], vocab, ["c", "d"])]
        >>> index = ShardedIndex.build(shards, tempfile.mkdtemp() + "/sharded",
        ...                            show_progress=False)
        >>> index.num_shards, index.num_documents
        (2, 4)
        >>> [(hit.doc_id, hit.score) for hit in index.search({"cat": 2, "dog": 1}, k=3)]
        [('a', 7), ('d', 6), ('b', 2)]
    """

    FORMAT = SHARDED_IMPACT_FORMAT

    @classmethod
    def build(
        cls,
        shards: Iterable[SparseBatch | Iterable[SparseBatch]],
        path: str | os.PathLike,
        *,
        quantizer: Quantizer | None = None,
        settings: dict | None = None,
        **options,
    ) -> ShardedIndex:
        """Build one impact index per item of ``shards`` (a SparseBatch, or an iterable of
        them) into ``path/shard-NNNNN`` with one ``quantizer`` (default ``Quantizer()``),
        one after another, then write the sharded manifest. ``options`` go to
        :meth:`ImpactIndex.build` (``memory_budget``, ``contents``, ``show_progress``...).
        """
        from sparse_ir.index.impact_index import ImpactIndex

        directory = Path(path)
        directory.mkdir(parents=True, exist_ok=True)
        quantizer = quantizer or Quantizer()
        names = []
        for number, vectors in enumerate(shards):
            names.append(shard_name(number))
            ImpactIndex.build(
                vectors,
                directory / names[-1],
                quantizer=quantizer,
                settings=settings,
                **options,
            )
        write_sharded_manifest(directory, names, settings=settings)
        return cls.open(directory)

    @classmethod
    def _shard_class(cls) -> type:
        from sparse_ir.index.impact_index import ImpactIndex

        return ImpactIndex

    def __init__(self, directory: Path, body: dict, shards: list):
        super().__init__(directory, body, shards)
        first = shards[0]
        self.quantizer: Quantizer = first.quantizer
        self.vocab: tuple[str, ...] = first.vocab
        for record, shard in zip(self.records, shards):
            if shard.vocab_hash != body["vocab_hash"] or shard.quantizer.to_dict() != body.get(
                "quantizer"
            ):
                raise IndexCorruptError(
                    f"{directory}: shard {record.path}'s vocabulary or quantizer is not the "
                    "manifest's"
                )

    # -- facts ----------------------------------------------------------------------------------

    vocab_size = property(lambda self: self.shards[0].vocab_size, doc="Vocabulary size.")
    vocab_hash = property(lambda self: self.shards[0].vocab_hash, doc="Vocabulary hash.")
    num_postings = property(
        lambda self: sum(s.num_postings for s in self.shards), doc="Postings of all shards."
    )
    max_impact = property(
        lambda self: max(s.max_impact for s in self.shards), doc="Largest impact stored."
    )
    has_contents = property(
        lambda self: all(s.has_contents for s in self.shards), doc="Titles and texts stored."
    )
    has_search_layout = property(
        lambda self: all(s.has_search_layout for s in self.shards),
        doc="Every shard has the pruned/approximate arrays.",
    )

    @property
    def manifest(self):
        """The first shard's manifest record (what a single index's ``manifest`` offers)."""
        return self.shards[0].manifest

    def term_id(self, token: str) -> int | None:
        """Term id of a token (the shards share one vocabulary)."""
        return self.shards[0].term_id(token)

    def document(self, docno: int) -> tuple[str, str] | None:
        """Stored ``(title, text)`` of a global document number, or None."""
        shard, local = self.locate(docno)
        return self.shards[shard].document(local)

    def prepare_query(self, query: QueryLike) -> tuple[np.ndarray, np.ndarray]:
        """Term ids and integer weights of a query (:meth:`ImpactIndex.prepare_query`)."""
        return self.shards[0].prepare_query(query)

    # -- search ---------------------------------------------------------------------------------

    def search_arrays(
        self,
        query: QueryLike,
        k: int = 10,
        *,
        mode=None,
        filter=None,  # noqa: A002
    ) -> TopK:
        """The exact merge of every shard's top-``k``, with global document numbers
        (``filter``: over global document numbers, as in :meth:`ImpactIndex.search`)."""
        prepared = self.prepare_query(query)
        parts = [
            shard.search_arrays(prepared, k, mode=mode, filter=part)
            for shard, part in zip(self.shards, self._shard_filters(filter))
        ]
        return merge_topk(parts, self.offsets[:-1], k)

    def search(
        self,
        query: QueryLike,
        k: int = 10,
        *,
        mode=None,
        filter=None,  # noqa: A002
    ) -> list[Hit]:
        """The top-``k`` documents of all shards (see :meth:`ImpactIndex.search`)."""
        return self._hits(self.search_arrays(query, k, mode=mode, filter=filter))

    def search_batch(
        self,
        queries: SparseBatch | Sequence[QueryLike],
        k: int = 10,
        *,
        query_ids: Sequence[str] | None = None,
        mode=None,
        threads: int | None = None,
        filter=None,  # noqa: A002 (the public name)
    ) -> Run:
        """:meth:`ImpactIndex.search_batch` on every shard, merged query by query."""
        runs = [
            shard.search_batch(
                queries, k, query_ids=query_ids, mode=mode, threads=threads, filter=part
            )
            for shard, part in zip(self.shards, self._shard_filters(filter))
        ]
        return self._merge_runs(runs, list(runs[0].results), k, merge_topk)

    def reference_search(self, query: QueryLike, k: int = 10) -> list[Hit]:
        """Brute force over every shard, merged (slow; for tests)."""
        parts = [_as_topk(shard.reference_search(query, k)) for shard in self.shards]
        return self._hits(merge_topk(parts, self.offsets[:-1], k))

    def explain(self, query: QueryLike, docno: int):
        """Each query term's contribution to a document's score (global number)."""
        shard, local = self.locate(docno)
        return self.shards[shard].explain(query, local)


class ShardedDenseIndex(_ShardedBase):
    """Dense-index shards searched as one :class:`~sparse_ir.index.DenseIndex` (``search``,
    ``search_batch``, ``dim``, ``doc_ids``, ``settings``), so a
    :class:`~sparse_ir.search.DenseSearcher` and a hybrid over a sharded pair work unchanged.

    Example:
        >>> import tempfile
        >>> import numpy as np
        >>> shards = [(["a", "b"], np.eye(3, dtype=np.float32)[:2]),
        ...           (["c"], np.eye(3, dtype=np.float32)[2:])]
        >>> index = ShardedDenseIndex.build(shards, tempfile.mkdtemp() + "/dense")
        >>> [hit.doc_id for hit in index.search(np.array([0.1, 0.0, 1.0]), k=2)]
        ['c', 'a']
    """

    FORMAT = SHARDED_DENSE_FORMAT

    @classmethod
    def build(
        cls,
        shards: Iterable[tuple[Sequence[str], np.ndarray]],
        path: str | os.PathLike,
        *,
        settings: dict | None = None,
        **options,
    ) -> ShardedDenseIndex:
        """One :class:`DenseIndex` per ``(ids, vectors)`` item of ``shards`` in
        ``path/shard-NNNNN``, then the sharded manifest. ``options`` go to
        :meth:`DenseIndex.build`."""
        from sparse_ir.index.dense import DenseIndex

        directory = Path(path)
        directory.mkdir(parents=True, exist_ok=True)
        names = []
        for number, (ids, vectors) in enumerate(shards):
            names.append(shard_name(number))
            DenseIndex.build(
                vectors, directory / names[-1], ids=list(ids), settings=settings, **options
            )
        write_sharded_manifest(directory, names, settings=settings)
        return cls.open(directory)

    @classmethod
    def _shard_class(cls) -> type:
        from sparse_ir.index.dense import DenseIndex

        return DenseIndex

    @property
    def dim(self) -> int:
        """Vector dimension."""
        return self.shards[0].dim

    @property
    def has_hnsw(self) -> bool:
        """Every shard has an HNSW graph."""
        return all(shard.has_hnsw for shard in self.shards)

    def search(
        self,
        query: np.ndarray,
        k: int = 10,
        *,
        mode="exact",
        filter=None,
        **options,  # noqa: A002
    ) -> list[Hit]:
        """The top-``k`` documents of all shards for one query vector."""
        array = np.asarray(query)
        if array.ndim == 1:
            array = array[None, :]
        if len(array) != 1:
            raise InputError(f"search takes one query vector; got {len(array)} (use search_batch)")
        return self.search_batch(array, k, mode=mode, filter=filter, **options).results["0"]

    def search_batch(
        self,
        queries: np.ndarray,
        k: int = 10,
        *,
        query_ids: Sequence[str] | None = None,
        mode="exact",
        filter=None,  # noqa: A002 (the public name)
        **options,
    ) -> Run:
        """:meth:`DenseIndex.search_batch` on every shard, merged query by query."""
        runs = [
            shard.search_batch(queries, k, query_ids=query_ids, mode=mode, filter=part, **options)
            for shard, part in zip(self.shards, self._shard_filters(filter))
        ]
        return self._merge_runs(runs, list(runs[0].results), k, merge_topk)


SHARDED_KINDS = {SHARDED_IMPACT_FORMAT: ShardedIndex, SHARDED_DENSE_FORMAT: ShardedDenseIndex}


def open_sharded_kind(path: str | os.PathLike) -> type:
    """:class:`ShardedIndex` or :class:`ShardedDenseIndex`: the class of the sharded index at
    ``path``, by its manifest's format (IndexFormatError for anything else)."""
    directory = Path(path)
    if not directory.exists():
        raise FileNotFoundError(f"no index at {directory}")
    body, _ = read_manifest_unchecked(directory)
    kind = SHARDED_KINDS.get(body.get("format"))
    if kind is None:
        from sparse_ir.errors import IndexFormatError

        raise IndexFormatError(f"{path}: a {body.get('format')!r} index, not a sharded index")
    return kind


def open_sharded(path: str | os.PathLike, *, verify: bool = False):
    """The :class:`ShardedIndex` or :class:`ShardedDenseIndex` at ``path`` (by its manifest)."""
    return open_sharded_kind(path).open(path, verify=verify)
