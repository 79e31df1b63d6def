"""docs/cli.md's shell session, run exactly as written (its ``sparse-ir`` lines, in order) on a
slice of SciFact: sparse, dense and hybrid runs, two commands each, then the significance
table."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "cli.md"
QUERIES = 40
OTHERS = 80


def session_commands(doc: Path = DOC) -> list[list[str]]:
    """The argv of each ``sparse-ir`` line of the block after the cli-session marker."""
    text = doc.read_text(encoding="utf-8")
    block = re.search(r"<!-- cli-session:.*?-->\s*```bash\n(.*?)```", text, re.S)
    assert block, f"{doc}: no cli-session block"
    joined = block.group(1).replace("\\\n", " ")
    commands = []
    for line in joined.splitlines():
        words = shlex.split(line, comments=True)
        if words:
            assert words[0] == "sparse-ir", line
            commands.append(words[1:])
    return commands


def make_slice(scifact: Path, out: Path) -> None:
    """SciFact in BEIR layout, cut to QUERIES judged test queries, their relevant documents and
    OTHERS further documents."""
    lines = (scifact / "qrels" / "test.tsv").read_text().splitlines()
    qrels = [line.split("\t") for line in lines[1:]]
    chosen = list(dict.fromkeys(q for q, _, _ in qrels))[:QUERIES]
    kept = [row for row in qrels if row[0] in chosen]
    relevant = {d for _, d, _ in kept}
    (out / "qrels").mkdir(parents=True)
    (out / "qrels" / "test.tsv").write_text(
        "\n".join([lines[0], *("\t".join(row) for row in kept)]) + "\n"
    )
    docs, others = [], 0
    for line in (scifact / "corpus.jsonl").read_text(encoding="utf-8").splitlines():
        doc_id = json.loads(line)["_id"]
        if doc_id in relevant or others < OTHERS:
            others += doc_id not in relevant
            docs.append(line)
    (out / "corpus.jsonl").write_text("\n".join(docs) + "\n", encoding="utf-8")
    queries = [
        line
        for line in (scifact / "queries.jsonl").read_text(encoding="utf-8").splitlines()
        if json.loads(line)["_id"] in chosen
    ]
    assert len(queries) == QUERIES
    (out / "queries.jsonl").write_text("\n".join(queries) + "\n", encoding="utf-8")


def test_session_has_two_commands_per_kind_of_run():
    commands = [argv[0] for argv in session_commands()]
    assert commands == [
        "index",
        "search",
        "dense-index",
        "dense-search",
        "hybrid-search",
        "evaluate",
    ]


@pytest.mark.slow
def test_docs_cli_session_runs_as_written(scifact_dir, tmp_path, monkeypatch, capsys):
    from sparse_ir.cli import main

    make_slice(scifact_dir, tmp_path / "scifact")
    monkeypatch.chdir(tmp_path)
    for argv in session_commands():
        capsys.readouterr()
        assert main(argv) == 0, argv
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith(f"{QUERIES} judged queries; p: paired two-sided t-test")
    rows = {line.split()[0]: line for line in table[2:]}
    assert list(rows) == ["sparse.trec", "dense.trec", "hybrid.trec"]
    assert "(p=" not in rows["sparse.trec"] and "(p=" in rows["hybrid.trec"]
    for run in ("sparse.trec", "dense.trec", "hybrid.trec"):
        assert len({line.split()[0] for line in (tmp_path / run).read_text().splitlines()}) == (
            QUERIES
        )
    print("\n".join(table))  # the figures docs/cli.md quotes (pytest -s shows them)
