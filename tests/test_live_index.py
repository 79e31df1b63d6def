"""Live index: writers, commits, merges, and search across segments equal to brute force.

The property test drives random interleavings of add / upsert / delete / commit / rollback /
merge / reopen on both index kinds and, after every step that changes what readers see,
checks every search mode of ``ImpactIndex.open(path)`` / ``DenseIndex.open(path)`` against
brute force over the documents a plain dict model says are committed, equal scores ordered
by ordinal; and that an id's ordinal never changes once it was committed (upserts, deletes,
re-adds and merges keep it) and that ids committed later have larger ones.

SPARSE_IR_LIVE_EXAMPLES raises the number of examples (default 25 per kind).
"""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sparse_ir.errors import IndexBusyError, InputError
from sparse_ir.index.dense import DenseIndex
from sparse_ir.index.impact_index import ImpactIndex
from sparse_ir.index.live_index import LiveDenseIndex, LiveImpactIndex
from sparse_ir.index.merge_policy import TieredMergePolicy
from sparse_ir.index.modes import Approximate
from sparse_ir.index.writer import DenseIndexWriter, IndexWriter, segment_vectors
from sparse_ir.sparse_batch import SparseBatch

EXAMPLES = int(os.environ.get("SPARSE_IR_LIVE_EXAMPLES", "25"))
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
VOCAB = tuple(f"t{i}" for i in range(8))
POOL = [f"d{i}" for i in range(24)]
DIM = 4
SMALL_TIERS = TieredMergePolicy(segments_per_tier=3, floor_documents=2)
COUNTS: dict[str, int] = {"examples": 0, "checks": 0, "disagreements": 0}


def impact_vector(seed: int) -> dict[str, int]:
    """A document's impacts (small values: ties are common)."""
    rng = np.random.default_rng(seed)
    terms = rng.choice(len(VOCAB), size=int(rng.integers(0, 4)), replace=False)
    return {VOCAB[t]: int(rng.integers(1, 4)) for t in sorted(terms.tolist())}


def doc_metadata(seed: int) -> dict | None:
    """A document's metadata: often none (so some segments store none), fields often
    absent, and a string in ``year`` now and then (a kind a number condition never matches)."""
    rng = np.random.default_rng(seed + 7_000_000)
    if rng.random() < 0.35:
        return None
    record = {}
    if rng.random() < 0.8:
        record["year"] = int(rng.integers(2018, 2023)) if rng.random() < 0.9 else "n/a"
    if rng.random() < 0.7:
        record["tenant"] = str(rng.choice(["a", "b", "c"]))
    return record


def random_filter(rng: np.random.Generator):
    """A random FieldCondition or AllOf of two, over the fields of :func:`doc_metadata`."""
    from sparse_ir.index.filters import AllOf, FieldCondition

    def one():
        if rng.random() < 0.6:
            op = str(rng.choice(["=", "!=", "<", "<=", ">", ">="]))
            return FieldCondition("year", op, int(rng.integers(2017, 2024)))
        return FieldCondition("tenant", str(rng.choice(["=", "!="])), str(rng.choice(list("abcd"))))

    return one() if rng.random() < 0.6 else AllOf((one(), one()))


def brute_force_filter(condition, record: dict | None) -> bool:
    """Does a document with metadata ``record`` pass ``condition``? (plain Python: a field
    that is absent, or holds another kind, never matches)."""
    from sparse_ir.index.filters import AllOf

    if isinstance(condition, AllOf):
        return all(brute_force_filter(part, record) for part in condition.parts)
    value = (record or {}).get(condition.field)
    if value is None or isinstance(value, bool) or type(value) is not type(condition.value):
        return False
    return {
        "=": value == condition.value,
        "!=": value != condition.value,
        "<": value < condition.value,
        "<=": value <= condition.value,
        ">": value > condition.value,
        ">=": value >= condition.value,
    }[condition.op]


def filter_is_refused(condition, records: list[dict | None]) -> bool:
    """True when a build of documents with ``records`` refuses ``condition``: some field it
    names holds no value of the compared kind in any document."""
    from sparse_ir.index.filters import AllOf

    parts = condition.parts if isinstance(condition, AllOf) else (condition,)
    for part in parts:
        kind = type(part.value)
        if not any(type((r or {}).get(part.field)) is kind for r in records):
            return True
    return False


def dense_vector(seed: int) -> np.ndarray:
    """A document's vector (small integers: exact float scores, ties common)."""
    return np.random.default_rng(seed).integers(-2, 3, DIM).astype(np.float32)


