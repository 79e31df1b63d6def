"""Writers of a live index: add, replace and delete documents, then commit, without a rebuild.

:class:`IndexWriter` (impact indexes) and :class:`DenseIndexWriter` (dense indexes) have one
shape::

    with IndexWriter.open("index", vocab=vocab) as writer:   # creates an empty index if none
        writer.add(batch)              # new ids (an id already live is an error)
        writer.upsert(batch)           # replace the documents of these ids, add the others
        writer.delete(["d7", "d9"])    # -> DeleteResult(deleted=..., missing=...)
        writer.commit()                # publish: readers that open now see it all
    # leaving the block commits; an exception inside it rolls back

Until :meth:`commit`, nothing is visible to readers; :meth:`rollback` forgets everything
since the last commit. A commit writes the added documents as one new segment (exactly what
``build()`` writes for them), the changed deletion bitmaps and a new commit, published through
``CURRENT`` (:mod:`.segments`); then the merge policy (:mod:`.merge_policy`) may merge
segments. One writer at a time per index (:class:`~sparse_ir.index.storage.WriteLock`).

Ordinals (:mod:`.segments`): an id keeps the ordinal it got when it first entered the index
(an upsert, or a delete and a later add, reuses it; the writer remembers the ordinals of
deleted ids, and a commit keeps those of ids merged away in ``retired.json``); new ids are
numbered in the order they were given. A new segment, and a merged one, holds its documents
in ordinal order, so a merge of every segment writes what one build of the live documents in
ordinal order writes.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import secrets
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar, NamedTuple

import numpy as np

from sparse_ir.errors import IndexFormatError, InputError
from sparse_ir.index.builder import vocab_hash, write_impact_files
from sparse_ir.index.dense import DenseIndex, HnswOptions, write_dense_files
from sparse_ir.index.impact_index import ImpactIndex
from sparse_ir.index.manifest import DENSE_FORMAT, IMPACT_FORMAT
from sparse_ir.index.merge_policy import SegmentSize, TieredMergePolicy, forced_merge_groups
from sparse_ir.index.metadata import MAX_COLLECTION_FIELDS, check_metadata
from sparse_ir.index.segments import (
    CommitManifest,
    SegmentRecord,
    commit_from_build,
    is_commit,
    link_segment,
    new_segment,
    publish_commit,
    read_commit,
    read_deletions,
    read_ordinals,
    read_retired,
    remove_unused_segments,
    segment_name,
)
from sparse_ir.index.storage import IndexDirectory, WriteLock
from sparse_ir.quantize import Quantizer
from sparse_ir.sparse_batch import SparseBatch
from sparse_ir.validation import id_problem

__all__ = ["CommitResult", "DeleteResult", "DenseIndexWriter", "IndexWriter", "new_pair_stamp"]

logger = logging.getLogger(__name__)
# The stamp prefix of a commit that changed one index of a hybrid pair alone.
_ALONE = "alone-"

#: The merge policy writers use unless told otherwise.
DEFAULT_MERGE_POLICY = TieredMergePolicy()


class DeleteResult(NamedTuple):
    """What :meth:`IndexWriter.delete` did: ids deleted, and ids not in the index (ignored)."""

    deleted: int
    missing: int


class CommitResult(NamedTuple):
    """What a commit published."""

    generation: str
    segments: int
    documents: int
    deleted: int
    merged: int


@dataclass
class _Segment:
    """A committed segment as the writer tracks it: ids, the deleted mask being edited, and
    the documents' ordinals (increasing)."""

    name: str
    doc_ids: list[str]
    deleted: np.ndarray
    ordinals: np.ndarray

    @property
    def size(self) -> SegmentSize:
        return SegmentSize(len(self.doc_ids), int(np.count_nonzero(self.deleted)))


