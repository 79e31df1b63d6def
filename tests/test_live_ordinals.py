"""Ordinals of a live index (format version 2): what a commit records, how a version-1 commit
opens, and damaged or forged ordinals files and ``retired.json`` refused with an error naming
the file (the style of ``tests/test_hostile_index.py``: forged files carry valid checksums,
so the rule itself, not the CRC, must catch them)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sparse_ir.errors import IndexCorruptError
from sparse_ir.index.impact_index import ImpactIndex
from sparse_ir.index.storage import write_array, write_bytes_file, write_manifest
from sparse_ir.index.writer import IndexWriter
from sparse_ir.sparse_batch import SparseBatch

VOCAB = ("t0", "t1")


def batch(ids: list[str]) -> SparseBatch:
    """Documents that all score the same for the query {"t0": 1}: ties everywhere."""
    floats = SparseBatch.from_dicts([{"t0": 1} for _ in ids], VOCAB, ids=ids)
    return SparseBatch(floats.indptr, floats.indices, floats.values.astype(np.int32), VOCAB, ids)


def ranked(index, k: int = 10) -> list[str]:
    return [h.doc_id for h in index.search({"t0": 1}, k)]


@pytest.fixture
def re_added(tmp_path) -> Path:
    """a, b, c; b deleted; then d and b added: the last segment holds b (1) and d (3)."""
    path = tmp_path / "ix"
    with IndexWriter.open(path, vocab=VOCAB, merge_policy=None) as writer:
        writer.add(batch(["a", "b", "c"]))
        writer.commit()
        writer.delete(["b"])
        writer.commit()
        writer.add(batch(["d", "b"]))
    return path


@pytest.fixture
def purged(tmp_path) -> Path:
    """a, b, c; c deleted and merged away: retired.json keeps c's ordinal."""
    path = tmp_path / "px"
    with IndexWriter.open(path, vocab=VOCAB, merge_policy=None) as writer:
        writer.add(batch(["a", "b", "c"]))
        writer.commit()
        writer.add(batch(["e"]))
        writer.commit()
        writer.delete(["c"])
        writer.force_merge(1)
    return path


def forge(generation: Path, name: str, data) -> None:
    """Replace a commit file, and list it with its true size and CRC (a valid checksum)."""
    (generation / name).unlink(missing_ok=True)
    if isinstance(data, np.ndarray):
        record = write_array(generation / name, "ordinals", data, np.int64)
    else:
        record = write_bytes_file(generation / name, data)
    body = json.loads((generation / "manifest.json").read_text())
    body.pop("manifest_crc32")
    body["files"][name] = record.to_dict()
    (generation / "manifest.json").unlink()
    write_manifest(generation, body)


def edit_manifest(generation: Path, change) -> None:
    body = json.loads((generation / "manifest.json").read_text())
    body.pop("manifest_crc32")
    change(body)
    (generation / "manifest.json").unlink()
    write_manifest(generation, body)


def test_re_added_ids_keep_their_ordinals_and_rank_in_first_added_order(re_added):
    index = ImpactIndex.open(re_added)
    assert [index.ordinal(i) for i in "abcd"] == [0, 1, 2, 3]
    assert not index.numbers_follow_ordinals
    assert ranked(index) == ["a", "b", "c", "d"] == [h.doc_id for h in index.reference_search(
        {"t0": 1}, 10)]  # fmt: skip
    assert ranked(index, 2) == ["a", "b"]
    record = index.commit.segments[-1]
    assert record.ordinals == "ordinals-seg-000002.bin" and record.ordinal_start is None
    assert index.commit.segments[0].ordinal_start == 0 and index.commit.next_ordinal == 4
    index.verify()


def test_a_purged_id_keeps_its_ordinal_in_retired_json(purged):
    index = ImpactIndex.open(purged)
    assert "retired.json" in index.commit.files
    assert json.loads((index.directory / "retired.json").read_text()) == {"c": 2}
    with IndexWriter.open(purged) as writer:
        writer.add(batch(["f", "c"]))  # c comes back with 2, f is new: 4
    index = ImpactIndex.open(purged)
    assert [index.ordinal(i) for i in "abcef"] == [0, 1, 2, 3, 4]
    assert ranked(index) == ["a", "b", "c", "e", "f"]
    assert "retired.json" not in index.commit.files  # c is live again
    with IndexWriter.open(purged) as writer:
        writer.force_merge(1)
    assert ImpactIndex.open(purged).doc_ids == ["a", "b", "c", "e", "f"]


def test_a_version_1_commit_opens_with_numbers_as_ordinals_and_is_rewritten(re_added):
    generation = ImpactIndex.open(re_added).directory

    def to_version_1(body):
        body["format_version"] = 1
        body.pop("next_ordinal")
        for segment in body["segments"]:
            segment.pop("ordinal_start", None), segment.pop("ordinals", None)
        del body["files"]["ordinals-seg-000002.bin"]

    edit_manifest(generation, to_version_1)
    index = ImpactIndex.open(re_added)
    assert index.commit.next_ordinal == 5 and index.numbers_follow_ordinals
    assert ranked(index) == ["a", "c", "b", "d"]  # version 1: ties by document number
    with IndexWriter.open(re_added) as writer:
        writer.upsert(batch(["a"]))
    index = ImpactIndex.open(re_added)
    body = json.loads((index.directory / "manifest.json").read_text())
    assert body["format_version"] == 2 and body["next_ordinal"] == 5
    assert ranked(index) == ["a", "c", "b", "d"]  # a keeps its ordinal 0


