"""``irds:<id>`` (ir_datasets) where a corpus, queries or qrels path is expected: a dataset
registered from local files (nothing is downloaded), read by the real ir_datasets."""

from __future__ import annotations

import json
import uuid

import pytest
from conftest import in_ci

try:
    import ir_datasets
except ImportError:  # pragma: no cover
    if in_ci():
        raise
    pytest.skip("ir_datasets is not installed", allow_module_level=True)

from sparse_ir.cli import main
from sparse_ir.datasets import dataset_file, is_dataset_ref


@pytest.fixture()
def dataset_id(tmp_path, monkeypatch):
    """A dataset of three documents, two queries and their qrels, from local TSV files."""
    from ir_datasets.datasets.base import Dataset
    from ir_datasets.formats import TrecQrels, TsvDocs, TsvQueries
    from ir_datasets.util import LocalDownload

    monkeypatch.setenv("SPARSE_IR_CACHE", str(tmp_path / "cache"))
    source = tmp_path / "source"
    source.mkdir()
    (source / "docs.tsv").write_text(
        "d1\tCoral reefs bleach when the ocean warms.\n"
        "d2\tProtein folding in yeast cells.\n"
        "d3 x\tWarming oceans and coral.\n"
    )
    (source / "queries.tsv").write_text("q1\tcoral ocean\nq2\tprotein folding\n")
    (source / "qrels.txt").write_text("q1 0 d1 1\nq2 0 d2 1\n")
    name = f"sparse-ir-test/{uuid.uuid4().hex[:8]}"
    ir_datasets.registry.register(
        name,
        Dataset(
            TsvDocs(LocalDownload(source / "docs.tsv")),
            TsvQueries(LocalDownload(source / "queries.tsv")),
            TrecQrels(LocalDownload(source / "qrels.txt"), {0: "no", 1: "yes"}),
        ),
    )
    return name


def test_dataset_files_are_written_once_in_our_formats(dataset_id):
    from sparse_ir.corpus import read_corpus, read_queries
    from sparse_ir.eval import read_qrels

    ref = f"irds:{dataset_id}"
    assert is_dataset_ref(ref) and not is_dataset_ref("corpus.jsonl")
    corpus = dataset_file(ref, "corpus")
    assert [d.id for d in read_corpus(corpus)] == ["d1", "d2", "d3 x"]
    assert [q.text for q in read_queries(dataset_file(ref, "queries"))] == [
        "coral ocean",
        "protein folding",
    ]
    assert read_qrels(dataset_file(ref, "qrels")) == {"q1": {"d1": 1}, "q2": {"d2": 1}}
    before = corpus.stat().st_mtime_ns
    assert dataset_file(ref, "corpus") == corpus and corpus.stat().st_mtime_ns == before


def test_cli_takes_irds_ids_for_input_queries_and_qrels(dataset_id, tmp_path, capsys):
    ref = f"irds:{dataset_id}"
    index = tmp_path / "bm25"
    assert main(["-q", "index", "--bm25", "--input", ref, "--output", str(index)]) == 0
    run = tmp_path / "run.jsonl"  # "d3 x" cannot be written to TREC
    args = ["search", "--index", str(index), "--queries", ref, "--output", str(run), "-q"]
    assert main(args) == 0
    capsys.readouterr()
    assert main(["evaluate", "--run", str(run), "--qrels", ref, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["judged"] == 2 and data["runs"][0]["queries"] == 2
    assert data["runs"][0]["scores"]["R@100"] == 1.0  # every relevant document retrieved


def test_unknown_id_and_missing_part_are_named(dataset_id, capsys):
    assert main(["evaluate", "--run", "x.trec", "--qrels", "irds:no/such/dataset"]) == 1
    assert "irds:no/such/dataset: unknown ir_datasets id" in capsys.readouterr().err
    from ir_datasets.datasets.base import Dataset

    name = f"{dataset_id}-empty"
    ir_datasets.registry.register(name, Dataset())
    with pytest.raises(ValueError, match="has no qrels"):
        dataset_file(f"irds:{name}", "qrels")
