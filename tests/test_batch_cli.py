"""``sparse-ir search --queries FILE --output run.trec|run.jsonl`` and ``--json``."""

from __future__ import annotations

import json

import pytest

WIKI = "Extinction risk from global warming:170"


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory):
    from sparse_ir.corpus import Document
    from sparse_ir.encoders.splade import SpladeEncoder
    from sparse_ir.pipeline import index_corpus

    path = tmp_path_factory.mktemp("batch") / "index"
    documents = [
        Document(WIKI, "", "Global warming raises the extinction risk of species."),
        Document("d2", "", "Protein folding in yeast cells."),
        Document("d3", "", "Warming oceans and coral reefs."),
    ]
    index_corpus(SpladeEncoder.from_pretrained("splade-tiny"), documents, path, show_progress=False)
    return path


@pytest.mark.slow
def test_search_queries_to_trec_jsonl_and_json(index_dir, tmp_path, capsys):
    from sparse_ir.cli import main

    queries = tmp_path / "queries.tsv"
    queries.write_text("q1\tyeast protein folding\nq2\textinction risk\n")
    assert (
        main(
            [
                "-q",
                "search",
                "--index",
                str(index_dir),
                "--queries",
                str(queries),
                "--output",
                str(tmp_path / "run.jsonl"),
                "-k",
                "2",
            ]
        )
        == 0
    )
    records = [json.loads(line) for line in (tmp_path / "run.jsonl").read_text().splitlines()]
    assert [r["query_id"] for r in records] == ["q1", "q2"]
    assert records[0]["hits"][0] == {
        "rank": 1,
        "doc_id": "d2",
        "score": records[0]["hits"][0]["score"],
    }
    assert records[1]["hits"][0]["doc_id"] == WIKI
    capsys.readouterr()
    assert (
        main(["-q", "search", "--index", str(index_dir), "--json", "-k", "1", "extinction", "risk"])
        == 0
    )
    printed = json.loads(capsys.readouterr().out)
    assert printed["query"] == "extinction risk" and printed["hits"][0]["doc_id"] == WIKI
    # An id with spaces: TREC refuses it by name, --id-map escapes and records it.
    run = tmp_path / "run.trec"
    assert (
        main(
            [
                "-q",
                "search",
                "--index",
                str(index_dir),
                "--queries",
                str(queries),
                "--output",
                str(run),
                "-k",
                "2",
            ]
        )
        != 0
    )
    assert f"id {WIKI!r} contains whitespace" in capsys.readouterr().err
    assert (
        main(
            [
                "-q",
                "search",
                "--index",
                str(index_dir),
                "--queries",
                str(queries),
                "--output",
                str(run),
                "-k",
                "2",
                "--id-map",
                str(tmp_path / "ids.json"),
            ]
        )
        == 0
    )
    escaped = WIKI.replace(" ", "%20")
    assert json.loads((tmp_path / "ids.json").read_text()) == {escaped: WIKI}
    lines = run.read_text().splitlines()
    assert lines[0].startswith("q1 Q0 d2 1 ") and f"q2 Q0 {escaped} 1 " in run.read_text()


def test_evaluate_compares_runs_with_a_paired_test(tmp_path, capsys):
    from sparse_ir.cli import main
    from sparse_ir.results import Hit, Run

    qrels = tmp_path / "qrels.tsv"
    qrels.write_text("query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t1\n" for i in range(6)))
    good = Run({f"q{i}": [Hit(f"d{i}", 2), Hit("x", 1)] for i in range(6)}, name="good")
    bad = Run(
        {f"q{i}": [Hit("x", 2), Hit(f"d{i}", 1)] if i % 3 else [Hit(f"d{i}", 2)] for i in range(6)},
        name="bad",
    )
    good.write_trec(tmp_path / "good.trec")
    with open(tmp_path / "bad.jsonl", "w") as handle:
        for qid, hits in bad.items():
            handle.write(
                json.dumps(
                    {
                        "query_id": qid,
                        "hits": [{"doc_id": h.doc_id, "score": h.score} for h in hits],
                    }
                )
                + "\n"
            )
    capsys.readouterr()
    assert (
        main(
            [
                "-q",
                "evaluate",
                "--qrels",
                str(qrels),
                "--run",
                str(tmp_path / "good.trec"),
                "--run",
                str(tmp_path / "bad.jsonl"),
                "--metric",
                "nDCG@10",
                "--json",
            ]
        )
        == 0
    )
    data = json.loads(capsys.readouterr().out)
    assert data["schema"] == "sparse-ir.evaluate/1" and data["metrics"] == ["nDCG@10"]
    first, second = data["runs"]
    assert first["scores"]["nDCG@10"] == 1.0 and "vs_first" not in first
    assert second["scores"]["nDCG@10"] < 1.0
    test = second["vs_first"]["nDCG@10"]
    assert test["difference"] < 0 and 0 < test["p_value"] < 0.05
    assert (
        main(
            [
                "-q",
                "evaluate",
                "--qrels",
                str(qrels),
                "--run",
                str(tmp_path / "good.trec"),
                "--run",
                str(tmp_path / "bad.jsonl"),
            ]
        )
        == 0
    )
    table = capsys.readouterr().out
    assert "paired two-sided t-test" in table and "(p=0.0" in table
