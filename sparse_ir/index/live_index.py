"""A live index opened for searching: its commit's segments searched as one index, exactly.

``ImpactIndex.open(path)`` / ``DenseIndex.open(path)`` return a :class:`LiveImpactIndex` /
:class:`LiveDenseIndex` when ``CURRENT`` names a commit of a live index (:mod:`.segments`).
They offer the search API of the single-build classes, so ``Searcher``, ``HybridSearcher``, the
service and the CLI use them unchanged.

Document numbers are the segments' laid end to end (:func:`.composite.part_offsets`); a deleted
document keeps its number (``doc_ids`` has an entry for it) and is never returned.
``num_documents`` counts the live documents; ``num_docnos`` the numbers in use.

Each segment is searched by its own kernels for its top-k among its live documents
(:func:`segment_top_k`: the one place that excludes deleted documents), and the per-segment
lists are merged by :func:`.composite.merge_topk`.

Equal scores are ordered by *ordinal* (:mod:`.segments`: the order in which each id first
entered the index, kept by upserts and by a delete and re-add), so a live index ranks exactly
like one build of its live documents in ordinal order — the one-shot build of a collection
added in order, whatever was deleted, replaced and re-added since. Within a segment document
numbers follow ordinals, so the kernels need no change; when the segments' numbers follow
ordinals too (nothing re-added out of order: :attr:`_LiveBase.numbers_follow_ordinals`), the
tie-break by global document number is the same thing. Otherwise :meth:`LiveImpactIndex._top_k`
asks for one document more than ``k``; when it ties the k-th, all documents of the k-th
score are fetched (a floor just below it), and ties are put in ordinal order (exact: every
document above the k-th score is in a top-k whatever the tie-break).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from sparse_ir.errors import IndexCorruptError, IndexFormatError, InputError
from sparse_ir.index import impact_index
from sparse_ir.index.composite import merge_topk, part_offsets
from sparse_ir.index.impact_index import (
    ImpactIndex,
    QueryLike,
    TermContribution,
    TopK,
    _check_k,
    _filtered_params,
)
from sparse_ir.index.modes import SearchMode, SearchStats
from sparse_ir.index.segments import (
    CommitManifest,
    read_commit,
    read_deletions,
    read_ordinals,
    read_retired,
    register_reader,
)
from sparse_ir.index.storage import check_files, read_listed_json
from sparse_ir.quantize import Quantizer
from sparse_ir.results import Hit, Run

__all__ = ["LiveImpactIndex", "LiveDenseIndex", "SegmentInfo", "open_live", "segment_top_k"]


class SegmentInfo(NamedTuple):
    """One segment as ``sparse-ir info`` shows it."""

    name: str
    documents: int
    deleted: int


def open_live(kind: type, generation: Path):
    """Open the commit at ``generation`` as a live index of ``kind`` (ImpactIndex/DenseIndex)."""
    commit = read_commit(generation)
    expected = kind.manifest_type.FORMAT
    if commit.kind != expected:
        raise IndexFormatError(
            f"{generation}: a live index of {commit.kind!r} segments, not {expected!r}"
        )
    root = generation.parent
    segments = []
    for record in commit.segments:
        segment = kind._open_generation(root / record.name)
        if segment.num_documents != record.num_documents:
            raise IndexCorruptError(
                f"{root / record.name}: {segment.num_documents} documents, the commit "
                f"{generation.name} records {record.num_documents}"
            )
        segments.append(segment)
    deleted = [read_deletions(generation, record) for record in commit.segments]
    ordinals = [read_ordinals(generation, commit, record) for record in commit.segments]
    live_class = (
        LiveImpactIndex if commit.kind == ImpactIndex.manifest_type.FORMAT else LiveDenseIndex
    )
    return live_class(generation, commit, segments, deleted, ordinals)


def segment_top_k(
    segment,
    terms: np.ndarray,
    weights: np.ndarray,
    k: int,
    mode: SearchMode,
    allowed: np.ndarray | None,
    floor: int,
) -> tuple[TopK, np.ndarray | None, bool]:
    """One impact segment's top-``k`` among its ``allowed`` documents scoring above ``floor``:
    ``(TopK with local numbers, kernel stats or None, int64 accumulator?)``.

    ``allowed`` (uint8 per document, None: all) is how deleted documents are excluded: inside
    the kernels, which never score a document it forbids where they can avoid it. ``floor``
    is the k-th score of the segments searched before (their documents come first, so they
    win ties): the pruned kernel starts from it instead of from nothing.
    """  # fmt: skip
    docs, scores, stats, use_int64 = segment._search_prepared(
        terms, weights, k, mode, allowed, floor
    )
    top = TopK(np.asarray(docs, np.int64), np.asarray(scores, np.int64))
    return top, stats, use_int64


class _Docnos:
    """An index seen over all its document numbers (a filter's mask covers deleted ones too)."""

    def __init__(self, index):
        self._index = index
        self.num_documents = index.num_docnos

    def __getattr__(self, name: str):
        return getattr(self._index, name)


class _LiveBase:
    """What both live kinds share: the commit, the segments, numbering, ids and checks."""

    def __init__(
        self,
        generation: Path,
        commit: CommitManifest,
        segments: list,
        deleted: list,
        ordinals: list | None = None,
    ):
        self.directory = generation
        self.root = generation.parent
        self.commit = commit
        self.manifest = commit  # what `sparse-ir info` shows (CommitManifest.to_dict)
        self.segments = segments
        self.deleted = deleted
        self.offsets = part_offsets([s.num_documents for s in segments])
        if ordinals is None:  # no ordinals given: the document numbers are
            ordinals = [np.arange(a, b) for a, b in zip(self.offsets[:-1], self.offsets[1:])]
        #: Each segment's ordinals (increasing), the tie-break of equal scores.
        self.segment_ordinals = [np.asarray(o, np.int64) for o in ordinals]
        self.ordinals = np.concatenate(self.segment_ordinals) if ordinals else np.zeros(0, np.int64)
        #: True when document numbers and ordinals are in the same order (no document was
        #: re-added out of order): ties by number are ties by ordinal, nothing to reorder.
        self.numbers_follow_ordinals = bool(np.all(self.ordinals[1:] > self.ordinals[:-1]))
        if not self.numbers_follow_ordinals:
            self._check_unique_ordinals(deleted)
        self.names_in_use = frozenset([generation.name] + [r.name for r in commit.segments])
        # What the kernels may return in each segment: its live documents (None: all).
        self._allowed = [None if d is None else (~d).view(np.uint8) for d in deleted]
        self.build_report = None
        self._doc_id_list: list[str] | None = None
        self._docnos: dict[str, int] | None = None
        register_reader(self)

    # -- facts ------------------------------------------------------------------------------------

    @property
    def num_documents(self) -> int:
        """Number of live documents."""
        return self.commit.num_documents

    @property
    def num_docnos(self) -> int:
        """Document numbers in use: live and deleted documents (``len(doc_ids)``)."""
        return int(self.offsets[-1])

    @property
    def num_deleted(self) -> int:
        """Deleted documents still held by the segments (until a merge drops them)."""
        return self.commit.deleted

    @property
    def settings(self) -> dict:
        """What the index records (the model or encoder's settings...)."""
        return dict(self.commit.build)

    @property
    def segment_infos(self) -> list[SegmentInfo]:
        """Each segment's name, documents and deleted documents."""
        return [SegmentInfo(r.name, r.num_documents, r.deleted) for r in self.commit.segments]

    def size_bytes(self) -> int:
        """Bytes on disk of the commit and its segments."""
        own = sum(record.size for record in self.commit.files.values())
        return own + sum(segment.size_bytes() for segment in self.segments)

    @property
    def doc_ids(self) -> list[str]:
        """External id of every document number (deleted documents' ids included)."""
        if self._doc_id_list is None:
            self._doc_id_list = [d for segment in self.segments for d in segment.doc_ids]
        return self._doc_id_list

    def docno(self, doc_id: str) -> int:
        """Document number of a live document's id (KeyError if absent or deleted)."""
        if self._docnos is None:
            live = np.flatnonzero(~self.deleted_mask())
            ids = self.doc_ids
            self._docnos = {ids[i]: i for i in live.tolist()}
        return self._docnos[doc_id]

    def deleted_mask(self) -> np.ndarray:
        """Boolean array over document numbers: True for deleted documents."""
        parts = [
            np.zeros(s.num_documents, bool) if d is None else d
            for s, d in zip(self.segments, self.deleted)
        ]
        return np.concatenate(parts) if parts else np.zeros(0, bool)

    def _check_unique_ordinals(self, deleted: list) -> None:
        """Two live documents never share an ordinal (deleted ones keep theirs)."""
        parts = [o if d is None else o[~d] for o, d in zip(self.segment_ordinals, deleted)]
        live = np.sort(np.concatenate(parts)) if parts else np.zeros(0, np.int64)
        if len(live) > 1 and bool(np.any(live[1:] == live[:-1])):
            twice = int(live[1:][live[1:] == live[:-1]][0])
            raise IndexCorruptError(
                f"{self.directory}: two live documents have ordinal {twice} (in the ordinals "
                "of its segments); the commit is corrupt"
            )

    def ordinal(self, doc_id: str) -> int:
        """The ordinal of a live document's id (KeyError if absent or deleted)."""
        return int(self.ordinals[self.docno(doc_id)])

    def _ordered(self, docs: np.ndarray, scores: np.ndarray, k: int) -> tuple:
        """``(docs, scores)`` best first by score, then ordinal; the first ``k``."""
        order = np.lexsort((self.ordinals[docs], -np.asarray(scores)))[:k]
        return docs[order], scores[order]

    def _locate(self, docno: int) -> tuple[int, int]:
        """``(segment position, local number)`` of a global document number."""
        if not 0 <= docno < self.num_docnos:
            raise IndexError(f"document number {docno} outside 0..{self.num_docnos - 1}")
        part = int(np.searchsorted(self.offsets, docno, side="right")) - 1
        return part, docno - int(self.offsets[part])

    def _allowed_parts(self, filter) -> list[np.ndarray | None]:  # noqa: A002
        """Each segment's ``allowed`` mask: live documents, and those ``filter`` allows."""
        if filter is None:
            return self._allowed
        from sparse_ir.index.filters import allowed_documents

        # uint8, C-contiguous and writable: a segment's slice is a view the kernels take as it
        # is; only a segment with deletions gets a new array (its live documents & the filter's).
        mask = allowed_documents(filter, _Docnos(self))
        return [
            mask[a:b] if live is None else np.logical_and(mask[a:b], live).view(np.uint8)
            for a, b, live in zip(
                self.offsets[:-1].tolist(), self.offsets[1:].tolist(), self._allowed
            )
        ]

    @property
    def has_metadata(self) -> bool:
        """True when some segment stores document metadata (documents added with
        ``metadata=``)."""
        return any(segment.has_metadata for segment in self.segments)

    @property
    def metadata_fields(self) -> tuple[str, ...]:
        """The metadata fields some segment holds, sorted (empty without metadata)."""
        return tuple(sorted(set().union(*(s.metadata_fields for s in self.segments))))

    def metadata_column(self, field: str):
        """One metadata field over every document number, the segments' columns laid end to
        end (:func:`~sparse_ir.index.metadata.concat_columns`).

        The rule is a single build's: a document without the field (one of a segment that
        stores no metadata, or none for this field) holds nothing there, so no condition on
        the field matches it. The kinds the column reports are those of the *live*
        documents, so a filter errs, or not, exactly as on a build of the live documents
        (a field that only deleted documents held is an error, never an empty result).

        Raises :class:`InputError` when no segment stores metadata or none has the field.
        """
        from sparse_ir.index.metadata import MISSING, MetadataColumn, concat_columns

        if not self.has_metadata:
            raise InputError(
                f"filter on field {field!r}: the live index {self.root} stores no document "
                "metadata (no document was added with metadata=; `sparse-ir add` reads a "
                "'metadata' object of each JSONL record)"
            )
        if field not in self.metadata_fields:
            known = ", ".join(self.metadata_fields) or "none"
            raise InputError(
                f"filter field {field!r} is not in the metadata of {self.root} (fields: {known})"
            )
        columns = []
        for segment in self.segments:
            if field in segment.metadata_fields:
                columns.append(segment.metadata_column(field))
            else:
                n = segment.num_documents
                columns.append(
                    MetadataColumn(
                        field,
                        np.full(n, MISSING, np.uint8),
                        np.full(n, np.nan),
                        (),
                        frozenset(),
                        str(segment.directory),
                    )
                )
        column = concat_columns(columns, str(self.root))
        live_kinds = np.unique(column.kinds[~self.deleted_mask()])
        return column._replace(kinds_present=frozenset(int(k) for k in live_kinds) - {MISSING})

    def metadata(self, docno: int):
        """The metadata of a document (as its segment stores it)."""
        part, local = self._locate(docno)
        return self.segments[part].metadata(local)

    def is_deleted(self, docno: int) -> bool:
        """True when document ``docno`` is deleted."""
        part, local = self._locate(docno)
        return self.deleted[part] is not None and bool(self.deleted[part][local])

    def verify(self) -> None:
        """Check every byte of the commit and its segments, and that live ids are unique.

        Raises :class:`IndexCorruptError` describing the first problem found.
        """
        check_files(self.directory, self.commit.files, full=True)
        for segment in self.segments:
            segment.verify()
        live = np.flatnonzero(~self.deleted_mask())
        ids = self.doc_ids
        live_ids = {ids[i] for i in live.tolist()}
        if len(live_ids) != len(live):
            raise IndexCorruptError(f"{self.directory}: live document ids are not unique")
        self._check_unique_ordinals(self.deleted)
        retired = read_retired(self.directory, self.commit)
        if retired:
            path = self.directory / "retired.json"
            if again := next((i for i in retired if i in live_ids), None):
                raise IndexCorruptError(f"{path}: retires {again!r}, a live document's id")
            taken = set(self.ordinals[live].tolist())
            if clash := next((i for i, o in retired.items() if o in taken), None):
                raise IndexCorruptError(
                    f"{path}: the ordinal of {clash!r} ({retired[clash]}) is a live document's"
                )

    def _hits(self, docs, scores) -> list[Hit]:
        ids = self.doc_ids
        return [Hit(ids[d], s, d) for d, s in zip(docs.tolist(), scores.tolist())]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({str(self.directory)!r}, documents={self.num_documents}, "
            f"segments={len(self.segments)}, deleted={self.num_deleted})"
        )


class LiveImpactIndex(_LiveBase):
    """The commit of a live impact index, searched like an :class:`ImpactIndex`."""

    def __init__(
        self,
        generation: Path,
        commit: CommitManifest,
        segments: list,
        deleted: list,
        ordinals: list | None = None,
    ):
        super().__init__(generation, commit, segments, deleted, ordinals)
        self.quantizer = Quantizer.from_dict(commit.fixed["quantizer"])
        record = commit.files.get("vocab.json")
        if record is None:
            raise IndexCorruptError(f"{generation}: the commit lists no vocab.json")
        # Size-capped and depth-limited, like every JSON file an index lists.
        vocab = read_listed_json(generation, record)
        if not isinstance(vocab, list) or not all(isinstance(t, str) for t in vocab):
            raise IndexCorruptError(f"{generation / 'vocab.json'}: not a list of strings")
        self.vocab: tuple[str, ...] = tuple(vocab)
        for segment in segments:
            if segment.vocab_hash != self.vocab_hash or segment.quantizer != self.quantizer:
                raise IndexCorruptError(
                    f"{segment.directory}: its vocabulary or quantizer is not the index's"
                )
        self._equal_vocabularies: list[tuple[str, ...]] = [self.vocab]
        self._term_ids: dict[str, int] | None = None

    def make_resident(self, how=True):
        """Keep every segment's searched arrays in memory (:meth:`ImpactIndex.make_resident`).

        Returns the segments' :class:`~sparse_ir.index.residency.ResidencyReport` s, in order
        (also kept as ``index.residency``).
        """
        self.residency = [segment.make_resident(how) for segment in self.segments]
        return self.residency

    # The query forms of ImpactIndex, over the same vocabulary and quantizer.
    prepare_query = ImpactIndex.prepare_query
    _finish_query = ImpactIndex._finish_query
    _same_vocabulary = ImpactIndex._same_vocabulary
    _batch_query_arrays = ImpactIndex._batch_query_arrays
    _mode = ImpactIndex._mode
    term_id = ImpactIndex.term_id

    @property
    def vocab_size(self) -> int:
        """Size of the vocabulary."""
        return int(self.commit.fixed["vocab_size"])

    @property
    def vocab_hash(self) -> str:
        """Hash of the vocabulary; an encoder must match it to search this index."""
        return str(self.commit.fixed["vocab_hash"])

    @property
    def has_search_layout(self) -> bool:
        """True when every segment holds the arrays of pruned and approximate search."""
        return bool(self.commit.fixed.get("search_layout", True))

    @property
    def has_contents(self) -> bool:
        """True when every segment stores titles and texts."""
        return bool(self.segments) and all(s.has_contents for s in self.segments)

    @property
    def num_postings(self) -> int:
        """Postings of every segment (deleted documents' included)."""
        return sum(s.num_postings for s in self.segments)

    @property
    def max_impact(self) -> int:
        """The largest impact stored."""
        return max((s.max_impact for s in self.segments), default=0)

    def document(self, docno: int) -> tuple[str, str] | None:
        """Stored ``(title, text)`` of a document, or None when contents were not stored."""
        part, local = self._locate(docno)
        return self.segments[part].document(local)

    def document_vector(self, docno: int) -> dict[str, int]:
        """The stored impacts of one document, ``{token: impact}``."""
        part, local = self._locate(docno)
        return self.segments[part].document_vector(local)

    # -- search -----------------------------------------------------------------------------------

    def _searcher(self):
        """The driver of searches over every segment at once (:mod:`.cross_segment`)."""
        searcher = self.__dict__.get("_segments_searcher")
        if searcher is None:
            from sparse_ir.index.cross_segment import SegmentsSearcher

            searcher = SegmentsSearcher(self.segments, self.offsets[:-1], self.vocab_size)
            self._segments_searcher = searcher
        return searcher

    def _top_k(
        self, terms, weights, k: int, mode: SearchMode, allowed: list, floor: int = 0
    ) -> tuple[TopK, np.ndarray | None, bool, int]:
        """The top-``k`` of a prepared query over the allowed live documents of every segment,
        equal scores by ordinal: ``(TopK, kernel stats summed over the segments and the
        searches or None, int64 accumulator?, searches run)``.

        When numbers do not follow ordinals, one more document than ``k`` is asked for; if
        it scores the k-th score θ, every document scoring θ or more is fetched (floor θ - 1,
        a deeper search until fewer come back than asked), so the documents of score θ that
        win by ordinal are all at hand (see the module's note). The stats of those searches
        are added (:func:`_add_stats`).
        """
        params = mode.kernel_params() if self.segments and self.has_search_layout else None
        if params is not None and params.layer:  # its candidates are ranked by ordinal already
            return self._layer_top_k(terms, weights, k, mode, allowed, floor)
        if self.numbers_follow_ordinals:
            return (*self._top_k_by_number(terms, weights, k, mode, allowed, floor), 1)
        want = min(k + 1, max(self.num_docnos, 1))
        first, stats, int64 = self._top_k_by_number(terms, weights, want, mode, allowed, floor)
        top, searches = first, 1
        if len(first.docnos) > k and first.scores[k] == first.scores[k - 1]:
            tied_floor = max(floor, int(first.scores[k - 1]) - 1)
            want = min(max(4 * k, 64), self.num_docnos)
            while True:
                top, more, _ = self._top_k_by_number(
                    terms, weights, want, mode, allowed, tied_floor
                )
                stats, searches = _add_stats(stats, more), searches + 1
                if len(top.docnos) < want or want >= self.num_docnos:
                    break
                want = min(4 * want, self.num_docnos)
        docs, scores = self._ordered(top.docnos, top.scores, k)
        return TopK(docs, scores), stats, int64, searches

    def _layer_top_k(
        self, terms, weights, k: int, mode: SearchMode, allowed: list, floor: int = 0
    ) -> tuple[TopK, np.ndarray | None, bool, int]:
        """The layer ranking (``Approximate(layer_postings=P, max_verified=V)``) over every
        segment at once (:func:`.live_layer.layer_top_k`: one threshold, one candidate set,
        ties by ordinal, one search); the exhaustive search when fewer than k documents are in
        the layer and there is no floor, as on one index. Returns what :meth:`_top_k` does."""
        from sparse_ir.index.live_layer import layer_top_k
        from sparse_ir.index.modes import Exhaustive

        result = layer_top_k(self, terms, weights, k, mode.kernel_params(), allowed, floor)
        if result is None:
            return self._top_k(terms, weights, k, Exhaustive(), allowed, floor)
        return (*result, 1)

    def _top_k_by_number(
        self, terms, weights, k: int, mode: SearchMode, allowed: list, floor: int = 0
    ) -> tuple[TopK, np.ndarray | None, bool]:
        """The top-``k`` of a prepared query over the allowed live documents of every segment,
        equal scores by global document number:
        ``(TopK, kernel stats summed over the segments or None, int64 accumulator?)``.

        With the search layout, the segments share one top-k (:mod:`.cross_segment`: the
        pruned phases of each segment start from the k-th score of all those searched before,
        and a segment that cannot reach it is skipped). Without it, each segment's exhaustive
        top-k above the running k-th score is merged by :func:`.composite.merge_topk`.
        """
        if not self.segments:
            return merge_topk([], [], k), None, False
        if self.has_search_layout:
            params = mode.kernel_params()
            if params is not None and (params.term_share < 1.0 or params.max_verified > 0):
                # The cross-segment kernel has no term pruning or budget: refuse, not ignore.
                budget = params.max_verified if params.max_verified > 0 else None
                raise ValueError(
                    "term_share and max_verified of approximate search are not supported on "
                    f"a live (multi-segment) index yet (got term_share={params.term_share}, "
                    f"max_verified={budget}); use cut_ratio and bound_weight, the layer "
                    "ranking (layer_postings=P with max_verified=V), or a single-segment "
                    "ImpactIndex"
                )
            if (
                params is not None
                and impact_index.FILTERED_CUT_STEP != 0.0
                and any(mask is not None for mask in allowed)
            ):
                sample = _allowed_sample(allowed, [s.num_documents for s in self.segments])
                params = _filtered_params(params, sample, len(sample))
            k = min(k, max(self.num_docnos, 1))
            result = self._searcher().search(terms, weights, k, params, allowed, floor)
            return TopK(result.docnos, result.scores), result.stats, result.int64_accumulator
        parts, int64 = [], False
        for position, segment in enumerate(self.segments):
            top, _, use_int64 = segment_top_k(
                segment, terms, weights, k, mode, allowed[position], floor
            )
            parts.append(top)
            int64 = int64 or use_int64
            merged = merge_topk(parts, self.offsets[: position + 1], k)
            if len(merged.docnos) == k:
                floor = max(floor, int(merged.scores[-1]))
        return merged, None, int64

    def search(
        self, query: QueryLike, k: int = 10, *, mode=None, filter=None, **deprecated
    ) -> list[Hit]:  # noqa: A002
        """The top-``k`` live documents for one query, best first (see
        :meth:`ImpactIndex.search`: same scores, modes, filters and tie-break)."""
        _check_k(k)
        resolved = self._mode(
            mode, deprecated.pop("cut_ratio", None), deprecated.pop("bound_weight", None)
        )
        allowed = self._allowed_parts(filter)
        terms, weights = self.prepare_query(query)
        top = self._top_k(terms, weights, k, resolved, allowed)[0]
        return self._hits(top.docnos, top.scores)

    def search_arrays(
        self, query: QueryLike, k: int = 10, *, mode=None, filter=None, floor=None
    ) -> TopK:  # noqa: A002
        """:meth:`search` as ``TopK(docnos, scores)`` arrays (``floor``: only scores above)."""
        from sparse_ir.index.filters import check_floor

        _check_k(k)
        allowed = self._allowed_parts(filter)
        terms, weights = self.prepare_query(query)
        mode = self._mode(mode, None, None)
        return self._top_k(terms, weights, k, mode, allowed, check_floor(floor))[0]

    def search_with_stats(
        self, query: QueryLike, k: int = 10, *, mode=None, filter=None, floor=None
    ) -> tuple[list[Hit], SearchStats]:  # noqa: A002
        """:meth:`search`, and what the search did, summed over the segments — and over the
        searches when ties made it search again (``postings``, ``verified``, ``candidates``,
        ``early_verifications`` added; ``theta0`` the first search's; ``cut_bound`` the
        largest; ``kth_score`` the final answer's)."""
        from sparse_ir.index.filters import check_floor
        from sparse_ir.index.pruned import STATS_FIELDS

        _check_k(k)
        resolved = self._mode(mode, None, None)
        allowed = self._allowed_parts(filter)
        terms, weights = self.prepare_query(query)
        top, kernel_stats, int64, searches = self._top_k(
            terms, weights, k, resolved, allowed, check_floor(floor)
        )
        if kernel_stats is not None:
            figures = dict(zip(STATS_FIELDS, kernel_stats.tolist()))
        else:  # exhaustive segment by segment: every posting of the query's terms, per search
            offsets = [np.asarray(s.term_offsets) for s in self.segments]
            postings = sum(int((o[terms + 1] - o[terms]).sum()) for o in offsets)
            figures = {"postings": searches * postings}
        figures["kth_score"] = int(top.scores[-1]) if len(top.scores) == k else 0
        stats = SearchStats(**figures, mode=resolved.name, int64_accumulator=int64)
        return self._hits(top.docnos, top.scores), stats

    def search_batch(
        self,
        queries,
        k: int = 10,
        *,
        query_ids: Sequence[str] | None = None,
        mode=None,
        threads: int | None = None,
        filter=None,  # noqa: A002
        **deprecated,
    ) -> Run:
        """Top-``k`` for many queries (see :meth:`ImpactIndex.search_batch`)."""
        _check_k(k)
        resolved = self._mode(
            mode, deprecated.pop("cut_ratio", None), deprecated.pop("bound_weight", None)
        )
        allowed = self._allowed_parts(filter)
        ids, indptr, terms, weights = self._batch_query_arrays(queries)
        if query_ids is not None:
            if len(query_ids) != len(ids):
                raise ValueError(f"{len(query_ids)} query ids for {len(ids)} queries")
            ids = [str(q) for q in query_ids]
        terms = np.asarray(terms, np.int32)

        def one(q: int) -> list[Hit]:
            start, end = int(indptr[q]), int(indptr[q + 1])
            top = self._top_k(terms[start:end], weights[start:end], k, resolved, allowed)[0]
            return self._hits(top.docnos, top.scores)

        workers = max(1, min(threads or os.cpu_count() or 1, len(ids)))
        if workers > 1:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(workers) as pool:
                results = list(pool.map(one, range(len(ids))))
        else:
            results = [one(q) for q in range(len(ids))]
        run = Run(name="sparse-ir")
        for qid, hits in zip(ids, results):
            run.results[qid] = hits
        return run

    def reference_search(self, query: QueryLike, k: int = 10) -> list[Hit]:
        """Brute force over the live documents, by plain numpy (slow; for tests)."""
        _check_k(k)
        terms, weights = self.prepare_query(query)
        scores = [s.reference_scores(terms, weights) for s in self.segments]
        every = np.concatenate(scores) if scores else np.zeros(0, np.int64)
        every[self.deleted_mask()] = 0
        candidates = np.flatnonzero(every > 0)
        docs, top = self._ordered(candidates, every[candidates], k)
        return self._hits(docs, top)

    def explain(self, query: QueryLike, docno: int) -> list[TermContribution]:
        """Each query term's contribution to a live document's score, largest first."""
        part, local = self._locate(docno)
        if self.deleted[part] is not None and self.deleted[part][local]:
            raise KeyError(f"document {docno} ({self.doc_ids[docno]!r}) is deleted")
        terms, weights = self.prepare_query(query)
        return self.segments[part].explain((terms, weights), local)


def _add_stats(first: np.ndarray | None, more: np.ndarray | None) -> np.ndarray | None:
    """Kernel stats of two searches of one query: their work added, as the cross-segment
    searcher adds its segments' (``theta0``: the first nonzero; ``cut_bound``: the larger)."""
    if first is None or more is None:
        return first if more is None else more
    from sparse_ir.index.pruned import STAT_CUT_BOUND, STAT_THETA0

    total = first + more
    total[STAT_THETA0] = first[STAT_THETA0] or more[STAT_THETA0]
    total[STAT_CUT_BOUND] = max(first[STAT_CUT_BOUND], more[STAT_CUT_BOUND])
    return total


# Entries sampled from the allowed masks to estimate the share a filter allows.
_SAMPLE = impact_index.MASK_SAMPLE


def _allowed_sample(allowed: list, sizes: list[int]) -> np.ndarray:
    """About ``_SAMPLE`` entries of the segments' allowed masks (None: all ``size`` allowed),
    strided evenly over all document numbers (uint8): what ``_filtered_params`` counts."""
    step = max(1, sum(sizes) // _SAMPLE)
    parts = [
        np.ones(-(-size // step), np.uint8) if mask is None else mask[::step]
        for mask, size in zip(allowed, sizes)
    ]
    return np.concatenate(parts) if parts else np.ones(1, np.uint8)


class LiveDenseIndex(_LiveBase):
    """The commit of a live dense index, searched like a :class:`DenseIndex`."""

    @property
    def dim(self) -> int:
        """Vector dimension."""
        return int(self.commit.fixed["dim"])

    @property
    def has_hnsw(self) -> bool:
        """True when every segment has an HNSW graph."""
        return self.commit.fixed.get("hnsw") is not None

    def search(self, query: np.ndarray, k: int = 10, *, mode="exact", **options) -> list[Hit]:
        """The top-``k`` live documents for one query vector (see :meth:`DenseIndex.search`)."""
        array = np.asarray(query, np.float32)
        if array.ndim == 2 and len(array) != 1:
            raise InputError(f"search takes one query vector; got {len(array)} (use search_batch)")
        return self.search_batch(array.reshape(1, -1), k, mode=mode, **options).results["0"]

    def search_batch(
        self,
        queries: np.ndarray,
        k: int = 10,
        *,
        query_ids: Sequence[str] | None = None,
        mode="exact",
        ef_search: int | None = None,
        chunk_rows: int | None = None,
        method=None,
        filter=None,  # noqa: A002
    ) -> Run:
        """Top-``k`` live documents for each row of ``queries`` (see
        :meth:`DenseIndex.search_batch`)."""
        from sparse_ir.index.dense import _mode_alias

        _check_k(k)
        mode = _mode_alias(mode, method)
        array = np.atleast_2d(np.asarray(queries))
        if array.shape[-1] != self.dim:
            raise InputError(
                f"query vectors must have dimension {self.dim} (this index's); "
                f"got shape {array.shape}"
            )
        ids = (
            [str(i) for i in range(len(array))]
            if query_ids is None
            else [str(q) for q in query_ids]
        )
        if len(ids) != len(array):
            raise ValueError(f"{len(ids)} query ids for {len(array)} queries")
        allowed = self._allowed_parts(filter)
        per_segment = [
            self._segment_runs(segment, mask, array, k, mode, ef_search, chunk_rows)
            for segment, mask in zip(self.segments, allowed)
        ]
        run = Run(name="dense")
        for q, qid in enumerate(ids):
            parts = [segment_parts[q] for segment_parts in per_segment]
            # Each segment's ties are in ordinal order already (its numbers follow them).
            keys = [o[part.docnos] for o, part in zip(self.segment_ordinals, parts)]
            top = merge_topk(parts, self.offsets[:-1], k, tie_keys=keys)
            run.results[qid] = self._hits(top.docnos, top.scores)
        return run

    @staticmethod
    def _segment_runs(segment, allowed, array, k, mode, ef_search, chunk_rows) -> list[TopK]:
        """One segment's top-``k`` allowed documents for every query (``allowed``: uint8 per
        document, None: all; deleted documents are never allowed)."""
        run = segment.search_batch(
            array,
            k,
            mode=mode,
            ef_search=ef_search,
            chunk_rows=chunk_rows,
            filter=None if allowed is None else allowed.view(bool),
        )
        return [
            TopK(
                np.array([h.docno for h in hits], np.int64),
                np.array([h.score for h in hits], np.float32),
            )
            for hits in run.results.values()
        ]

    def reference_search(self, query: np.ndarray, k: int = 10) -> list[Hit]:
        """Brute force over the live documents (slow; for tests)."""
        _check_k(k)
        vector = np.asarray(query, np.float32).reshape(-1)
        if not self.segments:
            return []
        matrix = np.concatenate([np.asarray(s.vectors) for s in self.segments])
        scores = matrix @ vector
        live = np.flatnonzero(~self.deleted_mask())
        chosen, _ = self._ordered(live, scores[live], k)
        return self._hits(chosen, scores[chosen])