class _LiveWriter:
    """The shape both writers share; a kind supplies how documents are checked and written."""

    kind: ClassVar[str]
    segment_class: ClassVar[type]

    def __init__(self, root: Path, lock: WriteLock, policy: TieredMergePolicy | None):
        self.root = root
        self._lock: WriteLock | None = lock
        self.policy = policy
        self._load()

    # -- opening ----------------------------------------------------------------------------------

    @classmethod
    def _open(cls, path, create, policy):
        root = Path(path)
        IndexDirectory(root)._prepare()
        lock = WriteLock.acquire(root, purpose="an index writer")
        try:
            remove_unused_segments(root)
            current = cls._current(root)
            if current is None:
                base, files = create()
                publish_commit(root, base, {}, files)
            elif not is_commit(current):  # a single build: becomes segment 1
                commit_from_build(current, cls.kind)  # refuses a build of the other kind
                link_segment(root, current, "seg-000001")
            return cls(root, lock, policy)
        except BaseException:
            lock.release()
            raise

    @staticmethod
    def _current(root: Path) -> Path | None:
        directory = IndexDirectory(root)
        if not (root / "CURRENT").exists():
            return None
        return directory.current()

    def _load(self) -> None:
        """Read the live commit: segments, ids and masks; nothing pending."""
        current = IndexDirectory(self.root).current()
        if is_commit(current):
            self.commit_manifest = read_commit(current)
            deleted = [read_deletions(current, r) for r in self.commit_manifest.segments]
            ordinals = [
                read_ordinals(current, self.commit_manifest, r)
                for r in self.commit_manifest.segments
            ]
            # Ids deleted and merged away: their ordinals, for when they are added again.
            self._retired: dict[str, int] = read_retired(current, self.commit_manifest)
        else:
            self.commit_manifest = commit_from_build(current, self.kind)
            deleted = [None]
            ordinals = [np.arange(self.commit_manifest.segments[0].num_documents)]
            self._retired = {}
        if self.commit_manifest.kind != self.kind:
            raise IndexFormatError(
                f"{self.root} is a live {self.commit_manifest.kind!r} index: use the writer of "
                "its kind (IndexWriter for impact indexes, DenseIndexWriter for dense ones)"
            )
        self._vocab_bytes = self._read_extra(current)
        self.segments: list[_Segment] = []
        self._live: dict[str, tuple[str, int]] = {}
        # Metadata fields of every committed segment (deleted documents' too: a merge keeps a
        # subset), so that no merge can exceed the per-segment field limit.
        self._fields: set[str] = set()
        # The ordinal of every id that is not live but was: a document added with it again
        # gets it back (the retired ones, and those of deleted documents still in a segment).
        self._gone: dict[str, int] = dict(self._retired)
        for record, mask, numbers in zip(self.commit_manifest.segments, deleted, ordinals):
            segment_index = self.segment_class._open_generation(self.root / record.name)
            self._fields.update(segment_index.metadata_fields)
            ids = segment_index.doc_ids
            mask = np.zeros(len(ids), bool) if mask is None else mask.copy()
            for local in np.flatnonzero(mask).tolist():
                self._gone[ids[local]] = int(numbers[local])
            self._track(_Segment(record.name, list(ids), mask, numbers))
        self._reset_pending()

    def _track(self, segment: _Segment) -> None:
        """Add a segment to the writer's view: its live ids become deletable."""
        self.segments.append(segment)
        name = segment.name
        ids = segment.doc_ids
        if not segment.deleted.any():
            self._live.update(zip(ids, zip([name] * len(ids), range(len(ids)))))
            return
        for local in np.flatnonzero(~segment.deleted).tolist():
            self._live[ids[local]] = (name, local)

    def _reset_pending(self) -> None:
        # (batch, contents or None, metadata dicts or None) per add/upsert call.
        self._pending: list[tuple[object, list | None, list[dict] | None]] = []
        self._pending_ids: dict[str, tuple[int, int]] = {}
        self._changed = False
        self._pair: str | None = None

    def _read_extra(self, generation: Path) -> bytes | None:
        """Bytes the kind keeps beside each commit (an impact index's vocab.json)."""
        return None

    def _extra_files(self) -> dict[str, bytes]:
        """The small files every commit of this kind carries."""
        return {}

    # -- editing ----------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._lock is None:
            raise ValueError(f"this writer of {self.root} is closed")

    def add(
        self,
        batch,
        contents: Sequence[tuple[str, str]] | None = None,
        *,
        metadata: Sequence[Mapping | None] | None = None,
    ) -> int:
        """Add documents with new ids; returns how many. An id that is already live (committed
        or added since) raises :class:`InputError` naming it (use :meth:`upsert`).

        ``metadata``: one dict (or None: no metadata) per document, stored with its segment
        and filterable (``filter="year>=2020"``); the rules of
        :func:`~sparse_ir.index.metadata.check_metadata`, checked here (an
        :class:`InputError` names the document and the rule).
        """
        self._check_open()
        ids = self._check_batch(batch, contents)
        for doc_id in ids:
            if doc_id in self._live or doc_id in self._pending_ids:
                raise InputError(
                    f"document id {doc_id!r} is already in the index {self.root}; "
                    "use upsert() to replace it, or delete() it first"
                )
        records = self._check_metadata(metadata, ids)
        self._append(batch, ids, contents, records)
        return len(ids)

    def upsert(
        self,
        batch,
        contents: Sequence[tuple[str, str]] | None = None,
        *,
        metadata: Sequence[Mapping | None] | None = None,
    ) -> int:
        """Add documents, replacing the live documents of the same ids (their metadata too:
        a replaced document has only the metadata given now); returns how many."""
        self._check_open()
        ids = self._check_batch(batch, contents)
        records = self._check_metadata(metadata, ids)
        self.delete(ids)
        self._append(batch, ids, contents, records)
        return len(ids)

    def _check_metadata(self, metadata, ids: list[str]) -> list[dict] | None:
        """The checked metadata of a batch (None when no document has any)."""
        if metadata is None:
            return None
        if isinstance(metadata, (Mapping, str, bytes)):
            raise TypeError(
                "metadata= takes one dict (or None) per document, not a single "
                f"{type(metadata).__name__}"
            )
        metadata = list(metadata)
        if len(metadata) != len(ids):
            raise InputError(f"{len(metadata)} metadata records for {len(ids)} documents")
        records = [check_metadata(record, doc_id) for record, doc_id in zip(metadata, ids)]
        fields = set(self._fields)
        for record, doc_id in zip(records, ids):
            new = record.keys() - fields
            if new and len(fields) + len(new) > MAX_COLLECTION_FIELDS:
                raise InputError(
                    f"metadata of document {doc_id!r}: field {sorted(new)[0]!r} would make "
                    f"{len(fields) + len(new)} distinct fields in the index {self.root}; at "
                    f"most {MAX_COLLECTION_FIELDS} are stored (a merge keeps them all)"
                )
            fields |= new
        self._fields = fields
        return records if any(records) else None

    def delete(self, ids: Iterable[str]) -> DeleteResult:
        """Delete the live documents of these ids. Ids not in the index are counted in
        ``missing`` and otherwise ignored (deleting is idempotent)."""
        self._check_open()
        if isinstance(ids, str):
            raise TypeError("delete() takes a sequence of ids, not one string")
        deleted = missing = 0
        for doc_id in ids:
            doc_id = str(doc_id)
            if doc_id in self._live:
                name, local = self._live.pop(doc_id)
                segment = self._segment(name)
                segment.deleted[local] = True
                self._gone[doc_id] = int(segment.ordinals[local])
            elif doc_id in self._pending_ids:
                del self._pending_ids[doc_id]
            else:
                missing += 1
                continue
            deleted += 1
        self._changed = self._changed or deleted > 0
        return DeleteResult(deleted, missing)

    def _append(self, batch, ids: list[str], contents, metadata: list[dict] | None) -> None:
        index = len(self._pending)
        self._pending.append((batch, None if contents is None else list(contents), metadata))
        for row, doc_id in enumerate(ids):
            self._pending_ids[doc_id] = (index, row)
        self._changed = True

    # -- committing -------------------------------------------------------------------------------

    def commit(self, *, pair: str | None = None) -> CommitResult:
        """Publish everything since the last commit (then merge as the policy says).

        ``pair``: the stamp of a change made to both indexes of a hybrid pair (the same one
        for both commits; see :attr:`CommitManifest.pair`); the commit is made even when
        nothing changed, so that both record it. Without it, a commit that changes the
        documents of an index that was changed as a pair before records a stamp of its own.
        """
        self._check_open()
        if pair is not None:
            if not isinstance(pair, str) or not pair or pair.startswith(_ALONE):
                raise ValueError(f"pair must be a non-empty stamp, got {pair!r}")
            if pair != self.commit_manifest.pair:
                self._pair = pair
                self._changed = True
        return self._publish(merges=None)

    def force_merge(self, max_segments: int = 1) -> CommitResult:
        """Commit, and merge segments until at most ``max_segments`` remain (deleted
        documents are dropped from every merged segment)."""
        self._check_open()
        return self._publish(merges=max_segments)

    def rollback(self) -> None:
        """Forget every change since the last commit."""
        self._check_open()
        self._load()

    def _segment(self, name: str) -> _Segment:
        for segment in self.segments:
            if segment.name == name:
                return segment
        raise KeyError(name)

    def _publish(self, merges: int | None) -> CommitResult:
        if not self._changed and merges is None:
            return self._result(0)
        records, masks, number, written, next_ordinal = self._flush()
        ordinals = {s.name: s.ordinals for s in self.segments}
        ids_of = {s.name: s.doc_ids for s in self.segments}
        if written is not None:
            ordinals[written.name] = written.ordinals
            ids_of[written.name] = written.doc_ids
        # Deleted documents dropped by this commit: their ids' ordinals are kept (retired).
        retired = dict(self._retired)

        def retire(record: SegmentRecord) -> None:
            ids, numbers = ids_of[record.name], ordinals[record.name]
            for local in np.flatnonzero(masks[record.name]).tolist():
                retired[ids[local]] = int(numbers[local])

        # A segment whose documents are all deleted is dropped (nothing to rewrite).
        for record in records:
            if record.num_documents == 0 or masks[record.name].all():
                retire(record)
        records = [r for r in records if r.num_documents > 0 and not masks[r.name].all()]
        sizes = [
            SegmentSize(r.num_documents, int(np.count_nonzero(masks[r.name]))) for r in records
        ]
        if merges is None:
            groups = self.policy.find_merges(sizes) if self.policy is not None else []
        else:
            groups = forced_merge_groups(sizes, merges)
        for group in sorted(groups, reverse=True):  # from the end: positions stay valid
            name = segment_name(number)
            number += 1
            merged = [records[p] for p in group]
            for record in merged:
                retire(record)
            ordinals[name] = self._merge(name, merged, masks, ordinals)
            count = len(ordinals[name])
            records[group[0] : group[-1] + 1] = [SegmentRecord(name, count)]
            masks[name] = np.zeros(count, bool)
        stamp = self.commit_manifest.pair
        if self._pair is not None:
            stamp = self._pair
        elif self._changed and stamp:  # one index of a pair changed alone
            stamp = _ALONE + secrets.token_hex(8)
        commit = replace(
            self.commit_manifest,
            segments=tuple(records),
            next_segment=number,
            pair=stamp,
            next_ordinal=next_ordinal,
        )
        # An id live again (added anew) is no longer retired: its document holds the ordinal.
        retired = {
            doc_id: ordinal
            for doc_id, ordinal in retired.items()
            if doc_id not in self._live and doc_id not in self._pending_ids
        }
        kept = {r.name: ordinals[r.name] for r in records}
        publish_commit(self.root, commit, masks, self._extra_files(), kept, retired)
        if groups:
            self._load()
        else:  # the committed view is the edited one, plus the new segment
            self.commit_manifest = read_commit(IndexDirectory(self.root).current())
            kept = {r.name for r in self.commit_manifest.segments}
            self.segments = [s for s in self.segments if s.name in kept]
            if written is not None:
                self._track(written)
            self._retired = retired
            self._reset_pending()
        return self._result(len(groups))

    def _flush(
        self,
    ) -> tuple[list[SegmentRecord], dict[str, np.ndarray], int, _Segment | None, int]:
        """The committed segments plus one of the pending documents (written now), their
        deleted masks, the next segment number, the new segment (or None) and the next
        ordinal."""
        number = self.commit_manifest.next_segment
        next_ordinal = self.commit_manifest.next_ordinal
        records = [SegmentRecord(s.name, len(s.doc_ids)) for s in self.segments]
        masks = {s.name: s.deleted for s in self.segments}
        written = None
        if self._pending_ids:
            name = segment_name(number)
            number += 1
            ids, ordinals, next_ordinal = self._write_pending(name, next_ordinal)
            records.append(SegmentRecord(name, len(ids)))
            masks[name] = np.zeros(len(ids), bool)
            written = _Segment(name, ids, masks[name], ordinals)
        return records, masks, number, written, next_ordinal

    def _result(self, merged: int) -> CommitResult:
        current = IndexDirectory(self.root).current()
        return CommitResult(
            current.name,
            len(self.segments),
            len(self._live),
            sum(s.size.deleted for s in self.segments),
            merged,
        )

    def _write_pending(self, name: str, next_ordinal: int) -> tuple[list[str], np.ndarray, int]:
        """Write the pending live documents as segment ``name``, in ordinal order; returns
        their ids and ordinals in that order, and the next ordinal.

        An id that was in the index before gets its old ordinal back; new ids get the next
        ones in the order they were given (call by call, row by row).
        """
        entries = []  # (ordinal, pending call, row)
        for doc_id, (index, row) in sorted(self._pending_ids.items(), key=lambda item: item[1]):
            ordinal = self._gone.get(doc_id)
            if ordinal is None:
                ordinal = next_ordinal
                next_ordinal += 1
            entries.append((ordinal, index, row))
        entries.sort()
        parts = []
        with_metadata = False
        # Runs of documents of one call, in ordinal order (one run per call, usually).
        position = 0
        while position < len(entries):
            index = entries[position][1]
            end = position
            while end < len(entries) and entries[end][1] == index:
                end += 1
            rows = [row for _, _, row in entries[position:end]]
            position = end
            batch, contents, metadata = self._pending[index]
            chosen_batch, chosen_contents = self._select(batch, contents, rows)
            records = None if metadata is None else [metadata[r] for r in rows]
            with_metadata = with_metadata or (records is not None and any(records))
            parts.append((chosen_batch, chosen_contents, records))
        if with_metadata:  # documents without metadata get {} (what a build stores for None)
            parts = [(b, c, m or [{}] * self._count(b)) for b, c, m in parts]
        with new_segment(self.root, name) as temporary:
            self._write_documents(temporary, parts, with_metadata)
        ids = [doc_id for batch, _, _ in parts for doc_id in self._ids(batch)]
        ordinals = np.array([ordinal for ordinal, _, _ in entries], np.int64)
        return ids, ordinals, next_ordinal

    def _merge(
        self, name: str, records: list[SegmentRecord], masks: dict, ordinals: dict
    ) -> np.ndarray:
        """Write the live documents of ``records`` as segment ``name`` in ordinal order,
        streamed a block of documents at a time; returns their ordinals (increasing)."""

        segments = [self.segment_class._open_generation(self.root / r.name) for r in records]
        # Metadata is written when some merged segment stores it; a segment without any gives
        # its documents {} (no fields), as a build from those documents would store them.
        with_metadata = any(segment.has_metadata for segment in segments)
        # Every live document by ordinal: runs of one segment's rows (each segment is in
        # ordinal order, so a run's rows ascend; segments added one after the other give one
        # run each).
        live_rows = [np.flatnonzero(~masks[r.name]) for r in records]
        keys = np.concatenate([ordinals[r.name][rows] for r, rows in zip(records, live_rows)])
        part = np.concatenate([np.full(len(rows), p, np.int64) for p, rows in enumerate(live_rows)])
        local = np.concatenate(live_rows).astype(np.int64)
        order = np.argsort(keys, kind="stable")
        keys, part, local = keys[order], part[order], local[order]
        bounds = [0, *(np.flatnonzero(np.diff(part)) + 1).tolist(), len(part)]

        def parts():
            for start, end in zip(bounds[:-1], bounds[1:]):
                if start == end:
                    continue
                segment = segments[int(part[start])]
                rows = local[start:end]
                done = 0
                for batch, contents in self._segment_documents(segment, rows):
                    count = self._count(batch)
                    metadata = None
                    if with_metadata:
                        chosen = rows[done : done + count].tolist()
                        if segment.has_metadata:
                            metadata = [segment.metadata(r) for r in chosen]
                        else:
                            metadata = [{}] * count
                    done += count
                    yield batch, contents, metadata

        with new_segment(self.root, name) as temporary:
            self._write_documents(temporary, parts(), with_metadata)
        logger.info("merged %s into %s", ", ".join(r.name for r in records), name)
        return keys

    # -- closing ----------------------------------------------------------------------------------

    def close(self) -> None:
        """Release the write lock; changes not committed are discarded."""
        if self._lock is not None:
            if self._changed:
                logger.warning(
                    "%s: closing a writer with uncommitted changes (discarded)", self.root
                )
            self._lock.release()
            self._lock = None

    def __enter__(self):
        return self

    def __exit__(self, kind, value, traceback) -> None:
        try:
            if kind is None and self._lock is not None:
                self.commit()
            elif self._lock is not None:
                self._load()
        finally:
            self.close()

    def __del__(self):
        lock = getattr(self, "_lock", None)
        if lock is not None:
            lock.release()

    # -- what a kind supplies ---------------------------------------------------------------------

    def _check_batch(self, batch, contents) -> list[str]:
        raise NotImplementedError

    def _select(self, batch, contents, rows: list[int]):
        raise NotImplementedError

    def _count(self, batch) -> int:
        raise NotImplementedError

    def _ids(self, batch) -> list[str]:
        raise NotImplementedError

    def _write_documents(self, directory: Path, parts: Iterable, with_metadata: bool) -> None:
        """Write ``(batch, contents or None, metadata or None)`` parts as one segment's
        files (with the metadata files when ``with_metadata``)."""
        raise NotImplementedError

    def _segment_documents(self, segment, rows: np.ndarray) -> Iterator:
        """``(batch, contents or None)`` parts of a segment's documents ``rows``."""
        raise NotImplementedError

    def __contains__(self, doc_id: str) -> bool:
        """True when a live document has this id, counting changes not committed yet."""
        return doc_id in self._live or doc_id in self._pending_ids

    @property
    def num_documents(self) -> int:
        """Live documents, counting changes not committed yet."""
        return len(self._live) + len(self._pending_ids)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({str(self.root)!r}, segments={len(self.segments)}, "
            f"documents={self.num_documents})"
        )


