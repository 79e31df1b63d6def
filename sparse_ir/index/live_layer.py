"""The layer ranking of approximate search over the segments of a live index.

``Approximate(layer_postings=P, max_verified=V)`` on one index
(:func:`.approximate.layer_search_one`) scores the query's P best postings (highest
q_t × impact), ranks the documents by that partial score and scores the best max(V, k) of them
exactly. Over the segments of a live index it is the same ranking, as if the live documents
were one index:

1. **One threshold for all segments.** The layer is the live postings with q_t × impact >= T,
   T the smallest threshold (at most the largest live q_t × impact) that leaves at most P
   live postings in all segments together. The cuts are impacts, so a posting's membership
   does not depend on its segment; each probe of the binary search counts the layer from
   every segment's impact segments (:func:`layer_threshold_flat`, no posting read). Deleted
   documents' postings are not counted: each segment's impact segments' ends are recounted
   without them once per opened commit (:func:`live_segment_ends`, reading the deleted
   documents' forward entries only), so a live index ranks like one build of its live
   documents. A filter's excluded documents are counted, as in one index.
2. **One candidate set.** Each segment's layer postings are summed into partial scores and its
   best max(V, k) allowed documents kept (:func:`rank_segment_flat`; a deleted document is
   never allowed); the lists are merged into the best max(V, k) of all segments by partial
   score descending, then ordinal ascending (within a segment numbers follow ordinals, so each
   segment's own list is in that order: the merge is exact).
3. **Verify.** The candidates are scored exactly with the whole query from their segment's
   forward index (:func:`score_documents_flat`); the answer is their top-k above ``floor`` by
   score descending, then ordinal ascending (the live index's tie rule).

As on one index, when fewer than k documents are in the layer and there is no floor, the
exhaustive search answers; when the layer holds every posting the partial scores are the
scores, so the answer is the exhaustive one. The plain-numpy reference of this definition is
``_live_layer_reference`` in ``tests/test_approximate.py``.
"""

from __future__ import annotations

import numba
import numpy as np

from sparse_ir.errors import IndexCorruptError
from sparse_ir.index import kernels
from sparse_ir.index.approximate import _rank_layer, _segments_reaching
from sparse_ir.index.composite import merge_topk
from sparse_ir.index.impact_index import TopK
from sparse_ir.index.pruned import (
    _CORRUPT_SCORE,
    STAT_CANDIDATES,
    STAT_POSTINGS,
    STAT_VERIFIED,
    STATS_FIELDS,
    SearchArrays,
    _clear_slots,
    _exact_score,
    _fill_slots,
)

__all__ = [
    "layer_threshold_flat",
    "layer_top_k",
    "live_segment_ends",
    "rank_segment_flat",
    "score_documents_flat",
]

_KTH_SCORE = STATS_FIELDS.index("kth_score")


# The segments' arrays are passed field by field, as in .cross_segment (see
# .pruned.search_one_flat: a record of arrays is type-checked on a slow path at every call).
# fmt: off
@numba.njit(cache=True, nogil=True)
def live_segment_ends(
    deleted_docs, term_offsets, segment_offsets, segment_impacts, segment_ends, forward_offsets,
    forward_terms, forward_impacts,
):
    """``segment_ends`` of one segment counting its live postings only: entry j is the term's
    start + how many of its live postings have at least impact segment j's impact.
    ``deleted_docs``: the segment's deleted documents (their forward entries are read, nothing
    else). Returns ``(ends, corrupt)``; corrupt: a forward entry names a term or impact the
    term's impact segments do not hold."""
    removed = np.zeros(len(segment_ends), np.int64)
    n_terms = len(segment_offsets) - 1
    for j in range(len(deleted_docs)):
        d = deleted_docs[j]
        start = forward_offsets[d]
        end = forward_offsets[d + 1]
        if not (0 <= start <= end <= len(forward_terms)):
            return segment_ends.copy(), True
        for p in range(start, end):
            t = forward_terms[p]
            if t < 0 or t >= n_terms:
                return segment_ends.copy(), True
            impact = forward_impacts[p]
            low = segment_offsets[t]
            high = segment_offsets[t + 1]
            last = high
            while low < high:  # the segment of this impact (impacts descending)
                middle = (low + high) // 2
                if segment_impacts[middle] > impact:
                    low = middle + 1
                else:
                    high = middle
            if low == last or segment_impacts[low] != impact:
                return segment_ends.copy(), True
            removed[low] += 1
    ends = segment_ends.copy()
    for t in range(n_terms):
        gone = np.int64(0)
        for j in range(segment_offsets[t], segment_offsets[t + 1]):
            gone += removed[j]
            ends[j] -= gone
    return ends, False


