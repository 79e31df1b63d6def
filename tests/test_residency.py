"""ImpactIndex.open(..., resident=...): the same results from locked or copied arrays."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from sparse_ir.index import residency
from sparse_ir.index.impact_index import ImpactIndex
from sparse_ir.index.modes import Approximate
from sparse_ir.index.pruned import PrunedParams
from sparse_ir.sparse_batch import SparseBatch


def _corpus(seed: int = 7, rows: int = 3000, vocab_size: int = 200) -> SparseBatch:
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, vocab_size + 1) ** 1.1
    p /= p.sum()
    indptr, indices, values = [0], [], []
    for _ in range(rows):
        terms = np.sort(rng.choice(vocab_size, size=int(rng.integers(1, 40)), replace=False, p=p))
        indices.extend(terms.tolist())
        values.extend(rng.integers(1, 300, size=len(terms)).tolist())
        indptr.append(len(indices))
    return SparseBatch(
        np.array(indptr),
        np.array(indices, np.int32),
        np.array(values, np.int32),
        tuple(f"t{i}" for i in range(vocab_size)),
        tuple(f"d{i}" for i in range(rows)),
    )


@pytest.fixture(scope="module")
def index_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("residency") / "index"
    ImpactIndex.build(_corpus(), path, show_progress=False)
    return path


def _queries():
    rng = np.random.default_rng(3)
    return [
        (np.sort(rng.choice(200, size=12, replace=False)).astype(np.int32), rng.integers(1, 90, 12))
        for _ in range(25)
    ]


def _all_results(index):
    out = []
    for mode in ("exhaustive", "pruned", Approximate(cut_ratio=0.75, bound_weight=0.7)):
        for terms, weights in _queries():
            top = index.search_arrays((terms, weights), 10, mode=mode)
            out.append((top.docnos.tolist(), top.scores.tolist()))
    # The pruned phases themselves (a tiny estimate, so cut, bound and verify run).
    searcher = index._pruned()
    for terms, weights in _queries():
        docs, scores, _ = searcher.search(
            terms, weights.astype(np.int64), 10, PrunedParams(estimate_postings=40), False
        )
        out.append((np.asarray(docs).tolist(), np.asarray(scores).tolist()))
    return out


@pytest.mark.parametrize("how", ["copy", "lock", True, "auto"])
def test_resident_index_finds_the_same(index_path, how):
    plain = ImpactIndex.open(index_path)
    try:
        resident = ImpactIndex.open(index_path, resident=how)
    except OSError as exc:  # a system that refuses mlock (no CAP_IPC_LOCK, small ulimit -l)
        assert how == "lock"
        pytest.skip(f"mlock refused here: {exc}")
    assert plain.residency is None
    assert resident.residency.how in ("lock", "copy")
    assert resident.residency.bytes > plain._layout.impact_order_docs.nbytes
    assert _all_results(resident) == _all_results(plain)
    assert sum(len(d) for d, _ in _all_results(plain)) > 0


def test_auto_copies_what_fits_and_maps_the_rest(index_path, monkeypatch, caplog):
    assert residency.auto_resident(100, available=1000) == "copy"
    assert residency.auto_resident(600, available=1000) is None  # over half
    assert residency.auto_resident(100, available=None) is None or residency.memory_available()
    assert ImpactIndex.open(index_path, resident="auto").residency.how == "copy"
    monkeypatch.setattr(residency, "memory_available", lambda: 1000)  # a crowded machine
    with caplog.at_level(logging.INFO, logger="sparse_ir.index.residency"):
        index = ImpactIndex.open(index_path, resident="auto")
    assert index.residency.how == "mapped"
    assert "over 50% of the memory available" in index.residency.fallback
    assert "stays mapped only" in caplog.text
    assert residency._mapping(index._layout.forward_terms) is not None
    assert _all_results(index) == _all_results(ImpactIndex.open(index_path))


def test_searcher_opens_resident_by_default(tmp_path, tiny_bert_dir):
    import json

    from sparse_ir.cli import main
    from sparse_ir.search import Searcher

    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(json.dumps({"_id": "a", "text": "the cancer cells in mice"}) + "\n")
    path = tmp_path / "index"
    common = ["--model", str(tiny_bert_dir), "--precision", "float32"]
    assert main(["index", "--input", str(corpus), "--output", str(path)] + common) == 0
    searcher = Searcher.from_index(path)
    assert searcher.index.residency.how == "copy"
    assert residency._mapping(searcher.index._layout.forward_terms) is None
    mapped = Searcher.from_index(path, resident=False)
    assert mapped.index.residency is None
    assert searcher.search("cancer cells", 1) == mapped.search("cancer cells", 1)


def test_copy_owns_its_arrays(index_path):
    index = ImpactIndex.open(index_path, resident="copy")
    layout = index._layout
    for array in (layout.impact_order_docs, layout.forward_terms, layout.window_offsets):
        assert residency._mapping(array) is None
        assert not array.flags.writeable
    assert residency._mapping(ImpactIndex.open(index_path)._layout.impact_order_docs) is not None


def test_lock_keeps_pages_in_memory(index_path):
    index = ImpactIndex.open(index_path)
    try:
        index.make_resident("lock")
    except OSError as exc:
        pytest.skip(f"mlock refused here: {exc}")
    array = index._layout.forward_impacts
    assert residency._mapping(array) is not None  # still the shared mapping
    present = residency.resident_bytes(array)
    assert present is not None and present >= array.nbytes


def test_true_falls_back_to_a_copy_with_a_warning(index_path, monkeypatch, caplog):
    def refuse(array):
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(residency, "lock_resident", refuse)
    with caplog.at_level(logging.WARNING, logger="sparse_ir.index.residency"):
        index = ImpactIndex.open(index_path, resident=True)
    assert index.residency.how == "copy"
    assert "Operation not permitted" in index.residency.fallback
    assert "could not lock" in caplog.text
    with pytest.raises(OSError, match="not permitted"):
        ImpactIndex.open(index_path, resident="lock")


@pytest.mark.parametrize("how", ["mlock", "yes", 1])
def test_bad_resident_value_is_named(index_path, how):
    with pytest.raises(ValueError, match=f"resident must be .*got {how!r}"):
        ImpactIndex.open(index_path, resident=how)


def test_advise(index_path):
    index = ImpactIndex.open(index_path)
    assert residency.advise(index._layout.forward_terms, "random")
    assert residency.advise(index._layout.impact_order_docs, "willneed")
    assert not residency.advise(np.arange(10), "random")  # not mapped: nothing to advise
    with pytest.raises(ValueError, match="advice must be one of"):
        residency.advise(index._layout.impact_order_docs, "forever")
    assert residency.resident_bytes(np.arange(3)) is None
