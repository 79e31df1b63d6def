"""Segments and commits of a live index: an index directory that takes additions and deletions.

A live index directory holds immutable *segments* and *commits*::

    NAME/CURRENT            "gen-000007 <crc32>": the live commit (the switch of :mod:`.storage`)
    NAME/seg-000003/        one segment: exactly what ``ImpactIndex.build`` / ``DenseIndex.build``
                            writes as a generation (manifest.json + checksummed arrays)
    NAME/gen-000007/        one commit: manifest.json (format ``sparse-ir-segments``: the
                            segment list, the index's fixed settings) + one checksummed
                            deletion bitmap per segment that has deleted documents
                            (``deleted-seg-000003.bin``: packed bits, 1 = deleted) + vocab.json
                            + the ordinals of segments whose ordinals are not one run
                            (``ordinals-seg-000003.bin``) + ``retired.json`` (below)
    NAME/.lock              the write lock (:class:`~sparse_ir.index.storage.WriteLock`: pid)

A commit is published through the same atomic ``CURRENT`` switch as a build
(:meth:`IndexDirectory.publish`), so a reader resolves ``CURRENT`` once and sees exactly one
commit: its segments (never modified) and its bitmaps (never modified). An index made by one
``build()`` is a plain generation; it opens as one segment without deletions, and the first
writer to commit over it links its files into ``seg-000001`` (hard links: no copy, no rebuild).

Removal rule. A commit's directory is deleted when it is more than ``keep_previous`` (1) commits
old and no reader of this process holds it; a segment directory when no remaining commit names
it and no reader of this process holds it. Readers in other processes: a reader maps every
array file when it opens (POSIX keeps a deleted file's data for whoever has it mapped), and an
open that races a commit retries on the new ``CURRENT``; what such a reader cannot do after its
commit was removed is re-read files lazily (``verify()``, a dense index's HNSW graph loaded at
the first ``mode="hnsw"`` search): reopen the index (``ImpactIndex.open(path)``) after a commit
to get a generation that is kept.

Ordinals (format version 2). Every document id has an *ordinal*: the order in which the id
first entered the index (``next_ordinal`` of the commit counts them). An id keeps its ordinal
for good: an upsert, or a delete and a later add of the same id, gives the new document the
old ordinal, also after a merge dropped the deleted document (the ordinals of such ids are
kept in the commit's ``retired.json``, ``{id: ordinal}``). Equal scores are ordered by
ordinal, so a live index ranks exactly like one build of its documents in ordinal order.
A segment holds its documents in ordinal order; its record says ``ordinal_start`` (the
ordinals are one run ``start, start + 1, ...``, the common case) or names its checksummed
ordinals file. A version-1 commit has no ordinals: they are the global document numbers,
and the next commit writes version 2.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import threading
import weakref
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import ClassVar

import numpy as np

from sparse_ir.errors import IndexCorruptError, IndexFormatError
from sparse_ir.index.manifest import DENSE_FORMAT, IMPACT_FORMAT, FileRecord, _Fields, _files_dict
from sparse_ir.index.storage import (
    IndexDirectory,
    check_files_at_open,
    fsync_directory,
    open_array,
    read_manifest,
    read_manifest_unchecked,
    write_array,
    write_manifest,
)

__all__ = [
    "RETIRED_FILE",
    "SEGMENTS_FORMAT",
    "SEGMENTS_FORMAT_VERSION",
    "SEGMENTS_VERSIONS_READ",
    "CommitManifest",
    "SegmentRecord",
    "is_commit",
    "names_in_use",
    "read_commit",
    "read_deletions",
    "read_ordinals",
    "read_retired",
]

SEGMENTS_FORMAT = "sparse-ir-segments"
SEGMENTS_FORMAT_VERSION = 2
# Versions of the commit manifest this sparse_ir reads (1: no ordinals, see the module's note).
SEGMENTS_VERSIONS_READ = (2, 1)
#: The commit file of the ordinals of ids whose documents were deleted and merged away.
RETIRED_FILE = "retired.json"
#: The largest ``next_ordinal`` a commit may record (ordinals are int64; a writer adding a
#: billion documents a second would take 146 years to reach it).
ORDINAL_LIMIT = 1 << 62
_KINDS = (IMPACT_FORMAT, DENSE_FORMAT)
# What a build records of itself (BuildReport.facts): not settings of the index.
_BUILD_FACTS = frozenset(
    ("memory_budget", "runs_spilled", "seconds", "empty_documents", "zeros_dropped", "saturated")
)


@dataclass(frozen=True)
class SegmentRecord:
    """One segment of a commit.

    Attributes:
        name: its directory under the index directory (``seg-NNNNNN``).
        num_documents: documents in the segment (live and deleted).
        deleted: how many of them are deleted.
        deletions: the commit's bitmap file of them, or None when none is deleted.
        ordinal_start: the ordinal of its first document when its ordinals are one run
            (``ordinal_start + local number``); None when they are in a file.
        ordinals: the commit's file of its ordinals (int64, increasing), or None.
    """

    name: str
    num_documents: int
    deleted: int = 0
    deletions: str | None = None
    ordinal_start: int | None = None
    ordinals: str | None = None

    @property
    def live(self) -> int:
        """Documents not deleted."""
        return self.num_documents - self.deleted

    def to_dict(self) -> dict:
        ordinals = (
            {"ordinal_start": self.ordinal_start}
            if self.ordinal_start is not None
            else {"ordinals": self.ordinals}
        )
        return {
            "name": self.name,
            "num_documents": self.num_documents,
            "deleted": self.deleted,
            "deletions": self.deletions,
        } | ordinals

    @classmethod
    def from_dict(
        cls, d: object, *, source: str | os.PathLike, where: str, version: int = 2
    ) -> SegmentRecord:
        """Read one segment record (``version`` 1: no ordinals; the commit fills them in)."""
        fields = _Fields(d, source, where)
        name = fields.string("name")
        if not name.startswith("seg-") or "/" in name or "\\" in name:
            raise IndexCorruptError(f"{source}: {where} names {name!r}, not a segment")
        deletions = fields.body.get("deletions")
        if deletions is not None and not isinstance(deletions, str):
            raise IndexCorruptError(f"{source}: {where}['deletions'] is {deletions!r}")
        start = ordinals = None
        if version >= 2:
            if "ordinal_start" in fields.body:
                start = fields.integer("ordinal_start")
            else:
                ordinals = fields.string("ordinals")
        record = cls(
            name,
            fields.integer("num_documents"),
            fields.integer("deleted"),
            deletions,
            start,
            ordinals,
        )
        if record.deleted > record.num_documents or (record.deleted > 0) != (deletions is not None):
            raise IndexCorruptError(f"{source}: {where} is inconsistent ({record})")
        return record


@dataclass(frozen=True)
class CommitManifest:
    """The manifest of one commit of a live index (format ``sparse-ir-segments``).

    Attributes:
        kind: the segments' format (``IMPACT_FORMAT`` or ``DENSE_FORMAT``).
        created_by: ``"sparse_ir <version>"`` of the writer.
        segments: the segments, in global document-number order.
        next_segment: the number the next new segment gets.
        fixed: what every segment shares, fixed when the index was created: impact indexes
            ``quantizer``, ``vocab_hash``, ``vocab_size``, ``search_layout``; dense ``dim``
            and ``hnsw`` (options or None).
        build: the settings recorded for the index (model, encoder...): ``index.settings``.
        files: the commit's own files (bitmaps, vocab.json), by name.
        pair: the stamp of the last paired change (``sparse-ir add/delete --dense-index``
            writes the same random stamp into both indexes of a hybrid pair; a change made to
            one of them alone afterwards writes a stamp of its own): two indexes of a pair
            whose stamps differ were not changed together. ``""``: never changed as a pair.
        next_ordinal: the ordinal the next new document id gets (see the module's note).
    """

    FORMAT: ClassVar[str] = SEGMENTS_FORMAT
    FORMAT_VERSION: ClassVar[int] = SEGMENTS_FORMAT_VERSION

    kind: str
    created_by: str
    segments: tuple[SegmentRecord, ...]
    next_segment: int
    fixed: dict
    build: dict
    files: dict[str, FileRecord] = field(default_factory=dict)
    pair: str = ""
    next_ordinal: int = 0

    @property
    def num_documents(self) -> int:
        """Live documents."""
        return sum(s.live for s in self.segments)

    @property
    def deleted(self) -> int:
        """Deleted documents still held by segments."""
        return sum(s.deleted for s in self.segments)

    def to_dict(self) -> dict:
        """The JSON body written as ``manifest.json`` (before its checksum is added)."""
        return {
            "format": self.FORMAT,
            "format_version": self.FORMAT_VERSION,
            "kind": self.kind,
            "created_by": self.created_by,
            "segments": [s.to_dict() for s in self.segments],
            "next_segment": self.next_segment,
            "next_ordinal": self.next_ordinal,
            "fixed": dict(self.fixed),
            "build": dict(self.build),
            "files": _files_dict(self.files),
        } | ({"pair": self.pair} if self.pair else {})

    @classmethod
    def from_dict(cls, d: object, *, source: str | os.PathLike) -> CommitManifest:
        """Read a commit manifest body; ``source`` (the file) is named in every error."""
        fields = _Fields(d, source)
        kind = fields.string("kind")
        if kind not in _KINDS:
            raise IndexCorruptError(f"{source}: 'kind' is {kind!r}, not one of {_KINDS}")
        listed = fields.body.get("segments")
        if not isinstance(listed, list):
            raise IndexCorruptError(f"{source}: 'segments' is not a list; the manifest is corrupt")
        version = fields.body.get("format_version")
        version = version if version in SEGMENTS_VERSIONS_READ else SEGMENTS_FORMAT_VERSION
        segments = tuple(
            SegmentRecord.from_dict(s, source=source, where=f"segments[{i}]", version=version)
            for i, s in enumerate(listed)
        )
        if version == 1:  # no ordinals yet: the global document numbers are
            starts = np.concatenate([[0], np.cumsum([s.num_documents for s in segments])])
            segments = tuple(
                replace(s, ordinal_start=int(start)) for s, start in zip(segments, starts)
            )
            next_ordinal = int(starts[-1])
        else:
            next_ordinal = fields.integer("next_ordinal")
        return cls(
            kind=kind,
            created_by=fields.string("created_by", ""),
            segments=segments,
            next_segment=fields.integer("next_segment", minimum=1),
            fixed=fields.mapping("fixed"),
            build=fields.mapping("build", {}),
            files=fields.files(),
            pair=fields.string("pair", ""),
            next_ordinal=next_ordinal,
        )


def is_commit(generation: Path) -> bool:
    """True when a generation directory holds a commit of a live index (not one build)."""
    body, _ = read_manifest_unchecked(generation)
    return body.get("format") == SEGMENTS_FORMAT


def read_commit(generation: Path) -> CommitManifest:
    """Read and check a commit's manifest and the cheap checks of its files (sizes, CRC32)."""
    body = read_manifest(generation, format_name=SEGMENTS_FORMAT, version=SEGMENTS_VERSIONS_READ)
    commit = CommitManifest.from_dict(body, source=generation / "manifest.json")
    check_files_at_open(generation, commit.files, checksum_up_to=16 << 20)
    if commit.next_ordinal > ORDINAL_LIMIT:  # ordinals are int64 in every array that holds one
        raise IndexCorruptError(
            f"{generation / 'manifest.json'}: next_ordinal {commit.next_ordinal} is above "
            f"{ORDINAL_LIMIT}; the manifest is corrupt"
        )
    for record in commit.segments:
        for listed in (record.deletions, record.ordinals):
            if listed is not None and listed not in commit.files:
                raise IndexCorruptError(
                    f"{generation / 'manifest.json'}: {listed} is not among its files"
                )
        if record.ordinal_start is not None and (
            record.ordinal_start + record.num_documents > commit.next_ordinal
        ):
            raise IndexCorruptError(
                f"{generation / 'manifest.json'}: {record.name}'s ordinals "
                f"{record.ordinal_start}..{record.ordinal_start + record.num_documents - 1} "
                f"reach next_ordinal {commit.next_ordinal}; the manifest is corrupt"
            )
    return commit


def commit_from_build(generation: Path, kind: str) -> CommitManifest:
    """The commit equivalent of a single-build generation: one segment, no deletions
    (the segment is named ``seg-000001``; :func:`link_segment` makes it exist)."""
    body, _ = read_manifest_unchecked(generation)
    if body.get("format") != kind:
        raise IndexFormatError(
            f"{generation}: a {body.get('format')!r} index, not {kind!r}: use the writer of "
            "its kind (IndexWriter for impact indexes, DenseIndexWriter for dense ones)"
        )
    build = {k: v for k, v in dict(body.get("build") or {}).items() if k not in _BUILD_FACTS}
    if kind == IMPACT_FORMAT:
        fixed = {
            "quantizer": body["quantizer"],
            "vocab_hash": body["vocab_hash"],
            "vocab_size": body["vocab_size"],
            "search_layout": body.get("search_layout") is not None,
            "contents": bool(body.get("has_contents", False)),
        }
    else:
        fixed = {"dim": body["dim"], "hnsw": body.get("hnsw")}
    documents = int(body["num_documents"])
    return CommitManifest(
        kind=kind,
        created_by=str(body.get("created_by", "")),
        segments=(SegmentRecord("seg-000001", documents, ordinal_start=0),),
        next_segment=2,
        fixed=fixed,
        build=build,
        next_ordinal=documents,
    )


# -- deletion bitmaps ----------------------------------------------------------------------------


def deletions_file(segment: str) -> str:
    """The bitmap file name of a segment inside a commit directory."""
    return f"deleted-{segment}.bin"


def write_deletions(directory: Path, segment: str, deleted: np.ndarray) -> FileRecord:
    """Write a segment's deleted-documents mask as packed bits (little bit order)."""
    packed = np.packbits(np.asarray(deleted, bool), bitorder="little")
    name = deletions_file(segment)
    return write_array(directory / name, "deleted", packed, np.uint8)


def read_deletions(generation: Path, record: SegmentRecord) -> np.ndarray | None:
    """A segment's deleted mask (bool, one per document), or None when nothing is deleted.

    The bitmap's set bits must number exactly ``record.deleted`` (else the commit is corrupt).
    """
    if record.deletions is None:
        return None
    path = generation / record.deletions
    packed = open_array(path, name="deleted", dtype=np.uint8, count=(record.num_documents + 7) // 8)
    deleted = np.unpackbits(packed, count=record.num_documents, bitorder="little").astype(bool)
    if int(deleted.sum()) != record.deleted:
        raise IndexCorruptError(
            f"{path}: {int(deleted.sum())} deleted documents, the manifest records {record.deleted}"
        )
    return deleted


# -- ordinals ------------------------------------------------------------------------------------


def ordinals_file(segment: str) -> str:
    """The ordinals file name of a segment inside a commit directory."""
    return f"ordinals-{segment}.bin"


def read_ordinals(generation: Path, commit: CommitManifest, record: SegmentRecord) -> np.ndarray:
    """A segment's ordinals (int64, one per document, increasing, below ``next_ordinal``).

    Raises :class:`IndexCorruptError` naming the file (or the manifest) when they break a rule.
    """
    if record.ordinal_start is not None:
        return np.arange(
            record.ordinal_start, record.ordinal_start + record.num_documents, dtype=np.int64
        )
    path = generation / str(record.ordinals)
    ordinals = open_array(path, name="ordinals", dtype=np.int64, count=record.num_documents)
    if len(ordinals) and (int(ordinals[0]) < 0 or int(ordinals[-1]) >= commit.next_ordinal):
        raise IndexCorruptError(
            f"{path}: ordinals {int(ordinals[0])}..{int(ordinals[-1])} are not within "
            f"0..{commit.next_ordinal - 1} (next_ordinal of the commit); the file is corrupt"
        )
    if len(ordinals) > 1 and not bool(np.all(ordinals[1:] > ordinals[:-1])):
        position = int(np.flatnonzero(ordinals[1:] <= ordinals[:-1])[0]) + 1
        raise IndexCorruptError(
            f"{path}: ordinal {int(ordinals[position])} of document {position} is not larger "
            f"than the one before ({int(ordinals[position - 1])}): a segment's ordinals "
            "increase; the file is corrupt"
        )
    return ordinals


def read_retired(generation: Path, commit: CommitManifest) -> dict[str, int]:
    """The ordinals of ids whose documents were deleted and merged away, ``{id: ordinal}``
    (distinct, below ``next_ordinal``); empty when the commit has no ``retired.json``."""
    from sparse_ir.index.storage import read_listed_json

    record = commit.files.get(RETIRED_FILE)
    if record is None:
        return {}
    path = generation / RETIRED_FILE
    body = read_listed_json(generation, record)
    if not isinstance(body, dict):
        raise IndexCorruptError(f"{path}: not a JSON object of id: ordinal; the file is corrupt")
    for doc_id, ordinal in body.items():
        if isinstance(ordinal, bool) or not isinstance(ordinal, int):
            raise IndexCorruptError(
                f"{path}: the ordinal of {doc_id!r} is {ordinal!r}, not an integer; "
                "the file is corrupt"
            )
        if not 0 <= ordinal < commit.next_ordinal:
            raise IndexCorruptError(
                f"{path}: the ordinal of {doc_id!r} is {ordinal}, not within "
                f"0..{commit.next_ordinal - 1} (next_ordinal); the file is corrupt"
            )
    if len(set(body.values())) != len(body):
        raise IndexCorruptError(f"{path}: two ids have the same ordinal; the file is corrupt")
    return dict(body)


def _retired_bytes(retired: Mapping[str, int]) -> bytes:
    import json

    return json.dumps(dict(sorted(retired.items(), key=lambda item: item[1]))).encode("utf-8")


# -- readers this process knows of ---------------------------------------------------------------

_readers: weakref.WeakSet = weakref.WeakSet()
_readers_lock = threading.Lock()


def register_reader(reader: object) -> None:
    """Remember an open live index (its ``root`` and ``names_in_use``) until it is collected."""
    with _readers_lock:
        _readers.add(reader)


def names_in_use(root: Path) -> set[str]:
    """Commit and segment directory names that open readers of this process hold in ``root``."""
    root = Path(root).resolve()
    with _readers_lock:
        readers = list(_readers)
    names: set[str] = set()
    for reader in readers:
        if Path(reader.root).resolve() == root:
            names |= set(reader.names_in_use)
    return names


# -- writing segments and commits ----------------------------------------------------------------


def segment_name(number: int) -> str:
    return f"seg-{number:06d}"


@contextlib.contextmanager
def new_segment(root: Path, name: str) -> Iterator[Path]:
    """Yield a temporary directory; on normal exit it becomes the segment ``root/name``
    (files fsynced by their writers, then the directory, the rename and the parent)."""
    temporary = root / f".tmp-{name}-{secrets.token_hex(4)}"
    temporary.mkdir()
    try:
        yield temporary
        fsync_directory(temporary)
        if (root / name).exists():  # left by a writer killed before it committed
            shutil.rmtree(root / name)
        os.rename(temporary, root / name)
        fsync_directory(root)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise


def link_segment(root: Path, generation: Path, name: str) -> None:
    """Make segment ``name`` from a single-build generation: hard links to its files (they
    are never modified), or copies where the file system has no hard links."""
    with new_segment(root, name) as temporary:
        for entry in sorted(generation.iterdir()):
            if entry.is_file():
                try:
                    os.link(entry, temporary / entry.name)
                except OSError:
                    shutil.copyfile(entry, temporary / entry.name)


def publish_commit(
    root: Path,
    commit: CommitManifest,
    deleted: Mapping[str, np.ndarray],
    extra_files: Mapping[str, bytes],
    ordinals: Mapping[str, np.ndarray] | None = None,
    retired: Mapping[str, int] | None = None,
) -> Path:
    """Publish ``commit`` as the next generation (the caller holds the write lock).

    ``deleted``: each segment's mask, for the segments whose record counts deletions;
    ``extra_files``: small files of the commit (vocab.json); ``ordinals``: each segment's
    ordinals (increasing; one run is recorded as its start, anything else as a file; a
    segment absent keeps its record's); ``retired``: the ordinals of ids deleted and merged
    away (see the module's note). Returns the commit's directory.
    """
    from sparse_ir.index.storage import write_bytes_file

    directory = IndexDirectory(root)
    with directory.publish(holding_lock=True, keep=names_in_use(root)) as temporary:
        files = {}
        for name, data in extra_files.items():
            files[name] = write_bytes_file(temporary / name, data)
        if retired:
            files[RETIRED_FILE] = write_bytes_file(
                temporary / RETIRED_FILE, _retired_bytes(retired)
            )
        segments = []
        for record in commit.segments:
            given = None if ordinals is None else ordinals.get(record.name)
            if given is not None:
                given = np.asarray(given, np.int64)
                start = int(given[0]) if len(given) else commit.next_ordinal
                if np.array_equal(given, np.arange(start, start + len(given))):
                    record = replace(record, ordinal_start=start, ordinals=None)
                else:
                    stored = write_array(
                        temporary / ordinals_file(record.name), "ordinals", given, np.int64
                    )
                    files[stored.name] = stored
                    record = replace(record, ordinal_start=None, ordinals=stored.name)
            elif record.ordinal_start is None:  # its file is in the previous commit
                raise ValueError(f"publish_commit: the ordinals of {record.name} are not given")
            mask = deleted.get(record.name)
            count = 0 if mask is None else int(np.count_nonzero(mask))
            if count:
                stored = write_deletions(temporary, record.name, mask)
                files[stored.name] = stored
                segments.append(replace(record, deleted=count, deletions=stored.name))
            else:
                segments.append(replace(record, deleted=0, deletions=None))
        final = replace(commit, segments=tuple(segments), files=files)
        write_manifest(temporary, final.to_dict())
    remove_unused_segments(root)
    return directory.current()


def remove_unused_segments(root: Path) -> list[str]:
    """Delete segment directories no remaining commit names and no reader here holds
    (call with the write lock held). Returns the names removed."""
    directory = IndexDirectory(root)
    wanted = names_in_use(root)
    for _, generation in directory.generations():
        with contextlib.suppress(OSError, IndexCorruptError):
            body, _ = read_manifest_unchecked(generation)
            if body.get("format") == SEGMENTS_FORMAT:
                wanted |= {str(s.get("name")) for s in body.get("segments", [])}
    removed = []
    for entry in sorted(Path(root).iterdir()):
        if entry.name.startswith("seg-") and entry.name not in wanted:
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry.name)
    return removed
