"""Streaming construction of an impact index within a memory budget.

Documents arrive as :class:`~sparse_ir.sparse_batch.SparseBatch` shards and get consecutive
document numbers. Postings ``(term, doc, impact)`` are buffered; when the buffer reaches the
budget it is sorted by term (a counting sort: documents are already in increasing order, so the
sort is stable and O(n)) and spilled to disk as a *run*. Runs cover increasing, disjoint ranges of
documents, so the final merge needs no heap: a term's postings are its postings in run 1, then in
run 2, and so on. The merge writes the final arrays sequentially, a block of terms at a time.

Because of that, an index built with a tiny budget is byte-identical to one built in one run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numba
import numpy as np

from sparse_ir.errors import InputError
from sparse_ir.index.manifest import IMPACT_FORMAT, IMPACT_FORMAT_VERSION, ImpactManifest
from sparse_ir.index.metadata import MetadataWriter, take_metadata
from sparse_ir.index.storage import (
    ArrayWriter,
    FileRecord,
    IndexDirectory,
    _open_for_write,
    open_array,
    write_array,
    write_bytes_file,
    write_manifest,
)
from sparse_ir.index.strings import StringColumnWriter
from sparse_ir.quantize import Quantizer, QuantizeStats, smallest_unsigned_dtype
from sparse_ir.sparse_batch import SparseBatch
from sparse_ir.validation import first_duplicate, first_id_problem, term_problem

# IMPACT_FORMAT and IMPACT_FORMAT_VERSION live in .manifest; importable from here as before.
__all__ = [
    "build_impact_index",
    "write_impact_files",
    "BuildReport",
    "parse_memory",
    "vocab_hash",
    "IMPACT_FORMAT",
    "IMPACT_FORMAT_VERSION",
]

logger = logging.getLogger(__name__)

# Memory of one buffered posting at the sort peak, beyond its term id and impact as buffered (2
# bytes each for a vocabulary of at most 2^16 terms and impacts of at most 16 bits): the sorted
# copy's document number (4) and impact (2). See _PostingBuffer.bytes_per_posting.
_BYTES_PER_BUFFERED_POSTING = 10
_MERGE_BLOCK_POSTINGS = 1 << 23
# Runs smaller than this are not worth a file (tests lower it to spill tiny collections).
_MIN_BUFFERED_POSTINGS = 1024


def parse_memory(value: int | str) -> int:
    """Bytes from ``1_000_000``, ``"512MB"``, ``"4GB"``, ``"4GiB"``, ``"64k"``..."""
    if isinstance(value, (int, np.integer)):
        if value <= 0:
            raise ValueError(f"memory budget must be positive, got {value}")
        return int(value)
    match = re.fullmatch(r"\s*([0-9.]+)\s*([kKmMgGtT]?)(i?)[bB]?\s*", str(value))
    if not match:
        raise ValueError(f"cannot read memory size {value!r} (examples: 512MB, 4GB, 1.5GiB)")
    number, unit, binary = float(match.group(1)), match.group(2).upper(), match.group(3)
    base = 1024 if binary else 1000
    power = {"": 0, "K": 1, "M": 2, "G": 3, "T": 4}[unit]
    result = int(number * base**power)
    if result <= 0:
        raise ValueError(f"memory budget must be positive, got {value!r}")
    return result


def vocab_hash(vocab: Iterable[str]) -> str:
    """SHA-256 of the vocabulary (its JSON list form): two indexes match only if equal."""
    data = json.dumps(list(vocab), ensure_ascii=False).encode("utf-8")
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class BuildReport:
    """What a build did; stored in the manifest and logged."""

    documents: int = 0
    postings: int = 0
    empty_documents: int = 0
    runs_spilled: int = 0
    seconds: float = 0.0
    quantize: QuantizeStats = field(default_factory=QuantizeStats)

    def facts(self, memory_budget: int) -> dict:
        """What the manifest records of the build (under ``build``, with the caller's
        settings)."""
        return {
            "memory_budget": memory_budget,
            "runs_spilled": self.runs_spilled,
            "seconds": round(self.seconds, 3),
            "empty_documents": self.empty_documents,
            "zeros_dropped": self.quantize.zeros_dropped,
            "saturated": self.quantize.saturated,
        }


@numba.njit(cache=True, nogil=True)
def _count_terms(terms, impacts, counts, maxima):
    """Add one part's postings to each term's count and maximum impact."""
    for i in range(len(terms)):
        t = terms[i]
        counts[t] += 1
        if impacts[i] > maxima[t]:
            maxima[t] = impacts[i]


@numba.njit(cache=True, nogil=True)
def _scatter_part(terms, impacts, lengths, first_doc, cursor, out_docs, out_impacts):
    """Counting sort by term, one part at a time: append each posting at its term's cursor.

    Parts arrive in document order and documents in order within a part, so documents end up
    ascending within every term (a stable sort, no comparison needed).
    """
    p = 0
    for row in range(len(lengths)):
        doc = first_doc + row
        for _ in range(lengths[row]):
            t = terms[p]
            position = cursor[t]
            out_docs[position] = doc
            out_impacts[position] = impacts[p]
            cursor[t] = position + 1
            p += 1


@numba.njit(cache=True, nogil=True)
def _gather_block(
    run_offsets, run_docs, run_impacts, first_term, last_term, cursor, out_docs, out_impacts
):
    """Append one run's postings of terms [first_term, last_term) at each term's cursor."""
    for t in range(first_term, last_term):
        start = run_offsets[t]
        end = run_offsets[t + 1]
        position = cursor[t - first_term]
        for i in range(start, end):
            out_docs[position] = run_docs[i]
            out_impacts[position] = run_impacts[i]
            position += 1
        cursor[t - first_term] = position


@dataclass
class _Run:
    offsets: np.ndarray  # int64 [V+1]
    docs: np.ndarray  # int32
    impacts: np.ndarray  # the buffer's impact dtype


@dataclass
class _Part:
    terms: np.ndarray  # term ids of the part's postings, document by document
    impacts: np.ndarray
    lengths: np.ndarray  # postings per document
    first_doc: int


class _PostingBuffer:
    """Buffers postings and spills term-sorted runs to disk beyond the memory budget.

    Postings are kept as they arrive, in compact copies (16-bit term ids and impacts when they
    fit; document numbers are implied by the row lengths), while their per-term counts are
    kept up to date. Sorting a run allocates the output at its final size from those counts
    and scatters the parts into it one by one, releasing each: the peak is the buffered parts
    plus the sorted run, :attr:`bytes_per_posting` per posting.
    """

    def __init__(self, directory: Path, vocab_size: int, budget_bytes: int, impact_dtype: np.dtype):
        self.directory = directory
        self.vocab_size = vocab_size
        self.term_dtype = np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.int32)
        self.impact_dtype = np.dtype(impact_dtype)
        # Buffered term id and impact, then the sorted copy's document number and impact.
        self.bytes_per_posting = self.term_dtype.itemsize + 2 * self.impact_dtype.itemsize + 4
        self.budget_postings = max(_MIN_BUFFERED_POSTINGS, budget_bytes // self.bytes_per_posting)
        self.parts: list[_Part] = []
        self.buffered = 0
        self.runs: list[_Run] = []
        self.counts = np.zeros(vocab_size, np.int64)
        self.maxima = np.zeros(vocab_size, np.int64)
        self._run_counts = np.zeros(vocab_size, np.int64)
        self.spilled = 0

    def add(
        self, terms: np.ndarray, impacts: np.ndarray, lengths: np.ndarray, first_doc: int
    ) -> None:
        """Buffer one shard's postings (arrays owned by the buffer from now on)."""
        if len(terms):
            _count_terms(terms, impacts, self._run_counts, self.maxima)
            self.parts.append(_Part(terms, impacts, lengths, first_doc))
            self.buffered += len(terms)
        if self.buffered >= self.budget_postings:
            self._sort_run(spill=True)

    def _sort_run(self, spill: bool) -> None:
        if not self.parts:
            return
        counts, self._run_counts = self._run_counts, np.zeros(self.vocab_size, np.int64)
        offsets = np.zeros(self.vocab_size + 1, np.int64)
        np.cumsum(counts, out=offsets[1:])
        self.counts += counts
        total = int(offsets[-1])
        sorted_docs = np.empty(total, np.int32)
        sorted_impacts = np.empty(total, self.impact_dtype)
        cursor = offsets[:-1].copy()
        while self.parts:  # each part is released as soon as it is placed
            part = self.parts.pop(0)
            _scatter_part(
                part.terms,
                part.impacts,
                part.lengths,
                part.first_doc,
                cursor,
                sorted_docs,
                sorted_impacts,
            )
        self.buffered = 0
        if spill:
            number = len(self.runs)
            base = self.directory / f".run-{number:05d}"
            write_array(f"{base}.docs.bin", "run.docs", sorted_docs)
            write_array(f"{base}.impacts.bin", "run.impacts", sorted_impacts)
            del sorted_docs, sorted_impacts
            self.runs.append(
                _Run(offsets, open_array(f"{base}.docs.bin"), open_array(f"{base}.impacts.bin"))
            )
            self.spilled += 1
            logger.debug("spilled run %d (%d postings)", number, total)
        else:
            self.runs.append(_Run(offsets, sorted_docs, sorted_impacts))

    def finish(self) -> list[_Run]:
        self._sort_run(spill=False)
        return self.runs

    def remove_run_files(self) -> None:
        self.runs.clear()
        for entry in self.directory.glob(".run-*"):
            entry.unlink()


