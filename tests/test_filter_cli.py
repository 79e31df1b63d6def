"""``--filter`` of ``sparse-ir search``, ``dense-search`` and ``hybrid-search``: a corpus whose
records carry metadata, indexed by the CLI, searched with a predicate."""

from __future__ import annotations

import json

import pytest

CORPUS = [
    ("d1", "tumor cells grow quickly in mice", {"year": 2018, "tenant": "a"}),
    ("d2", "tumor cells in blood", {"year": 2021, "tenant": "b"}),
    ("d3", "mice fed a fat diet developed tumor lesions", {"year": 2022, "tenant": "a"}),
    ("d4", "tumor risk of patients after treatment", {"year": 2020}),
    ("d5", "stem cells repair the damaged tissue", {"year": 2023, "tenant": "a"}),
    ("d6", "python data file", {}),
]


@pytest.fixture(scope="module")
def indexes(tmp_path_factory, tiny_bert_dir):
    from sparse_ir.cli import main

    root = tmp_path_factory.mktemp("filter-cli")
    corpus = root / "corpus.jsonl"
    corpus.write_text(
        "".join(
            json.dumps({"_id": i, "title": "", "text": t, "metadata": m}) + "\n"
            for i, t, m in CORPUS
        )
    )
    assert (
        main(["-q", "index", "--bm25", "--input", str(corpus), "--output", str(root / "bm25")]) == 0
    )
    command = ["-q", "dense-index", "--input", str(corpus), "--output", str(root / "dense")]
    assert main([*command, "--model", str(tiny_bert_dir)]) == 0
    return root


def _ids(out: str) -> list[str]:
    return [hit["doc_id"] for hit in json.loads(out)["hits"]]


def _allowed(predicate) -> set[str]:
    return {i for i, _, m in CORPUS if predicate(m)}


@pytest.mark.parametrize(
    "command, index",
    [(["search"], "bm25"), (["dense-search"], "dense")],
)
def test_search_filter_json_and_batch(indexes, capsys, command, index, tmp_path):
    from sparse_ir.cli import main

    base = [*command, "--index", str(indexes / index), "-k", "10"]
    assert main([*base, "--json", "tumor cells mice"]) == 0
    everything = _ids(capsys.readouterr().out)
    assert main([*base, "--json", "--filter", "year>=2021", "tumor cells mice"]) == 0
    filtered = _ids(capsys.readouterr().out)
    allowed = _allowed(lambda m: m.get("year", 0) >= 2021)
    assert filtered and set(filtered) <= allowed
    assert filtered == [d for d in everything if d in allowed]
    # A batch: every query's hits pass the filter.
    queries = tmp_path / "queries.tsv"
    queries.write_text("q1\ttumor cells\nq2\tmice diet\n")
    filter_text = "tenant=a AND 2018<=year<2023"
    assert main([*base, "--queries", str(queries), "--filter", filter_text]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    allowed = _allowed(lambda m: m.get("tenant") == "a" and 2018 <= m.get("year", 0) < 2023)
    assert {line["query_id"] for line in lines} == {"q1", "q2"}
    assert all(hit["doc_id"] in allowed for line in lines for hit in line["hits"])
    # The table output honours the filter too.
    assert main([*base, "--filter", "year=2020", "tumor"]) == 0
    table = capsys.readouterr().out
    assert "d4" in table and "d2" not in table


def test_hybrid_search_filter(indexes, capsys):
    from sparse_ir.cli import main

    base = ["hybrid-search", "--index", str(indexes / "bm25"), "--index", str(indexes / "dense")]
    assert main([*base, "--json", "--filter", "year<=2020", "tumor cells"]) == 0
    hits = _ids(capsys.readouterr().out)
    assert hits and set(hits) <= _allowed(lambda m: m.get("year", 9999) <= 2020)


@pytest.mark.parametrize(
    "filter_text, message",
    [
        ("year>>2020", "filter 'year>>2020': position 6: expected a value after '>'"),
        ("yeer>=2020", "filter field 'yeer' is not in the metadata"),
        ("tenant>1", "holds no numbers"),
    ],
)
def test_bad_filters_exit_1_with_the_reason(indexes, capsys, filter_text, message):
    from sparse_ir.cli import main

    for command in (["search"], ["dense-search"]):
        index = "bm25" if command == ["search"] else "dense"
        code = main([*command, "--index", str(indexes / index), "--filter", filter_text, "tumor"])
        assert code == 1
        assert message in capsys.readouterr().err


def test_filter_option_has_help_with_default(capsys):
    from sparse_ir.cli import main

    for command in ("search", "dense-search", "hybrid-search"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        out = " ".join(capsys.readouterr().out.split())
        assert "--filter PREDICATE" in out and "year>=2020" in out and "(default: none" in out
