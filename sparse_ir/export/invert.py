"""Document-major vectors from the term-major index: what an export needs for every document.

The index stores postings by term (``term_offsets``, ``postings_docs``, ``postings_impacts``).
Exporting writes one line per document, so the postings must be regrouped by document. The
numba kernel does it block by block of documents, keeping one cursor per term: every term's
documents are ascending, so each block resumes where the previous one stopped, every posting
is read once in total, and memory stays bounded by the block. Terms are visited in id order,
so each document's terms come out ascending, as a :class:`~sparse_ir.sparse_batch.SparseBatch`
row must be.

:func:`invert_reference` is the plain numpy definition (a stable argsort of all postings by
document) that the kernel is tested against.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["advance_cursor", "invert_block", "invert_reference", "new_cursor"]


def invert_reference(
    term_offsets: np.ndarray,
    postings_docs: np.ndarray,
    postings_impacts: np.ndarray,
    num_documents: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(indptr, term_ids, impacts)`` of every document (CSR, terms ascending in each row)."""
    offsets = np.asarray(term_offsets, np.int64)
    docs = np.asarray(postings_docs)
    terms = np.repeat(np.arange(len(offsets) - 1, dtype=np.int32), np.diff(offsets))
    # Postings are sorted by term, so a stable sort by document keeps terms ascending per doc.
    order = np.argsort(docs, kind="stable")
    counts = np.bincount(docs, minlength=num_documents)
    indptr = np.zeros(num_documents + 1, np.int64)
    np.cumsum(counts, out=indptr[1:])
    return indptr, terms[order], np.asarray(postings_impacts)[order].astype(np.int32)


def new_cursor(term_offsets: np.ndarray) -> np.ndarray:
    """The per-term read positions before the first block (each term's first posting)."""
    return np.array(term_offsets[:-1], dtype=np.int64)


def advance_cursor(
    term_offsets: np.ndarray, postings_docs: np.ndarray, cursor: np.ndarray, doc_stop: int
) -> None:
    """Move every term's cursor past the documents before ``doc_stop`` without reading them
    out (a binary search per term): how a block range that does not start at 0 begins."""
    _advance(term_offsets, postings_docs, cursor, doc_stop)


def invert_block(
    term_offsets: np.ndarray,
    postings_docs: np.ndarray,
    postings_impacts: np.ndarray,
    cursor: np.ndarray,
    doc_start: int,
    doc_stop: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(indptr, term_ids, impacts)`` of documents ``[doc_start, doc_stop)``.

    Blocks must be requested in increasing, contiguous order, starting from a cursor made by
    :func:`new_cursor` (and moved to the first block's start by :func:`advance_cursor`);
    ``cursor`` is advanced past the block.
    """
    count = doc_stop - doc_start
    lengths = np.zeros(count, np.int64)
    total = _count_block(term_offsets, postings_docs, cursor, doc_start, doc_stop, lengths)
    indptr = np.zeros(count + 1, np.int64)
    np.cumsum(lengths, out=indptr[1:])
    terms = np.empty(total, np.int32)
    impacts = np.empty(total, np.int32)
    _fill_block(
        term_offsets,
        postings_docs,
        postings_impacts,
        cursor,
        doc_start,
        doc_stop,
        indptr,
        terms,
        impacts,
    )
    return indptr, terms, impacts


@numba.njit(cache=True, nogil=True)
def _advance(term_offsets, postings_docs, cursor, doc_stop):
    for term in range(len(cursor)):
        low = cursor[term]
        high = term_offsets[term + 1]
        while low < high:  # first position whose document is >= doc_stop
            middle = (low + high) // 2
            if postings_docs[middle] < doc_stop:
                low = middle + 1
            else:
                high = middle
        cursor[term] = low


@numba.njit(cache=True, nogil=True)
def _count_block(term_offsets, postings_docs, cursor, doc_start, doc_stop, lengths):
    """Number of terms of each document of the block; the total."""
    total = 0
    for term in range(len(cursor)):
        end = term_offsets[term + 1]
        position = cursor[term]
        while position < end:
            doc = postings_docs[position]
            if doc >= doc_stop:
                break
            if doc >= doc_start:
                lengths[doc - doc_start] += 1
                total += 1
            position += 1
    return total


@numba.njit(cache=True, nogil=True)
def _fill_block(
    term_offsets,
    postings_docs,
    postings_impacts,
    cursor,
    doc_start,
    doc_stop,
    indptr,
    out_terms,
    out_impacts,
):
    """Scatter the block's postings into its rows and move every term's cursor past it."""
    count = doc_stop - doc_start
    slot = np.empty(count, np.int64)
    for i in range(count):
        slot[i] = indptr[i]
    for term in range(len(cursor)):
        end = term_offsets[term + 1]
        position = cursor[term]
        while position < end:
            doc = postings_docs[position]
            if doc >= doc_stop:
                break
            if doc >= doc_start:
                row = doc - doc_start
                out_terms[slot[row]] = term
                out_impacts[slot[row]] = postings_impacts[position]
                slot[row] += 1
            position += 1
        cursor[term] = position