class Kind:
    """How the property test writes, models and checks one index kind."""

    def __init__(self, name: str):
        self.name = name

    def open_writer(self, path: Path, policy):
        if self.name == "impact":
            return IndexWriter.open(path, vocab=VOCAB, merge_policy=policy)
        return DenseIndexWriter.open(path, dim=DIM, merge_policy=policy)

    def batch(self, ids: list[str], seeds: list[int]):
        if self.name == "impact":
            floats = SparseBatch.from_dicts([impact_vector(s) for s in seeds], VOCAB, ids=ids)
            return SparseBatch(
                floats.indptr, floats.indices, floats.values.astype(np.int32), VOCAB, floats.ids
            )
        return ids, np.stack([dense_vector(s) for s in seeds]) if ids else np.zeros((0, DIM))

    def open_index(self, path: Path):
        return (ImpactIndex if self.name == "impact" else DenseIndex).open(path)

    def queries(self, rng: np.random.Generator):
        if self.name == "impact":
            return [
                {VOCAB[t]: int(rng.integers(1, 4)) for t in rng.choice(8, 3, replace=False)}
                for _ in range(3)
            ]
        return [rng.integers(-2, 3, DIM).astype(np.float32) for _ in range(3)]

    def score(self, query, seed: int) -> float:
        if self.name == "impact":
            doc = impact_vector(seed)
            return sum(w * doc.get(t, 0) for t, w in query.items())
        return float(np.dot(query, dense_vector(seed)))


def brute_force(
    kind: Kind, index, model: dict[str, int], query, k: int, condition=None
) -> list[tuple]:
    """``(doc_id, score)`` of the top-k by plain Python over the model's documents (those
    passing ``condition``), ordered by score descending then the id's ordinal (impact: score
    0 left out)."""
    scored = [
        (kind.score(query, seed), _ordinal(index, doc_id), doc_id)
        for doc_id, seed in model.items()
        if condition is None or brute_force_filter(condition, doc_metadata(seed))
    ]
    if kind.name == "impact":
        scored = [s for s in scored if s[0] > 0]
    scored.sort(key=lambda s: (-s[0], s[1]))
    return [(doc_id, score) for score, _, doc_id in scored[:k]]


def _ordinal(index, doc_id: str) -> int:
    if isinstance(index, (LiveImpactIndex, LiveDenseIndex)):
        return index.ordinal(doc_id)
    return index.docno(doc_id)  # a single build: ordinals are document numbers


def check_ordinals(index, known: dict[str, int]) -> None:
    """An id keeps its ordinal from its first commit on; ids new to this commit come after
    every id committed before (``known``: every id ever committed, updated here)."""
    before = max(known.values(), default=-1)
    for doc_id in sorted(_live_ids(index)):
        ordinal = _ordinal(index, doc_id)
        if doc_id in known:
            assert ordinal == known[doc_id], (doc_id, ordinal, known[doc_id])
        else:
            assert ordinal > before, (doc_id, ordinal, before)
            known[doc_id] = ordinal


def _live_ids(index) -> set[str]:
    return {index.doc_ids[d] for d in np.flatnonzero(~_deleted(index)).tolist()}


def check_reader(
    kind: Kind, path: Path, model: dict[str, int], seed: int, known: dict | None = None
) -> None:
    """Every mode of the index at ``path`` equals brute force over ``model``."""
    index = kind.open_index(path)
    assert index.num_documents == len(model)
    assert _live_ids(index) == set(model)
    if known is not None:
        check_ordinals(index, known)
    for doc_id, seed_of_doc in model.items():
        assert index.metadata(index.docno(doc_id)) == (doc_metadata(seed_of_doc) or {})
    rng = np.random.default_rng(seed)
    records = [doc_metadata(s) for s in model.values()]
    for query in kind.queries(rng):
        for k in (1, 3, 30):
            expected = brute_force(kind, index, model, query, k)
            for got in _answers(kind, index, query, k):
                COUNTS["checks"] += 1
                if got != expected:
                    COUNTS["disagreements"] += 1
                assert got == expected, (got, expected)
        # A metadata filter: every mode equals brute force over the live documents that
        # pass it, or is refused exactly when a build of those documents refuses it.
        condition = random_filter(rng)
        for k in (3, 30):
            if not any(records) or filter_is_refused(condition, records):
                with pytest.raises(InputError):
                    _answers(kind, index, query, k, condition)
                continue
            expected = brute_force(kind, index, model, query, k, condition)
            for got in _answers(kind, index, query, k, condition):
                COUNTS["checks"] += 1
                COUNTS["filtered"] = COUNTS.get("filtered", 0) + 1
                if got != expected:
                    COUNTS["disagreements"] += 1
                assert got == expected, (condition, got, expected)
            if kind.name == "impact":  # approximate: only live documents, true scores
                hits = index.search(query, k, mode=Approximate())
                scores = dict(brute_force(kind, index, model, query, len(model) + 1))
                assert all(scores.get(h.doc_id) == h.score for h in hits)


