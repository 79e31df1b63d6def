"""Filtered search's per-query shortcuts equal their plain versions.

* A live index's per-segment ``allowed`` masks are views of the filter's mask for segments
  without deletions and combined with the live documents only where a segment has deletions:
  they equal the plain ``filter & ~deleted`` sliced per segment.
* The cut ratio a filter's selectivity gives (``FILTERED_CUT_STEP`` per decade), none (0) and a
  steeper one return the same hits: the cut ratio only changes the work.
"""

from __future__ import annotations

import numpy as np
import pytest

from sparse_ir.index import impact_index
from sparse_ir.index.filters import FieldCondition, allowed_documents
from sparse_ir.index.impact_index import ImpactIndex
from sparse_ir.index.live_index import LiveImpactIndex, _Docnos
from sparse_ir.index.writer import IndexWriter
from sparse_ir.sparse_batch import SparseBatch

VOCAB = tuple(f"t{i}" for i in range(6))


def _vectors(rng, count: int) -> list[dict[str, int]]:
    out = []
    for _ in range(count):
        terms = rng.choice(len(VOCAB), size=int(rng.integers(1, 4)), replace=False)
        out.append({VOCAB[t]: int(rng.integers(1, 5)) for t in sorted(terms.tolist())})
    return out


@pytest.fixture(scope="module")
def live(tmp_path_factory) -> LiveImpactIndex:
    """Three segments; the middle one has deletions."""
    path = tmp_path_factory.mktemp("live") / "ix"
    rng = np.random.default_rng(7)
    with IndexWriter.open(path, vocab=VOCAB, merge_policy=None) as writer:
        for block in range(3):
            ids = [f"d{block}_{i}" for i in range(40)]
            metadata = [{"year": 2000 + i % 7} for i in range(40)]
            writer.add(SparseBatch.from_dicts(_vectors(rng, 40), VOCAB, ids=ids), metadata=metadata)
            writer.commit()
        writer.delete(["d1_3", "d1_4", "d1_30"])
        writer.commit()
    index = ImpactIndex.open(path)
    assert isinstance(index, LiveImpactIndex) and len(index.segments) == 3
    assert [d is not None for d in index.deleted] == [False, True, False]
    return index


def _plain_parts(index: LiveImpactIndex, filter) -> list[np.ndarray]:  # noqa: A002
    mask = allowed_documents(filter, _Docnos(index)).astype(bool) & ~index.deleted_mask()
    return [mask[a:b] for a, b in zip(index.offsets[:-1].tolist(), index.offsets[1:].tolist())]


def test_live_allowed_parts_equal_the_plain_combination(live):
    rng = np.random.default_rng(3)
    size = live.num_docnos
    uint8_mask = (rng.random(size) < 0.5).astype(np.uint8) * 2  # any nonzero byte allows
    for value in (
        rng.random(size) < 0.3,
        uint8_mask,
        FieldCondition("year", ">=", 2003),
        "year<2002",
    ):
        fast = live._allowed_parts(value)
        plain = _plain_parts(live, value)
        assert len(fast) == len(plain)
        for part, expected in zip(fast, plain):
            assert part.dtype == np.uint8 and part.flags.c_contiguous and part.flags.writeable
            assert np.array_equal(part != 0, expected)


def test_live_allowed_parts_view_the_mask_where_nothing_is_deleted(live):
    mask = np.random.default_rng(5).random(live.num_docnos) < 0.4
    parts = live._allowed_parts(mask)
    assert np.shares_memory(parts[0], mask) and np.shares_memory(parts[2], mask)
    assert not np.shares_memory(parts[1], mask)  # combined with the live documents: new
    assert mask.sum() == np.count_nonzero(np.concatenate([p != 0 for p in parts])) + int(
        (mask & live.deleted_mask()).sum()
    )


@pytest.mark.parametrize("step", [0.0, 0.3])
def test_cut_step_changes_no_hit(live, monkeypatch, tmp_path, step):
    rng = np.random.default_rng(11)
    single = ImpactIndex.build(
        SparseBatch.from_dicts(_vectors(rng, 300), VOCAB, ids=[f"s{i}" for i in range(300)]),
        tmp_path / "single",
        show_progress=False,
    )
    queries = _vectors(rng, 25)
    for index in (single, live):
        size = getattr(index, "num_docnos", index.num_documents)
        masks = [rng.random(size) < share for share in (0.05, 0.3, 0.9)]
        expected = [
            [index.search_arrays(q, 5, mode="pruned", filter=m) for q in queries] for m in masks
        ]
        monkeypatch.setattr(impact_index, "FILTERED_CUT_STEP", step)
        for mask, before in zip(masks, expected):
            for query, top in zip(queries, before):
                again = index.search_arrays(query, 5, mode="pruned", filter=mask)
                assert again.docnos.tolist() == top.docnos.tolist()
                assert again.scores.tolist() == top.scores.tolist()
        monkeypatch.undo()


def test_a_selective_filter_raises_the_cut_ratio_by_decades_below_a_tenth():
    from sparse_ir.index.impact_index import _filtered_params
    from sparse_ir.index.pruned import PrunedParams

    def mask(share: float, n: int = 100_000) -> np.ndarray:
        allowed = np.zeros(n, np.uint8)
        if share:
            allowed[:: round(1 / share)] = 7  # any nonzero value allows
        return allowed

    exact = PrunedParams()
    shares = (1, 0.5, 0.1, 0.01, 0.001, 0)
    ratios = {s: _filtered_params(exact, mask(s), 100_000).cut_ratio for s in shares}
    assert ratios[1] == ratios[0.5] == ratios[0.1] == 0.5 and ratios[0] == 0.8
    # The share is estimated from a sample of the mask: close to the rule, not exact.
    assert ratios[0.01] == pytest.approx(0.6, abs=0.01)
    assert ratios[0.001] == pytest.approx(0.7, abs=0.03)
    # Exact settings stay exact; approximate ones and a ρ above the ceiling are left alone.
    assert _filtered_params(exact, mask(0.01), 100_000).exact
    approximate = PrunedParams(cut_ratio=1.5, bound_weight=0.5)
    assert _filtered_params(approximate, mask(0.01), 100_000) is approximate
    high = PrunedParams(cut_ratio=0.9)
    assert _filtered_params(high, mask(0.01), 100_000).cut_ratio == 0.9
    assert _filtered_params(exact, None, 100_000) is exact