@pytest.mark.parametrize(
    "values, message",
    [
        (np.array([3, 1]), "not larger than the one before"),
        (np.array([1, 1]), "not larger than the one before"),
        (np.array([1, 9]), r"not within 0\.\.3"),
        (np.array([-1, 3]), r"not within 0\.\.3"),
    ],
)
def test_a_forged_ordinals_file_is_refused_naming_it(re_added, values, message):
    generation = ImpactIndex.open(re_added).directory
    forge(generation, "ordinals-seg-000002.bin", values)
    with pytest.raises(IndexCorruptError, match=f"ordinals-seg-000002.bin.*{message}"):
        ImpactIndex.open(re_added)
    with pytest.raises(IndexCorruptError, match="ordinals-seg-000002.bin"):
        IndexWriter.open(re_added)


def test_ordinals_of_the_wrong_length_or_damaged_bytes_are_refused(re_added):
    generation = ImpactIndex.open(re_added).directory
    path = generation / "ordinals-seg-000002.bin"
    data = bytearray(path.read_bytes())
    data[-20] ^= 0xFF
    path.unlink()
    path.write_bytes(bytes(data))
    with pytest.raises(IndexCorruptError, match="ordinals-seg-000002.bin"):
        ImpactIndex.open(re_added)
    forge(generation, "ordinals-seg-000002.bin", np.array([1, 3, 4]))
    with pytest.raises(IndexCorruptError, match="ordinals-seg-000002.bin.*3 elements"):
        ImpactIndex.open(re_added)


def test_two_live_documents_with_one_ordinal_are_refused(re_added):
    generation = ImpactIndex.open(re_added).directory
    forge(generation, "ordinals-seg-000002.bin", np.array([0, 3]))  # a's ordinal
    with pytest.raises(IndexCorruptError, match="two live documents have ordinal 0"):
        ImpactIndex.open(re_added)


def test_an_ordinal_run_beyond_next_ordinal_is_refused(re_added):
    generation = ImpactIndex.open(re_added).directory
    edit_manifest(generation, lambda body: body["segments"][0].update(ordinal_start=2))
    with pytest.raises(IndexCorruptError, match="seg-000001's ordinals 2..4 reach next_ordinal 4"):
        ImpactIndex.open(re_added)


@pytest.mark.parametrize("start", [2**62, 2**70])
def test_ordinals_beyond_int64_are_refused_not_overflowed(re_added, start):
    generation = ImpactIndex.open(re_added).directory

    def huge(body):
        body["segments"][0].update(ordinal_start=start)
        body["next_ordinal"] = start + 10

    edit_manifest(generation, huge)
    with pytest.raises(IndexCorruptError, match="next_ordinal .* is above"):
        ImpactIndex.open(re_added)


def test_an_ordinals_file_not_listed_is_refused(re_added):
    generation = ImpactIndex.open(re_added).directory
    edit_manifest(generation, lambda body: body["files"].pop("ordinals-seg-000002.bin"))
    with pytest.raises(IndexCorruptError, match="ordinals-seg-000002.bin is not among its files"):
        ImpactIndex.open(re_added)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"[1, 2]", "not a JSON object"),
        (b'{"c": "2"}', "not an integer"),
        (b'{"c": true}', "not an integer"),
        (b'{"c": 7}', r"not within 0\.\.3"),
        (b'{"c": 2, "x": 2}', "same ordinal"),
        (b'{"c": 2', "retired.json"),
        (b'{"c": ' * 10_000, "retired.json"),
    ],
)
def test_a_forged_retired_json_is_refused_naming_it(purged, content, message):
    generation = ImpactIndex.open(purged).directory
    forge(generation, "retired.json", content)
    with pytest.raises(IndexCorruptError, match=f"retired.json.*{message}|{message}"):
        IndexWriter.open(purged)
    ImpactIndex.open(purged)  # a reader reads it only to verify
    with pytest.raises(IndexCorruptError, match="retired.json"):
        ImpactIndex.open(purged).verify()


def test_a_damaged_retired_json_is_refused_at_open(purged):
    generation = ImpactIndex.open(purged).directory
    path = generation / "retired.json"
    data = path.read_bytes().replace(b"2", b"1")
    path.unlink()
    path.write_bytes(data)
    with pytest.raises(IndexCorruptError, match="retired.json: CRC32"):
        ImpactIndex.open(purged)


def test_verify_refuses_a_retired_id_or_ordinal_that_is_live(purged):
    generation = ImpactIndex.open(purged).directory
    forge(generation, "retired.json", b'{"a": 2}')
    with pytest.raises(IndexCorruptError, match="retires 'a', a live document's id"):
        ImpactIndex.open(purged).verify()
    forge(generation, "retired.json", b'{"c": 1}')
    with pytest.raises(IndexCorruptError, match="ordinal of 'c' \\(1\\) is a live document's"):
        ImpactIndex.open(purged).verify()