def _deleted(index) -> np.ndarray:
    if isinstance(index, (LiveImpactIndex, LiveDenseIndex)):
        return index.deleted_mask()
    return np.zeros(index.num_documents, bool)


def _answers(kind: Kind, index, query, k: int, condition=None) -> list[list[tuple]]:
    def pairs(hits):
        return [(h.doc_id, h.score) for h in hits]

    f = condition
    if kind.name == "dense":
        run = index.search_batch(np.stack([query, query]), k, filter=f)
        return [pairs(index.search(query, k, filter=f)), pairs(run.results["1"])]
    answers = [pairs(index.search(query, k, mode=m, filter=f)) for m in ("exhaustive", "pruned")]
    run = index.search_batch([query], k, mode="pruned", threads=2, filter=f)
    answers.append(pairs(run.results["0"]))
    answers.append(pairs(index.search_with_stats(query, k, mode="exhaustive", filter=f)[0]))
    top = index.search_arrays(query, k, filter=f)
    answers.append(
        [(index.doc_ids[d], s) for d, s in zip(top.docnos.tolist(), top.scores.tolist())]
    )
    if f is None:
        answers.append(pairs(index.reference_search(query, k)))
    return answers


operations = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.lists(st.sampled_from(POOL), max_size=5, unique=True)),
        st.tuples(st.just("upsert"), st.lists(st.sampled_from(POOL), max_size=5, unique=True)),
        st.tuples(st.just("delete"), st.lists(st.sampled_from(POOL + ["nope"]), max_size=4)),
        st.tuples(st.just("commit"), st.none()),
        st.tuples(st.just("rollback"), st.none()),
        st.tuples(st.just("merge"), st.integers(1, 3)),
        st.tuples(st.just("reopen"), st.none()),
    ),
    min_size=1,
    max_size=14,
)


