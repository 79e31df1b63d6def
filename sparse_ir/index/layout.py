"""The search layout: extra arrays that let pruned and approximate search skip most postings.

Written by the builder after the inverted index itself, from the postings just written, and
listed in the manifest under ``search_layout`` (older readers ignore the extra files)::

    window_offsets.bin         int64 [V·W+1]  documents are split in windows of 2^window_bits;
                                           term t's postings of window w are
                                           [wo[t·W + w], wo[t·W + w + 1]) in both orders below
    impact_order_docs.bin      uint16 [P]  each term's postings again, window by window, ordered
    impact_order_impacts.bin   [P]         by impact descending (then document ascending);
                                           documents as offsets within their window
    segment_offsets.bin        int64 [V+1] term t's impact segments are [so[t], so[t+1])
    segment_impacts.bin        [S]         one segment = the postings of one impact value over
    segment_ends.bin           int64 [S]   the whole term, highest first: its impact, and
                                           term start + how many postings have at least it
    forward_offsets.bin        int64 [N+1] document d's terms are [fo[d], fo[d+1])
    forward_terms.bin          uint16/int32 [P]   term ids, ascending within a document
    forward_impacts.bin        [P]         their impacts

Windows keep the search's accumulator small enough for the CPU's L2 cache (2^16 documents ×
4 bytes): random additions into a whole-collection accumulator miss every cache level. Within a
window, the impact order gives the postings above any per-term cut as one contiguous prefix;
the segments tell how many postings a cut keeps without reading them; the forward index scores
one document exactly in one short scan.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import NamedTuple

import numba
import numpy as np

from sparse_ir.errors import IndexCorruptError
from sparse_ir.index.storage import ArrayWriter, FileRecord, open_array

__all__ = ["LAYOUT_FILES", "LAYOUT_VERSION", "SearchLayout", "write_search_layout"]

logger = logging.getLogger(__name__)

LAYOUT_VERSION = 1
LAYOUT_FILES = ("window_offsets.bin", "impact_order_docs.bin", "impact_order_impacts.bin",
                "segment_offsets.bin",
                "segment_impacts.bin", "segment_ends.bin", "forward_offsets.bin",
                "forward_terms.bin", "forward_impacts.bin")
# Postings handled per step when re-sorting by impact (bounded memory whatever the index size).
_BLOCK_POSTINGS = 1 << 23
# Documents per window: 2^16 keeps in-window offsets in uint16 and the accumulator in L2.
WINDOW_BITS = 16


class SearchLayout(NamedTuple):
    """The memory-mapped arrays of a search layout (see the module docstring)."""

    window_bits: int
    num_windows: int
    window_offsets: np.ndarray
    impact_order_docs: np.ndarray
    impact_order_impacts: np.ndarray
    segment_offsets: np.ndarray
    segment_impacts: np.ndarray
    segment_ends: np.ndarray
    forward_offsets: np.ndarray
    forward_terms: np.ndarray
    forward_impacts: np.ndarray

    @classmethod
    def open(cls, directory: Path, manifest: dict) -> SearchLayout:
        """Open the layout files of an index generation (checked headers, memory-mapped)."""
        info = manifest["search_layout"]
        n_terms, n_docs = manifest["vocab_size"], manifest["num_documents"]
        n_postings = manifest["num_postings"]
        impact_dtype = np.dtype(manifest["impact_dtype"])
        n_segments = int(info["num_segments"])
        term_dtype = np.dtype(info["term_dtype"])

        def array(name, dtype, count):
            return open_array(directory / f"{name}.bin", name=name, dtype=dtype, count=count)

        window_bits = int(info["window_bits"])
        num_windows = int(info["num_windows"])
        layout = cls(window_bits, num_windows,
                   array("window_offsets", np.int64, n_terms * num_windows + 1),
                   array("impact_order_docs", np.uint16, n_postings),
                   array("impact_order_impacts", impact_dtype, n_postings),
                   array("segment_offsets", np.int64, n_terms + 1),
                   array("segment_impacts", impact_dtype, n_segments),
                   array("segment_ends", np.int64, n_segments),
                   array("forward_offsets", np.int64, n_docs + 1),
                   array("forward_terms", term_dtype, n_postings),
                   array("forward_impacts", impact_dtype, n_postings))
        # O(V·W + V): the offsets that every kernel read goes through must rise within their
        # arrays, so a damaged large file (which open() does not checksum) is refused here
        # instead of sending a kernel outside the memory map.
        for name, offsets, total in (("window_offsets", layout.window_offsets, n_postings),
                                     ("segment_offsets", layout.segment_offsets, n_segments)):
            values = np.asarray(offsets)
            if int(values[0]) != 0 or int(values[-1]) != total or \
                    np.any(values[1:] < values[:-1]):
                raise IndexCorruptError(f"{directory / (name + '.bin')}: offsets do not rise "
                                        f"from 0 to {total}")
        return layout


@numba.njit(cache=True, nogil=True)
def _sort_range_by_impact(docs, impacts, start, end, window_base, out_docs, out_impacts):
    """Stable sort of postings [start, end) by impact descending into the outputs."""
    if end == start:
        return
    high = 0
    low = impacts[start]
    for i in range(start, end):
        value = impacts[i]
        high = max(high, value)
        low = min(low, value)
    span = np.int64(high) - np.int64(low) + 1
    if span <= 4 * (end - start) + 64:
        # Counting sort, highest impact first; documents stay ascending within an impact.
        counts = np.zeros(span + 1, np.int64)
        for i in range(start, end):
            counts[np.int64(high) - np.int64(impacts[i]) + 1] += 1
        for j in range(span):
            counts[j + 1] += counts[j]
        for i in range(start, end):
            slot = np.int64(high) - np.int64(impacts[i])
            position = start + counts[slot]
            counts[slot] += 1
            out_docs[position] = docs[i] - window_base
            out_impacts[position] = impacts[i]
    else:
        order = np.argsort(-impacts[start:end].astype(np.int64), kind="mergesort")
        for j in range(end - start):
            out_docs[start + j] = docs[start + order[j]] - window_base
            out_impacts[start + j] = impacts[start + order[j]]


@numba.njit(cache=True, nogil=True)
def _sort_block_by_impact(term_offsets, first_term, last_term, docs, impacts, window_bits,
                          num_windows, out_docs, out_impacts, window_offsets, seg_impacts,
                          seg_ends, seg_counts):
    """Window-by-window impact order and whole-term segments of terms [first_term, last_term).

    ``docs``/``impacts`` hold those terms' document-ordered postings starting at
    ``term_offsets[first_term]``. Fills ``window_offsets[(t - first_term)·W + w]`` (absolute),
    the segments (ends = term start + postings with at least that impact) and returns their
    number.
    """
    base = term_offsets[first_term]
    n_segments = 0
    for t in range(first_term, last_term):
        start = term_offsets[t] - base
        end = term_offsets[t + 1] - base
        # Documents ascend within a term, so each window is one contiguous range.
        position = start
        for w in range(num_windows):
            window_offsets[(t - first_term) * num_windows + w] = base + position
            window_end = (w + 1) << window_bits
            stop = position
            while stop < end and docs[stop] < window_end:
                stop += 1
            _sort_range_by_impact(docs, impacts, position, stop, w << window_bits, out_docs,
                                  out_impacts)
            position = stop
        # Whole-term segments: distinct impacts, highest first, with cumulative counts.
        before = n_segments
        if end > start:
            high = 0
            low = impacts[start]
            for i in range(start, end):
                high = max(high, impacts[i])
                low = min(low, impacts[i])
            span = np.int64(high) - np.int64(low) + 1
            if span <= 4 * (end - start) + 64:
                counts = np.zeros(span, np.int64)
                for i in range(start, end):
                    counts[np.int64(high) - np.int64(impacts[i])] += 1
                total = base + start
                for j in range(span):
                    if counts[j]:
                        total += counts[j]
                        seg_impacts[n_segments] = np.int64(high) - j
                        seg_ends[n_segments] = total
                        n_segments += 1
            else:
                values = np.sort(impacts[start:end].astype(np.int64))[::-1]
                for i in range(len(values)):
                    if i + 1 == len(values) or values[i + 1] != values[i]:
                        seg_impacts[n_segments] = values[i]
                        seg_ends[n_segments] = base + start + i + 1
                        n_segments += 1
        seg_counts[t - first_term] = n_segments - before
    return n_segments


@numba.njit(cache=True, nogil=True)
def _forward_block(term_offsets, docs, impacts, cursor, first_doc, last_doc, out_offsets,
                   out_terms, out_impacts):
    """Document-major postings of documents [first_doc, last_doc), from term-major ones.

    ``cursor[t]`` is term t's next unread posting (documents ascend within a term, so one pass
    of blocks in document order reads every posting once). ``out_offsets`` holds each
    document's start relative to the block; terms come out ascending within a document. The
    block's output is small enough for the CPU cache, unlike a scatter over the whole index.
    """
    fill = out_offsets[:last_doc - first_doc].copy()
    for t in range(len(term_offsets) - 1):
        p = cursor[t]
        end = term_offsets[t + 1]
        while p < end and docs[p] < last_doc:
            slot = fill[docs[p] - first_doc]
            fill[docs[p] - first_doc] = slot + 1
            out_terms[slot] = t
            out_impacts[slot] = impacts[p]
            p += 1
        cursor[t] = p


def write_search_layout(directory: Path, *, num_documents: int, vocab_size: int,
                        impact_dtype: np.dtype, memory_budget: int) -> tuple[dict, dict]:
    """Write the layout files beside ``term_offsets``/``postings_*`` in ``directory``.

    Reads the document-ordered postings back (memory-mapped); working arrays are blocks of a
    few MB whatever the index size (``memory_budget`` is an upper bound they never approach).
    Returns ``(manifest entry, {name: FileRecord})``.
    """
    directory = Path(directory)
    impact_dtype = np.dtype(impact_dtype)
    offsets = np.asarray(open_array(directory / "term_offsets.bin"))
    total = int(offsets[-1])
    docs = open_array(directory / "postings_docs.bin") if total else np.zeros(0, np.int32)
    impacts = open_array(directory / "postings_impacts.bin") if total else \
        np.zeros(0, impact_dtype)
    files: dict[str, FileRecord] = {}

    # 1. Window-by-window impact order and whole-term segments, a block of terms at a time.
    num_windows = max(1, -(-num_documents // (1 << WINDOW_BITS)))
    seg_impact_parts, seg_end_parts, seg_counts = [], [], np.zeros(vocab_size, np.int64)
    windows_out = ArrayWriter(directory / "window_offsets.bin", "window_offsets", np.int64,
                              vocab_size * num_windows + 1)
    docs_out = ArrayWriter(directory / "impact_order_docs.bin", "impact_order_docs", np.uint16,
                           total)
    impacts_out = ArrayWriter(directory / "impact_order_impacts.bin", "impact_order_impacts",
                              impact_dtype, total)
    first = 0
    while first < vocab_size:
        last = int(np.searchsorted(offsets, offsets[first] + _BLOCK_POSTINGS, side="right")) - 1
        last = min(max(last, first + 1), vocab_size)
        lo, hi = int(offsets[first]), int(offsets[last])
        block_docs = np.asarray(docs[lo:hi])
        block_impacts = np.asarray(impacts[lo:hi])
        out_docs = np.empty(hi - lo, np.uint16)
        out_impacts = np.empty(hi - lo, impact_dtype)
        window_offsets = np.empty((last - first) * num_windows, np.int64)
        seg_impacts = np.empty(hi - lo, impact_dtype)
        seg_ends = np.empty(hi - lo, np.int64)
        count = _sort_block_by_impact(offsets, first, last, block_docs, block_impacts,
                                      WINDOW_BITS, num_windows, out_docs, out_impacts,
                                      window_offsets, seg_impacts, seg_ends,
                                      seg_counts[first:last])
        windows_out.write(window_offsets)
        docs_out.write(out_docs)
        impacts_out.write(out_impacts)
        seg_impact_parts.append(seg_impacts[:count].copy())
        seg_end_parts.append(seg_ends[:count].copy())
        first = last
    windows_out.write(np.array([total], np.int64))
    files["window_offsets.bin"] = windows_out.close()
    files["impact_order_docs.bin"] = docs_out.close()
    files["impact_order_impacts.bin"] = impacts_out.close()
    segment_offsets = np.zeros(vocab_size + 1, np.int64)
    np.cumsum(seg_counts, out=segment_offsets[1:])
    for name, values, dtype in (
            ("segment_offsets", segment_offsets, np.int64),
            ("segment_impacts", np.concatenate(seg_impact_parts) if seg_impact_parts
             else np.zeros(0, impact_dtype), impact_dtype),
            ("segment_ends", np.concatenate(seg_end_parts) if seg_end_parts
             else np.zeros(0, np.int64), np.int64)):
        writer = ArrayWriter(directory / f"{name}.bin", name, dtype, len(values))
        writer.write(values)
        files[f"{name}.bin"] = writer.close()
    num_segments = int(segment_offsets[-1])
    del seg_impact_parts, seg_end_parts

    # 2. Forward index (document-major), in document ranges that fit the budget.
    term_dtype = np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.int32)
    lengths = np.zeros(num_documents, np.int64)
    for start in range(0, total, _BLOCK_POSTINGS):
        lengths += np.bincount(np.asarray(docs[start:start + _BLOCK_POSTINGS]),
                               minlength=num_documents)
    forward_offsets = np.zeros(num_documents + 1, np.int64)
    np.cumsum(lengths, out=forward_offsets[1:])
    del lengths
    writer = ArrayWriter(directory / "forward_offsets.bin", "forward_offsets", np.int64,
                         num_documents + 1)
    writer.write(forward_offsets)
    files["forward_offsets.bin"] = writer.close()
    terms_out = ArrayWriter(directory / "forward_terms.bin", "forward_terms", term_dtype, total)
    fimpacts_out = ArrayWriter(directory / "forward_impacts.bin", "forward_impacts",
                               impact_dtype, total)
    # Blocks of documents whose output (~4 bytes per posting) stays in the CPU cache.
    cursor = offsets[:-1].copy()
    block_postings = 1 << 21
    first_doc = 0
    while first_doc < num_documents:
        last_doc = int(np.searchsorted(forward_offsets, forward_offsets[first_doc] +
                                       block_postings, side="right")) - 1
        last_doc = min(max(last_doc, first_doc + 1), num_documents)
        lo, hi = int(forward_offsets[first_doc]), int(forward_offsets[last_doc])
        out_terms = np.empty(hi - lo, term_dtype)
        out_impacts = np.empty(hi - lo, impact_dtype)
        _forward_block(offsets, docs, impacts, cursor, first_doc, last_doc,
                       forward_offsets[first_doc:last_doc + 1] - lo, out_terms, out_impacts)
        terms_out.write(out_terms)
        fimpacts_out.write(out_impacts)
        first_doc = last_doc
    files["forward_terms.bin"] = terms_out.close()
    files["forward_impacts.bin"] = fimpacts_out.close()
    logger.debug("search layout: %d segments, %d windows", num_segments, num_windows)
    entry = {"version": LAYOUT_VERSION, "num_segments": num_segments,
             "term_dtype": term_dtype.str, "window_bits": WINDOW_BITS,
             "num_windows": num_windows}
    return entry, files