def _check_new_ids(ids: Sequence[str]) -> list[str]:
    ids = [str(i) for i in ids]
    seen: set[str] = set()
    for position, doc_id in enumerate(ids):
        if problem := id_problem(doc_id):
            raise InputError(f"invalid id: document {position} of the batch: {problem}")
        if doc_id in seen:
            raise InputError(f"duplicate document id {doc_id!r} within the batch (row {position})")
        seen.add(doc_id)
    return ids


def _select_rows(batch: SparseBatch, rows: np.ndarray) -> SparseBatch:
    """Rows of a CSR batch, vectorized (``SparseBatch.select`` loops in Python)."""
    rows = np.asarray(rows, np.int64)
    lengths = np.diff(batch.indptr)[rows]
    indptr = np.zeros(len(rows) + 1, np.int64)
    np.cumsum(lengths, out=indptr[1:])
    gather = np.repeat(batch.indptr[rows] - indptr[:-1], lengths) + np.arange(indptr[-1])
    ids = None if batch.ids is None else tuple(batch.ids[r] for r in rows.tolist())
    return SparseBatch(indptr, batch.indices[gather], batch.values[gather], batch.vocab, ids)


def segment_vectors(
    segment: ImpactIndex, rows: np.ndarray, *, block_documents: int = 1 << 16
) -> Iterator[SparseBatch]:
    """The integer impacts of documents ``rows`` (ascending) of an impact segment, read back
    a block of documents at a time (:meth:`ImpactIndex.document_block`: its forward index, or
    its document-ordered postings; a build from them writes the same postings). Yields one
    SparseBatch per block that holds any of ``rows``."""
    rows = np.asarray(rows, np.int64)
    if not len(rows):
        return
    # From the first row to the last only (a merge in ordinal order reads short runs).
    last = min(int(rows[-1]) + 1, segment.num_documents)
    for start in range(int(rows[0]), last, block_documents):
        end = min(start + block_documents, last)
        wanted = rows[(rows >= start) & (rows < end)]
        if len(wanted):
            yield _select_rows(segment.document_block(start, end), wanted - start)