def run_interleaving(kind: Kind, ops, seed: int, policy) -> None:
    """Apply ``ops`` through a writer, mirroring them in dict models; check after each."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "live"
        writer = kind.open_writer(path, policy)
        committed: dict[str, int] = {}
        pending: dict[str, int] = {}
        known: dict[str, int] = {}  # every id ever committed: its ordinal
        counter = seed * 1000
        try:
            for step, (op, arg) in enumerate(ops):
                if op in ("add", "upsert"):
                    ids = [i for i in arg if op == "upsert" or i not in pending]
                    seeds = list(range(counter, counter + len(ids)))
                    counter += len(ids)
                    if ids:
                        metadata = [doc_metadata(s) for s in seeds]
                        getattr(writer, op)(kind.batch(ids, seeds), metadata=metadata)
                        pending.update(zip(ids, seeds))
                elif op == "delete":
                    result = writer.delete(arg)
                    present = [i for i in set(arg) if i in pending]
                    assert result.deleted == len(present)
                    for doc_id in present:
                        del pending[doc_id]
                elif op == "commit":
                    writer.commit()
                    committed = dict(pending)
                elif op == "rollback":
                    writer.rollback()
                    pending = dict(committed)
                elif op == "merge":
                    writer.force_merge(arg)
                    committed = dict(pending)
                    assert len(kind.open_index(path).segments) <= arg
                else:
                    writer.close()
                    writer = kind.open_writer(path, policy)
                    pending = dict(committed)
                check_reader(kind, path, committed, seed + step, known)
            writer.commit()
            check_reader(kind, path, pending, seed, known)
            kind.open_index(path).verify()
        finally:
            writer.close()
    COUNTS["examples"] += 1
    if progress := os.environ.get("SPARSE_IR_LIVE_PROGRESS"):  # long runs: counts so far
        Path(progress).write_text(f"{kind.name} {COUNTS}\n")


@pytest.mark.parametrize("kind", ["impact", "dense"])
@SETTINGS
@given(ops=operations, seed=st.integers(0, 10_000), tiers=st.booleans())
def test_random_interleavings_equal_brute_force(kind, ops, seed, tiers):
    run_interleaving(Kind(kind), ops, seed, SMALL_TIERS if tiers else None)


@pytest.mark.parametrize("kind", ["impact", "dense"])
@SETTINGS
@given(seed=st.integers(0, 10_000), tiers=st.booleans())
def test_random_re_adds_rank_ties_by_ordinal(kind, seed, tiers):
    """A collection added in order, then documents upserted, or deleted and added again
    (merges between): every mode ranks equal scores by the order the ids were first added
    (the one-shot build's order), whatever segment holds them now."""
    kind = Kind(kind)
    rng = np.random.default_rng(seed)
    ids = [f"r{i}" for i in range(int(rng.integers(6, 40)))]
    first = {doc_id: i for i, doc_id in enumerate(ids)}  # the expected ordinals
    model = {doc_id: seed * 1000 + i for i, doc_id in enumerate(ids)}
    counter = seed * 1000 + len(ids)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "live"
        with kind.open_writer(path, SMALL_TIERS if tiers else None) as writer:
            for part in np.array_split(np.arange(len(ids)), int(rng.integers(1, 4))):
                chosen = [ids[i] for i in part.tolist()]
                if chosen:
                    writer.add(kind.batch(chosen, [model[i] for i in chosen]))
                writer.commit()
            for _ in range(int(rng.integers(1, 4))):
                chosen = sorted(rng.choice(ids, int(rng.integers(1, len(ids))), replace=False))
                rng.shuffle(chosen)  # re-added out of their order too
                chosen = [str(i) for i in chosen]
                for doc_id in chosen:
                    if rng.random() < 0.5:  # a new vector, else the same one again
                        model[doc_id] = counter
                        counter += 1
                if rng.random() < 0.5:
                    writer.upsert(kind.batch(chosen, [model[i] for i in chosen]))
                else:
                    writer.delete(chosen)
                    writer.commit()
                    if rng.random() < 0.5:
                        writer.force_merge(int(rng.integers(1, 3)))  # purges the deleted
                    writer.add(kind.batch(chosen, [model[i] for i in chosen]))
                writer.commit()
                index = kind.open_index(path)
                assert {i: index.ordinal(i) for i in ids} == first
                for query in kind.queries(rng):
                    scored = sorted((-kind.score(query, model[i]), first[i], i) for i in ids)
                    if kind.name == "impact":
                        scored = [s for s in scored if s[0] < 0]
                    for k in (1, 3, 10, len(ids)):
                        expected = [(i, -score) for score, _, i in scored[:k]]
                        for got in _answers(kind, index, query, k):
                            COUNTS["checks"] += 1
                            COUNTS["disagreements"] += got != expected
                            assert got == expected, (k, got, expected)
            writer.force_merge(1)
        merged = kind.open_index(path)
        assert merged.doc_ids == ids  # one segment in ordinal order: the one-shot order
        merged.verify()
    COUNTS["examples"] += 1


def test_property_counts_reported(capsys):
    """Prints what the property tests checked (run after them, in one session)."""
    with capsys.disabled():
        print(f"\nlive property: {COUNTS}")
    assert COUNTS["disagreements"] == 0


# -- unit tests ---------------------------------------------------------------------------------


def impact_batch(ids, seeds):
    return Kind("impact").batch(list(ids), list(seeds))


def test_duplicate_id_is_a_clear_error_and_upsert_replaces(tmp_path):
    with IndexWriter.open(tmp_path / "ix", vocab=VOCAB) as writer:
        writer.add(impact_batch(["a", "b"], [1, 2]))
        with pytest.raises(InputError, match="'a' is already in the index"):
            writer.add(impact_batch(["a"], [3]))
        with pytest.raises(InputError, match="duplicate document id 'c' within the batch"):
            writer.add(impact_batch(["c", "c"], [3, 4]))
        writer.upsert(impact_batch(["a"], [5]))
    index = ImpactIndex.open(tmp_path / "ix")
    assert sorted(index.doc_ids[d] for d in np.flatnonzero(~index.deleted_mask())) == ["a", "b"]
    assert index.document_vector(index.docno("a")) == impact_vector(5)


def test_delete_counts_unknown_ids(tmp_path):
    with IndexWriter.open(tmp_path / "ix", vocab=VOCAB) as writer:
        writer.add(impact_batch(["a", "b"], [1, 2]))
        writer.commit()
        assert tuple(writer.delete(["a", "zzz", "a"])) == (1, 2)


def test_uncommitted_work_is_invisible_and_rollback_forgets(tmp_path):
    path = tmp_path / "ix"
    writer = IndexWriter.open(path, vocab=VOCAB)
    writer.add(impact_batch(["a"], [1]))
    assert ImpactIndex.open(path).num_documents == 0
    writer.rollback()
    writer.commit()
    assert ImpactIndex.open(path).num_documents == 0
    writer.close()


def test_context_manager_rolls_back_on_exception(tmp_path):
    path = tmp_path / "ix"
    with pytest.raises(RuntimeError), IndexWriter.open(path, vocab=VOCAB) as writer:
        writer.add(impact_batch(["a"], [1]))
        raise RuntimeError("boom")
    assert ImpactIndex.open(path).num_documents == 0
    IndexWriter.open(path).close()  # the lock was released


def test_a_second_writer_gets_the_holders_pid(tmp_path):
    path = tmp_path / "ix"
    first = IndexWriter.open(path, vocab=VOCAB)
    errors = []

    def second():
        try:
            IndexWriter.open(path)
        except IndexBusyError as exc:
            errors.append(str(exc))

    thread = threading.Thread(target=second)
    thread.start()
    thread.join()
    assert errors and f"pid {os.getpid()}" in errors[0]
    first.close()
    IndexWriter.open(path).close()


def test_a_single_build_opens_as_one_segment_and_takes_writes(tmp_path):
    path = tmp_path / "ix"
    ImpactIndex.build(impact_batch(["a", "b"], [1, 2]), path, show_progress=False)
    with IndexWriter.open(path, merge_policy=None) as writer:
        assert writer.num_documents == 2
        writer.delete(["a"])
        writer.add(impact_batch(["c"], [3]))
    index = ImpactIndex.open(path)
    assert isinstance(index, LiveImpactIndex)
    assert [s.name for s in index.segment_infos] == ["seg-000001", "seg-000002"]
    assert index.num_documents == 2 and index.num_deleted == 1
    index.verify()


def test_metadata_flows_through_writers_and_merges_byte_identically(tmp_path):
    # A single build with metadata takes writes with metadata; a segment whose documents had
    # none sits beside them (its documents hold no field: no condition matches them); the
    # force-merged segment is byte for byte a build of the live documents with their metadata.
    path = tmp_path / "ix"
    ImpactIndex.build(
        impact_batch(["a", "b"], [1, 2]),
        path,
        show_progress=False,
        metadata=[{"year": 2020}, {"year": 2021, "tenant": "x"}],
    )
    with IndexWriter.open(path, merge_policy=None) as writer:
        writer.add(impact_batch(["c", "d"], [3, 4]))  # no metadata: a segment without any
        writer.commit()
        writer.add(impact_batch(["e", "f"], [5, 6]), metadata=[{"year": 2019.5}, None])
        writer.commit()
        writer.upsert(impact_batch(["b"], [7]), metadata=[{"tenant": "y"}])  # year removed
    live = ImpactIndex.open(path)
    assert len(live.segments) == 4 and not live.segments[1].has_metadata
    assert live.has_metadata and live.metadata_fields == ("tenant", "year")
    query = {t: 1 for t in VOCAB}
    hits = live.search(query, k=10, filter="year>=2019")
    assert sorted(h.doc_id for h in hits) == ["a", "e"]  # b's year is gone, c/d hold none
    assert {h.doc_id for h in live.search(query, k=10, filter="tenant!='x'")} == {"b"}
    assert live.metadata(live.docno("b")) == {"tenant": "y"}
    with pytest.raises(InputError, match="not in the metadata"):
        live.search(query, k=10, filter="colour=1")
    with IndexWriter.open(path, merge_policy=None) as writer:
        writer.force_merge(1)
    merged = ImpactIndex.open(path)
    assert len(merged.segments) == 1
    # The upserted "b" keeps its ordinal: it stays second, as in a build of the live documents.
    ids = ["a", "b", "c", "d", "e", "f"]
    ImpactIndex.build(
        impact_batch(ids, [1, 7, 3, 4, 5, 6]),
        tmp_path / "scratch",
        show_progress=False,
        metadata=[{"year": 2020}, {"tenant": "y"}, None, {}, {"year": 2019.5}, None],
    )
    scratch = ImpactIndex.open(tmp_path / "scratch")
    _assert_same_content(merged.segments[0].directory, scratch.directory)
    assert sorted(h.doc_id for h in merged.search(query, k=10, filter="year>=2019")) == ["a", "e"]
    merged.verify()


def test_merging_segments_without_metadata_writes_none(tmp_path):
    # Segments that store no metadata merge into one that stores none (as a build would);
    # a field filter on such an index is an error naming the rule, never an empty answer.
    path = tmp_path / "ix"
    with IndexWriter.open(path, vocab=VOCAB, merge_policy=None) as writer:
        writer.add(impact_batch(["a"], [1]), metadata=[None])
        writer.commit()
        writer.add(impact_batch(["b"], [2]), metadata=[{}])
        writer.force_merge(1)
    live = ImpactIndex.open(path)
    assert not live.has_metadata and not live.segments[0].has_metadata
    with pytest.raises(InputError, match="stores no document metadata"):
        live.search({"t1": 1}, k=2, filter="year>=2020")


def test_metadata_only_deleted_documents_held_is_refused_like_a_build(tmp_path):
    path = tmp_path / "ix"
    with IndexWriter.open(path, vocab=VOCAB, merge_policy=None) as writer:
        writer.add(impact_batch(["a", "b"], [1, 2]), metadata=[{"year": 2020}, {"tenant": "t"}])
        writer.commit()
        writer.delete(["a"])
    live = ImpactIndex.open(path)
    with pytest.raises(InputError, match="holds no numbers"):
        live.search({"t1": 1}, k=2, filter="year>=2020")


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ([{"tags": ["x"]}, None], r"document 'a'.*field 'tags' is a list"),
        ([None, {"bad name": 1}], r"document 'b'.*field name 'bad name'"),
        ([None, {"x": "y" * 5000}], r"document 'b'.*at most 4096"),
        ([None], "1 metadata records for 2 documents"),
        ([None, {"year": None}], r"document 'b'.*field 'year' is a null"),
    ],
)
def test_bad_metadata_at_add_is_a_clear_error(tmp_path, metadata, message):
    with IndexWriter.open(tmp_path / "ix", vocab=VOCAB) as writer:
        with pytest.raises(InputError, match=message):
            writer.add(impact_batch(["a", "b"], [1, 2]), metadata=metadata)
        assert writer.num_documents == 0  # nothing half-added
    with DenseIndexWriter.open(tmp_path / "dense", dim=DIM) as writer:
        with pytest.raises(InputError, match=message):
            writer.upsert((["a", "b"], np.ones((2, DIM))), metadata=metadata)