@numba.njit(cache=True, nogil=True)
def _layer_size(query_terms, query_weights, threshold, offsets, impacts, reach):
    """Live postings with q_t × impact >= ``threshold`` in all segments (see
    :func:`layer_threshold_flat` for the tables)."""
    total = np.int64(0)
    for s in range(offsets.shape[0]):
        for i in range(len(query_terms)):
            t = query_terms[i]
            first = offsets[s, t]
            n = _segments_reaching(query_weights[i], threshold, impacts, first, offsets[s, t + 1])
            if n > 0:
                total += reach[first + n - 1]
    return total


@numba.njit(cache=True, nogil=True)
def layer_threshold_flat(query_terms, query_weights, max_postings, offsets, impacts, reach):
    """T, the smallest threshold in [1, the largest live q_t × impact] leaving at most
    ``max_postings`` live postings with q_t × impact >= T in all segments, else the largest;
    and the live postings at or above it: ``(T, postings)``. A binary search, each probe
    counting from the impact segments (no posting read), as in
    :func:`.approximate.layer_cuts`.

    The tables of all segments (:func:`_layer_tables`): term t's impact segments in segment s
    are ``[offsets[s, t], offsets[s, t + 1])`` of ``impacts`` (descending) and ``reach``
    (how many of the term's live postings in s have at least that impact).
    """
    high = np.int64(0)
    for s in range(offsets.shape[0]):
        for i in range(len(query_terms)):
            t = query_terms[i]
            before = np.int64(0)
            for j in range(offsets[s, t], offsets[s, t + 1]):  # its highest live impact
                if reach[j] > before:
                    high = max(high, np.int64(query_weights[i]) * impacts[j])
                    break
                before = reach[j]
    low = np.int64(1)
    high = max(high, low)
    while low < high:
        middle = low + (high - low) // 2
        if _layer_size(query_terms, query_weights, middle, offsets, impacts, reach) <= max_postings:
            high = middle
        else:
            low = middle + 1
    return low, _layer_size(query_terms, query_weights, low, offsets, impacts, reach)


@numba.njit(cache=True, nogil=True)
def rank_segment_flat(
    query_terms, query_weights, allowed, threshold, want, term_offsets, window_offsets,
    impact_order_docs, impact_order_impacts, segment_offsets, segment_impacts, segment_ends,
    forward_offsets, forward_terms, forward_impacts, window_bits, accumulator,
):
    """One segment's postings with q_t × impact >= ``threshold`` summed into partial scores;
    its best ``want`` allowed documents by partial score descending, then number ascending.

    Returns ``(partial scores, local documents, postings scored, corrupt)`` (the lists in no
    order). ``accumulator``: int64, zero, ``ACCUMULATOR_SIZE`` entries (left zero).
    """
    arrays = SearchArrays(
        term_offsets, window_offsets, impact_order_docs, impact_order_impacts, segment_offsets,
        segment_impacts, segment_ends, forward_offsets, forward_terms, forward_impacts,
        window_bits,
    )
    n_terms = len(query_terms)
    # Each term's cut: the impact of its first impact segment below the threshold (its
    # postings above the cut are those in the layer), as in .approximate.layer_cuts; only the
    # terms with postings in the layer are walked.
    walk_terms = np.empty(n_terms, query_terms.dtype)
    walk_weights = np.empty(n_terms, query_weights.dtype)
    walk_cuts = np.empty(n_terms, np.int64)
    m = 0
    for i in range(n_terms):
        t = query_terms[i]
        first = segment_offsets[t]
        last = segment_offsets[t + 1]
        n = _segments_reaching(query_weights[i], threshold, segment_impacts, first, last)
        if n > 0:
            walk_terms[m] = t
            walk_weights[m] = query_weights[i]
            walk_cuts[m] = np.int64(segment_impacts[first + n]) if first + n < last else 0
            m += 1
    best_scores = np.empty(want, np.int64)
    best_docs = np.empty(want, np.int64)
    n_best, scored, corrupt = _rank_layer(
        walk_terms[:m], walk_weights[:m], allowed, arrays, accumulator, walk_cuts[:m],
        best_scores, best_docs,
    )
    return best_scores[:n_best], best_docs[:n_best], scored, corrupt


@numba.njit(cache=True, nogil=True)
def score_documents_flat(
    query_terms, query_weights, docs, slots, term_offsets, window_offsets, impact_order_docs,
    impact_order_impacts, segment_offsets, segment_impacts, segment_ends, forward_offsets,
    forward_terms, forward_impacts, window_bits,
):
    """Exact scores of one segment's documents ``docs`` with the whole query (its forward
    index); -1 for a document whose forward entry is damaged. ``slots``: zero, one entry per
    vocabulary term (left zero)."""
    arrays = SearchArrays(
        term_offsets, window_offsets, impact_order_docs, impact_order_impacts, segment_offsets,
        segment_impacts, segment_ends, forward_offsets, forward_terms, forward_impacts,
        window_bits,
    )
    slot_weights = _fill_slots(query_terms, query_weights, slots)
    scores = np.empty(len(docs), np.int64)
    for j in range(len(docs)):
        scores[j] = _exact_score(docs[j], arrays, slots, slot_weights)
    _clear_slots(query_terms, slots)
    return scores
