"""Deterministic writer steps on a live index, and the dict model of what each one commits.

Shared by the kill -9 test (``live_crash_worker.py`` runs a step in a child it kills) and the
concurrency test (readers check every answer against the model of one commit).

Step ``i`` adds 40 new documents, upserts 5 documents of step ``i - 1`` (new versions),
deletes 10 of step ``i - 2`` (ids not in the index are ignored) and commits (the small tiered
policy below merges at commit); every third step then force-merges to one segment.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np

from sparse_ir.index.dense import DenseIndex
from sparse_ir.index.impact_index import ImpactIndex
from sparse_ir.index.merge_policy import TieredMergePolicy
from sparse_ir.index.writer import DenseIndexWriter, IndexWriter
from sparse_ir.sparse_batch import SparseBatch

VOCAB = tuple(f"t{i}" for i in range(40))
DIM = 8
POLICY = TieredMergePolicy(segments_per_tier=3, floor_documents=20)
KINDS = ("impact", "dense")

Model = dict[str, int]  # live document id -> version


def _rng(doc_id: str, version: int) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(f"{doc_id}/{version}".encode()))


def impact_vector(doc_id: str, version: int) -> dict[str, int]:
    rng = _rng(doc_id, version)
    terms = rng.choice(len(VOCAB), size=int(rng.integers(1, 8)), replace=False)
    return {VOCAB[t]: int(rng.integers(1, 6)) for t in sorted(terms.tolist())}


def dense_vector(doc_id: str, version: int) -> np.ndarray:
    return _rng(doc_id, version).integers(-3, 4, DIM).astype(np.float32)


def step_changes(step: int) -> tuple[list[str], list[str], list[str]]:
    """``(added, upserted, deleted)`` ids of a step."""
    added = [f"s{step}d{j}" for j in range(40)]
    upserted = [f"s{step - 1}d{j}" for j in range(5)] if step >= 1 else []
    deleted = [f"s{step - 2}d{j}" for j in range(3, 13)] if step >= 2 else []
    return added, upserted, deleted


def apply_step(model: Model, step: int) -> Model:
    """The model after a step that committed."""
    added, upserted, deleted = step_changes(step)
    after = dict(model)
    after.update((doc_id, 0) for doc_id in added)
    after.update((doc_id, step) for doc_id in upserted)
    for doc_id in deleted:
        after.pop(doc_id, None)
    return after


def open_writer(kind: str, path: Path):
    if kind == "impact":
        return IndexWriter.open(path, vocab=VOCAB, merge_policy=POLICY)
    return DenseIndexWriter.open(path, dim=DIM, merge_policy=POLICY)


def batch(kind: str, ids: list[str], version_of) -> object:
    if kind == "impact":
        rows = [impact_vector(i, version_of(i)) for i in ids]
        floats = SparseBatch.from_dicts(rows, VOCAB, ids=ids)
        return SparseBatch(
            floats.indptr, floats.indices, floats.values.astype(np.int32), VOCAB, floats.ids
        )
    return ids, np.stack([dense_vector(i, version_of(i)) for i in ids])


def run_step(kind: str, path: Path, step: int) -> None:
    """Apply step ``step`` to the index at ``path`` through a writer (commits it)."""
    added, upserted, deleted = step_changes(step)
    with open_writer(kind, path) as writer:
        writer.add(batch(kind, added, lambda _: 0))
        if upserted:
            writer.upsert(batch(kind, upserted, lambda _: step))
        writer.delete(deleted)
        writer.commit()
        if step % 3 == 2:
            writer.force_merge(1)


def open_index(kind: str, path: Path):
    return (ImpactIndex if kind == "impact" else DenseIndex).open(path)


def live_ids(index) -> set[str]:
    mask = getattr(index, "deleted_mask", None)
    ids = index.doc_ids
    if mask is None:
        return set(ids)
    return {ids[i] for i in np.flatnonzero(~mask()).tolist()}


def queries(kind: str, count: int = 4) -> list:
    rng = np.random.default_rng(7)
    if kind == "impact":
        return [
            {VOCAB[t]: int(rng.integers(1, 5)) for t in rng.choice(len(VOCAB), 5, replace=False)}
            for _ in range(count)
        ]
    return [rng.integers(-3, 4, DIM).astype(np.float32) for _ in range(count)]


def expected_hits(kind: str, index, model: Model, query, k: int) -> list[tuple[str, float]]:
    """Brute force over the model: ``(doc_id, score)``, score descending then the id's
    ordinal (a single build's: its document number; impact: score 0 left out)."""
    ordinal = getattr(index, "ordinal", index.docno)
    scored = []
    for doc_id, version in model.items():
        if kind == "impact":
            doc = impact_vector(doc_id, version)
            score = sum(w * doc.get(t, 0) for t, w in query.items())
            if score <= 0:
                continue
        else:
            score = float(np.dot(query, dense_vector(doc_id, version)))
        scored.append((score, ordinal(doc_id), doc_id))
    scored.sort(key=lambda s: (-s[0], s[1]))
    return [(doc_id, score) for score, _, doc_id in scored[:k]]


def check_answers(kind: str, index, model: Model, k: int = 20) -> int:
    """Assert every mode equals brute force over ``model``; returns the number of checks."""
    checks = 0
    modes = ("exhaustive", "pruned") if kind == "impact" else ("exact",)
    for query in queries(kind):
        want = expected_hits(kind, index, model, query, k)
        for mode in modes:
            got = [(h.doc_id, h.score) for h in index.search(query, k, mode=mode)]
            assert got == want, (mode, got, want)
            checks += 1
    return checks