def test_the_field_limit_counts_every_segment(tmp_path, monkeypatch):
    import sparse_ir.index.writer as writer_module

    monkeypatch.setattr(writer_module, "MAX_COLLECTION_FIELDS", 3)
    with IndexWriter.open(tmp_path / "ix", vocab=VOCAB) as writer:
        writer.add(impact_batch(["a"], [1]), metadata=[{"f1": 1, "f2": 2}])
        writer.commit()
        writer.add(impact_batch(["b"], [2]), metadata=[{"f3": 3}])
        with pytest.raises(InputError, match=r"document 'c'.*'f4'.*at most 3"):
            writer.add(impact_batch(["c"], [3]), metadata=[{"f4": 4}])


def test_dense_merge_with_metadata_is_byte_identical_to_a_build(tmp_path):
    path = tmp_path / "live"
    with DenseIndexWriter.open(path, dim=DIM, merge_policy=None) as writer:
        writer.add((["a", "b"], np.stack([dense_vector(0), dense_vector(1)])))
        writer.commit()
        writer.add(
            (["c", "d"], np.stack([dense_vector(2), dense_vector(3)])),
            metadata=[{"year": 2021}, {"tenant": "q"}],
        )
        writer.commit()
        writer.delete(["b"])
        writer.force_merge(1)
    DenseIndex.build(
        np.stack([dense_vector(i) for i in (0, 2, 3)]),
        tmp_path / "scratch",
        ids=["a", "c", "d"],
        metadata=[None, {"year": 2021}, {"tenant": "q"}],
    )
    merged = DenseIndex.open(path)
    _assert_same_content(
        merged.segments[0].directory, DenseIndex.open(tmp_path / "scratch").directory
    )
    hits = merged.search(np.ones(DIM, np.float32), k=5, filter="year=2021")
    assert [h.doc_id for h in hits] == ["c"]


