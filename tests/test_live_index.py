"""Live index: writers, commits, merges, and search across segments equal to brute force.

The property test drives random interleavings of add / upsert / delete / commit / rollback /
merge / reopen on both index kinds and, after every step that changes what readers see,
checks every search mode of ``ImpactIndex.open(path)`` / ``DenseIndex.open(path)`` against
brute force over the documents a plain dict model says are committed.

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


def brute_force(kind: Kind, index, model: dict[str, int], query, k: int) -> list[tuple]:
    """``(doc_id, score)`` of the top-k by plain Python over the model's documents, ordered
    by score descending then the index's document number (impact: score 0 left out)."""
    scored = [
        (kind.score(query, seed), index.docno(doc_id), doc_id) for doc_id, seed in model.items()
    ]
    if kind.name == "impact":
        scored = [s for s in scored if s[0] > 0]
    scored.sort(key=lambda s: (-s[0], s[1]))
    return [(doc_id, score) for score, _, doc_id in scored[:k]]


def check_reader(kind: Kind, path: Path, model: dict[str, int], seed: int) -> None:
    """Every mode of the index at ``path`` equals brute force over ``model``."""
    index = kind.open_index(path)
    assert index.num_documents == len(model)
    live = {index.doc_ids[d] for d in np.flatnonzero(~_deleted(index)).tolist()}
    assert live == set(model)
    rng = np.random.default_rng(seed)
    for query in kind.queries(rng):
        for k in (1, 3, 30):
            expected = brute_force(kind, index, model, query, k)
            for got in _answers(kind, index, query, k):
                COUNTS["checks"] += 1
                if got != expected:
                    COUNTS["disagreements"] += 1
                assert got == expected, (got, expected)
            if kind.name == "impact":  # approximate: only live documents, true scores
                hits = index.search(query, k, mode=Approximate())
                scores = dict(brute_force(kind, index, model, query, len(model) + 1))
                assert all(scores.get(h.doc_id) == h.score for h in hits)


def _deleted(index) -> np.ndarray:
    if isinstance(index, (LiveImpactIndex, LiveDenseIndex)):
        return index.deleted_mask()
    return np.zeros(index.num_documents, bool)


def _answers(kind: Kind, index, query, k: int) -> list[list[tuple]]:
    def pairs(hits):
        return [(h.doc_id, h.score) for h in hits]

    if kind.name == "dense":
        run = index.search_batch(np.stack([query, query]), k)
        return [pairs(index.search(query, k)), pairs(run.results["1"])]
    answers = [pairs(index.search(query, k, mode=m)) for m in ("exhaustive", "pruned")]
    answers.append(pairs(index.search_batch([query], k, mode="pruned", threads=2).results["0"]))
    answers.append(pairs(index.search_with_stats(query, k, mode="exhaustive")[0]))
    top = index.search_arrays(query, k)
    answers.append(
        [(index.doc_ids[d], s) for d, s in zip(top.docnos.tolist(), top.scores.tolist())]
    )
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
        counter = seed * 1000
        try:
            for step, (op, arg) in enumerate(ops):
                if op in ("add", "upsert"):
                    ids = [i for i in arg if op == "upsert" or i not in pending]
                    seeds = list(range(counter, counter + len(ids)))
                    counter += len(ids)
                    if ids:
                        getattr(writer, op)(kind.batch(ids, seeds))
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
                check_reader(kind, path, committed, seed + step)
            writer.commit()
            check_reader(kind, path, pending, seed)
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


def test_metadata_is_refused_by_writers_and_field_filters_on_live_indexes(tmp_path):
    # Live indexes do not carry metadata yet: a merge would drop it, so the writer refuses an
    # index that stores some, and a field filter on a live index is an error, never a guess.
    path = tmp_path / "ix"
    ImpactIndex.build(
        impact_batch(["a", "b"], [1, 2]),
        path,
        show_progress=False,
        metadata=[{"year": 2020}, {"year": 2021}],
    )
    with pytest.raises(InputError, match="stores document metadata"):
        IndexWriter.open(path)
    assert ImpactIndex.open(path).metadata(1) == {"year": 2021}  # the index is untouched
    other = tmp_path / "other"
    with IndexWriter.open(other, vocab=VOCAB) as writer:
        writer.add(impact_batch(["a", "b"], [1, 2]))
    live = ImpactIndex.open(other)
    with pytest.raises(InputError, match="live indexes do not store document metadata"):
        live.search(impact_vector(1), k=2, filter="year>=2020")


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
    seeds.pop("d3"), seeds.pop("d17"), seeds.pop("d5")
    seeds["d5"] = 999
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
