"""Compressed postings (prototype, not read by the search kernels yet): block-wise bit packing.

Each term's postings are cut into blocks of ``BLOCK`` (128) postings; a block never spans two
terms. In a block:

* document numbers are stored as gaps (``d[i] - d[i-1] - 1``, the first relative to the
  previous block's last document, or to -1 at the start of a term), packed in the fewest bits
  that hold the block's largest gap;
* impacts are stored relative to the block's smallest impact (frame of reference), packed in
  the fewest bits that hold the largest difference.

Per block the layout keeps its first word in the packed stream, its two bit widths, its
impact base and its last document number (so a block can be skipped or decoded alone, and a
window's blocks found by binary search). Words are little-endian ``uint32``; a value of ``b``
bits may straddle two words. Decoding a block is a few shifts per posting, with no branch per
value.

``pack_postings(term_offsets, docs, impacts)`` encodes a whole doc-ordered index;
``unpack_term(packed, t)`` gives one term's ``(docs, impacts)`` back exactly.

Example:
    >>> import numpy as np
    >>> from sparse_ir.index.compressed import pack_postings, unpack_term
    >>> offsets = np.array([0, 3, 3, 5])
    >>> docs = np.array([2, 3, 900, 0, 70000], np.int32)
    >>> impacts = np.array([5, 5, 7, 1, 300], np.uint16)
    >>> packed = pack_postings(offsets, docs, impacts)
    >>> [a.tolist() for a in unpack_term(packed, 0)], [a.tolist() for a in unpack_term(packed, 2)]
    ([[2, 3, 900], [5, 5, 7]], [[0, 70000], [1, 300]])
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np

__all__ = ["BLOCK", "PackedPostings", "pack_postings", "unpack_term", "unpack_all"]

#: Postings per block.
BLOCK = 128


class PackedPostings(NamedTuple):
    """A doc-ordered inverted index, block-wise bit-packed (see the module docstring).

    Attributes:
        term_blocks: int64 [V+1]: term t's blocks are ``[term_blocks[t], term_blocks[t+1])``.
        term_offsets: int64 [V+1]: the postings' offsets, as in the uncompressed index.
        block_words: int64 [B+1]: block b's packed words start at ``block_words[b]``.
        doc_bits, impact_bits: uint8 [B]: bit widths of the block's gaps and impacts.
        impact_base: uint32 [B]: the block's smallest impact.
        last_doc: int32 [B]: the block's last document number.
        words: uint32 [W]: the packed gaps and impacts, block after block.
        impact_dtype: dtype name of the impacts when unpacked.
        block: postings per block (the last block of a term may hold fewer).
    """

    term_blocks: np.ndarray
    term_offsets: np.ndarray
    block_words: np.ndarray
    doc_bits: np.ndarray
    impact_bits: np.ndarray
    impact_base: np.ndarray
    last_doc: np.ndarray
    words: np.ndarray
    impact_dtype: str
    block: int = BLOCK

    @property
    def nbytes(self) -> int:
        """Bytes of every array (what the packed postings would take on disk)."""
        return sum(a.nbytes for a in self if isinstance(a, np.ndarray))

    @property
    def payload_nbytes(self) -> int:
        """Bytes of the packed words alone."""
        return int(self.words.nbytes)


@numba.njit(cache=True, nogil=True)
def _bit_width(value):
    bits = 0
    while value > 0:
        bits += 1
        value >>= 1
    return bits


@numba.njit(cache=True, nogil=True)
def _put(words, bit_position, value, bits):
    """Write ``value`` (< 2**bits, bits <= 32) at ``bit_position`` of ``words``."""
    if bits == 0:
        return
    word = bit_position >> 5
    shift = bit_position & 31
    v = np.uint64(value) << np.uint64(shift)
    words[word] |= np.uint32(v & np.uint64(0xFFFFFFFF))
    if shift + bits > 32:
        words[word + 1] |= np.uint32(v >> np.uint64(32))


@numba.njit(cache=True, nogil=True)
def _get(words, bit_position, bits):
    if bits == 0:
        return np.uint64(0)
    word = bit_position >> 5
    shift = bit_position & 31
    v = np.uint64(words[word])
    if shift + bits > 32:
        v |= np.uint64(words[word + 1]) << np.uint64(32)
    return (v >> np.uint64(shift)) & ((np.uint64(1) << np.uint64(bits)) - np.uint64(1))


@numba.njit(cache=True, nogil=True)
def _plan(term_offsets, docs, impacts, block):
    """Bit widths, bases and word counts of every block."""
    n_terms = len(term_offsets) - 1
    term_blocks = np.zeros(n_terms + 1, np.int64)
    for t in range(n_terms):
        n = term_offsets[t + 1] - term_offsets[t]
        term_blocks[t + 1] = term_blocks[t] + (n + block - 1) // block
    n_blocks = term_blocks[n_terms]
    doc_bits = np.zeros(n_blocks, np.uint8)
    impact_bits = np.zeros(n_blocks, np.uint8)
    impact_base = np.zeros(n_blocks, np.uint32)
    last_doc = np.zeros(n_blocks, np.int32)
    block_words = np.zeros(n_blocks + 1, np.int64)
    for t in range(n_terms):
        previous = np.int64(-1)
        for b in range(term_blocks[t], term_blocks[t + 1]):
            start = term_offsets[t] + (b - term_blocks[t]) * block
            end = min(start + block, term_offsets[t + 1])
            largest_gap = np.int64(0)
            low = np.uint32(impacts[start])
            high = np.uint32(impacts[start])
            for p in range(start, end):
                gap = np.int64(docs[p]) - previous - 1
                previous = np.int64(docs[p])
                largest_gap = max(largest_gap, gap)
                low = min(low, np.uint32(impacts[p]))
                high = max(high, np.uint32(impacts[p]))
            doc_bits[b] = _bit_width(largest_gap)
            impact_bits[b] = _bit_width(high - low)
            impact_base[b] = low
            last_doc[b] = previous
            total_bits = (end - start) * (np.int64(doc_bits[b]) + np.int64(impact_bits[b]))
            block_words[b + 1] = block_words[b] + (total_bits + 31) // 32
    return term_blocks, block_words, doc_bits, impact_bits, impact_base, last_doc


@numba.njit(cache=True, nogil=True)
def _pack(term_offsets, docs, impacts, block, term_blocks, block_words, doc_bits, impact_bits,
          impact_base, words):  # fmt: skip
    for t in range(len(term_offsets) - 1):
        previous = np.int64(-1)
        for b in range(term_blocks[t], term_blocks[t + 1]):
            start = term_offsets[t] + (b - term_blocks[t]) * block
            end = min(start + block, term_offsets[t + 1])
            position = block_words[b] * 32
            for p in range(start, end):
                gap = np.int64(docs[p]) - previous - 1
                previous = np.int64(docs[p])
                _put(words, position, gap, doc_bits[b])
                position += doc_bits[b]
            for p in range(start, end):
                _put(words, position, np.uint32(impacts[p]) - impact_base[b], impact_bits[b])
                position += impact_bits[b]


@numba.njit(cache=True, nogil=True)
def _unpack_range(packed_words, term_offsets, term_blocks, block_words, doc_bits, impact_bits,
                  impact_base, block, first_term, last_term, out_docs, out_impacts):  # fmt: skip
    """Decode terms [first_term, last_term) into ``out_*`` from position 0."""
    out = 0
    for t in range(first_term, last_term):
        previous = np.int64(-1)
        for b in range(term_blocks[t], term_blocks[t + 1]):
            start = term_offsets[t] + (b - term_blocks[t]) * block
            n = min(start + block, term_offsets[t + 1]) - start
            position = block_words[b] * 32
            bits = doc_bits[b]
            for i in range(n):
                previous = previous + 1 + np.int64(_get(packed_words, position, bits))
                out_docs[out + i] = previous
                position += bits
            bits = impact_bits[b]
            base = np.uint64(impact_base[b])
            for i in range(n):
                out_impacts[out + i] = base + _get(packed_words, position, bits)
                position += bits
            out += n
    return out


def pack_postings(term_offsets, docs, impacts, *, block: int = BLOCK) -> PackedPostings:
    """Bit-pack a doc-ordered inverted index (documents ascending within each term).

    Raises :class:`ValueError` when a term's documents do not rise strictly, a document number
    is negative, or an impact is negative (what the gaps and frames of reference need).
    """
    term_offsets = np.ascontiguousarray(term_offsets, np.int64)
    docs = np.ascontiguousarray(docs)
    impacts = np.ascontiguousarray(impacts)
    if block < 1:
        raise ValueError(f"block must be >= 1, got {block}")
    if len(term_offsets) < 1 or term_offsets[0] != 0 or term_offsets[-1] != len(docs):
        raise ValueError(f"term_offsets must rise from 0 to the {len(docs)} postings")
    if len(impacts) != len(docs):
        raise ValueError(f"{len(docs)} documents but {len(impacts)} impacts")
    if len(docs) and (docs.min() < 0 or impacts.min() < 0):
        raise ValueError("document numbers and impacts must not be negative")
    if len(docs) > 1:
        rises = np.diff(docs.astype(np.int64)) > 0
        starts = np.zeros(len(docs), bool)
        starts[term_offsets[1:-1][term_offsets[1:-1] < len(docs)]] = True
        bad = np.flatnonzero(~rises & ~starts[1:])
        if len(bad):
            raise ValueError(
                f"documents do not rise strictly within a term at posting {bad[0] + 1}"
            )
    plan = _plan(term_offsets, docs, impacts, block)
    term_blocks, block_words, doc_bits, impact_bits, impact_base, last_doc = plan
    words = np.zeros(int(block_words[-1]) + 1, np.uint32)  # +1: a value may straddle the end
    _pack(term_offsets, docs, impacts, block, term_blocks, block_words, doc_bits, impact_bits,
          impact_base, words)  # fmt: skip
    return PackedPostings(
        term_blocks, term_offsets, block_words, doc_bits, impact_bits, impact_base, last_doc,
        words, impacts.dtype.name, block,
    )  # fmt: skip


def unpack_term(packed: PackedPostings, t: int) -> tuple[np.ndarray, np.ndarray]:
    """Term ``t``'s ``(docs int32, impacts)`` exactly as they were packed."""
    n = int(packed.term_offsets[t + 1] - packed.term_offsets[t])
    docs = np.empty(n, np.int32)
    impacts = np.empty(n, np.dtype(packed.impact_dtype))
    _unpack_range(packed.words, packed.term_offsets, packed.term_blocks, packed.block_words,
                  packed.doc_bits, packed.impact_bits, packed.impact_base, packed.block, t, t + 1,
                  docs, impacts)  # fmt: skip
    return docs, impacts


def unpack_all(packed: PackedPostings) -> tuple[np.ndarray, np.ndarray]:
    """Every posting's ``(docs int32, impacts)``, term after term (the doc-ordered arrays)."""
    n = int(packed.term_offsets[-1])
    docs = np.empty(n, np.int32)
    impacts = np.empty(n, np.dtype(packed.impact_dtype))
    _unpack_range(packed.words, packed.term_offsets, packed.term_blocks, packed.block_words,
                  packed.doc_bits, packed.impact_bits, packed.impact_base, packed.block, 0,
                  len(packed.term_offsets) - 1, docs, impacts)  # fmt: skip
    return docs, impacts