def test_merged_segment_is_byte_identical_to_a_build(tmp_path):
    """A force-merged segment holds the same bytes as building its live documents at once."""
    path = tmp_path / "live"
    seeds = {f"d{i}": 100 + i for i in range(30)}
    with IndexWriter.open(path, vocab=VOCAB, merge_policy=None) as writer:
        for start in range(0, 30, 10):
            ids = list(seeds)[start : start + 10]
            writer.add(impact_batch(ids, [seeds[i] for i in ids]))
            writer.commit()
        writer.delete(["d3", "d17"])
        writer.upsert(impact_batch(["d5"], [999]))
        writer.commit()
        writer.force_merge(1)
    seeds.pop("d3"), seeds.pop("d17")
    seeds["d5"] = 999  # an upsert keeps the id's ordinal: d5 stays in its place
    merged = ImpactIndex.open(path)
    assert len(merged.segments) == 1 and merged.num_deleted == 0
    ImpactIndex.build(
        impact_batch(list(seeds), list(seeds.values())), tmp_path / "scratch", show_progress=False
    )
    scratch = ImpactIndex.open(tmp_path / "scratch")
    _assert_same_content(merged.segments[0].directory, scratch.directory)
    rows = np.array([0, 1, 2, 9, 26])
    blocks = list(segment_vectors(scratch, rows, block_documents=7))
    assert len(blocks) == 3  # documents 0-6, 7-13 and 21-27 hold rows
    again = SparseBatch.concatenate(blocks)
    assert again.ids == tuple(scratch.doc_ids[r] for r in rows)
    assert again.to_dicts() == [scratch.document_vector(int(r)) for r in rows]


