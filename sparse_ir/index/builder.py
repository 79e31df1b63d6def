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

import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numba
import numpy as np

from sparse_ir.errors import InputError
from sparse_ir.index.storage import (
    ArrayWriter,
    FileRecord,
    IndexDirectory,
    open_array,
    write_array,
    write_bytes_file,
    write_manifest,
)
from sparse_ir.index.strings import StringColumnWriter
from sparse_ir.quantize import Quantizer, QuantizeStats, smallest_unsigned_dtype
from sparse_ir.sparse_batch import SparseBatch
from sparse_ir.validation import first_duplicate, id_problem, term_problem

__all__ = ["build_impact_index", "BuildReport", "parse_memory", "vocab_hash",
           "IMPACT_FORMAT", "IMPACT_FORMAT_VERSION"]

logger = logging.getLogger(__name__)

IMPACT_FORMAT = "sparse-ir-impact-index"
IMPACT_FORMAT_VERSION = 1
# Bytes of memory one buffered posting costs at the spill peak: term, doc and impact as they
# arrive (12) plus the term-sorted copy being made (8), plus slack for the batch lists.
_BYTES_PER_BUFFERED_POSTING = 24
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


@numba.njit(cache=True, nogil=True)
def _counting_sort_by_term(terms, docs, impacts, vocab_size):
    """Stable sort of postings by term; also each term's count and maximum impact."""
    counts = np.zeros(vocab_size, np.int64)
    maxima = np.zeros(vocab_size, np.int64)
    for i in range(len(terms)):
        t = terms[i]
        counts[t] += 1
        if impacts[i] > maxima[t]:
            maxima[t] = impacts[i]
    cursor = np.empty(vocab_size, np.int64)
    total = 0
    for t in range(vocab_size):
        cursor[t] = total
        total += counts[t]
    out_docs = np.empty(len(terms), np.int32)
    out_impacts = np.empty(len(terms), np.uint32)
    for i in range(len(terms)):
        t = terms[i]
        position = cursor[t]
        out_docs[position] = docs[i]
        out_impacts[position] = impacts[i]
        cursor[t] = position + 1
    return counts, maxima, out_docs, out_impacts


@numba.njit(cache=True, nogil=True)
def _gather_block(run_offsets, run_docs, run_impacts, first_term, last_term,
                  cursor, out_docs, out_impacts):
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
    impacts: np.ndarray  # uint32


class _PostingBuffer:
    """Buffers postings and spills term-sorted runs to disk beyond the memory budget."""

    def __init__(self, directory: Path, vocab_size: int, budget_postings: int):
        self.directory = directory
        self.vocab_size = vocab_size
        self.budget_postings = budget_postings
        self.parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.buffered = 0
        self.runs: list[_Run] = []
        self.counts = np.zeros(vocab_size, np.int64)
        self.maxima = np.zeros(vocab_size, np.int64)
        self.spilled = 0

    def add(self, terms: np.ndarray, docs: np.ndarray, impacts: np.ndarray) -> None:
        self.parts.append((terms, docs, impacts))
        self.buffered += len(terms)
        if self.buffered >= self.budget_postings:
            self._sort_run(spill=True)

    def _sort_run(self, spill: bool) -> None:
        if not self.parts:
            return
        terms = np.concatenate([p[0] for p in self.parts])
        docs = np.concatenate([p[1] for p in self.parts])
        impacts = np.concatenate([p[2] for p in self.parts])
        self.parts.clear()
        self.buffered = 0
        counts, maxima, sorted_docs, sorted_impacts = _counting_sort_by_term(
            terms, docs, impacts, self.vocab_size)
        del terms, docs, impacts
        self.counts += counts
        np.maximum(self.maxima, maxima, out=self.maxima)
        offsets = np.zeros(self.vocab_size + 1, np.int64)
        np.cumsum(counts, out=offsets[1:])
        if spill:
            number = len(self.runs)
            base = self.directory / f".run-{number:05d}"
            write_array(f"{base}.docs.bin", "run.docs", sorted_docs)
            write_array(f"{base}.impacts.bin", "run.impacts", sorted_impacts)
            del sorted_docs, sorted_impacts
            self.runs.append(_Run(offsets, open_array(f"{base}.docs.bin"),
                                  open_array(f"{base}.impacts.bin")))
            self.spilled += 1
            logger.debug("spilled run %d (%d postings)", number, int(offsets[-1]))
        else:
            self.runs.append(_Run(offsets, sorted_docs, sorted_impacts))

    def finish(self) -> list[_Run]:
        self._sort_run(spill=False)
        return self.runs

    def remove_run_files(self) -> None:
        self.runs.clear()
        for entry in self.directory.glob(".run-*"):
            entry.unlink()


