"""The sparse-ir command, end to end on small inputs (tiny random BERT; splade-tiny when slow)."""

import json

import pytest

from sparse_ir.cli import main
from sparse_ir.index.impact_index import ImpactIndex
from sparse_ir.sparse_batch import SparseBatch

CORPUS = [
    {"_id": "c1", "title": "Cancer", "text": "tumor cells in patients with cancer"},
    {"_id": "c2", "title": "Brain", "text": "the human brain study results"},
    {"_id": "c3", "title": "", "text": ""},
    {"_id": "c4", "title": "Python", "text": "python file read error value"},
]


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture()
def corpus(tmp_path):
    return write_jsonl(tmp_path / "corpus.jsonl", CORPUS)


def test_encode_then_index_then_search_then_evaluate(tmp_path, corpus, tiny_bert_dir, capsys):
    model = str(tiny_bert_dir)
    # c3 is an empty document: refused unless asked for (see docs/reliability.md).
    assert (
        main(
            [
                "encode",
                "--model",
                model,
                "--input",
                str(corpus),
                "--output",
                str(tmp_path / "vectors"),
                "--shard-size",
                "3",
            ]
        )
        == 1
    )
    assert f"{corpus}:3: empty document" in capsys.readouterr().err
    assert (
        main(
            [
                "encode",
                "--model",
                model,
                "--input",
                str(corpus),
                "--output",
                str(tmp_path / "vectors"),
                "--shard-size",
                "3",
                "--allow-empty",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "2 shard(s)" in out and "1 empty text(s)" in out
    shards = sorted((tmp_path / "vectors").glob("shard-*.npz"))
    assert [len(SparseBatch.load(p)) for p in shards] == [3, 1]
    # A second run keeps the shards it already wrote.
    assert (
        main(
            [
                "encode",
                "--model",
                model,
                "--input",
                str(corpus),
                "--output",
                str(tmp_path / "vectors"),
                "--shard-size",
                "3",
                "--allow-empty",
            ]
        )
        == 0
    )
    assert "0 written, 2 kept" in capsys.readouterr().out

    assert (
        main(
            [
                "index",
                "--vectors",
                str(tmp_path / "vectors"),
                "--model",
                model,
                "--output",
                str(tmp_path / "ix1"),
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "index",
                "--input",
                str(corpus),
                "--model",
                model,
                "--output",
                str(tmp_path / "ix2"),
                "--allow-empty",
            ]
        )
        == 0
    )
    capsys.readouterr()
    first, second = ImpactIndex.open(tmp_path / "ix1"), ImpactIndex.open(tmp_path / "ix2")
    assert first.doc_ids == second.doc_ids == ["c1", "c2", "c3", "c4"]
    assert first.num_postings == second.num_postings
    assert second.document(0) == ("Cancer", "tumor cells in patients with cancer")

    assert main(["search", "--index", str(tmp_path / "ix2"), "cancer", "tumor", "-k", "2"]) == 0
    out = capsys.readouterr().out
    assert "query: cancer tumor" in out and "1. c" in out and "score" in out
    for mode in (
        ["--mode", "exhaustive"],
        ["--mode", "pruned"],
        ["--mode", "approximate", "--cut-ratio", "2", "--bound-weight", "0.5"],
        ["--mode", "approximate", "--term-share", "0.9", "--max-verified", "50"],
        ["--mode", "approximate", "--layer-postings", "1", "--max-verified", "50"],
    ):
        assert (
            main(["search", "--index", str(tmp_path / "ix2"), "cancer", "tumor", "-k", "2", *mode])
            == 0
        )
        assert capsys.readouterr().out == out
    assert (
        main(
            [
                "search",
                "--index",
                str(tmp_path / "ix2"),
                "x",
                "--mode",
                "pruned",
                "--cut-ratio",
                "2",
            ]
        )
        == 1
    )
    assert "apply to --mode approximate" in capsys.readouterr().err
    assert (
        main(
            [
                "search",
                "--index",
                str(tmp_path / "ix2"),
                "x",
                "--mode",
                "approximate",
                "--bound-weight",
                "2",
            ]
        )
        == 1
    )
    assert "bound_weight must be in" in capsys.readouterr().err
    for bad, message in (
        (["--term-share", "0"], "term_share must be in"),
        (["--max-verified", "0"], "max_verified must be None"),
        (["--layer-postings", "100"], "layer_postings needs max_verified"),
        (["--layer-postings", "0", "--max-verified", "5"], "layer_postings must be None"),
    ):
        command = ["search", "--index", str(tmp_path / "ix2"), "x", "--mode", "approximate"]
        assert main([*command, *bad]) == 1
        assert message in capsys.readouterr().err

    assert main(["info", str(tmp_path / "ix2")]) == 0
    assert '"num_documents": 4' in capsys.readouterr().out
    assert main(["verify", str(tmp_path / "ix2")]) == 0
    assert "OK" in capsys.readouterr().out

    run = tmp_path / "run.trec"
    run.write_text("q1 Q0 c1 1 9 t\nq1 Q0 c2 2 3 t\n")
    qrels = tmp_path / "qrels.tsv"
    qrels.write_text("query-id\tcorpus-id\tscore\nq1\tc2\t1\n")
    assert main(["evaluate", "--run", str(run), "--qrels", str(qrels)]) == 0
    out = capsys.readouterr().out
    assert "MRR@10     0.5000" in out and "R@100      1.0000" in out


def test_inspect_marks_expansion_terms(tiny_bert_dir, capsys):
    assert main(["inspect", "--model", str(tiny_bert_dir), "cancer", "cells", "--top", "5"]) == 0
    out = capsys.readouterr().out
    assert "active terms" in out and len(out.splitlines()) == 6


def test_models_lists_bundled_models(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "splade-tiny" in out and "minilm" in out


@pytest.mark.parametrize(
    "raw, message",
    [
        (b'{"_id": "x", "text": "ok"}\nnot json\n', "corpus.jsonl:2: not valid JSON"),
        (b'{"text": "no id"}\n', "corpus.jsonl:1: missing id"),
        (b'{"_id": "x"}\n', "corpus.jsonl:1: missing text"),
        (
            b'{"_id": "x", "text": "a"}\n{"_id": "x", "text": "b"}\n',
            "corpus.jsonl:2: duplicate id: 'x'",
        ),
        (b'{"_id": "x", "text": "caf\xe9"}\n', "corpus.jsonl:1: invalid UTF-8: byte 0xe9"),
        (
            b'{"_id": "x", "text": "a", "text": "b"}\n',
            "corpus.jsonl:1: invalid JSON: duplicate key",
        ),
        (b'{"_id": "x", "text": "a"}\n{"_id": "y", "te', "corpus.jsonl:2: truncated last line"),
        (b"[1, 2]\n", "corpus.jsonl:1: expected a JSON object"),
    ],
)
def test_bad_corpus_lines_name_file_line_and_reason(tmp_path, tiny_bert_dir, capsys, raw, message):
    path = tmp_path / "corpus.jsonl"
    path.write_bytes(raw)
    status = main(
        [
            "encode",
            "--model",
            str(tiny_bert_dir),
            "--input",
            str(path),
            "--output",
            str(tmp_path / "out"),
        ]
    )
    assert status == 1
    assert message in capsys.readouterr().err


def test_skip_invalid_counts_and_reports(tmp_path, tiny_bert_dir, capsys):
    path = tmp_path / "corpus.jsonl"
    path.write_bytes(
        b'{"_id": "a", "text": "cancer"}\nnot json\n{"text": "x"}\n'
        b'{"_id": "a", "text": "again"}\n{"_id": "b", "text": "brain"}\n'
    )
    assert (
        main(
            [
                "index",
                "--model",
                str(tiny_bert_dir),
                "--input",
                str(path),
                "--output",
                str(tmp_path / "ix"),
                "--skip-invalid",
            ]
        )
        == 0
    )
    err = capsys.readouterr().err
    assert "skipped 3 invalid record(s)" in err
    assert ImpactIndex.open(tmp_path / "ix").doc_ids == ["a", "b"]


def test_errors_for_missing_files(tmp_path, capsys):
    assert main(["search", "--index", str(tmp_path / "nope"), "x"]) == 1
    assert "no index at" in capsys.readouterr().err
    assert main(["evaluate", "--run", str(tmp_path / "r"), "--qrels", str(tmp_path / "q")]) == 1


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "encode" in capsys.readouterr().out


@pytest.mark.slow
def test_index_and_search_with_splade_tiny(tmp_path, corpus, capsys):
    assert (
        main(["index", "--input", str(corpus), "--output", str(tmp_path / "ix"), "--allow-empty"])
        == 0
    )
    assert main(["search", "--index", str(tmp_path / "ix"), "what", "causes", "tumors"]) == 0
    out = capsys.readouterr().out
    assert "1. c1" in out  # the cancer document ranks first
    assert "+" in out  # expansion terms are shown


def test_demo_on_the_stdlib_corpus_builds_then_reuses(tmp_path, capsys):
    """The README's main job on a machine without SciFact: stdlib docstrings, splade-tiny."""
    from sparse_ir.cli.demo import STDLIB_QUERIES
    from sparse_ir.default_corpus import stdlib_docstrings

    documents = stdlib_docstrings()
    assert len(documents) > 1000
    assert len({d.id for d in documents}) == len(documents)
    assert all(d.text.strip() for d in documents)

    output = tmp_path / "demo"
    args = ["demo", "--corpus", "stdlib", "--max-docs", "150", "--output", str(output)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "corpus: Python standard library docstrings, 150 documents" in out
    assert f"built {output}: 150 documents" in out
    for query in STDLIB_QUERIES:
        assert query in out
    assert "1. " in out and "score " in out  # ranked hits with their scores
    assert ImpactIndex.open(output).num_documents == 150

    assert main(args) == 0
    assert f"reusing {output}" in capsys.readouterr().out