def test_merged_dense_segment_is_byte_identical_to_a_build(tmp_path):
    path = tmp_path / "live"
    vectors = {f"d{i}": dense_vector(i) for i in range(12)}
    with DenseIndexWriter.open(path, dim=DIM, merge_policy=None) as writer:
        for start in (0, 6):
            ids = list(vectors)[start : start + 6]
            writer.add((ids, np.stack([vectors[i] for i in ids])))
            writer.commit()
        writer.delete(["d1"])
        writer.force_merge(1)
    del vectors["d1"]
    DenseIndex.build(np.stack(list(vectors.values())), tmp_path / "scratch", ids=list(vectors))
    merged = DenseIndex.open(path)
    _assert_same_content(
        merged.segments[0].directory, DenseIndex.open(tmp_path / "scratch").directory
    )


def _assert_same_content(left: Path, right: Path) -> None:
    """Same files, byte for byte, except the manifest's build facts (time, quantize counts)."""
    import json

    names = sorted(p.name for p in left.iterdir())
    assert names == sorted(p.name for p in right.iterdir())
    for name in names:
        if name == "manifest.json":
            a, b = (json.loads((d / name).read_text()) for d in (left, right))
            for body in (a, b):
                body.pop("build"), body.pop("manifest_crc32")
            assert a == b
        else:
            assert (left / name).read_bytes() == (right / name).read_bytes(), name


def test_tiered_policy_merges_at_commit(tmp_path):
    path = tmp_path / "live"
    with IndexWriter.open(path, vocab=VOCAB, merge_policy=SMALL_TIERS) as writer:
        for i in range(9):
            writer.add(impact_batch([f"d{i}"], [i]))
            writer.commit()
    index = ImpactIndex.open(path)
    assert len(index.segments) < 9 and index.num_documents == 9


def test_old_generations_kept_while_a_reader_of_this_process_holds_them(tmp_path):
    path = tmp_path / "live"
    with IndexWriter.open(path, vocab=VOCAB, merge_policy=None) as writer:
        writer.add(impact_batch(["a"], [1]))
    reader = ImpactIndex.open(path)
    held = set(reader.names_in_use)
    with IndexWriter.open(path) as writer:
        for i in range(4):
            writer.add(impact_batch([f"x{i}"], [i]))
            writer.commit()
        writer.force_merge(1)
    assert all((path / name).exists() for name in held)
    reader.verify()
    del reader
    import gc

    gc.collect()
    with IndexWriter.open(path) as writer:
        writer.add(impact_batch(["z"], [7]))
    assert not all((path / name).exists() for name in held)


def test_a_lock_left_by_a_dead_process_is_taken_over(tmp_path, caplog):
    import logging
    import subprocess
    import sys

    path = tmp_path / "ix"
    IndexWriter.open(path, vocab=VOCAB).close()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    (path / ".lock").write_text(dead.stdout)  # what a killed writer leaves: its pid, no flock
    with caplog.at_level(logging.INFO, logger="sparse_ir.index.storage"):
        IndexWriter.open(path).close()
    assert f"left by pid {dead.stdout.strip()}" in caplog.text


def test_the_writer_of_the_other_kind_is_refused(tmp_path):
    from sparse_ir.errors import IndexFormatError

    DenseIndex.build(np.eye(3, dtype=np.float32), tmp_path / "dense")
    with pytest.raises(IndexFormatError, match="DenseIndexWriter for dense"):
        IndexWriter.open(tmp_path / "dense")
    with DenseIndexWriter.open(tmp_path / "dense") as writer:
        writer.delete(["0"])
    with pytest.raises((IndexFormatError, InputError), match="dense"):
        IndexWriter.open(tmp_path / "dense")


