"""Manifests as typed records: round trips, clear errors for mangled keys, the layout version,
the shared index base, and the verify names (``check_index`` is a deprecated alias)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from sparse_ir.errors import IndexCorruptError, IndexFormatError
from sparse_ir.index.check import CheckReport, VerifyReport, check_index, verify_index
from sparse_ir.index.dense import DenseIndex
from sparse_ir.index.impact_index import ImpactIndex
from sparse_ir.index.manifest import (
    IMPACT_FORMAT_VERSION,
    LAYOUT_VERSION,
    DenseManifest,
    FileRecord,
    ImpactManifest,
    SearchLayoutRecord,
)
from sparse_ir.index.storage import replace_directory, write_manifest
from sparse_ir.sparse_batch import SparseBatch

VOCAB = ("a", "b", "c", "d", "e")


@pytest.fixture()
def impact(tmp_path):
    batch = SparseBatch.from_dicts(
        [{"a": 2, "b": 4}, {"c": 7}, {"a": 5, "b": 1}, {}, {"b": 3, "e": 1}],
        VOCAB,
        ids=["d0", "d1", "d2", "d3", "d4"],
    )
    return ImpactIndex.build(
        batch, tmp_path / "impact", show_progress=False, settings={"model": "hand"}
    )


@pytest.fixture()
def dense(tmp_path):
    vectors = np.random.default_rng(0).standard_normal((6, 4)).astype(np.float32)
    return DenseIndex.build(vectors, tmp_path / "dense", settings={"model": "test"})


def _on_disk(index) -> dict:
    body = json.loads((index.directory / "manifest.json").read_text())
    body.pop("manifest_crc32")
    return body


def _forge(index, change) -> None:
    """Rewrite the live manifest as a buggy writer would: altered content, valid checksum."""
    body = _on_disk(index)
    change(body)
    (index.directory / "manifest.json").unlink()
    write_manifest(index.directory, body)


# -- records ------------------------------------------------------------------------------------


def test_impact_manifest_round_trip_is_the_json_on_disk(impact):
    record = impact.manifest
    assert isinstance(record, ImpactManifest)
    assert record.to_dict() == _on_disk(impact)  # same keys and values: byte-compatible
    again = ImpactManifest.from_dict(record.to_dict(), source="m.json")
    assert again == record
    assert record.search_layout == SearchLayoutRecord.from_dict(
        _on_disk(impact)["search_layout"], source="m.json"
    )
    assert record.search_layout.version == LAYOUT_VERSION
    assert record.files["vocab.json"] == FileRecord(
        "vocab.json",
        (impact.directory / "vocab.json").stat().st_size,
        record.files["vocab.json"].crc32,
    )
    assert impact.settings["model"] == "hand" and impact.max_impact == 7


V1_KEYS = [
    "build",
    "created_by",
    "files",
    "format",
    "format_version",
    "has_contents",
    "impact_dtype",
    "max_impact",
    "num_documents",
    "num_postings",
    "quantizer",
    "search_layout",
    "vocab_hash",
    "vocab_size",
]


def test_impact_manifest_keys_are_the_format_v2_keys(impact, tmp_path):
    assert IMPACT_FORMAT_VERSION == 2
    body = impact.manifest.to_dict()
    assert body["format_version"] == 2 and body["doc_ordered_postings"] is False
    assert sorted(body) == sorted(V1_KEYS + ["doc_ordered_postings"])
    # With the document-ordered postings kept: exactly the version 1 keys (older readers).
    batch = SparseBatch.from_dicts([{"a": 1}], ["a"])
    kept = ImpactIndex.build(
        batch, tmp_path / "kept", show_progress=False, doc_ordered_postings=True
    )
    assert kept.manifest.to_dict()["format_version"] == 1
    assert sorted(kept.manifest.to_dict()) == V1_KEYS
    assert ImpactManifest.from_dict(kept.manifest.to_dict(), source="m.json") == kept.manifest
    assert sorted(impact.manifest.search_layout.to_dict()) == [
        "num_segments",
        "num_windows",
        "term_dtype",
        "version",
        "window_bits",
    ]


def test_impact_manifest_without_search_layout_has_no_key(tmp_path):
    batch = SparseBatch.from_dicts([{"a": 1}, {"b": 2}], VOCAB)
    index = ImpactIndex.build(batch, tmp_path / "plain", show_progress=False, search_layout=False)
    assert index.manifest.search_layout is None and not index.has_search_layout
    assert "search_layout" not in index.manifest.to_dict() == _on_disk(index)


def test_dense_manifest_round_trip_is_the_json_on_disk(dense):
    record = dense.manifest
    assert isinstance(record, DenseManifest)
    assert record.to_dict() == _on_disk(dense)
    assert DenseManifest.from_dict(record.to_dict(), source="m.json") == record
    assert record.hnsw is None and record.dim == 4 and dense.settings["model"] == "test"


@pytest.mark.parametrize(
    "change, words",
    [
        (lambda b: b.pop("files"), ["'files' is missing"]),
        (lambda b: b.update(files=["vocab.json"]), ["'files'", "a list", "expected a JSON object"]),
        (
            lambda b: b["files"]["vocab.json"].update(size="12"),
            ["files['vocab.json']['size']", "'12' (a string)", "expected an integer"],
        ),
        (
            lambda b: b["files"]["vocab.json"].pop("crc32"),
            ["files['vocab.json']['crc32']", "missing"],
        ),
        (lambda b: b.update(num_documents="5"), ["'num_documents'", "a string"]),
        (lambda b: b.pop("vocab_hash"), ["'vocab_hash' is missing"]),
        (lambda b: b.update(quantizer=None), ["'quantizer'", "null"]),
        (lambda b: b["search_layout"].update(num_windows=1.5), ["search_layout['num_windows']"]),
    ],
)
def test_mangled_impact_manifest_is_a_clear_corrupt_error(impact, change, words):
    _forge(impact, change)
    with pytest.raises(IndexCorruptError) as caught:
        ImpactIndex.open(impact.directory.parent)
    message = str(caught.value)
    assert str(impact.directory / "manifest.json") in message
    for word in words:
        assert word in message, message


@pytest.mark.parametrize(
    "change, words",
    [
        (lambda b: b.pop("files"), ["'files' is missing"]),
        (lambda b: b["files"]["vectors.bin"].update(size="1"), ["files['vectors.bin']['size']"]),
        (lambda b: b.update(dim=0), ["'dim'", "expected an integer >= 1"]),
        (lambda b: b.update(hnsw="yes"), ["'hnsw'", "a string"]),
    ],
)
def test_mangled_dense_manifest_is_a_clear_corrupt_error(dense, change, words):
    _forge(dense, change)
    with pytest.raises(IndexCorruptError) as caught:
        DenseIndex.open(dense.directory.parent)
    for word in [str(dense.directory / "manifest.json"), *words]:
        assert word in str(caught.value), str(caught.value)


def test_unknown_search_layout_version_is_refused_naming_both(impact):
    _forge(impact, lambda b: b["search_layout"].update(version=LAYOUT_VERSION + 1))
    with pytest.raises(IndexFormatError) as caught:
        ImpactIndex.open(impact.directory.parent)
    message = str(caught.value)
    assert not isinstance(caught.value, IndexCorruptError)
    assert f"search layout version {LAYOUT_VERSION + 1}" in message
    assert f"reads version {LAYOUT_VERSION}" in message
    report = verify_index(impact.directory.parent)
    assert not report.ok and "search layout version" in report.problems[0]


def test_from_dict_checks_format_and_kind():
    with pytest.raises(IndexCorruptError, match="not a JSON object"):
        ImpactManifest.from_dict([], source="m.json")
    with pytest.raises(IndexFormatError, match="not 'sparse-ir-dense-index'"):
        DenseManifest.from_dict(
            {"format": "sparse-ir-impact-index", "format_version": 1}, source="m.json"
        )


# -- the shared base ----------------------------------------------------------------------------


def test_shared_facts_of_both_kinds(impact, dense):
    for index, count in ((impact, 5), (dense, 6)):
        assert index.num_documents == count == len(index.doc_ids)
        assert index.docno(index.doc_ids[-1]) == count - 1
        assert index.size_bytes() == sum(
            p.stat().st_size for p in index.directory.iterdir() if p.name != "manifest.json"
        )
        assert type(index).open(index.directory.parent, verify=True).manifest == index.manifest
    assert repr(impact) == (
        f"ImpactIndex({str(impact.directory)!r}, documents=5, postings=7, vocab=5)"
    )
    assert repr(dense) == f"DenseIndex({str(dense.directory)!r}, documents=6, dim=4, hnsw=False)"


# -- verify names -------------------------------------------------------------------------------


def test_check_index_is_a_deprecated_alias_of_verify_index(impact):
    import sparse_ir

    path = impact.directory.parent
    with pytest.warns(DeprecationWarning, match="verify_index"):
        old = check_index(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        new = verify_index(path)
    assert old == new and new.ok
    assert CheckReport is VerifyReport
    assert sparse_ir.verify_index is verify_index and sparse_ir.VerifyReport is VerifyReport


# -- publishing a plain directory ---------------------------------------------------------------


def test_replace_directory_swaps_a_whole_directory(tmp_path):
    output = tmp_path / "out"
    for content in ("old", "new"):
        finished = tmp_path / f".out.tmp-{content}"
        finished.mkdir()
        (finished / "file.txt").write_text(content)
        replace_directory(finished, output)
        assert (output / "file.txt").read_text() == content and not finished.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