# fmt: on


def _corrupt(segment) -> IndexCorruptError:
    return IndexCorruptError(
        f"{segment.directory}: a posting points outside the index; run verify()"
    )


def _layer_tables(live) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The tables of :func:`layer_threshold_flat` for every segment of ``live``, made once per
    opened commit (its deletions do not change): ``(offsets, impacts, reach)``."""
    tables = live.__dict__.get("_layer_tables")
    if tables is None:
        offsets, impacts, reach = [], [], []
        base = 0
        for segment, deleted in zip(live.segments, live.deleted):
            arrays = SearchArrays(*segment._pruned()._flat_arrays)
            ends = arrays.segment_ends
            if deleted is not None and bool(deleted.any()):
                ends, corrupt = live_segment_ends(
                    np.flatnonzero(deleted), arrays.term_offsets, arrays.segment_offsets,
                    arrays.segment_impacts, arrays.segment_ends, arrays.forward_offsets,
                    arrays.forward_terms, arrays.forward_impacts,
                )  # fmt: skip
                if corrupt:
                    raise _corrupt(segment)
            segment_offsets = np.asarray(arrays.segment_offsets, np.int64)
            term_of = np.repeat(np.arange(len(segment_offsets) - 1), np.diff(segment_offsets))
            term_offsets = np.asarray(arrays.term_offsets, np.int64)
            offsets.append(segment_offsets + base)
            impacts.append(np.asarray(arrays.segment_impacts, np.int64))
            reach.append(np.asarray(ends, np.int64) - term_offsets[term_of])
            base += int(segment_offsets[-1])
        tables = (np.stack(offsets), np.concatenate(impacts), np.concatenate(reach))
        live._layer_tables = tables
    return tables


def layer_top_k(live, terms, weights, k: int, params, allowed: list, floor: int = 0):
    """The layer ranking of a prepared query over a live impact index's segments (see the
    module docstring): ``(TopK with global numbers, stats, int64 accumulator?)``, or None when
    fewer than ``k`` allowed documents are in the layer and ``floor`` is 0, or the query has
    65,535 terms or more (the verification's slots are 16-bit; as on one index): the caller
    then searches exhaustively. A ``k`` above the live documents is taken as their number.

    ``params``: the kernel settings of ``Approximate(layer_postings=P, max_verified=V)`` (P is
    ``estimate_postings``); ``allowed``: each segment's mask (uint8, None: all).
    """
    if len(terms) >= 65535:  # slots (uint16) could not number the query's terms
        return None
    segments = live.segments
    k = min(k, max(live.num_documents, 1))  # as ImpactIndex: want entries are allocated
    floor = max(int(floor), 0)
    want = max(int(params.max_verified), k)
    searcher = live._searcher()
    scratch = searcher._scratch()
    flats = []
    for segment in segments:
        segment._check_terms(terms)
        flats.append(segment._pruned()._flat_arrays)
    int64 = any(bool(s._needs_int64(terms, weights)) for s in segments)
    stats = np.zeros(len(STATS_FIELDS), np.int64)
    threshold, _ = layer_threshold_flat(
        terms, weights, np.int64(params.estimate_postings), *_layer_tables(live)
    )
    parts, keys = [], []
    for s, segment in enumerate(segments):
        mask = kernels.ALL_DOCUMENTS if allowed[s] is None else allowed[s]
        partial, docs, scored, corrupt = rank_segment_flat(
            terms, weights, mask, threshold, want, *flats[s], scratch.accumulator64
        )
        if corrupt:
            raise _corrupt(segment)
        stats[STAT_POSTINGS] += scored
        parts.append(TopK(docs, partial))
        keys.append(live.segment_ordinals[s][docs])
    # The best max(V, k) of all segments by partial score, then ordinal.
    candidates = merge_topk(parts, live.offsets[:-1], want, tie_keys=keys)
    stats[STAT_CANDIDATES] = len(candidates.docnos)
    if len(candidates.docnos) < k and floor == 0:
        return None
    # Exact scores, segment by segment.
    part_of = np.searchsorted(live.offsets, candidates.docnos, side="right") - 1
    scores = np.empty(len(candidates.docnos), np.int64)
    for s in np.unique(part_of).tolist():
        at = np.flatnonzero(part_of == s)
        local = candidates.docnos[at] - live.offsets[s]
        exact = score_documents_flat(terms, weights, local, scratch.slots, *flats[s])
        if bool(np.any(exact == _CORRUPT_SCORE)):
            raise _corrupt(segments[s])
        scores[at] = exact
    stats[STAT_VERIFIED] = len(scores)
    keep = scores > floor
    docs, top = live._ordered(candidates.docnos[keep], scores[keep], k)
    stats[_KTH_SCORE] = int(top[-1]) if len(top) == k else 0
    return TopK(docs, top), stats, int64
