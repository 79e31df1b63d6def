"""Validation of what the search kernels trust: every manifest field against the arrays.

Checksums catch accidents; they do not catch intent: whoever shares an index can rewrite its
values and recompute every CRC32. So an index is validated as hostile input, in three tiers:

* **at open** (:func:`open_validated`, called once by ``IndexBase._open_generation``), before
  anything is mapped: every manifest field's type and range (counts within the int32 document
  and term numbers, dtypes from an allow-list, the quantizer, the search layout's window shape,
  the files each kind needs); after mapping, every offset array against the others, in O(V·W +
  N + S) (term, window, segment, forward and string offsets rise from 0 to the length of what
  they index; each term's window offsets start and end at its postings; each term's segments
  lie inside its postings, rise, and carry falling impacts up to the term's maximum), and the
  vocabulary (strings, unique);
* **before a term is first searched** (:class:`TermCheck`, O(postings of that term), once per
  term and index): its document-ordered postings' numbers ascending inside the collection and
  impacts in ``1..term_max_impact`` (where they are stored), the impact order window by window
  (offsets inside the window, impacts falling from the term's maximum, equal impacts by
  ascending document, no document twice, the same windows as the document order) and the
  segment counts. Opening a 1M-document index stays milliseconds; the first query touching a
  term pays for reading its postings once (see docs/reliability.md for the figures);
* **by** ``verify()``: the same per-term checks for every term, the forward index (terms
  inside the vocabulary and ascending, impacts in range), and the copies of the postings
  against each other (:func:`verify_layout`): the impact order a permutation of the
  document-ordered postings and the forward index their transpose, or, without them, the
  forward index the transpose of the impact order.

Every failure is an :class:`~sparse_ir.errors.IndexCorruptError` naming the file and the value.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numba
import numpy as np

from sparse_ir.errors import IndexCorruptError, InputError

if TYPE_CHECKING:  # pragma: no cover
    from sparse_ir.index.impact_index import ImpactIndex
    from sparse_ir.index.manifest import DenseManifest, ImpactManifest

__all__ = [
    "IMPACT_DTYPES",
    "TERM_DTYPES",
    "MAX_DOCUMENTS",
    "MAX_TERMS",
    "TermCheck",
    "open_validated",
    "validate_impact_manifest",
    "validate_impact_arrays",
    "validate_dense_manifest",
    "check_all_terms",
    "verify_layout",
]

#: Impact dtypes the kernels are compiled for (the builder writes the smallest that fits).
IMPACT_DTYPES = ("|u1", "<u2", "<u4")
#: Forward-index term id dtypes (uint16 for vocabularies of at most 2^16 terms, else int32).
TERM_DTYPES = ("<u2", "<i4")
#: Document numbers are int32 in the postings.
MAX_DOCUMENTS = 2**31 - 1
#: Term ids are int32 in queries.
MAX_TERMS = 2**31 - 1
#: Dense: the largest vector dimension accepted (faiss and the exact kernel take any; this keeps
#: ``num_documents × dim`` from overflowing anywhere).
MAX_DIM = 1 << 16

_IMPACT_FILES = (
    "vocab.json",
    "term_offsets.bin",
    "term_max_impact.bin",
    "doc_ids.offsets.bin",
    "doc_ids.bytes.bin",
)
#: The document-ordered postings (absent when the manifest says ``doc_ordered_postings: false``).
DOC_ORDER_FILES = ("postings_docs.bin", "postings_impacts.bin")
_CONTENT_FILES = (
    "doc_titles.offsets.bin",
    "doc_titles.bytes.bin",
    "doc_texts.offsets.bin",
    "doc_texts.bytes.bin",
)


def _fail(where: Path | str, message: str) -> IndexCorruptError:
    return IndexCorruptError(f"{where}: {message}; the index is corrupt or was altered")


# -- open: the manifest ---------------------------------------------------------------------------


def open_validated(cls, generation: Path, manifest):
    """``cls(generation, manifest)`` after validating the manifest, then its arrays.

    The one call ``IndexBase._open_generation`` makes: an index that this returns cannot make
    a search kernel read or write outside its arrays, whatever its values.
    """
    from sparse_ir.index.dense import DenseIndex
    from sparse_ir.index.impact_index import ImpactIndex

    if issubclass(cls, ImpactIndex):
        validate_impact_manifest(generation, manifest)
    elif issubclass(cls, DenseIndex):
        validate_dense_manifest(generation, manifest)
    index = cls(generation, manifest)
    if isinstance(index, ImpactIndex):
        validate_impact_arrays(index)
        index._term_check = TermCheck(index)
    return index


def _required_files(where: Path, listed, names) -> None:
    missing = [name for name in names if name not in listed]
    if missing:
        raise _fail(where, f"the manifest does not list {', '.join(missing)}")


def validate_impact_manifest(generation: Path, manifest: ImpactManifest) -> None:
    """Ranges and consistency of an impact manifest's fields (nothing is read but the record)."""
    from sparse_ir.index.layout import LAYOUT_FILES
    from sparse_ir.quantize import Quantizer

    where = generation / "manifest.json"
    if manifest.num_documents > MAX_DOCUMENTS:
        raise _fail(where, f"num_documents {manifest.num_documents} exceeds {MAX_DOCUMENTS}")
    if manifest.vocab_size > MAX_TERMS:
        raise _fail(where, f"vocab_size {manifest.vocab_size} exceeds {MAX_TERMS}")
    if manifest.impact_dtype not in IMPACT_DTYPES:
        raise _fail(
            where,
            f"impact_dtype {manifest.impact_dtype!r} is not one of {', '.join(IMPACT_DTYPES)}",
        )
    try:
        quantizer = Quantizer.from_dict(manifest.quantizer)
    except (InputError, KeyError, TypeError, ValueError) as exc:
        raise _fail(where, f"quantizer {manifest.quantizer!r} is invalid ({exc})") from None
    ceiling = min(quantizer.max_impact, int(np.iinfo(np.dtype(manifest.impact_dtype)).max))
    if manifest.max_impact > ceiling or (manifest.num_postings > 0 and manifest.max_impact < 1):
        raise _fail(
            where,
            f"max_impact {manifest.max_impact} outside 1..{ceiling} (the quantizer's "
            f"max_impact and the range of {manifest.impact_dtype})",
        )
    names = _IMPACT_FILES + (_CONTENT_FILES if manifest.has_contents else ())
    if manifest.doc_ordered_postings:
        names += DOC_ORDER_FILES
    else:
        listed = [name for name in DOC_ORDER_FILES if name in manifest.files]
        if listed:
            raise _fail(where, f"doc_ordered_postings is false, yet {listed[0]} is listed")
    layout = manifest.search_layout
    if layout is None and not manifest.doc_ordered_postings:
        raise _fail(
            where,
            "neither document-ordered postings nor a search layout: the index holds no postings",
        )
    if layout is not None:
        names += LAYOUT_FILES
        if layout.term_dtype not in TERM_DTYPES or (
            layout.term_dtype == "<u2" and manifest.vocab_size > 1 << 16
        ):
            raise _fail(
                where,
                f"search_layout term_dtype {layout.term_dtype!r} cannot hold "
                f"{manifest.vocab_size} term ids (expected one of {', '.join(TERM_DTYPES)})",
            )
        bits = layout.window_bits  # range first: 1 << 10**30 would exhaust memory
        windows = max(1, -(-manifest.num_documents // (1 << bits))) if 1 <= bits <= 16 else -1
        if layout.num_windows != windows:
            raise _fail(
                where,
                f"search layout of {layout.num_windows} windows of 2^{layout.window_bits} "
                f"documents does not fit {manifest.num_documents} documents",
            )
        if layout.num_segments > manifest.num_postings:
            raise _fail(
                where,
                f"{layout.num_segments} segments for {manifest.num_postings} postings "
                "(a segment holds at least one posting)",
            )
    _required_files(where, manifest.files, names)


def validate_dense_manifest(generation: Path, manifest: DenseManifest) -> None:
    """Ranges of a dense manifest's fields."""
    where = generation / "manifest.json"
    if not 1 <= manifest.dim <= MAX_DIM:
        raise _fail(where, f"dim {manifest.dim} outside 1..{MAX_DIM}")
    if manifest.num_documents > MAX_DOCUMENTS:
        raise _fail(where, f"num_documents {manifest.num_documents} exceeds {MAX_DOCUMENTS}")
    if manifest.dtype != "<f4" or manifest.metric != "inner_product":
        raise _fail(
            where,
            f"dtype {manifest.dtype!r} / metric {manifest.metric!r}: only '<f4' and "
            "'inner_product' are read",
        )
    if manifest.zero_vectors > manifest.num_documents:
        raise _fail(
            where,
            f"zero_vectors {manifest.zero_vectors} > num_documents {manifest.num_documents}",
        )
    if (manifest.hnsw is None) != ("hnsw.bin" not in manifest.files):
        raise _fail(where, "the hnsw settings and the hnsw.bin file disagree")
    for key, value in (manifest.hnsw or {}).items():
        if key not in ("m", "ef_construction", "ef_search") or not (
            type(value) is int and 1 <= value <= MAX_TERMS
        ):
            raise _fail(where, f"hnsw setting {key!r} = {value!r} (expected m, "
                        "ef_construction, ef_search: integers in 1..2^31-1)")  # fmt: skip
    _required_files(
        where, manifest.files, ("vectors.bin", "doc_ids.offsets.bin", "doc_ids.bytes.bin")
    )


# -- open: the offsets ----------------------------------------------------------------------------


def _rising(where: Path, name: str, offsets: np.ndarray, total: int) -> None:
    values = np.asarray(offsets)
    if (
        len(values) == 0
        or int(values[0]) != 0
        or int(values[-1]) != total
        or np.any(values[1:] < values[:-1])
    ):
        raise _fail(where / f"{name}.bin", f"offsets do not rise from 0 to {total}")


@numba.njit(cache=True, nogil=True)
def _segments_problem(term_offsets, term_max, segment_offsets, segment_impacts, segment_ends):
    """-1, or the first term whose segments are not: inside its postings, strictly rising
    ends finishing at its last posting, strictly falling impacts from its maximum down to >= 1
    (one segment per distinct impact: at least one for a non-empty term, none for an empty
    one). O(S)."""
    for t in range(len(term_offsets) - 1):
        start = term_offsets[t]
        end = term_offsets[t + 1]
        first = segment_offsets[t]
        last = segment_offsets[t + 1]
        if (end == start) != (last == first) or last - first > end - start:
            return t
        if (end == start) != (np.int64(term_max[t]) == 0):
            return t
        previous_end = start
        previous_impact = np.int64(term_max[t]) + 1
        for j in range(first, last):
            impact = np.int64(segment_impacts[j])
            if segment_ends[j] <= previous_end or impact >= previous_impact or impact < 1:
                return t
            previous_end = segment_ends[j]
            previous_impact = impact
        if last > first and (
            segment_ends[last - 1] != end or np.int64(segment_impacts[first]) != term_max[t]
        ):
            return t
    return -1


def validate_impact_arrays(index: ImpactIndex) -> None:
    """The O(V·W + N + S) checks of an opened impact index (see the module docstring)."""
    where = index.directory
    manifest = index.manifest
    n_postings, n_docs = manifest.num_postings, manifest.num_documents
    _check_vocabulary(where, index.vocab)
    term_offsets = np.asarray(index.term_offsets)
    _rising(where, "term_offsets", term_offsets, n_postings)
    term_max = np.asarray(index.term_max_impact)
    if len(term_max) and int(term_max.max()) > manifest.max_impact:
        raise _fail(
            where / "term_max_impact.bin", f"a maximum above max_impact {manifest.max_impact}"
        )
    for name, column in (
        ("doc_ids", index._doc_ids),
        ("doc_titles", index._titles),
        ("doc_texts", index._texts),
    ):
        if column is not None:
            _rising(where, f"{name}.offsets", column.offsets, len(column.data))
    layout = index._layout
    if layout is None:
        return
    num_windows = layout.num_windows
    windows = np.asarray(layout.window_offsets)
    _rising(where, "window_offsets", windows, n_postings)
    if not np.array_equal(windows[::num_windows], term_offsets):
        raise _fail(where / "window_offsets.bin", "a term's windows do not span its postings")
    _rising(where, "segment_offsets", layout.segment_offsets, len(layout.segment_ends))
    _rising(where, "forward_offsets", layout.forward_offsets, n_postings)
    if len(layout.forward_offsets) != n_docs + 1:
        raise _fail(where / "forward_offsets.bin", f"not {n_docs + 1} offsets")
    bad = _segments_problem(
        term_offsets, term_max, np.asarray(layout.segment_offsets),
        np.asarray(layout.segment_impacts), np.asarray(layout.segment_ends),
    )  # fmt: skip
    if bad >= 0:
        raise _fail(
            where / "segment_ends.bin",
            f"the segments of term {bad} ({index.vocab[bad]!r}) do not describe its postings",
        )


def _check_vocabulary(where: Path, vocab) -> None:
    """Tokens are strings, each once (a duplicate makes every search on it miss)."""
    for position, token in enumerate(vocab):
        if not isinstance(token, str):
            raise _fail(where / "vocab.json", f"entry {position} is {token!r}, not a string")
    if len(set(vocab)) != len(vocab):
        seen: dict[str, int] = {}
        for position, token in enumerate(vocab):
            if token in seen:
                raise _fail(
                    where / "vocab.json",
                    f"the token {token!r} is listed twice (entries {seen[token]} and {position})",
                )
            seen[token] = position


def check_doc_ids(directory: Path, column) -> None:
    """Every stored document id valid UTF-8 and a valid id (not empty, no control character
    or line break: :func:`sparse_ir.validation.first_id_problem`, the builder's rule); part of
    ``verify()`` (ids are decoded leniently for display, so this reads the bytes)."""
    from sparse_ir.validation import first_id_problem

    try:
        blob = bytes(column.data).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _fail(directory / "doc_ids.bytes.bin", f"invalid UTF-8 at byte {exc.start}") from None
    offsets = np.asarray(column.offsets).tolist()
    if blob.isascii():
        ids = [blob[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]
    else:
        data = bytes(column.data)
        ids = [
            data[offsets[i] : offsets[i + 1]].decode("utf-8", "replace")
            for i in range(len(offsets) - 1)
        ]
    if found := first_id_problem(ids):
        raise _fail(directory / "doc_ids.bytes.bin", f"document {found[0]}: {found[1]}")


# -- before a term is first searched --------------------------------------------------------------


@numba.njit(cache=True, nogil=True)
def _term_problem(t, n_docs, window_bits, num_windows, arrays, scratch, seen):
    """0 when term ``t``'s postings are sound, else a code > 0 saying what is not. O(postings).

    ``seen`` (uint8 [2^window_bits], zero) marks a window's documents in the impact order (no
    document twice: every search mode adds its postings) and is zero again on return."""
    (term_offsets, docs, impacts, term_max, windows, io_docs, io_impacts, segment_offsets,
     segment_impacts, segment_ends, has_layout, has_doc_order) = arrays  # fmt: skip
    start = term_offsets[t]
    end = term_offsets[t + 1]
    top = np.int64(term_max[t])
    highest = np.int64(0)
    if has_doc_order:
        previous = np.int64(-1)
        for p in range(start, end):
            doc = np.int64(docs[p])
            impact = np.int64(impacts[p])
            if doc <= previous or doc >= n_docs:
                return 1  # document numbers not ascending inside the collection
            if impact < 1 or impact > top:
                return 2  # impact outside 1..term_max_impact
            previous = doc
            highest = max(highest, impact)
        if highest != top:
            return 3  # term_max_impact is not the postings' maximum
    if not has_layout:
        return 0
    for w in range(num_windows):
        low = windows[t * num_windows + w]
        high = windows[t * num_windows + w + 1]
        size_w = min(np.int64(1) << window_bits, n_docs - (np.int64(w) << window_bits))
        before = top + 1
        previous = np.int64(-1)
        code = 0
        for p in range(low, high):
            impact = np.int64(io_impacts[p])
            offset = np.int64(io_docs[p])
            if has_doc_order and (np.int64(docs[p]) >> window_bits) != w:
                code = 4  # window offsets disagree with the document numbers
            elif offset >= size_w or impact > before or impact < 1:
                code = 5  # impact order: an offset past the window, or impacts not falling
            elif impact == before and offset <= previous:
                code = 7  # equal impacts: documents not ascending
            elif seen[offset]:
                code = 8  # a document twice in the window
            if code:
                break
            seen[offset] = 1  # offset < size_w <= len(seen)
            before = impact
            previous = offset
            highest = max(highest, impact)
        for p in range(low, high):  # clear what was marked (no offset past the window was)
            offset = np.int64(io_docs[p])
            if offset < size_w:
                seen[offset] = 0
        if code:
            return code
    if not has_doc_order and highest != top:
        return 3
    # Segment sizes: postings of each distinct impact (impacts descend along the segments).
    first = segment_offsets[t]
    last = segment_offsets[t + 1]
    counts = scratch[: last - first]
    counts[:] = 0
    for p in range(start, end):
        impact = np.int64(io_impacts[p])
        low = first
        high = last - 1
        while low < high:  # the segment of this impact: first with impact <= it
            middle = (low + high) // 2
            if np.int64(segment_impacts[middle]) > impact:
                low = middle + 1
            else:
                high = middle
        if np.int64(segment_impacts[low]) != impact:
            return 6  # an impact no segment describes
        counts[low - first] += 1
    previous_end = start
    for j in range(first, last):
        if segment_ends[j] - previous_end != counts[j - first]:
            return 6
        previous_end = segment_ends[j]
    return 0


@numba.njit(cache=True, nogil=True)
def _first_bad_term(terms, checked, n_docs, window_bits, num_windows, arrays, scratch, seen):
    """Check the terms not yet ``checked`` (marking the sound ones); return ``(term, code)``
    of the first damaged one, or ``(-1, 0)``."""
    for i in range(len(terms)):
        t = terms[i]
        if checked[t]:
            continue
        code = _term_problem(t, n_docs, window_bits, num_windows, arrays, scratch, seen)
        if code:
            return t, code
        checked[t] = 1
    return -1, 0


_TERM_PROBLEMS = {
    1: "postings_docs.bin: document numbers not ascending inside the collection",
    2: "postings_impacts.bin: an impact outside 1..term_max_impact",
    3: "term_max_impact.bin: not the maximum of the term's postings",
    4: "window_offsets.bin: windows disagree with the document numbers",
    5: "impact_order_docs.bin/impact_order_impacts.bin: an offset past its window or impacts "
    "not falling",
    6: "segment_ends.bin/segment_impacts.bin: segments disagree with the postings",
    7: "impact_order_docs.bin: documents of equal impact not ascending in a window",
    8: "impact_order_docs.bin: a document twice in a term",
}


class TermCheck:
    """The per-term O(postings) checks, run once per term before it is first searched.

    ``ensure(terms)`` costs one small kernel call when every term was checked already. It is
    safe from several threads (a term checked twice at worst).
    """

    def __init__(self, index: ImpactIndex):
        self.directory = index.directory
        self.vocab = index.vocab
        layout = index._layout
        self.checked = np.zeros(index.vocab_size, np.uint8)
        # The same facts as a set, for short queries (filled by ensure; set.update is atomic).
        self.checked_terms: set[int] = set()
        self.n_docs = index.num_documents
        empty64 = np.zeros(1, np.int64)
        has_doc_order = index.has_doc_ordered_postings
        if has_doc_order:
            docs = np.asarray(index.postings_docs)
            impacts = np.asarray(index.postings_impacts)
        else:  # the impact order is the only copy (a layout is then required at open)
            docs = np.zeros(0, np.int32)
            impacts = np.asarray(layout.impact_order_impacts)[:0]
        if layout is None:
            self.window_bits, self.num_windows = 16, 1
            rest = (
                empty64,
                np.zeros(1, np.uint16),
                impacts[:0],
                empty64,
                impacts[:0],
                empty64,
                False,
            )
            self.scratch = empty64
        else:
            self.window_bits, self.num_windows = layout.window_bits, layout.num_windows
            rest = (
                np.asarray(layout.window_offsets),
                np.asarray(layout.impact_order_docs),
                np.asarray(layout.impact_order_impacts),
                np.asarray(layout.segment_offsets),
                np.asarray(layout.segment_impacts),
                np.asarray(layout.segment_ends),
                True,
            )
            per_term = np.diff(np.asarray(layout.segment_offsets))
            self.scratch = np.zeros(max(1, int(per_term.max()) if len(per_term) else 1), np.int64)
        self.seen_size = 1 << self.window_bits if layout is not None else 0
        head = (np.asarray(index.term_offsets), docs, impacts, np.asarray(index.term_max_impact))
        self.arrays = head + rest + (has_doc_order,)

    def ensure(self, terms: np.ndarray) -> None:
        """Raise :class:`IndexCorruptError` if a term of ``terms`` (int32 ids inside the
        vocabulary) has damaged postings; remember the sound ones."""
        terms = np.asarray(terms, np.int32)
        # The usual case, every term checked before: a set lookup of a short query's ids
        # (~0.2 µs) instead of numpy's gather and reduction (~1.5 µs).
        short = len(terms) <= 64
        if short and self.checked_terms.issuperset(terms.tolist()):
            return
        if not short and self.checked[terms].all():
            return
        # One scratch per call: threads must not share it.
        scratch = np.empty_like(self.scratch) if len(self.scratch) > 1 else self.scratch
        seen = np.zeros(max(1, self.seen_size), np.uint8)
        term, code = _first_bad_term(
            terms, self.checked, self.n_docs, self.window_bits,
            self.num_windows, self.arrays, scratch, seen,
        )  # fmt: skip
        if term >= 0:
            raise _fail(
                self.directory,
                f"term {term} ({self.vocab[term]!r}): {_TERM_PROBLEMS[int(code)]}",
            )
        if short:
            self.checked_terms.update(terms.tolist())


def check_all_terms(index: ImpactIndex) -> None:
    """Every term's per-term checks (part of ``verify()``)."""
    check = getattr(index, "_term_check", None) or TermCheck(index)
    check.ensure(np.arange(index.vocab_size, dtype=np.int32))


# -- verify: the layout against the postings -------------------------------------------------------


@numba.njit(cache=True, nogil=True)
def _forward_problem(forward_offsets, forward_terms, forward_impacts, n_terms, max_impact, counts):
    """0, or a code: forward terms inside the vocabulary and ascending per document (1),
    impacts in 1..max_impact (2). ``counts`` (int64 [V], zero) receives each term's number of
    forward entries."""
    for d in range(len(forward_offsets) - 1):
        previous = np.int64(-1)
        for p in range(forward_offsets[d], forward_offsets[d + 1]):
            term = np.int64(forward_terms[p])
            impact = np.int64(forward_impacts[p])
            if term <= previous or term >= n_terms:
                return 1
            if impact < 1 or impact > max_impact:
                return 2
            previous = term
            counts[term] += 1
    return 0


@numba.njit(cache=True, nogil=True)
def _transpose_problem(term_offsets, docs, impacts, forward_offsets, forward_terms,
                       forward_impacts, cursor):  # fmt: skip
    """True when the forward index is not the transpose of the postings: walking documents in
    order, each forward entry (d, t, impact) must be term t's next posting. ``cursor`` is a
    copy of ``term_offsets[:-1]``."""
    for d in range(len(forward_offsets) - 1):
        for p in range(forward_offsets[d], forward_offsets[d + 1]):
            t = np.int64(forward_terms[p])
            q = cursor[t]
            if q >= term_offsets[t + 1] or docs[q] != d or impacts[q] != forward_impacts[p]:
                return True
            cursor[t] = q + 1
    return False


@numba.njit(cache=True, nogil=True)
def _impact_order_problem(windows, docs, impacts, io_docs, io_impacts, window_bits, num_windows):
    """True when a window's impact order is not a permutation of its document-ordered
    postings (same (document, impact) pairs; equal impacts by ascending document): per window,
    documents in the impact order must each match one posting. O(P), a per-window mark array."""
    mark = np.zeros(np.int64(1) << window_bits, np.int64)
    for i in range(len(windows) - 1):
        low = windows[i]
        high = windows[i + 1]
        w = i % num_windows
        base = np.int64(w) << window_bits
        for p in range(low, high):  # document order: remember each document's impact slot
            offset = np.int64(docs[p]) - base
            mark[offset] = p + 1
        for p in range(low, high):
            offset = np.int64(io_docs[p])
            if p > low and io_impacts[p] == io_impacts[p - 1] and offset <= io_docs[p - 1]:
                return True  # equal impacts keep documents ascending
            q = mark[offset] - 1
            if q < low or q >= high or np.int64(docs[q]) - base != offset:
                return True
            if impacts[q] != io_impacts[p]:
                return True
            mark[offset] = 0  # each posting once
        for p in range(low, high):
            mark[np.int64(docs[p]) - base] = 0
    return False


@numba.njit(cache=True, nogil=True)
def _forward_impact_order_problem(windows, io_docs, io_impacts, forward_offsets, forward_terms,
                                  forward_impacts, window_bits, num_windows, n_terms):  # fmt: skip
    """-1 when the forward index is the transpose of the impact-ordered postings, else the
    first window where it is not: per window, each term's forward entries and postings are
    equal in number, and each posting (offset, impact) is one forward entry of that term.

    The window's forward entries are grouped by term (a counting sort), then for each term
    its entries are marked by offset and every posting must find its own (forward terms are
    distinct within a document, so the marks are distinct). O(P + V·W), memory of one
    window's entries."""
    n_docs = len(forward_offsets) - 1
    mark = np.zeros(np.int64(1) << 16, np.int64)
    counts = np.zeros(n_terms + 1, np.int64)
    for w in range(num_windows):
        base = np.int64(w) << window_bits
        stop = min(base + (np.int64(1) << window_bits), n_docs)
        counts[:] = 0
        for p in range(forward_offsets[base], forward_offsets[stop]):
            counts[np.int64(forward_terms[p]) + 1] += 1
        for t in range(n_terms):
            if counts[t + 1] != windows[t * num_windows + w + 1] - windows[t * num_windows + w]:
                return w
            counts[t + 1] += counts[t]
        size = counts[n_terms]
        grouped_offsets = np.empty(size, np.int32)
        grouped_impacts = np.empty(size, np.int32)
        for d in range(base, stop):  # documents ascending: stable by term
            for p in range(forward_offsets[d], forward_offsets[d + 1]):
                t = np.int64(forward_terms[p])
                grouped_offsets[counts[t]] = d - base
                grouped_impacts[counts[t]] = np.int64(forward_impacts[p])
                counts[t] += 1
        first = 0
        for t in range(n_terms):  # counts[t] is now the end of term t's group
            for j in range(first, counts[t]):
                mark[np.int64(grouped_offsets[j])] = np.int64(grouped_impacts[j])
            for p in range(windows[t * num_windows + w], windows[t * num_windows + w + 1]):
                offset = np.int64(io_docs[p])
                if mark[offset] != np.int64(io_impacts[p]):
                    return w
                mark[offset] = 0
            first = counts[t]
    return -1


def verify_layout(index: ImpactIndex) -> None:
    """The search layout against the postings (part of ``verify()``, after every term passed
    :func:`check_all_terms`): the forward index sound and the transpose of the postings, each
    window's impact order a permutation of its postings. Without document-ordered postings,
    the forward index is checked against the impact order, the only other copy."""
    layout = index._layout
    if layout is None:
        return
    where = index.directory
    counts = np.zeros(index.vocab_size, np.int64)
    code = _forward_problem(
        np.asarray(layout.forward_offsets), np.asarray(layout.forward_terms),
        np.asarray(layout.forward_impacts), index.vocab_size, index.max_impact, counts,
    )  # fmt: skip
    if code == 1:
        raise _fail(where / "forward_terms.bin", "a term id outside the vocabulary or repeated")
    if code == 2:
        raise _fail(where / "forward_impacts.bin", "an impact outside 1..max_impact")
    offsets = np.asarray(index.term_offsets)
    if not np.array_equal(counts, np.diff(offsets)):
        raise _fail(where / "forward_terms.bin", "the forward index differs from the postings")
    if not index.has_doc_ordered_postings:
        window = _forward_impact_order_problem(
            np.asarray(layout.window_offsets), np.asarray(layout.impact_order_docs),
            np.asarray(layout.impact_order_impacts), np.asarray(layout.forward_offsets),
            np.asarray(layout.forward_terms), np.asarray(layout.forward_impacts),
            layout.window_bits, layout.num_windows, index.vocab_size,
        )  # fmt: skip
        if window >= 0:
            raise _fail(
                where / "forward_terms.bin",
                f"the forward index differs from the impact-ordered postings in window {window}",
            )
        return
    if _transpose_problem(
        offsets, np.asarray(index.postings_docs), np.asarray(index.postings_impacts),
        np.asarray(layout.forward_offsets), np.asarray(layout.forward_terms),
        np.asarray(layout.forward_impacts), offsets[:-1].copy(),
    ):  # fmt: skip
        raise _fail(where / "forward_terms.bin", "the forward index differs from the postings")
    if _impact_order_problem(
        np.asarray(layout.window_offsets), np.asarray(index.postings_docs),
        np.asarray(index.postings_impacts), np.asarray(layout.impact_order_docs),
        np.asarray(layout.impact_order_impacts), layout.window_bits, layout.num_windows,
    ):  # fmt: skip
        raise _fail(
            where / "impact_order_docs.bin",
            "a window's impact order is not a permutation of its postings",
        )


# -- dense indexes ---------------------------------------------------------------------------------


def check_hnsw_graph(graph, num_documents: int, dim: int, where: Path) -> None:
    """The structure of a deserialized faiss HNSW graph, before any search runs on it: its
    size and dimension, the entry point and every neighbour id inside the collection, each
    node's level and neighbour count as its level allows (searching a graph with an id out of
    range reads outside faiss's arrays)."""
    import faiss

    hnsw = getattr(graph, "hnsw", None)
    if hnsw is None or graph.ntotal != num_documents or graph.d != dim:
        raise _fail(
            where,
            f"a graph of {graph.ntotal} × {graph.d}, the index holds {num_documents} × {dim}",
        )
    levels = faiss.vector_to_array(hnsw.levels).astype(np.int64)
    offsets = faiss.vector_to_array(hnsw.offsets).astype(np.int64)
    neighbors = faiss.vector_to_array(hnsw.neighbors).astype(np.int64)
    per_level = faiss.vector_to_array(hnsw.cum_nneighbor_per_level).astype(np.int64)
    n = num_documents
    top = int(hnsw.max_level)
    problem = None
    if len(levels) != n or len(offsets) != n + 1:
        problem = f"{len(levels)} levels and {len(offsets)} offsets for {n} nodes"
    elif not (len(per_level) >= 2 and per_level[0] == 0 and np.all(np.diff(per_level) >= 0)):
        problem = "the neighbours per level are not a rising table from 0"
    elif n and not (-1 <= top < len(per_level) - 1 and 0 <= int(hnsw.entry_point) < n):
        problem = f"entry point {int(hnsw.entry_point)} or top level {top} out of range"
    elif n and (levels.min() < 1 or levels.max() > top + 1):
        problem = "a node's level outside 1..max_level+1"
    elif offsets[0] != 0 or not np.array_equal(np.diff(offsets), per_level[levels] if n else []):
        problem = "a node's neighbour list is not the size its level gives"
    elif len(neighbors) != offsets[-1]:
        problem = f"{len(neighbors)} neighbour slots, the offsets promise {int(offsets[-1])}"
    elif len(neighbors) and (neighbors.min() < -1 or neighbors.max() >= n):
        problem = "a neighbour id outside the collection"
    if problem:
        raise _fail(where, f"damaged HNSW graph: {problem}")


def verify_dense(index) -> None:
    """Dense invariants beyond the checksums (part of ``verify()``): every row's norm agrees
    with the manifest's ``normalized`` and the count of zero rows with ``zero_vectors``."""
    from sparse_ir.index.dense import _CHUNK_BYTES, _NORM_TOLERANCE

    manifest = index.manifest
    step = max(1, _CHUNK_BYTES // (index.dim * 4))
    zero_rows = 0
    for start in range(0, index.num_documents, step):
        block = np.asarray(index.vectors[start : start + step], np.float64)
        norms = np.sqrt(np.einsum("ij,ij->i", block, block))
        zero = norms == 0
        zero_rows += int(zero.sum())
        if manifest.normalized and np.any(np.abs(norms[~zero] - 1.0) > _NORM_TOLERANCE):
            row = start + int(np.flatnonzero(~zero & (np.abs(norms - 1.0) > _NORM_TOLERANCE))[0])
            raise _fail(
                index.directory / "vectors.bin",
                f"row {row} has norm {norms[row - start]:.6g}, but the manifest records "
                "normalized vectors",
            )
    if zero_rows != manifest.zero_vectors:
        raise _fail(
            index.directory / "vectors.bin",
            f"{zero_rows} zero rows, the manifest records {manifest.zero_vectors}",
        )
