"""Hypothesis property tests: every search mode equals brute-force scoring, exactly.

Random collections (integer impacts, so scores are exact), random queries and k; the expected
ranking is computed here with plain Python dicts: score = Σ query weight × impact, documents
with score 0 left out, ties broken by document number ascending. Checked: ``search`` in its
default, pruned and exhaustive modes, the pruned kernel with estimates small enough to go
through its cuts and verification, ``reference_search``, ``search_batch`` with 1 and 2
threads (queries given one by one and as a SparseBatch; pruned and exhaustive), and the
plain kernel with both its int32 and int64 accumulators, on indexes built both ways: as now
(the search layout's impact order the only postings) and with the document-ordered postings
kept (format version 1). Also: build -> open recovers every vector, id and stored text, and a
tiny memory budget (many spilled runs) writes byte-identical files to a huge one.

SPARSE_IR_PROPERTY_EXAMPLES raises the number of examples (default 120 per property).
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from integrity_figures import record

from sparse_ir.index import kernels
from sparse_ir.index.impact_index import ImpactIndex
from sparse_ir.index.modes import Pruned
from sparse_ir.quantize import Quantizer
from sparse_ir.sparse_batch import SparseBatch

EXAMPLES = int(os.environ.get("SPARSE_IR_PROPERTY_EXAMPLES", "120"))
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@st.composite
def collections(draw, max_documents: int = 40, min_documents: int = 1):
    vocab_size = draw(st.integers(1, 25))
    # Small ranges make ties common; large impacts and weights need the int64 accumulator.
    impacts, weights = draw(
        st.sampled_from(
            [
                ((1, 1), (1, 1)),
                ((1, 3), (1, 5)),
                ((1, 255), (1, 300)),
                ((1, 65_535), (1, 65_535)),
                ((30_000, 65_535), (30_000, 65_535)),
            ]
        )
    )
    row = st.dictionaries(
        st.integers(0, vocab_size - 1), st.integers(*impacts), max_size=vocab_size
    )
    documents = draw(st.lists(row, min_size=min_documents, max_size=max_documents))
    query = st.dictionaries(
        st.integers(0, vocab_size - 1), st.integers(*weights), max_size=vocab_size
    )
    queries = draw(st.lists(query, min_size=1, max_size=4))
    k = draw(st.integers(1, 12))
    return vocab_size, documents, queries, k


@pytest.fixture(autouse=True)
def _no_fsync(monkeypatch):
    """These properties are about content, not durability: skip fsync to run more examples."""
    monkeypatch.setattr(os, "fsync", lambda fd: None)


def brute_force(documents, query, k):
    scored = []
    for docno, row in enumerate(documents):
        score = sum(weight * row.get(term, 0) for term, weight in query.items())
        if score > 0:
            scored.append((-score, docno))
    scored.sort()
    return [(docno, -negative) for negative, docno in scored[:k]]


def as_batch(vocab_size, documents, ids=None):
    vocab = [f"t{i}" for i in range(vocab_size)]
    return SparseBatch.from_dicts(
        [{vocab[t]: w for t, w in row.items()} for row in documents], vocab, ids=ids
    )


def query_arrays(query):
    terms = np.array(sorted(query), np.int64)
    return terms, np.array([query[t] for t in sorted(query)], np.int64)


def ranking(hits):
    return [(h.docno, h.score) for h in hits]


def test_every_search_mode_equals_brute_force():
    stats: Counter = Counter()

    @SETTINGS
    @given(collections(), st.booleans())
    # Both accumulator widths and both layouts in every run, whatever the random draw picks:
    # scores beyond int32 (65,535 × 65,535 × 2) and small ones.
    @example((2, [{0: 65_535, 1: 65_535}, {0: 3}], [{0: 65_535, 1: 65_535}], 2), False)
    @example((2, [{0: 2, 1: 1}, {1: 5}], [{0: 1, 1: 2}], 1), False)
    @example((2, [{0: 65_535, 1: 65_535}, {0: 3}], [{0: 65_535, 1: 65_535}], 2), True)
    @example((2, [{0: 2, 1: 1}, {1: 5}], [{0: 1, 1: 2}], 1), True)
    def check(example, doc_ordered):
        vocab_size, documents, queries, k = example
        with tempfile.TemporaryDirectory() as scratch:
            index = ImpactIndex.build(
                as_batch(vocab_size, documents),
                Path(scratch) / "i",
                quantizer=Quantizer(),
                show_progress=False,
                doc_ordered_postings=doc_ordered,
            )
            assert index.has_doc_ordered_postings == doc_ordered
            # The plain kernel's document-ordered postings: stored, or put back together
            # from the impact order term by term.
            offsets = np.asarray(index.term_offsets)
            if doc_ordered:
                plain = (index.postings_docs, index.postings_impacts)
            else:
                every = [index.postings(t) for t in range(index.vocab_size)]
                plain = tuple(np.concatenate([p[j] for p in every]) for j in (0, 1))
            expected = [brute_force(documents, q, k) for q in queries]
            prepared = [query_arrays(q) for q in queries]
            for query, want in zip(prepared, expected):
                assert ranking(index.search(query, k)) == want
                for mode in ("pruned", "exhaustive"):
                    assert ranking(index.search(query, k, mode=mode)) == want, mode
                assert ranking(index.reference_search(query, k)) == want
                terms, weights = index.prepare_query(query)
                wide = index.search_with_stats(query, k)[1].int64_accumulator
                # The pruned kernel with estimates of a few postings: on collections this
                # small the default estimate covers every posting, these go through the cuts,
                # the candidate bounds and exact scores from the forward index.
                for estimate in (1, 3, 10):
                    hits, kernel_stats = index.search_with_stats(
                        query, k, mode=Pruned(estimate_postings=estimate, estimate_candidates=1)
                    )
                    assert ranking(hits) == want, estimate
                    stats["pruned searches through cuts and verification"] += int(
                        kernel_stats.theta0 > 0
                    )
                stats["int64 queries" if wide else "int32 queries"] += 1
                for accumulator_type in [np.int64] if wide else [np.int32, np.int64]:
                    accumulator = np.zeros(index.num_documents, accumulator_type)
                    docs, scores = np.empty(k, np.int64), np.empty(k, np.int64)
                    count = kernels.search_one(
                        terms,
                        weights,
                        offsets,
                        *plain,
                        accumulator,
                        k,
                        kernels.ALL_DOCUMENTS,
                        0,
                        docs,
                        scores,
                    )
                    assert list(zip(docs[:count].tolist(), scores[:count].tolist())) == want
                    assert not accumulator.any()
            vocab = index.vocab
            as_rows = SparseBatch.from_dicts(
                [{vocab[t]: w for t, w in q.items()} for q in queries], vocab
            )
            for threads in (1, 2):
                run = index.search_batch(prepared, k, threads=threads)
                assert [ranking(run[str(i)]) for i in range(len(queries))] == expected
                run = index.search_batch(prepared, k, threads=threads, mode="exhaustive")
                assert [ranking(run[str(i)]) for i in range(len(queries))] == expected
                # A SparseBatch of queries takes the batch path (no per-query preparation).
                run = index.search_batch(as_rows, k, threads=threads)
                assert [ranking(run[str(i)]) for i in range(len(queries))] == expected
            stats["examples"] += 1
            stats["examples, document-ordered postings kept"] += doc_ordered
            stats["queries"] += len(queries)
            stats["documents"] += len(documents)

    check()
    # Any disagreement fails an assertion above, so reaching here means 0 disagreements.
    print(f"\nsearch modes vs brute force, 0 disagreements: {dict(stats)}")
    record("property: search modes = brute force", disagreements=0, **stats)
    assert stats["int64 queries"] and stats["int32 queries"]


_ID_CHARS = st.characters(blacklist_categories=("Cc", "Cs", "Zs", "Zl", "Zp"))


@st.composite
def stored_collections(draw):
    vocab_size, documents, _, _ = draw(collections())
    ids = draw(
        st.lists(
            st.text(_ID_CHARS, min_size=1, max_size=12),
            unique=True,
            min_size=len(documents),
            max_size=len(documents),
        )
    )
    ids = [i for i in ids if not any(c.isspace() for c in i)]
    if len(ids) < len(documents):
        ids += [f"id-{n}" for n in range(len(documents) - len(ids))]
    texts = draw(
        st.lists(
            st.tuples(st.text(max_size=20), st.text(max_size=60)),
            min_size=len(documents),
            max_size=len(documents),
        )
    )
    as_floats = draw(st.booleans())
    return vocab_size, documents, ids, texts, as_floats


def test_build_open_round_trips_every_vector_id_and_text():
    stats: Counter = Counter()

    @SETTINGS
    @given(stored_collections())
    def check(example):
        vocab_size, documents, ids, texts, as_floats = example
        batch = as_batch(vocab_size, documents, ids)
        quantizer = Quantizer()
        if as_floats:  # float weights: what comes back is exactly what the quantizer makes
            batch = SparseBatch(
                batch.indptr,
                batch.indices,
                batch.values.astype(np.float32) / 100 + 0.001,
                batch.vocab,
                batch.ids,
            )
        # Integer values are impacts as they are; float weights go through the quantizer.
        expected = (quantizer.quantize(batch) if as_floats else batch).to_dicts()
        with tempfile.TemporaryDirectory() as scratch:
            ImpactIndex.build(
                batch, Path(scratch) / "i", quantizer=quantizer, contents=texts, show_progress=False
            )
            index = ImpactIndex.open(Path(scratch) / "i", verify=True)
            assert index.doc_ids == list(ids)
            assert index.vocab == batch.vocab
            for docno in range(len(documents)):
                assert index.document_vector(docno) == expected[docno]
                assert index.document(docno) == texts[docno]
                assert index.docno(ids[docno]) == docno
        stats["examples"] += 1
        stats["floats" if as_floats else "integers"] += 1

    check()
    print(f"\nbuild -> open round trips: {dict(stats)}")
    record("property: build -> open round trip", disagreements=0, **stats)


def test_tiny_and_huge_memory_budgets_write_identical_files(monkeypatch):
    from sparse_ir.index import builder

    monkeypatch.setattr(builder, "_MIN_BUFFERED_POSTINGS", 1)  # spill after every shard
    stats: Counter = Counter()

    @settings(SETTINGS, max_examples=max(10, EXAMPLES // 4))
    @given(
        collections(max_documents=400, min_documents=10), st.lists(st.integers(1, 8), min_size=1)
    )
    def check(example, shard_sizes):
        vocab_size, documents, _, _ = example
        batch = as_batch(vocab_size, documents)
        shards, start, turn = [], 0, 0
        while start < len(batch):
            size = shard_sizes[turn % len(shard_sizes)]
            shards.append(batch.select(range(start, min(start + size, len(batch)))))
            start, turn = start + size, turn + 1
        with tempfile.TemporaryDirectory() as scratch:
            tiny = ImpactIndex.build(
                iter(shards),
                Path(scratch) / "tiny",
                quantizer=Quantizer(),
                memory_budget=1,
                show_progress=False,
            )
            huge = ImpactIndex.build(
                batch,
                Path(scratch) / "huge",
                quantizer=Quantizer(),
                memory_budget="64GB",
                show_progress=False,
            )
            names = sorted(p.name for p in tiny.directory.iterdir())
            assert names == sorted(p.name for p in huge.directory.iterdir())
            for name in names:
                if name != "manifest.json":
                    assert (tiny.directory / name).read_bytes() == (
                        huge.directory / name
                    ).read_bytes(), name
            facts = {k: v for k, v in tiny.manifest.to_dict().items() if k != "build"}
            assert facts == {k: v for k, v in huge.manifest.to_dict().items() if k != "build"}
            stats["runs spilled"] += tiny.settings["runs_spilled"]
            stats["examples"] += 1
            stats["examples with several runs"] += tiny.settings["runs_spilled"] > 1

    check()
    print(f"\ntiny vs huge memory budget: {dict(stats)}")
    record("property: tiny = huge memory budget", disagreements=0, **stats)
    assert stats["runs spilled"] > 0


def test_budgets_identical_on_a_collection_with_many_runs(tmp_path):
    from index_kinds import MEDIUM, impact_build

    impact_build(tmp_path / "spilled", 5, MEDIUM)
    impact_build(tmp_path / "one-run", 5, dataclasses.replace(MEDIUM, memory_budget=64 << 30))
    spilled = ImpactIndex.open(tmp_path / "spilled")
    one_run = ImpactIndex.open(tmp_path / "one-run")
    assert spilled.settings["runs_spilled"] >= 10
    assert one_run.settings["runs_spilled"] == 0
    for path in spilled.directory.iterdir():
        if path.name != "manifest.json":
            assert path.read_bytes() == (one_run.directory / path.name).read_bytes(), path.name