class _Queue:
    """An endless iterator over a deque that a generator refills as it goes (contents that
    follow the shards of a streamed build)."""

    def __init__(self):
        self.items: collections.deque = collections.deque()

    def __iter__(self):
        return self

    def __next__(self):
        return self.items.popleft() if self.items else None


class IndexWriter(_LiveWriter):
    """The writer of a live impact index (see the module's description).

    Documents are :class:`SparseBatch` rows with ids (float weights are quantized by the
    index's quantizer, integer values are impacts), optionally with ``(title, text)``
    contents when the index stores them.

    Example:
        >>> import tempfile
        >>> from sparse_ir import ImpactIndex, SparseBatch
        >>> from sparse_ir.index.writer import IndexWriter
        >>> path = tempfile.mkdtemp() + "/live"
        >>> docs = SparseBatch.from_dicts([{"cat": 3}, {"dog": 2}], ["cat", "dog"], ids=["a", "b"])
        >>> with IndexWriter.open(path, vocab=["cat", "dog"]) as writer:
        ...     writer.add(docs)
        2
        >>> with IndexWriter.open(path) as writer:
        ...     writer.delete(["a"])
        DeleteResult(deleted=1, missing=0)
        >>> index = ImpactIndex.open(path)
        >>> [hit.doc_id for hit in index.search({"cat": 1, "dog": 1})], index.num_documents
        (['b'], 1)
    """

    kind = IMPACT_FORMAT
    segment_class = ImpactIndex

    @classmethod
    def open(
        cls,
        path: str | os.PathLike,
        *,
        vocab: Sequence[str] | None = None,
        quantizer: Quantizer | None = None,
        settings: dict | None = None,
        search_layout: bool = True,
        contents: bool = False,
        merge_policy: TieredMergePolicy | None = DEFAULT_MERGE_POLICY,
    ) -> IndexWriter:
        """Open the index at ``path`` for writing, creating an empty one if there is none.

        Args:
            vocab, quantizer, settings, search_layout, contents: the new index's vocabulary,
                quantizer (default ``Quantizer()``), recorded settings (model...), whether
                segments get the pruned-search arrays, and whether documents carry
                ``(title, text)`` contents. Fixed at creation: for an existing index they
                are taken from it (a different ``vocab`` or ``quantizer`` is an error).
            merge_policy: merges run at commit (None: only :meth:`force_merge` merges).

        Raises:
            IndexBusyError: another writer or build holds the index (its pid is named).
        """

        def create() -> tuple[CommitManifest, dict[str, bytes]]:
            if vocab is None:
                raise InputError(f"no index at {path}: give vocab= to create one")
            fixed = {
                "quantizer": (quantizer or Quantizer()).to_dict(),
                "vocab_hash": vocab_hash(tuple(vocab)),
                "vocab_size": len(vocab),
                "search_layout": bool(search_layout),
                "contents": bool(contents),
            }
            base = CommitManifest(IMPACT_FORMAT, _created_by(), (), 1, fixed, dict(settings or {}))
            return base, {"vocab.json": _vocab_bytes(vocab)}

        writer = cls._open(path, create, merge_policy)
        writer._check_fixed(vocab, quantizer)
        return writer

    def _read_extra(self, generation: Path) -> bytes | None:
        return (generation / "vocab.json").read_bytes()

    def _extra_files(self) -> dict[str, bytes]:
        return {"vocab.json": self._vocab_bytes}

    def _load(self) -> None:
        super()._load()
        self.vocab: tuple[str, ...] = tuple(json.loads(self._vocab_bytes.decode("utf-8")))
        self.quantizer = Quantizer.from_dict(self.commit_manifest.fixed["quantizer"])
        self.has_contents = bool(self.commit_manifest.fixed.get("contents", False))

    def _check_fixed(self, vocab, quantizer) -> None:
        problem = None
        if vocab is not None and tuple(vocab) != self.vocab:
            problem = "vocab= differs from the index's vocabulary"
        elif quantizer is not None and quantizer.to_dict() != self.quantizer.to_dict():
            problem = f"quantizer= {quantizer} differs from the index's {self.quantizer}"
        if problem:
            self.close()
            raise InputError(f"{self.root}: {problem} (fixed when the index was created)")

    def _check_batch(self, batch, contents) -> list[str]:
        if not isinstance(batch, SparseBatch):
            raise TypeError(f"expected a SparseBatch, got {type(batch).__name__}")
        if batch.ids is None:
            raise InputError("the batch has no ids: a live index needs an id per document")
        if batch.vocab is not self.vocab and batch.vocab != self.vocab:
            raise InputError(
                f"the batch's vocabulary ({len(batch.vocab)} tokens) is not the index's "
                f"({len(self.vocab)}): encode with the index's model"
            )
        if self.has_contents != (contents is not None):
            raise InputError(
                f"the index {'stores' if self.has_contents else 'does not store'} contents: "
                f"{'give' if self.has_contents else 'do not give'} contents= "
                "((title, text) per document)"
            )
        if contents is not None and len(contents) != len(batch):
            raise InputError(f"{len(contents)} contents for {len(batch)} documents")
        if (
            batch.is_quantized
            and len(batch.values)
            and batch.values.max() > self.quantizer.max_impact
        ):
            raise InputError(
                f"impact {int(batch.values.max())} exceeds the index's max_impact "
                f"{self.quantizer.max_impact}"
            )
        return _check_new_ids(batch.ids)

    def _select(self, batch, contents, rows: list[int]):
        chosen = _select_rows(batch, np.asarray(rows))
        return chosen, None if contents is None else [contents[r] for r in rows]

    def _count(self, batch) -> int:
        return len(batch)

    def _ids(self, batch) -> list[str]:
        return list(batch.ids)

    def _write_documents(self, directory: Path, parts: Iterable, with_metadata: bool) -> None:
        queue = _Queue() if self.has_contents else None
        metadata = _Queue() if with_metadata else None

        def shards():
            for batch, contents, records in parts:
                if queue is not None:
                    queue.items.extend(contents)
                if metadata is not None:
                    metadata.items.extend(records)
                yield batch

        write_impact_files(
            shards(),
            directory,
            quantizer=self.quantizer,
            contents=queue,
            settings=self.commit_manifest.build,
            show_progress=False,
            search_layout=bool(self.commit_manifest.fixed.get("search_layout", True)),
            metadata=metadata,
        )

    def _segment_documents(self, segment, rows: np.ndarray):
        done = 0
        for block in segment_vectors(segment, rows):
            contents = None
            if self.has_contents:
                chosen = rows[done : done + len(block)].tolist()
                contents = [segment.document(int(r)) for r in chosen]
            done += len(block)
            yield block, contents