def test_verify_index_and_index_format_read_a_live_index(tmp_path):
    from sparse_ir.hybrid import index_format
    from sparse_ir.index.check import verify_index
    from sparse_ir.index.manifest import IMPACT_FORMAT

    path = tmp_path / "ix"
    with IndexWriter.open(path, vocab=VOCAB, merge_policy=None) as writer:
        writer.add(impact_batch(["a", "b", "c"], [1, 2, 3]))
        writer.commit()
        writer.delete(["b"])
    assert index_format(path) == IMPACT_FORMAT
    assert verify_index(path).ok
    bitmap = next(ImpactIndex.open(path).directory.glob("deleted-*.bin"))
    data = bytearray(bitmap.read_bytes())
    data[64] ^= 0xFF  # the first byte of the bits
    bitmap.write_bytes(bytes(data))
    report = verify_index(path)
    assert not report.ok and any("deleted-seg" in p for p in report.problems), report.problems


def test_resident_open_of_a_live_index_covers_every_segment(tmp_path):
    path = tmp_path / "ix"
    for ids, weights in ((["a"], [1]), (["b"], [2])):
        with IndexWriter.open(path, vocab=VOCAB, merge_policy=None) as writer:
            writer.add(impact_batch(ids, weights))
    index = ImpactIndex.open(path, resident="copy")
    assert isinstance(index, LiveImpactIndex) and len(index.segments) == 2
    assert [report.how for report in index.residency] == ["copy", "copy"]
    assert index.search(impact_vector(1), k=2) == ImpactIndex.open(path).search(
        impact_vector(1), k=2
    )


def test_a_live_commits_vocab_json_pointing_at_dev_zero_is_refused(tmp_path):
    from sparse_ir.errors import IndexCorruptError, IndexFormatError

    path = tmp_path / "ix"
    for ids, weights in ((["a"], [1]), (["b"], [2])):
        with IndexWriter.open(path, vocab=VOCAB, merge_policy=None) as writer:
            writer.add(impact_batch(ids, weights))
    generation = ImpactIndex.open(path).directory
    (generation / "vocab.json").unlink()
    (generation / "vocab.json").symlink_to("/dev/zero")
    with pytest.raises((IndexCorruptError, IndexFormatError), match="vocab.json"):
        ImpactIndex.open(path)


def test_a_paired_change_stamps_both_and_an_interrupted_one_is_detected(tmp_path):
    from sparse_ir.hybrid import check_pair, pair_stamp

    sparse, dense = tmp_path / "sparse", tmp_path / "dense"
    with IndexWriter.open(sparse, vocab=VOCAB) as writer:
        writer.add(Kind("impact").batch(["a", "b"], [1, 2]))
    with DenseIndexWriter.open(dense, dim=DIM) as writer:
        writer.add(Kind("dense").batch(["a", "b"], [1, 2]))
    assert pair_stamp(ImpactIndex.open(sparse)) == ""  # never changed as a pair
    # A paired delete: the same stamp in both commits, even where nothing changed.
    with IndexWriter.open(sparse) as one, DenseIndexWriter.open(dense) as two:
        one.delete(["a"])
        one.commit(pair="p1")
        two.commit(pair="p1")
    pair = ImpactIndex.open(sparse), DenseIndex.open(dense)
    assert [pair_stamp(i) for i in pair] == ["p1", "p1"]
    check_pair(*pair)
    # Interrupted between its two commits: the sparse index committed, the dense did not.
    with IndexWriter.open(sparse) as one:
        one.delete(["b"])
        one.commit(pair="p2")
    with pytest.raises(ValueError, match="were not changed together"):
        check_pair(ImpactIndex.open(sparse), DenseIndex.open(dense))
    # Running the command again on both repairs the pair.
    with IndexWriter.open(sparse) as one, DenseIndexWriter.open(dense) as two:
        assert one.delete(["a", "b"]).deleted == 0 and two.delete(["a", "b"]).deleted == 2
        one.commit(pair="p3")
        two.commit(pair="p3")
    check_pair(ImpactIndex.open(sparse), DenseIndex.open(dense))
    assert ImpactIndex.open(sparse).num_documents == DenseIndex.open(dense).num_documents == 0
    # A change to one index of the pair alone gets a stamp of its own; a merge keeps it.
    with DenseIndexWriter.open(dense) as two:
        two.add(Kind("dense").batch(["c"], [3]))
    alone = pair_stamp(DenseIndex.open(dense))
    assert alone.startswith("alone-")
    with pytest.raises(ValueError, match="changed alone"):
        check_pair(ImpactIndex.open(sparse), DenseIndex.open(dense))
    with DenseIndexWriter.open(dense) as two:
        two.force_merge(1)
    assert pair_stamp(DenseIndex.open(dense)) == alone
    with IndexWriter.open(sparse) as one, pytest.raises(ValueError, match="non-empty stamp"):
        one.commit(pair="")
