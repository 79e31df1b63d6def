"""``sparse-ir add`` / ``delete`` / ``merge`` / ``info`` on impact indexes and hybrid pairs."""

from __future__ import annotations

import json

import pytest

from sparse_ir.cli import main
from sparse_ir.hybrid import pair_stamp
from sparse_ir.index.dense import DenseIndex
from sparse_ir.index.impact_index import ImpactIndex

FIRST = [
    {"_id": "c1", "title": "Cancer", "text": "tumors grow when cells divide without control"},
    {"_id": "c2", "title": "Heart", "text": "the heart pumps blood through the arteries"},
]
MORE = [
    {"_id": "c3", "title": "Brain", "text": "neurons fire electrical signals in the brain"},
    {"_id": "c4", "title": "Bones", "text": "calcium makes bones strong"},
]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.slow
def test_add_delete_merge_info_with_splade_tiny(tmp_path, capsys):
    index = tmp_path / "ix"
    first, more = write_jsonl(tmp_path / "a.jsonl", FIRST), write_jsonl(tmp_path / "b.jsonl", MORE)
    assert main(["index", "--input", str(first), "--output", str(index)]) == 0
    assert main(["add", "--index", str(index), "--input", str(more)]) == 0
    assert main(["add", "--index", str(index), "--input", str(more)]) == 1
    assert "already in the index" in capsys.readouterr().err
    assert main(["add", "--index", str(index), "--input", str(more), "--upsert"]) == 0
    ids = tmp_path / "ids.txt"
    ids.write_text("c2\nnope\n")
    assert main(["delete", "--index", str(index), "--ids", str(ids)]) == 0
    assert "deleted 1 documents (1 ids not in the index)" in capsys.readouterr().out
    assert main(["info", str(index)]) == 0
    out = capsys.readouterr().out
    assert '"live"' in out and '"deleted": ' in out
    assert main(["search", "--index", str(index), "neurons", "brain"]) == 0
    assert "1. c3" in capsys.readouterr().out
    assert main(["merge", "--index", str(index), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["segments"] == 1
    opened = ImpactIndex.open(index)
    assert len(opened.segments) == 1 and opened.num_documents == 3
    assert main(["verify", str(index)]) == 0
    # The merged index equals a build of the same documents, in the same order.
    rows = [FIRST[0], *MORE]
    scratch = tmp_path / "scratch"
    assert main(["index", "--input", str(write_jsonl(tmp_path / "c.jsonl", rows)),
                 "--output", str(scratch)]) == 0  # fmt: skip
    query = {"brain": 1.0, "heart": 1.0, "cancer": 1.0, "bones": 1.0}
    assert opened.search(query, 10) == ImpactIndex.open(scratch).search(query, 10)


@pytest.mark.slow
def test_add_to_a_hybrid_pair_updates_both(tmp_path, capsys):
    pytest.importorskip("sentence_transformers", reason="dense encoder")
    sparse, dense = tmp_path / "sparse", tmp_path / "dense"
    first, more = write_jsonl(tmp_path / "a.jsonl", FIRST), write_jsonl(tmp_path / "b.jsonl", MORE)
    assert main(["index", "--input", str(first), "--output", str(sparse)]) == 0
    if main(["dense-index", "--input", str(first), "--output", str(dense)]) != 0:
        pytest.skip("no dense model available offline")
    command = ["add", "--index", str(sparse), "--dense-index", str(dense), "--input", str(more)]
    assert main(command) == 0
    assert ImpactIndex.open(sparse).num_documents == 4
    assert DenseIndex.open(dense).num_documents == 4
    # Both commits carry the same stamp: the pair was changed together.
    stamp = pair_stamp(ImpactIndex.open(sparse))
    assert stamp and stamp == pair_stamp(DenseIndex.open(dense))
    assert main(["delete", "--index", str(sparse), "--dense-index", str(dense), "--ids", "c1"]) == 0
    assert DenseIndex.open(dense).num_documents == 3
    assert main(["hybrid-search", "--sparse-index", str(sparse), "--dense-index", str(dense),
                 "brain"]) == 0  # fmt: skip


@pytest.mark.slow
def test_add_stores_metadata_and_search_filters_on_it(tmp_path, capsys):
    # A record's 'metadata' object is stored at add time as `sparse-ir index` stores it; a
    # build without metadata (the first segment) holds no field, so no condition matches it.
    index = tmp_path / "ix"
    first = write_jsonl(tmp_path / "a.jsonl", FIRST)
    more = write_jsonl(
        tmp_path / "b.jsonl",
        [{**MORE[0], "metadata": {"year": 2021}}, {**MORE[1], "metadata": {"year": 2015}}],
    )
    assert main(["index", "--input", str(first), "--output", str(index)]) == 0
    assert main(["add", "--index", str(index), "--input", str(more)]) == 0
    capsys.readouterr()
    query = ["brain", "bones", "heart", "cancer", "calcium", "neurons"]
    assert main(["search", "--index", str(index), "--filter", "year>=2020", *query]) == 0
    out = capsys.readouterr().out
    assert "c3" in out and "c4" not in out and "c1" not in out and "c2" not in out
    opened = ImpactIndex.open(index)
    assert opened.metadata(opened.docno("c4")) == {"year": 2015}
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"_id": "c9", "text": "x", "metadata": {"y": []}}])
    assert main(["add", "--index", str(index), "--input", str(bad)]) == 1
    assert "field 'y' is a list" in capsys.readouterr().err
    assert main(["search", "--index", str(index), "--filter", "year<2020", *query]) == 0
    out = capsys.readouterr().out
    assert "c4" in out and "c3" not in out
