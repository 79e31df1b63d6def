"""The search layout: extra arrays that let pruned and approximate search skip most postings.

Written by the builder (:class:`SearchLayoutWriter`) while it merges the inverted index, from
each block of postings while it is in memory, and listed in the manifest under
``search_layout`` (older readers ignore the extra files)::

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
4 bytes): random additions into a whole-collection accumulator miss every cache level. Every
search mode reads the impact-ordered copy (the exhaustive one too: its sums do not depend on
the order of the additions), so new indexes store no document-ordered postings beside it
(:func:`sparse_ir.index.builder.keeps_doc_ordered_postings`); :func:`term_postings` gives one
term's in document order. Within a
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
from sparse_ir.index.manifest import LAYOUT_VERSION, ImpactManifest, SearchLayoutRecord
from sparse_ir.index.storage import ArrayWriter, FileRecord, open_array, write_array

__all__ = [
    "LAYOUT_FILES",
    "LAYOUT_VERSION",
    "SearchLayout",
    "SearchLayoutWriter",
    "term_postings",
]

logger = logging.getLogger(__name__)

LAYOUT_FILES = (
    "window_offsets.bin",
    "impact_order_docs.bin",
    "impact_order_impacts.bin",
    "segment_offsets.bin",
    "segment_impacts.bin",
    "segment_ends.bin",
    "forward_offsets.bin",
    "forward_terms.bin",
    "forward_impacts.bin",
)
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
    def open(cls, directory: Path, manifest: ImpactManifest) -> SearchLayout:
        """Open the layout files of an index generation (checked headers, memory-mapped).

        The manifest's layout record was checked when it was read (its version included,
        :meth:`SearchLayoutRecord.from_dict`).
        """
        info = manifest.search_layout
        if info is None:
            raise ValueError(f"{directory}: this index has no search layout")
        n_terms, n_docs = manifest.vocab_size, manifest.num_documents
        n_postings = manifest.num_postings
        impact_dtype = np.dtype(manifest.impact_dtype)
        n_segments = info.num_segments
        term_dtype = np.dtype(info.term_dtype)

        def array(name, dtype, count):
            return open_array(directory / f"{name}.bin", name=name, dtype=dtype, count=count)

        window_bits = info.window_bits
        num_windows = info.num_windows
        # In-window offsets are uint16 and the kernels' accumulators have 2^16 entries.
        if not 1 <= window_bits <= 16 or num_windows != max(1, -(-n_docs // (1 << window_bits))):
            raise IndexCorruptError(
                f"{directory}: search layout of {num_windows} windows of "
                f"2^{window_bits} documents does not fit {n_docs} documents"
            )
        layout = cls(
            window_bits,
            num_windows,
            array("window_offsets", np.int64, n_terms * num_windows + 1),
            array("impact_order_docs", np.uint16, n_postings),
            array("impact_order_impacts", impact_dtype, n_postings),
            array("segment_offsets", np.int64, n_terms + 1),
            array("segment_impacts", impact_dtype, n_segments),
            array("segment_ends", np.int64, n_segments),
            array("forward_offsets", np.int64, n_docs + 1),
            array("forward_terms", term_dtype, n_postings),
            array("forward_impacts", impact_dtype, n_postings),
        )
        _check_offsets(directory, layout, n_postings, n_segments)
        return layout


def term_postings(layout: SearchLayout, term: int) -> tuple[np.ndarray, np.ndarray]:
    """One term's postings in document order (int32 documents ascending, impacts), put back
    together from its impact order, window by window.

    Example:
        >>> import tempfile
        >>> from sparse_ir import ImpactIndex, SparseBatch
        >>> docs = SparseBatch.from_dicts([{"cat": 1}, {"cat": 3}, {"cat": 2}], ["cat"])
        >>> index = ImpactIndex.build(docs, tempfile.mkdtemp() + "/i", show_progress=False)
        >>> index._layout.impact_order_docs.tolist()
        [1, 2, 0]
        >>> [a.tolist() for a in term_postings(index._layout, 0)]
        [[0, 1, 2], [1, 3, 2]]
    """
    windows = layout.num_windows
    offsets = np.asarray(layout.window_offsets[term * windows : (term + 1) * windows + 1])
    start, end = int(offsets[0]), int(offsets[-1])
    window_of = np.repeat(np.arange(windows, dtype=np.int64), np.diff(offsets))
    docs = (window_of << layout.window_bits) + np.asarray(layout.impact_order_docs[start:end])
    order = np.argsort(docs, kind="stable")
    return docs[order].astype(np.int32), np.asarray(layout.impact_order_impacts[start:end])[order]


def _check_offsets(directory: Path, layout: SearchLayout, n_postings: int, n_segments: int) -> None:
    """Refuse offsets that would send a kernel outside its arrays: O(V·W), cheap at open.

    Every postings and segment read of the kernels goes through these two offset arrays, so a
    damaged large file (which open() does not checksum) is refused here instead of being read.
    The forward offsets (O(N)) are checked per verified document by the kernel instead.
    """
    for name, offsets, total in (
        ("window_offsets", layout.window_offsets, n_postings),
        ("segment_offsets", layout.segment_offsets, n_segments),
    ):
        values = np.asarray(offsets)
        if int(values[0]) != 0 or int(values[-1]) != total or np.any(values[1:] < values[:-1]):
            raise IndexCorruptError(
                f"{directory / (name + '.bin')}: offsets do not rise from 0 to {total}"
            )


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
def _sort_block_by_impact(
    term_offsets,
    first_term,
    last_term,
    docs,
    impacts,
    window_bits,
    num_windows,
    out_docs,
    out_impacts,
    window_offsets,
    seg_impacts,
    seg_ends,
    seg_counts,
):
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
            _sort_range_by_impact(
                docs, impacts, position, stop, w << window_bits, out_docs, out_impacts
            )
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


class SearchLayoutWriter:
    """Writes the layout files while the builder merges its runs, a block of terms at a time.

    :meth:`add_terms` receives each block of document-ordered postings while it is in memory
    (so the postings are never read back from disk); :meth:`finish` writes the segments and the
    forward index, which is the builder's input copied from its scratch files.
    """

    def __init__(
        self,
        directory: Path,
        *,
        num_documents: int,
        vocab_size: int,
        impact_dtype: np.dtype,
        num_postings: int,
    ):
        self.directory = Path(directory)
        self.num_documents = num_documents
        self.vocab_size = vocab_size
        self.impact_dtype = np.dtype(impact_dtype)
        self.num_postings = num_postings
        self.num_windows = max(1, -(-num_documents // (1 << WINDOW_BITS)))
        self.files: dict[str, FileRecord] = {}
        self._windows = ArrayWriter(
            self.directory / "window_offsets.bin",
            "window_offsets",
            np.int64,
            vocab_size * self.num_windows + 1,
        )
        self._docs = ArrayWriter(
            self.directory / "impact_order_docs.bin", "impact_order_docs", np.uint16, num_postings
        )
        self._impacts = ArrayWriter(
            self.directory / "impact_order_impacts.bin",
            "impact_order_impacts",
            self.impact_dtype,
            num_postings,
        )
        self._segment_impacts: list[np.ndarray] = []
        self._segment_ends: list[np.ndarray] = []
        self._segment_counts = np.zeros(vocab_size, np.int64)
        self._next_term = 0

    def add_terms(
        self, term_offsets: np.ndarray, first: int, last: int, docs: np.ndarray, impacts: np.ndarray
    ) -> None:
        """The document-ordered postings of terms [first, last) (the next block, in order)."""
        if first != self._next_term:
            raise ValueError(
                f"layout blocks out of order: got term {first}, expected {self._next_term}"
            )
        size = len(docs)
        out_docs = np.empty(size, np.uint16)
        out_impacts = np.empty(size, self.impact_dtype)
        window_offsets = np.empty((last - first) * self.num_windows, np.int64)
        segment_impacts = np.empty(size, self.impact_dtype)
        segment_ends = np.empty(size, np.int64)
        count = _sort_block_by_impact(
            term_offsets,
            first,
            last,
            docs,
            impacts,
            WINDOW_BITS,
            self.num_windows,
            out_docs,
            out_impacts,
            window_offsets,
            segment_impacts,
            segment_ends,
            self._segment_counts[first:last],
        )
        self._windows.write(window_offsets)
        self._docs.write(out_docs)
        self._impacts.write(out_impacts)
        self._segment_impacts.append(segment_impacts[:count].copy())
        self._segment_ends.append(segment_ends[:count].copy())
        self._next_term = last

    def finish(self, forward) -> tuple[SearchLayoutRecord, dict[str, FileRecord]]:
        """Write the remaining files; ``forward`` is the builder's closed forward scratch.

        Returns ``(the manifest's layout record, {name: FileRecord})``.
        """
        if self._next_term != self.vocab_size:
            raise ValueError(f"layout got terms up to {self._next_term} of {self.vocab_size}")
        files = self.files
        self._windows.write(np.array([self.num_postings], np.int64))
        files["window_offsets.bin"] = self._windows.close()
        files["impact_order_docs.bin"] = self._docs.close()
        files["impact_order_impacts.bin"] = self._impacts.close()
        segment_offsets = np.zeros(self.vocab_size + 1, np.int64)
        np.cumsum(self._segment_counts, out=segment_offsets[1:])
        empty_impacts = np.zeros(0, self.impact_dtype)
        for name, values, dtype in (
            ("segment_offsets", segment_offsets, np.int64),
            (
                "segment_impacts",
                np.concatenate(self._segment_impacts or [empty_impacts]),
                self.impact_dtype,
            ),
            (
                "segment_ends",
                np.concatenate(self._segment_ends or [np.zeros(0, np.int64)]),
                np.int64,
            ),
        ):
            files[f"{name}.bin"] = write_array(self.directory / f"{name}.bin", name, values, dtype)
        num_segments = int(segment_offsets[-1])
        self._segment_impacts.clear()
        self._segment_ends.clear()

        # Forward index: document offsets from the row lengths, lists copied from the scratch.
        term_dtype = np.dtype(np.uint16 if self.vocab_size <= 1 << 16 else np.int32)
        forward_offsets = np.zeros(self.num_documents + 1, np.int64)
        if forward.lengths:
            np.cumsum(np.concatenate(forward.lengths), out=forward_offsets[1:])
        if int(forward_offsets[-1]) != self.num_postings:
            raise ValueError("forward index lengths do not add up to the postings")
        files["forward_offsets.bin"] = write_array(
            self.directory / "forward_offsets.bin", "forward_offsets", forward_offsets
        )
        source_dtypes = forward.dtypes or (term_dtype, self.impact_dtype)
        for path, name, source_dtype, dtype in (
            (forward.paths[0], "forward_terms", source_dtypes[0], term_dtype),
            (forward.paths[1], "forward_impacts", source_dtypes[1], self.impact_dtype),
        ):
            writer = ArrayWriter(self.directory / f"{name}.bin", name, dtype, self.num_postings)
            step = _BLOCK_POSTINGS * np.dtype(source_dtype).itemsize
            with open(path, "rb") as handle:
                while block := handle.read(step):
                    writer.write(np.frombuffer(block, source_dtype).astype(dtype, copy=False))
            files[f"{name}.bin"] = writer.close()
        logger.debug("search layout: %d segments, %d windows", num_segments, self.num_windows)
        record = SearchLayoutRecord(
            num_segments=num_segments,
            term_dtype=term_dtype.str,
            window_bits=WINDOW_BITS,
            num_windows=self.num_windows,
            version=LAYOUT_VERSION,
        )
        return record, files
