"""Segments and commits of a live index: an index directory that takes additions and deletions.

A live index directory holds immutable *segments* and *commits*::

    NAME/CURRENT            "gen-000007 <crc32>": the live commit (the switch of :mod:`.storage`)
    NAME/seg-000003/        one segment: exactly what ``ImpactIndex.build`` / ``DenseIndex.build``
                            writes as a generation (manifest.json + checksummed arrays)
    NAME/gen-000007/        one commit: manifest.json (format ``sparse-ir-segments``: the
                            segment list, the index's fixed settings) + one checksummed
                            deletion bitmap per segment that has deleted documents
                            (``deleted-seg-000003.bin``: packed bits, 1 = deleted) + vocab.json
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
    "SEGMENTS_FORMAT",
    "SEGMENTS_FORMAT_VERSION",
    "CommitManifest",
    "SegmentRecord",
    "is_commit",
    "names_in_use",
    "read_commit",
    "read_deletions",
]

SEGMENTS_FORMAT = "sparse-ir-segments"
SEGMENTS_FORMAT_VERSION = 1
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
    """

    name: str
    num_documents: int
    deleted: int = 0
    deletions: str | None = None

    @property
    def live(self) -> int:
        """Documents not deleted."""
        return self.num_documents - self.deleted

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "num_documents": self.num_documents,
            "deleted": self.deleted,
            "deletions": self.deletions,
        }

    @classmethod
    def from_dict(cls, d: object, *, source: str | os.PathLike, where: str) -> SegmentRecord:
        fields = _Fields(d, source, where)
        name = fields.string("name")
        if not name.startswith("seg-") or "/" in name or "\\" in name:
            raise IndexCorruptError(f"{source}: {where} names {name!r}, not a segment")
        deletions = fields.body.get("deletions")
        if deletions is not None and not isinstance(deletions, str):
            raise IndexCorruptError(f"{source}: {where}['deletions'] is {deletions!r}")
        record = cls(name, fields.integer("num_documents"), fields.integer("deleted"), deletions)
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
        segments = tuple(
            SegmentRecord.from_dict(s, source=source, where=f"segments[{i}]")
            for i, s in enumerate(listed)
        )
        return cls(
            kind=kind,
            created_by=fields.string("created_by", ""),
            segments=segments,
            next_segment=fields.integer("next_segment", minimum=1),
            fixed=fields.mapping("fixed"),
            build=fields.mapping("build", {}),
            files=fields.files(),
            pair=fields.string("pair", ""),
        )


def is_commit(generation: Path) -> bool:
    """True when a generation directory holds a commit of a live index (not one build)."""
    body, _ = read_manifest_unchecked(generation)
    return body.get("format") == SEGMENTS_FORMAT


def read_commit(generation: Path) -> CommitManifest:
    """Read and check a commit's manifest and the cheap checks of its files (sizes, CRC32)."""
    body = read_manifest(generation, format_name=SEGMENTS_FORMAT, version=SEGMENTS_FORMAT_VERSION)
    commit = CommitManifest.from_dict(body, source=generation / "manifest.json")
    check_files_at_open(generation, commit.files, checksum_up_to=16 << 20)
    for record in commit.segments:
        if record.deletions is not None and record.deletions not in commit.files:
            raise IndexCorruptError(
                f"{generation / 'manifest.json'}: {record.deletions} is not among its files"
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
    return CommitManifest(
        kind=kind,
        created_by=str(body.get("created_by", "")),
        segments=(SegmentRecord("seg-000001", int(body["num_documents"])),),
        next_segment=2,
        fixed=fixed,
        build=build,
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
) -> Path:
    """Publish ``commit`` as the next generation (the caller holds the write lock).

    ``deleted``: each segment's mask, for the segments whose record counts deletions;
    ``extra_files``: small files of the commit (vocab.json). Returns the commit's directory.
    """
    from sparse_ir.index.storage import write_bytes_file

    directory = IndexDirectory(root)
    with directory.publish(holding_lock=True, keep=names_in_use(root)) as temporary:
        files = {}
        for name, data in extra_files.items():
            files[name] = write_bytes_file(temporary / name, data)
        segments = []
        for record in commit.segments:
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
