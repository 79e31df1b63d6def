"""Compressed postings (prototype): packing then unpacking gives every posting back exactly."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparse_ir.index.compressed import BLOCK, pack_postings, unpack_all, unpack_term
from sparse_ir.index.impact_index import ImpactIndex
from sparse_ir.sparse_batch import SparseBatch


@st.composite
def _postings(draw):
    """Doc-ordered lists with empty terms, long gaps, one-posting blocks and wide impacts."""
    n_terms = draw(st.integers(1, 6))
    impact_max = draw(st.sampled_from([1, 255, 65535, 2**32 - 1]))
    offsets, docs, impacts = [0], [], []
    for _ in range(n_terms):
        chosen = draw(st.sets(st.integers(0, 2**31 - 1) | st.integers(0, 300), max_size=300))
        chosen = sorted(chosen)
        docs.extend(chosen)
        impacts.extend(draw(st.lists(st.integers(0, impact_max), min_size=len(chosen),
                                     max_size=len(chosen))))  # fmt: skip
        offsets.append(len(docs))
    dtype = np.uint8 if impact_max <= 255 else np.uint16 if impact_max <= 65535 else np.uint32
    block = draw(st.sampled_from([1, 3, BLOCK]))
    return np.array(offsets), np.array(docs, np.int32), np.array(impacts, dtype), block


@settings(max_examples=150, deadline=None)
@given(_postings())
def test_round_trip(case):
    offsets, docs, impacts, block = case
    packed = pack_postings(offsets, docs, impacts, block=block)
    got_docs, got_impacts = unpack_all(packed)
    assert got_docs.tolist() == docs.tolist()
    assert got_impacts.dtype == impacts.dtype
    assert got_impacts.tolist() == impacts.tolist()
    for t in range(len(offsets) - 1):
        d, i = unpack_term(packed, t)
        assert d.tolist() == docs[offsets[t] : offsets[t + 1]].tolist()
        assert i.tolist() == impacts[offsets[t] : offsets[t + 1]].tolist()
    blocks = np.diff(packed.term_blocks)
    assert blocks.tolist() == [-(-n // block) for n in np.diff(offsets).tolist()]
    # Each block's last document is recorded (for skipping).
    for t in range(len(offsets) - 1):
        for b in range(packed.term_blocks[t], packed.term_blocks[t + 1]):
            end = min(offsets[t] + (b - packed.term_blocks[t] + 1) * block, offsets[t + 1])
            assert packed.last_doc[b] == docs[end - 1]


def test_round_trip_of_a_built_index_and_smaller(tmp_path):
    rng = np.random.default_rng(5)
    rows, vocab_size = 4000, 300
    p = 1.0 / np.arange(1, vocab_size + 1)
    p /= p.sum()
    indptr, indices, values = [0], [], []
    for _ in range(rows):
        terms = np.sort(rng.choice(vocab_size, size=int(rng.integers(1, 60)), replace=False, p=p))
        indices.extend(terms.tolist())
        values.extend(rng.integers(1, 400, size=len(terms)).tolist())
        indptr.append(len(indices))
    batch = SparseBatch(np.array(indptr), np.array(indices, np.int32), np.array(values, np.int32),
                        tuple(f"t{i}" for i in range(vocab_size)),
                        tuple(f"d{i}" for i in range(rows)))  # fmt: skip
    index = ImpactIndex.build(
        batch, tmp_path / "index", show_progress=False, doc_ordered_postings=True
    )
    packed = pack_postings(index.term_offsets, index.postings_docs, index.postings_impacts)
    docs, impacts = unpack_all(packed)
    assert np.array_equal(docs, index.postings_docs)
    assert np.array_equal(impacts, index.postings_impacts)
    assert packed.nbytes < 0.6 * (index.postings_docs.nbytes + index.postings_impacts.nbytes)


@pytest.mark.parametrize(
    ("offsets", "docs", "impacts", "message"),
    [
        ([0, 3], [1, 1, 2], [1, 1, 1], "do not rise strictly within a term at posting 1"),
        ([0, 2], [5, 3], [1, 1], "at posting 1"),
        ([0, 1], [-1], [1], "must not be negative"),
        ([0, 2], [1, 2], [1], "2 documents but 1 impacts"),
        ([0, 5], [1, 2], [1, 1], "term_offsets must rise from 0 to the 2 postings"),
    ],
)
def test_bad_postings_are_named(offsets, docs, impacts, message):
    with pytest.raises(ValueError, match=message):
        pack_postings(np.array(offsets), np.array(docs, np.int64), np.array(impacts, np.int64))


def test_a_new_term_may_restart_low():
    packed = pack_postings(np.array([0, 2, 4]), np.array([7, 9, 1, 2], np.int32),
                           np.array([3, 4, 5, 6], np.uint16))  # fmt: skip
    assert unpack_term(packed, 1)[0].tolist() == [1, 2]