class DenseIndexWriter(_LiveWriter):
    """The writer of a live dense index: the shape of :class:`IndexWriter`, with documents
    given as ``(ids, vectors)`` pairs (a ``[n, dim]`` array).

    Example:
        >>> import tempfile, numpy as np
        >>> from sparse_ir import DenseIndex
        >>> from sparse_ir.index.writer import DenseIndexWriter
        >>> path = tempfile.mkdtemp() + "/live"
        >>> with DenseIndexWriter.open(path, dim=2) as writer:
        ...     writer.add((["a", "b"], np.array([[1.0, 0.0], [0.0, 1.0]])))
        2
        >>> [hit.doc_id for hit in DenseIndex.open(path).search(np.array([0.2, 1.0]), k=1)]
        ['b']
    """

    kind = DENSE_FORMAT
    segment_class = DenseIndex

    @classmethod
    def open(
        cls,
        path: str | os.PathLike,
        *,
        dim: int | None = None,
        hnsw: HnswOptions | None = None,
        settings: dict | None = None,
        merge_policy: TieredMergePolicy | None = DEFAULT_MERGE_POLICY,
    ) -> DenseIndexWriter:
        """Open the dense index at ``path`` for writing, creating an empty one if none.

        ``dim``, ``hnsw`` (each segment's graph options) and ``settings`` are fixed at
        creation; for an existing index they are taken from it (another ``dim`` is an error).
        """

        def create() -> tuple[CommitManifest, dict[str, bytes]]:
            if dim is None:
                raise InputError(f"no index at {path}: give dim= to create one")
            fixed = {"dim": int(dim), "hnsw": None if hnsw is None else hnsw.to_dict()}
            return CommitManifest(
                DENSE_FORMAT, _created_by(), (), 1, fixed, dict(settings or {})
            ), {}

        writer = cls._open(path, create, merge_policy)
        if dim is not None and int(dim) != writer.dim:
            writer.close()
            raise InputError(f"{path}: dim={dim}, but the index holds {writer.dim}-d vectors")
        return writer

    @property
    def dim(self) -> int:
        """Vector dimension."""
        return int(self.commit_manifest.fixed["dim"])

    def _check_batch(self, batch, contents) -> list[str]:
        if contents is not None:
            raise InputError("a dense index stores no contents")
        if not (isinstance(batch, tuple) and len(batch) == 2):
            raise TypeError("a dense writer takes (ids, vectors) pairs")
        ids, vectors = batch
        if isinstance(ids, str):
            raise TypeError("ids must be a sequence of strings, not one string")
        array = np.asarray(vectors)
        if array.ndim != 2 or array.shape[1] != self.dim or len(array) != len(ids):
            raise InputError(
                f"expected {len(ids)} vectors of dimension {self.dim}, got shape {array.shape}"
            )
        if array.dtype.kind not in "fiu" or not np.isfinite(array).all():
            raise InputError("vectors must be finite numbers")
        return _check_new_ids(ids)

    def _select(self, batch, contents, rows: list[int]):
        ids, vectors = batch
        return ([str(ids[r]) for r in rows], np.asarray(vectors, np.float32)[rows]), None

    def _count(self, batch) -> int:
        return len(batch[0])

    def _ids(self, batch) -> list[str]:
        return list(batch[0])

    def _write_documents(self, directory: Path, parts: Iterable, with_metadata: bool) -> None:
        options = self.commit_manifest.fixed.get("hnsw")
        metadata = _Queue() if with_metadata else None

        def batches():
            for batch, _, records in parts:
                if metadata is not None:
                    metadata.items.extend(records)
                yield batch

        write_dense_files(
            batches(),
            directory,
            settings=self.commit_manifest.build,
            hnsw=None if options is None else HnswOptions(**options),
            show_progress=False,
            metadata=metadata,
        )

    def _segment_documents(self, segment, rows: np.ndarray):
        ids = segment.doc_ids
        for start in range(0, len(rows), 1 << 16):
            chosen = rows[start : start + (1 << 16)]
            batch = ([ids[r] for r in chosen.tolist()], np.asarray(segment.vectors[chosen]))
            yield batch, None


