"""How to build, open, verify and query each kind of index: what the integrity tests run on.

Two kinds today: the impact (sparse) index and the dense index.

The fault-injection, crash, disk-full and concurrency tests are written against
:class:`IndexKind`, never against one index class, and they corrupt the files actually present
in a built index (not a list kept here). A new index kind is covered by adding one entry to
:data:`KINDS` (with its own ``build``/``open``/``verify``/``answers``/``expected``).

``answers(index)`` is what a reader sees (ids, and the hits of fixed queries); ``expected(seed)``
is the same computed by brute force from the data the index was built from. A reader that
gets ``answers == expected(seed)`` for some published seed got a complete, correct index.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Size:
    """Shape of the random collection an index is built from."""

    documents: int
    vocab: int
    max_terms: int
    shard: int  # documents per SparseBatch shard handed to the builder
    memory_budget: int  # bytes; small values make the builder spill runs


SMALL = Size(documents=160, vocab=120, max_terms=12, shard=40, memory_budget=1)
SPILLING = Size(documents=400, vocab=150, max_terms=12, shard=50, memory_budget=1)
MEDIUM = Size(documents=3000, vocab=2000, max_terms=40, shard=250, memory_budget=40_000)


@dataclass(frozen=True)
class IndexKind:
    """One kind of index, as the integrity tests drive it."""

    name: str
    build: Callable[..., None]  # build(path, seed, size): build or rebuild the index at path
    open: Callable[[Path], object]  # open(path) -> index (cheap checks only)
    verify: Callable[[object], None]  # verify(index): every byte and invariant
    answers: Callable[[object], tuple]  # what a reader sees
    expected: Callable[[int, Size], tuple]  # answers of a correct index built from seed
    large_files: Callable[[], contextlib.AbstractContextManager]  # open() as for huge files
    prepare: Callable[[int, Size], object] = lambda seed, size: None  # precompute the data


# -- the impact index ------------------------------------------------------------------------------

QUERY_COUNT = 6
TOP_K = 10


@functools.lru_cache(maxsize=8)
def impact_data(seed: int, size: Size):
    """``(batch, contents, queries)``: integer impacts, stored texts, {term id: weight} queries."""
    from sparse_ir.sparse_batch import SparseBatch

    rng = np.random.default_rng(seed)
    indptr, indices, values = [0], [], []
    for _ in range(size.documents):
        n = int(rng.integers(0, size.max_terms + 1))
        terms = np.unique(rng.integers(0, size.vocab, size=n))  # sorted, distinct
        indices.extend(terms.tolist())
        values.extend(rng.integers(1, 256, size=len(terms)).tolist())
        indptr.append(len(indices))
    vocab = tuple(f"t{i}" for i in range(size.vocab))
    ids = tuple(f"s{seed}-d{i}" for i in range(size.documents))
    batch = SparseBatch(
        np.array(indptr), np.array(indices, np.int32), np.array(values, np.int32), vocab, ids
    )
    contents = [
        (f"title {seed}/{i}", f"text of document {i} (seed {seed}) é")
        for i in range(size.documents)
    ]
    queries = []
    for _ in range(QUERY_COUNT):
        terms = rng.choice(size.vocab, size=min(5, size.vocab), replace=False)
        queries.append({int(t): int(rng.integers(1, 200)) for t in terms})
    return batch, contents, queries


def impact_build(path: Path, seed: int, size: Size = SMALL, **options) -> None:
    from sparse_ir.index.impact_index import ImpactIndex
    from sparse_ir.quantize import Quantizer

    batch, contents, _ = impact_data(seed, size)
    shards = (
        batch.select(range(start, min(start + size.shard, len(batch))))
        for start in range(0, len(batch), size.shard)
    )
    ImpactIndex.build(
        shards,
        path,
        quantizer=Quantizer(),
        memory_budget=size.memory_budget,
        contents=contents,
        settings={"seed": seed},
        show_progress=False,
        **options,
    )


def impact_open(path: Path):
    from sparse_ir.index.impact_index import ImpactIndex

    return ImpactIndex.open(path)


#: Every exact search path a reader can take: the default (pruned; on these small collections
#: its estimate covers every posting), the pruned kernel with an estimate of a few postings (so
#: it goes through cuts, candidates and exact scores from the forward index: every file of the
#: search layout is read), and the windowed exhaustive kernel. Each must give the same hits.
IMPACT_SEARCHES = ("default", "pruned, verifying", "exhaustive")


def _impact_hits(index, terms, weights, how: str) -> tuple:
    if how == "pruned, verifying":
        from sparse_ir.index.modes import Pruned

        mode = Pruned(estimate_postings=12, estimate_candidates=1)
    else:
        mode = None if how == "default" else how
    hits = index.search((terms, weights), TOP_K, mode=mode)
    return tuple((h.doc_id, h.score) for h in hits)


def impact_answers(index) -> tuple:
    seed = index.settings["seed"]
    size = _size_of(index)
    _, _, queries = impact_data(seed, size)
    hits = []
    for query in queries:
        terms = np.array(sorted(query), np.int64)
        weights = np.array([query[t] for t in sorted(query)], np.int64)
        hits.append(tuple(_impact_hits(index, terms, weights, how) for how in IMPACT_SEARCHES))
    stored = index.document(index.num_documents - 1)
    return (seed, index.num_documents, tuple(index.doc_ids), tuple(hits), stored)


def _size_of(index) -> Size:
    for size in (SMALL, SPILLING, MEDIUM):
        if size.documents == index.num_documents:
            return size
    raise AssertionError(f"unexpected document count {index.num_documents}")


def impact_expected(seed: int, size: Size = SMALL) -> tuple:
    """The answers, by brute force over the generated vectors (dicts, plain Python)."""
    batch, contents, queries = impact_data(seed, size)
    rows = batch.to_dicts()
    hits = []
    for query in queries:
        scores = []
        for docno, row in enumerate(rows):
            score = sum(weight * row.get(f"t{term}", 0) for term, weight in query.items())
            if score > 0:
                scores.append((-score, docno))
        scores.sort()
        hits.append((tuple((batch.ids[d], -s) for s, d in scores[:TOP_K]),) * len(IMPACT_SEARCHES))
    return (seed, len(batch), batch.ids, tuple(hits), contents[-1])


@contextlib.contextmanager
def impact_large_files() -> Iterator[None]:
    """Make open() skip the checksum of every data file, as it does for files over 16 MB."""
    from sparse_ir.index.impact_index import ImpactIndex

    ImpactIndex.check_at_open_bytes = -1
    try:
        yield
    finally:
        del ImpactIndex.check_at_open_bytes  # the inherited default again


# -- the dense index -------------------------------------------------------------------------------

DENSE_DIM = 16


@functools.lru_cache(maxsize=8)
def dense_data(seed: int, size: Size):
    """``(ids, vectors, queries)``: small-integer float32 vectors, so every inner product is
    exact whatever the order of summation, and ties (broken by document number) are common."""
    rng = np.random.default_rng(seed)
    vectors = rng.integers(-3, 4, size=(size.documents, DENSE_DIM)).astype(np.float32)
    vectors[rng.random(size.documents) < 0.05] = 0  # some empty texts
    ids = tuple(f"s{seed}-d{i}" for i in range(size.documents))
    queries = rng.integers(-3, 4, size=(QUERY_COUNT, DENSE_DIM)).astype(np.float32)
    return ids, vectors, queries


def dense_build(path: Path, seed: int, size: Size = SMALL, **options) -> None:
    from sparse_ir.index.dense import DenseIndex

    ids, vectors, _ = dense_data(seed, size)
    batches = (
        (ids[start : start + size.shard], vectors[start : start + size.shard])
        for start in range(0, len(ids), size.shard)
    )
    DenseIndex.build(batches, path, settings={"seed": seed}, show_progress=False, **options)


def dense_open(path: Path):
    from sparse_ir.index.dense import DenseIndex

    return DenseIndex.open(path)


def dense_answers(index) -> tuple:
    seed = index.settings["seed"]
    _, _, queries = dense_data(seed, _size_of(index))
    run = index.search_batch(queries, TOP_K)
    hits = tuple(
        tuple((h.doc_id, float(h.score)) for h in run[str(q)]) for q in range(len(queries))
    )
    return (seed, index.num_documents, tuple(index.doc_ids), hits, None)


def dense_expected(seed: int, size: Size = SMALL) -> tuple:
    ids, vectors, queries = dense_data(seed, size)
    scores = vectors.astype(np.int64) @ queries.astype(np.int64).T  # exact integers
    hits = []
    for q in range(len(queries)):
        order = sorted(range(len(ids)), key=lambda d: (-scores[d, q], d))[:TOP_K]
        hits.append(tuple((ids[d], float(scores[d, q])) for d in order))
    return (seed, len(ids), ids, tuple(hits), None)


@contextlib.contextmanager
def dense_large_files() -> Iterator[None]:
    from sparse_ir.index.dense import DenseIndex

    DenseIndex.check_at_open_bytes = -1
    try:
        yield
    finally:
        del DenseIndex.check_at_open_bytes  # the inherited default again


KINDS = {
    "impact": IndexKind(
        "impact",
        impact_build,
        impact_open,
        lambda index: index.verify(),
        impact_answers,
        impact_expected,
        impact_large_files,
        impact_data,
    ),
    "dense": IndexKind(
        "dense",
        dense_build,
        dense_open,
        lambda index: index.verify(),
        dense_answers,
        dense_expected,
        dense_large_files,
        dense_data,
    ),
}