def _as_shards(vectors) -> Iterator[SparseBatch]:
    if isinstance(vectors, SparseBatch):
        yield vectors
        return
    for shard in vectors:
        if not isinstance(shard, SparseBatch):
            raise TypeError(f"expected SparseBatch shards, got {type(shard).__name__}")
        yield shard


def build_impact_index(vectors: SparseBatch | Iterable[SparseBatch], path: str | os.PathLike, *,
                       quantizer: Quantizer, memory_budget: int | str = "1GB",
                       contents: Iterable[tuple[str, str]] | None = None,
                       settings: dict | None = None, show_progress: bool | None = None,
                       total_documents: int | None = None,
                       search_layout: bool = True) -> tuple[Path, BuildReport]:
    """Write a new generation of the impact index at ``path`` and publish it atomically.

    See :meth:`sparse_ir.index.ImpactIndex.build` for the arguments. Returns the generation
    directory and a :class:`BuildReport`.
    """
    from tqdm.auto import tqdm

    budget = parse_memory(memory_budget)
    budget_postings = max(_MIN_BUFFERED_POSTINGS, budget // _BYTES_PER_BUFFERED_POSTING)
    started = time.perf_counter()
    report = BuildReport()
    content_iter = iter(contents) if contents is not None else None
    directory = IndexDirectory(path)
    with directory.publish() as temporary:
        ids = StringColumnWriter(temporary, "doc_ids")
        titles = StringColumnWriter(temporary, "doc_titles") if content_iter else None
        texts = StringColumnWriter(temporary, "doc_texts") if content_iter else None
        seen_ids: set[str] = set()
        vocab: tuple[str, ...] | None = None
        buffer: _PostingBuffer | None = None
        progress = tqdm(total=total_documents, desc="indexing", unit="doc",
                        disable=None if show_progress is None else not show_progress)
        try:
            for shard in _as_shards(vectors):
                if vocab is None:
                    vocab = shard.vocab
                    _check_vocabulary(vocab)
                    buffer = _PostingBuffer(temporary, len(vocab), budget_postings)
                elif shard.vocab != vocab:
                    raise InputError("all shards must share one vocabulary; shard starting at "
                                     f"document {report.documents} has a different one")
                if shard.is_quantized:
                    if len(shard.values) and shard.values.max() > quantizer.max_impact:
                        raise InputError(f"impact {int(shard.values.max())} exceeds the "
                                         f"quantizer's max_impact {quantizer.max_impact}")
                    impacts_batch = shard
                    report.quantize.weights += shard.nnz
                else:
                    impacts_batch = quantizer.quantize(shard, report.quantize)
                first = report.documents
                shard_ids = shard.ids if shard.ids is not None else \
                    tuple(str(first + i) for i in range(len(shard)))
                for doc_id in shard_ids:
                    if doc_id in seen_ids:
                        raise InputError(f"duplicate document id {doc_id!r} (document "
                                         f"{first + shard_ids.index(doc_id)})")
                    if problem := id_problem(doc_id):
                        raise InputError(f"invalid id: document {first + shard_ids.index(doc_id)}"
                                         f": {problem}")
                    seen_ids.add(doc_id)
                ids.extend(shard_ids)
                if content_iter is not None:
                    pairs = [next(content_iter, None) for _ in range(len(shard))]
                    if any(p is None for p in pairs):
                        raise InputError("contents ended before the vectors did")
                    titles.extend(p[0] for p in pairs)
                    texts.extend(p[1] for p in pairs)
                lengths = impacts_batch.row_lengths()
                report.empty_documents += int((lengths == 0).sum())
                docs = np.repeat(np.arange(first, first + len(shard), dtype=np.int32), lengths)
                if first + len(shard) > np.iinfo(np.int32).max:
                    raise InputError("more than 2^31-1 documents: shard the collection")
                buffer.add(impacts_batch.indices.copy(), docs,
                           impacts_batch.values.astype(np.uint32))
                report.documents += len(shard)
                report.postings += impacts_batch.nnz
                progress.update(len(shard))
            if vocab is None:
                raise InputError("no documents to index")
            runs = buffer.finish()
            _check_used_terms(vocab, buffer.counts)
            report.runs_spilled = buffer.spilled
            files: dict[str, FileRecord] = {}
            max_impact = int(buffer.maxima.max()) if len(buffer.maxima) else 0
            impact_dtype = smallest_unsigned_dtype(max(max_impact, 1))
            _merge_runs(temporary, runs, buffer.counts, impact_dtype, files)
            files["term_max_impact.bin"] = write_array(
                temporary / "term_max_impact.bin", "term_max_impact",
                buffer.maxima.astype(impact_dtype))
            buffer.remove_run_files()
            layout_entry = None
            if search_layout:  # extra arrays for pruned/approximate search (index/layout.py)
                from sparse_ir.index.layout import write_search_layout

                layout_entry, layout_files = write_search_layout(
                    temporary, num_documents=report.documents, vocab_size=len(vocab),
                    impact_dtype=impact_dtype, memory_budget=budget)
                files.update(layout_files)
            for column in (ids, titles, texts):
                if column is not None:
                    for record in column.finish():
                        files[record.name] = record
            vocab_bytes = json.dumps(list(vocab), ensure_ascii=False).encode("utf-8")
            files["vocab.json"] = write_bytes_file(temporary / "vocab.json", vocab_bytes)
            report.seconds = time.perf_counter() - started
            manifest = {
                "format": IMPACT_FORMAT,
                "format_version": IMPACT_FORMAT_VERSION,
                "created_by": "sparse_ir " + _version(),
                "quantizer": quantizer.to_dict(),
                "vocab_size": len(vocab),
                "vocab_hash": vocab_hash(vocab),
                "num_documents": report.documents,
                "num_postings": report.postings,
                "impact_dtype": impact_dtype.str,
                "max_impact": max_impact,
                "has_contents": content_iter is not None,
                **({"search_layout": layout_entry} if layout_entry else {}),
                "build": {
                    "memory_budget": budget,
                    "runs_spilled": report.runs_spilled,
                    "seconds": round(report.seconds, 3),
                    "empty_documents": report.empty_documents,
                    "zeros_dropped": report.quantize.zeros_dropped,
                    "saturated": report.quantize.saturated,
                    **(settings or {}),
                },
                "files": {name: record.to_dict() for name, record in sorted(files.items())},
            }
            write_manifest(temporary, manifest)
        finally:
            progress.close()
    generation = directory.current()
    logger.info("indexed %d documents, %d postings in %.1fs (%d runs spilled) -> %s",
                report.documents, report.postings, report.seconds, report.runs_spilled,
                generation)
    return generation, report


def _check_vocabulary(vocab: tuple[str, ...]) -> None:
    """Refuse a vocabulary whose tokens are not distinct strings (term ids would be ambiguous)."""
    for term, token in enumerate(vocab):
        if not isinstance(token, str):
            raise InputError(f"invalid term: vocabulary entry {term} is {token!r}, not a string")
    if duplicate := first_duplicate(vocab):
        raise InputError(f"invalid term: the vocabulary lists {duplicate[1]!r} twice "
                         f"(term ids {vocab.index(duplicate[1])} and {duplicate[0]})")


def _check_used_terms(vocab: tuple[str, ...], counts: np.ndarray) -> None:
    """Refuse a term with postings that Lucene cannot take (see :mod:`sparse_ir.validation`)."""
    for term in np.flatnonzero(counts).tolist():
        if problem := term_problem(vocab[term]):
            raise InputError(f"invalid term: term id {term} occurs in {int(counts[term])} "
                             f"document(s): {problem}")


def _merge_runs(directory: Path, runs: list[_Run], counts: np.ndarray, impact_dtype: np.dtype,
                files: dict[str, FileRecord]) -> None:
    """Write term_offsets, postings_docs and postings_impacts from the sorted runs."""
    vocab_size = len(counts)
    offsets = np.zeros(vocab_size + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    total = int(offsets[-1])
    files["term_offsets.bin"] = write_array(directory / "term_offsets.bin", "term_offsets",
                                            offsets)
    docs_out = ArrayWriter(directory / "postings_docs.bin", "postings_docs", np.int32, total)
    impacts_out = ArrayWriter(directory / "postings_impacts.bin", "postings_impacts",
                              impact_dtype, total)
    first = 0
    while first < vocab_size:
        # The largest block of terms that fits in _MERGE_BLOCK_POSTINGS (at least one term).
        last = int(np.searchsorted(offsets, offsets[first] + _MERGE_BLOCK_POSTINGS,
                                   side="right")) - 1
        last = min(max(last, first + 1), vocab_size)
        size = int(offsets[last] - offsets[first])
        block_docs = np.empty(size, np.int32)
        block_impacts = np.empty(size, np.uint32)
        cursor = offsets[first:last] - offsets[first]
        for run in runs:
            _gather_block(run.offsets, run.docs, run.impacts, first, last, cursor,
                          block_docs, block_impacts)
        docs_out.write(block_docs)
        impacts_out.write(block_impacts.astype(impact_dtype))
        first = last
    files["postings_docs.bin"] = docs_out.close()
    files["postings_impacts.bin"] = impacts_out.close()


def _version() -> str:
    from sparse_ir import __version__

    return __version__