def _created_by() -> str:
    from sparse_ir import __version__

    return f"sparse_ir {__version__}"


def _vocab_bytes(vocab: Sequence[str]) -> bytes:
    """vocab.json as the builder writes it."""
    return json.dumps(list(vocab), ensure_ascii=False).encode("utf-8")


def new_pair_stamp(writers: Sequence[_LiveWriter]) -> str | None:
    """A fresh stamp for the commits of one change made to both indexes of a hybrid pair
    (``commit(pair=...)`` on each); None for a single index.

    Both writers are open (so both locks held) before either commits. When the pair's last
    paired changes already differ (an earlier paired change was interrupted between its two
    commits, or one index was changed alone), a warning says so: this change proceeds and
    stamps both alike, and only making the interrupted change again (add with upsert) makes
    their documents agree.

    >>> new_pair_stamp([]) is None
    True
    """
    if len(writers) < 2:
        return None
    stamps = [writer.commit_manifest.pair for writer in writers]
    if stamps[0] and stamps[1] and stamps[0] != stamps[1]:
        logger.warning(
            "%s and %s were not changed together last time (%r vs %r): a paired change was "
            "interrupted between its two commits, or one index was changed alone; make the "
            "interrupted change again on both (add with upsert) if this one is not it",
            writers[0].root, writers[1].root, stamps[0], stamps[1],
        )  # fmt: skip
    return secrets.token_hex(8)