class _ForwardScratch:
    """The documents' own (term, impact) lists as they arrive, for the forward index.

    The input is document-major already, so the forward index is the input itself; its final
    files are written at the end (an array header states the length), from these scratch files,
    with the final impact dtype. Scratch files are read back at once and removed, so they are
    not fsynced: they rarely leave the page cache.
    """

    def __init__(self, directory: Path):
        self.paths = (directory / ".forward-terms.scratch", directory / ".forward-impacts.scratch")
        self._files = []
        for path in self.paths:
            try:
                self._files.append(_open_for_write(path))
            except OSError as exc:
                self.remove()
                raise OSError(exc.errno, f"{exc.strerror} (creating {path})", str(path)) from None
        self.lengths: list[np.ndarray] = []
        self.dtypes: tuple[np.dtype, np.dtype] | None = None

    def add(self, terms: np.ndarray, impacts: np.ndarray, lengths: np.ndarray) -> None:
        self.dtypes = (terms.dtype, impacts.dtype)
        for handle, path, values in zip(self._files, self.paths, (terms, impacts)):
            try:
                handle.write(memoryview(np.ascontiguousarray(values)).cast("B"))
            except OSError as exc:
                self.remove()
                raise OSError(exc.errno, f"{exc.strerror} (writing {path})", str(path)) from None
        self.lengths.append(np.asarray(lengths, np.int64))

    def close(self) -> None:
        for handle, path in zip(self._files, self.paths):
            try:
                handle.close()
            except OSError as exc:
                self.remove()
                raise OSError(exc.errno, f"{exc.strerror} (writing {path})", str(path)) from None

    def remove(self) -> None:
        for handle in self._files:
            with contextlib.suppress(OSError):
                handle.close()
        for path in self.paths:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def _compact(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """A copy of ``values`` in ``dtype`` (the buffer must own its arrays: callers may reuse
    theirs)."""
    return np.array(values, dtype=dtype, copy=True)


def _check_ids(shard_ids: tuple[str, ...], first: int, seen_ids: set[str]) -> None:
    """Refuse an invalid id (:func:`sparse_ir.validation.id_problem`) or a duplicate one, within
    the shard or with an earlier one; remember the shard's.

    Set operations and the id rule's fast path run in C; only a shard with a problem is walked
    id by id, to name it.
    """
    if bad := first_id_problem(shard_ids):
        raise InputError(f"invalid id: document {first + bad[0]}: {bad[1]}")
    if seen_ids.isdisjoint(shard_ids) and len(set(shard_ids)) == len(shard_ids):
        seen_ids.update(shard_ids)
        return
    earlier: set[str] = set()
    for position, doc_id in enumerate(shard_ids):
        if doc_id in seen_ids or doc_id in earlier:
            raise InputError(f"duplicate document id {doc_id!r} (document {first + position})")
        earlier.add(doc_id)


def _as_shards(vectors) -> Iterator[SparseBatch]:
    if isinstance(vectors, SparseBatch):
        yield vectors
        return
    for shard in vectors:
        if not isinstance(shard, SparseBatch):
            raise TypeError(f"expected SparseBatch shards, got {type(shard).__name__}")
        yield shard


def build_impact_index(
    vectors: SparseBatch | Iterable[SparseBatch],
    path: str | os.PathLike,
    *,
    quantizer: Quantizer,
    memory_budget: int | str = "1GB",
    contents: Iterable[tuple[str, str]] | None = None,
    settings: dict | None = None,
    show_progress: bool | None = None,
    total_documents: int | None = None,
    search_layout: bool = True,
    metadata: Iterable[Mapping | None] | None = None,
    doc_ordered_postings: bool | None = None,
) -> tuple[Path, BuildReport]:
    """Write a new generation of the impact index at ``path`` and publish it atomically.

    See :meth:`sparse_ir.index.ImpactIndex.build` for the arguments. Returns the generation
    directory and a :class:`BuildReport`.
    """
    directory = IndexDirectory(path)
    with directory.publish() as temporary:
        report = write_impact_files(
            vectors,
            temporary,
            quantizer=quantizer,
            memory_budget=memory_budget,
            contents=contents,
            settings=settings,
            show_progress=show_progress,
            total_documents=total_documents,
            search_layout=search_layout,
            metadata=metadata,
            doc_ordered_postings=doc_ordered_postings,
        )
    generation = directory.current()
    logger.info(
        "indexed %d documents, %d postings in %.1fs (%d runs spilled) -> %s",
        report.documents,
        report.postings,
        report.seconds,
        report.runs_spilled,
        generation,
    )
    return generation, report


def write_impact_files(
    vectors: SparseBatch | Iterable[SparseBatch],
    temporary: Path,
    *,
    quantizer: Quantizer,
    memory_budget: int | str = "1GB",
    contents: Iterable[tuple[str, str]] | None = None,
    settings: dict | None = None,
    show_progress: bool | None = None,
    total_documents: int | None = None,
    search_layout: bool = True,
    metadata: Iterable[Mapping | None] | None = None,
    doc_ordered_postings: bool | None = None,
) -> BuildReport:
    """Write every file of one impact index generation (manifest last) into ``temporary``.

    What :func:`build_impact_index` publishes, and what a live index writes as one segment
    (:mod:`sparse_ir.index.writer`): the same bytes for the same documents and arguments.
    ``doc_ordered_postings``: see :func:`keeps_doc_ordered_postings`.
    """
    from tqdm.auto import tqdm

    doc_ordered = keeps_doc_ordered_postings(search_layout, doc_ordered_postings)
    budget = parse_memory(memory_budget)
    started = time.perf_counter()
    report = BuildReport()
    content_iter = iter(contents) if contents is not None else None
    # Impacts are buffered (and spilled) in the smallest type that can hold max_impact.
    buffer_impact_dtype = smallest_unsigned_dtype(max(quantizer.max_impact, 1))
    ids = StringColumnWriter(temporary, "doc_ids")
    titles = StringColumnWriter(temporary, "doc_titles") if content_iter else None
    texts = StringColumnWriter(temporary, "doc_texts") if content_iter else None
    forward = _ForwardScratch(temporary) if search_layout else None
    metadata_iter = iter(metadata) if metadata is not None else None
    metadata_writer = MetadataWriter(temporary) if metadata is not None else None
    seen_ids: set[str] = set()
    vocab: tuple[str, ...] | None = None
    buffer: _PostingBuffer | None = None
    progress = tqdm(
        total=total_documents,
        desc="indexing",
        unit="doc",
        disable=None if show_progress is None else not show_progress,
    )
    try:
        for shard in _as_shards(vectors):
            if vocab is None:
                vocab = shard.vocab
                _check_vocabulary(vocab)
                buffer = _PostingBuffer(temporary, len(vocab), budget, buffer_impact_dtype)
            elif shard.vocab != vocab:
                raise InputError(
                    "all shards must share one vocabulary; shard starting at "
                    f"document {report.documents} has a different one"
                )
            impacts_batch = _quantized_shard(shard, quantizer, report)
            first = report.documents
            _add_ids_and_contents(shard, first, seen_ids, ids, titles, texts, content_iter)
            if metadata_writer is not None:
                shard_ids = shard.ids or tuple(str(first + i) for i in range(len(shard)))
                records = take_metadata(metadata_iter, len(shard), shard_ids)
                metadata_writer.add(records, shard_ids)
            lengths = impacts_batch.row_lengths()
            report.empty_documents += int((lengths == 0).sum())
            terms = _compact(impacts_batch.indices, buffer.term_dtype)
            impacts = _compact(impacts_batch.values, buffer.impact_dtype)
            if forward is not None:
                forward.add(terms, impacts, lengths)
            buffer.add(terms, impacts, lengths, first)
            report.documents += len(shard)
            report.postings += impacts_batch.nnz
            progress.update(len(shard))
        if vocab is None:
            raise InputError("no documents to index")
        files, max_impact, impact_dtype, layout_record = _write_postings_and_columns(
            temporary,
            buffer,
            vocab,
            report,
            (search_layout, doc_ordered),
            forward,
            (ids, titles, texts),
        )
        if metadata_writer is not None:
            files.update({record.name: record for record in metadata_writer.finish()})
        report.seconds = time.perf_counter() - started
        manifest = ImpactManifest(
            created_by="sparse_ir " + _version(),
            quantizer=quantizer.to_dict(),
            vocab_size=len(vocab),
            vocab_hash=vocab_hash(vocab),
            num_documents=report.documents,
            num_postings=report.postings,
            impact_dtype=impact_dtype.str,
            max_impact=max_impact,
            has_contents=content_iter is not None,
            search_layout=layout_record,
            build={**report.facts(budget), **(settings or {})},
            files=files,
            doc_ordered_postings=doc_ordered,
        )
        write_manifest(temporary, manifest.to_dict())
    finally:
        progress.close()
        if forward is not None:
            forward.remove()
    return report


def _quantized_shard(shard: SparseBatch, quantizer: Quantizer, report: BuildReport) -> SparseBatch:
    """The shard's integer impacts: checked and stripped of zeros, or quantized."""
    if shard.is_quantized:
        if len(shard.values) and shard.values.max() > quantizer.max_impact:
            raise InputError(
                f"impact {int(shard.values.max())} exceeds the "
                f"quantizer's max_impact {quantizer.max_impact}"
            )
        report.quantize.weights += shard.nnz
        impacts_batch = _drop_zeros(shard, report.quantize)
    else:
        impacts_batch = quantizer.quantize(shard, report.quantize)
    return impacts_batch


def _add_ids_and_contents(shard, first, seen_ids, ids, titles, texts, content_iter) -> None:
    """Check the shard's document ids (or number its documents) and write them, with the
    shard's share of the contents."""
    if first + len(shard) > np.iinfo(np.int32).max:
        raise InputError("more than 2^31-1 documents: shard the collection")
    shard_ids = (
        shard.ids if shard.ids is not None else tuple(str(first + i) for i in range(len(shard)))
    )
    _check_ids(shard_ids, first, seen_ids)
    ids.extend(shard_ids)
    if content_iter is not None:
        pairs = [next(content_iter, None) for _ in range(len(shard))]
        if any(p is None for p in pairs):
            raise InputError("contents ended before the vectors did")
        titles.extend(p[0] for p in pairs)
        texts.extend(p[1] for p in pairs)


def keeps_doc_ordered_postings(search_layout: bool, doc_ordered_postings: bool | None) -> bool:
    """Whether a build writes ``postings_docs.bin``/``postings_impacts.bin``.

    Default (None): only without a search layout. With one, every search reads the layout's
    impact-ordered copy (exhaustive too: the sums do not depend on the order of the
    additions) and everything else reads it or the forward index, so the document-ordered
    copy would be 1.5× the impact-ordered one's bytes, read by nothing. True keeps them (the
    files of earlier builds: format version 1); False without a search layout is refused, as
    the index would hold no postings.
    """
    if doc_ordered_postings is None:
        return not search_layout
    if not doc_ordered_postings and not search_layout:
        raise ValueError(
            "doc_ordered_postings=False needs search_layout=True: the search layout's "
            "impact-ordered copy is then the only copy of the postings"
        )
    return bool(doc_ordered_postings)


def _write_postings_and_columns(temporary, buffer, vocab, report, layouts, forward, columns):
    """Merge the spilled runs into the postings (and the search layout), finish the string
    columns and write the vocabulary. ``layouts``: ``(search layout?, document-ordered
    postings?)``. Returns the file records, the largest impact, the impact dtype and the
    search layout's manifest record (or None)."""
    search_layout, doc_ordered = layouts
    runs = buffer.finish()
    _check_used_terms(vocab, buffer.counts)
    report.runs_spilled = buffer.spilled
    files: dict[str, FileRecord] = {}
    max_impact = int(buffer.maxima.max()) if len(buffer.maxima) else 0
    impact_dtype = smallest_unsigned_dtype(max(max_impact, 1))
    layout = None
    if search_layout:  # extra arrays for pruned/approximate search (index/layout.py)
        from sparse_ir.index.layout import SearchLayoutWriter

        layout = SearchLayoutWriter(
            temporary,
            num_documents=report.documents,
            vocab_size=len(vocab),
            impact_dtype=impact_dtype,
            num_postings=report.postings,
        )
    _merge_runs(temporary, runs, buffer.counts, impact_dtype, files, layout, doc_ordered)
    files["term_max_impact.bin"] = write_array(
        temporary / "term_max_impact.bin",
        "term_max_impact",
        buffer.maxima.astype(impact_dtype),
    )
    buffer.remove_run_files()
    layout_record = None
    if layout is not None:
        forward.close()
        layout_record, layout_files = layout.finish(forward)
        forward.remove()
        files.update(layout_files)
    for column in columns:
        if column is not None:
            for record in column.finish():
                files[record.name] = record
    vocab_bytes = json.dumps(list(vocab), ensure_ascii=False).encode("utf-8")
    files["vocab.json"] = write_bytes_file(temporary / "vocab.json", vocab_bytes)
    return files, max_impact, impact_dtype, layout_record


def _drop_zeros(batch: SparseBatch, stats: QuantizeStats) -> SparseBatch:
    """Integer input may list explicit zero impacts: they are not postings (counted, dropped)."""
    if not len(batch.values) or batch.values.min() > 0:
        return batch
    keep = batch.values > 0
    stats.zeros_dropped += int(len(keep) - keep.sum())
    rows = np.repeat(np.arange(len(batch)), batch.row_lengths())
    indptr = np.zeros(len(batch) + 1, np.int64)
    np.cumsum(np.bincount(rows[keep], minlength=len(batch)), out=indptr[1:])
    return SparseBatch(indptr, batch.indices[keep], batch.values[keep], batch.vocab, batch.ids)


def _check_vocabulary(vocab: tuple[str, ...]) -> None:
    """Refuse a vocabulary whose tokens are not distinct strings (term ids would be ambiguous)."""
    for term, token in enumerate(vocab):
        if not isinstance(token, str):
            raise InputError(f"invalid term: vocabulary entry {term} is {token!r}, not a string")
    if duplicate := first_duplicate(vocab):
        raise InputError(
            f"invalid term: the vocabulary lists {duplicate[1]!r} twice "
            f"(term ids {vocab.index(duplicate[1])} and {duplicate[0]})"
        )


def _check_used_terms(vocab: tuple[str, ...], counts: np.ndarray) -> None:
    """Refuse a term with postings that Lucene cannot take (see :mod:`sparse_ir.validation`)."""
    for term in np.flatnonzero(counts).tolist():
        if problem := term_problem(vocab[term]):
            raise InputError(
                f"invalid term: term id {term} occurs in {int(counts[term])} document(s): {problem}"
            )


def _merge_runs(
    directory: Path,
    runs: list[_Run],
    counts: np.ndarray,
    impact_dtype: np.dtype,
    files: dict[str, FileRecord],
    layout=None,
    doc_ordered: bool = True,
) -> None:
    """Write term_offsets, and postings_docs and postings_impacts when ``doc_ordered``, from
    the sorted runs.

    Terms are merged a block at a time (each run holds each term's postings of a document range
    after the previous run's); each block also goes to the search layout writer, if any, while
    it is in memory. A single run (nothing spilled) is written as it is, without a copy.
    """
    vocab_size = len(counts)
    offsets = np.zeros(vocab_size + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    total = int(offsets[-1])
    files["term_offsets.bin"] = write_array(directory / "term_offsets.bin", "term_offsets", offsets)
    docs_out = impacts_out = None
    if doc_ordered:
        docs_out = ArrayWriter(directory / "postings_docs.bin", "postings_docs", np.int32, total)
        impacts_out = ArrayWriter(
            directory / "postings_impacts.bin", "postings_impacts", impact_dtype, total
        )
    first = 0
    while first < vocab_size:
        # The largest block of terms that fits in _MERGE_BLOCK_POSTINGS (at least one term).
        last = (
            int(np.searchsorted(offsets, offsets[first] + _MERGE_BLOCK_POSTINGS, side="right")) - 1
        )
        last = min(max(last, first + 1), vocab_size)
        lo, hi = int(offsets[first]), int(offsets[last])
        if len(runs) == 1:
            block_docs = runs[0].docs[lo:hi]
            block_impacts = runs[0].impacts[lo:hi]
        else:
            block_docs = np.empty(hi - lo, np.int32)
            block_impacts = np.empty(hi - lo, runs[0].impacts.dtype if runs else impact_dtype)
            cursor = offsets[first:last] - offsets[first]
            for run in runs:
                _gather_block(
                    run.offsets,
                    run.docs,
                    run.impacts,
                    first,
                    last,
                    cursor,
                    block_docs,
                    block_impacts,
                )
        block_impacts = block_impacts.astype(impact_dtype, copy=False)
        if docs_out is not None:
            docs_out.write(block_docs)
            impacts_out.write(block_impacts)
        if layout is not None:
            layout.add_terms(offsets, first, last, block_docs, block_impacts)
        first = last
    if docs_out is not None:
        files["postings_docs.bin"] = docs_out.close()
        files["postings_impacts.bin"] = impacts_out.close()


def _version() -> str:
    from sparse_ir import __version__

    return __version__
