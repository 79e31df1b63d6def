"""Format versions, the strict pointer and manifest, publish bookkeeping, ``sparse-ir verify``."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
from index_kinds import KINDS, SMALL

from sparse_ir.cli import main
from sparse_ir.errors import IndexCorruptError, IndexFormatError
from sparse_ir.index import storage
from sparse_ir.index.check import INDEX_KINDS, verify_index
from sparse_ir.index.storage import IndexDirectory, read_manifest, write_manifest


@pytest.fixture(params=sorted(KINDS))
def kind(request):
    return KINDS[request.param]


def _current_manifest(path):
    generation = IndexDirectory(path).current()
    return generation, json.loads((generation / "manifest.json").read_text())


def _rewrite_manifest(generation, body):
    """Write a manifest as another version of sparse_ir would: valid checksum, other content."""
    body = {k: v for k, v in body.items() if k != "manifest_crc32"}
    (generation / "manifest.json").unlink()
    write_manifest(generation, body)


def test_manifest_of_another_version_is_refused_naming_both(kind, tmp_path, capsys):
    path = tmp_path / "index"
    kind.build(path, 1, SMALL)
    generation, body = _current_manifest(path)
    ours = body["format_version"]
    _rewrite_manifest(generation, {**body, "format_version": ours + 1})
    with pytest.raises(IndexFormatError) as caught:
        kind.open(path)
    message = str(caught.value)
    assert f"version {ours + 1}" in message and f"reads version {ours}" in message
    assert not isinstance(caught.value, IndexCorruptError)
    assert main(["verify", str(path)]) == 1
    assert f"reads version {ours}" in capsys.readouterr().err


def test_future_manifest_with_another_checksum_still_names_both_versions(kind, tmp_path):
    path = tmp_path / "index"
    kind.build(path, 1, SMALL)
    generation, body = _current_manifest(path)
    body["format_version"] += 1
    body["manifest_crc32"] = "sha256:a-future-scheme"
    (generation / "manifest.json").write_text(json.dumps(body))
    with pytest.raises(IndexFormatError, match=f"reads version {body['format_version'] - 1}"):
        kind.open(path)


def test_array_file_of_another_version_is_refused_naming_both(kind, tmp_path, monkeypatch):
    path = tmp_path / "index"
    monkeypatch.setattr(storage, "ARRAY_VERSION", storage.ARRAY_VERSION + 1)
    kind.build(path, 1, SMALL)  # as a future writer: every array file says version 2
    monkeypatch.undo()
    with pytest.raises(IndexFormatError) as caught:
        kind.open(path)
    message = str(caught.value)
    assert f"array format version {storage.ARRAY_VERSION + 1}" in message
    assert f"reads version {storage.ARRAY_VERSION}" in message
    report = verify_index(path)
    assert not report.ok and any("array format version" in p for p in report.problems)


def test_manifest_must_be_byte_exact(tmp_path):
    write_manifest(tmp_path, {"format": "f", "format_version": 1, "files": {}})
    assert read_manifest(tmp_path, format_name="f", version=1)["format"] == "f"
    raw = (tmp_path / "manifest.json").read_bytes()
    for altered in (raw[:-1], raw + b"\n", raw.replace(b"\n ", b"\n  ", 1)):
        (tmp_path / "manifest.json").write_bytes(altered)
        with pytest.raises(IndexCorruptError, match="altered"):
            read_manifest(tmp_path, format_name="f", version=1)


def test_current_pointer_must_be_exact(kind, tmp_path):
    path = tmp_path / "index"
    kind.build(path, 1, SMALL)
    raw = (path / "CURRENT").read_bytes()
    for altered in (raw[:-1], raw[:-1] + b"\x0b", raw + b"\n", b" " + raw, raw.upper()):
        (path / "CURRENT").write_bytes(altered)
        with pytest.raises(IndexCorruptError, match="CURRENT"):
            kind.open(path)
    (path / "CURRENT").write_bytes(raw)
    assert kind.answers(kind.open(path)) == kind.expected(1, SMALL)


def test_failed_publish_after_rename_removes_the_new_generation(kind, tmp_path, monkeypatch):
    path = tmp_path / "index"
    kind.build(path, 1, SMALL)
    before = [p.name for _, p in IndexDirectory(path).generations()]

    def no_space(self, name):
        raise OSError(28, "No space left on device (writing CURRENT)")

    monkeypatch.setattr(IndexDirectory, "_write_current", no_space)
    with pytest.raises(OSError, match="No space"):
        kind.build(path, 2, SMALL)
    monkeypatch.undo()
    assert [p.name for _, p in IndexDirectory(path).generations()] == before
    assert kind.answers(kind.open(path)) == kind.expected(1, SMALL)


def test_unpublished_generations_and_temporaries_are_removed_by_the_next_build(kind, tmp_path):
    path = tmp_path / "index"
    kind.build(path, 1, SMALL)
    kind.build(path, 2, SMALL)
    live = IndexDirectory(path).current()
    # What a build killed between its rename and CURRENT leaves: a newer, unnamed generation.
    orphan = path / "gen-000099"
    shutil.copytree(live, orphan)
    (path / ".tmp-deadbeef").mkdir()
    (path / ".tmp-deadbeef" / "postings_docs.bin").write_bytes(b"partial")
    (path / ".tmp-CURRENT-1234").write_bytes(b"gen-0")
    directory = IndexDirectory(path)
    assert {p.name for p in directory.leftovers()} == {
        "gen-000099",
        ".tmp-deadbeef",
        ".tmp-CURRENT-1234",
    }
    report = verify_index(path)
    assert report.ok and len(report.notes) == 3
    assert kind.answers(kind.open(path)) == kind.expected(2, SMALL)  # not the orphan
    kind.build(path, 3, SMALL)
    assert directory.leftovers() == []
    names = sorted(p.name for p in path.iterdir())
    assert names == [".lock", "CURRENT", "gen-000002", "gen-000003"]  # keep_previous=1


def test_keep_previous_counts_published_generations_only(kind, tmp_path):
    path = tmp_path / "index"
    kind.build(path, 1, SMALL)
    reader_generation = IndexDirectory(path).current()
    shutil.copytree(reader_generation, path / "gen-000050")  # an orphan, newer by number
    kind.build(path, 2, SMALL)
    # The orphan was removed first, so the generation before the new one is still kept.
    assert reader_generation.exists()
    assert not (path / "gen-000050").exists()


def test_verify_cli_reports_ok_and_every_problem(kind, tmp_path, capsys):
    path = tmp_path / "index"
    kind.build(path, 1, SMALL)
    assert main(["verify", str(path)]) == 0
    assert f"{path}: OK" in capsys.readouterr().out
    generation = IndexDirectory(path).current()
    damaged = sorted(p for p in generation.iterdir() if p.suffix == ".bin")[:2]
    for file in damaged:
        data = bytearray(file.read_bytes())
        data[-20] ^= 0xFF  # a data byte just before the footer
        file.write_bytes(bytes(data))
    assert main(["verify", str(path)]) == 1
    err = capsys.readouterr().err
    for file in damaged:
        assert f"PROBLEM: {file}: CRC32" in err
    assert "CORRUPT (2 problem(s))" in err
    (path / "CURRENT").unlink()
    assert main(["verify", str(path)]) == 1
    assert "no CURRENT file" in capsys.readouterr().err
    assert main(["verify", str(tmp_path / "nothing")]) == 1
    assert "no index at" in capsys.readouterr().err


@pytest.mark.parametrize(
    "layout, name, message",
    [
        ("kept", "postings_docs", "not ascending"),
        ("new", "forward_impacts", "differs from the impact-ordered postings"),
    ],
)
def test_verify_finds_broken_invariants_behind_valid_checksums(tmp_path, layout, name, message):
    """A writer bug (valid checksums, wrong content) is caught by the invariant checks: in
    the document-ordered postings where they are kept, else between the forward index and the
    impact order (the only two copies)."""
    from index_kinds import impact_build

    path = tmp_path / "index"
    impact_build(path, 1, SMALL, doc_ordered_postings=layout == "kept")
    generation = IndexDirectory(path).current()
    body = json.loads((generation / "manifest.json").read_text())
    values = storage.open_array(generation / f"{name}.bin")
    broken = np.array(values)[::-1].copy()  # documents not ascending / impacts moved
    (generation / f"{name}.bin").unlink()
    body["files"][f"{name}.bin"] = storage.write_array(
        generation / f"{name}.bin", name, broken
    ).to_dict()
    _rewrite_manifest(generation, body)
    report = verify_index(path)
    assert not report.ok and message in " ".join(report.problems)


def test_every_index_kind_is_known_to_verify_index(kind, tmp_path):
    path = tmp_path / "index"
    kind.build(path, 1, SMALL)
    assert _current_manifest(path)[1]["format"] in INDEX_KINDS
    assert verify_index(path).ok


def test_lock_and_no_pickle_in_index_files(kind, tmp_path):
    """Index files are plain arrays and JSON: nothing in them is ever unpickled."""
    path = tmp_path / "index"
    kind.build(path, 1, SMALL)
    for file in IndexDirectory(path).current().iterdir():
        head = file.read_bytes()[:8]
        assert head == b"SPIRARR1" or file.suffix == ".json", file
    assert os.path.getsize(path / ".lock") == 0


def test_ctrl_c_during_a_build_keeps_the_old_index_and_leaves_nothing(tmp_path):
    from index_kinds import impact_data

    from sparse_ir.index.impact_index import ImpactIndex

    path = tmp_path / "index"
    kind = KINDS["impact"]
    kind.build(path, 1, SMALL)
    batch, _, _ = impact_data(2, SMALL)

    def shards_then_interrupt():
        yield batch.select(range(50))
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ImpactIndex.build(shards_then_interrupt(), path, show_progress=False)
    assert IndexDirectory(path).leftovers() == []
    assert sorted(p.name for p in path.iterdir()) == [".lock", "CURRENT", "gen-000001"]
    assert kind.answers(kind.open(path)) == kind.expected(1, SMALL)


def test_opened_arrays_are_read_only_even_when_empty(tmp_path):
    """An empty array file opens read-only like a mapped one, so an index without postings
    hands the kernels the same array types as any other (numba compiles every kernel again
    for a writable argument)."""
    for count in (0, 5):
        path = tmp_path / f"values-{count}.bin"
        storage.write_array(path, "values", np.arange(count, dtype=np.int64))
        values = storage.open_array(path, name="values", dtype=np.int64, count=count)
        assert len(values) == count and not values.flags.writeable
    from sparse_ir import ImpactIndex, SparseBatch

    empty = SparseBatch.from_dicts([{}, {}], ["a", "b"], ids=["x", "y"])
    index = ImpactIndex.build(empty, tmp_path / "index", show_progress=False)
    layout = {k: v for k, v in index._layout._asdict().items() if isinstance(v, np.ndarray)}
    assert len(layout["forward_terms"]) == 0
    assert not [name for name, array in layout.items() if array.flags.writeable]
    assert index.search({"a": 1}, 3) == []
