"""``--json`` on the read commands (info, verify, inspect, evaluate): one JSON object each, with
the documented keys (docs/cli.md), parsed with json.loads; and the global flags after the
subcommand."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sparse_ir.cli import main

DOCS = [
    ("d1", "Global warming raises the extinction risk of species."),
    ("d2", "Protein folding in yeast cells."),
    ("d3", "Warming oceans and coral reefs."),
]


@pytest.fixture(scope="module")
def bm25_dir(tmp_path_factory):
    from sparse_ir.corpus import Document
    from sparse_ir.encoders.bm25 import build_bm25_index

    path = tmp_path_factory.mktemp("json") / "bm25"
    build_bm25_index([Document(i, "", t) for i, t in DOCS], path, show_progress=False)
    return path


@pytest.fixture(scope="module")
def dense_dir(tmp_path_factory):
    from sparse_ir.index.dense import DenseIndex

    path = tmp_path_factory.mktemp("json") / "dense"
    vectors = np.eye(3, 4, dtype=np.float32)
    DenseIndex.build(vectors, path, ids=["a", "b", "c"], show_progress=False)
    return path


def _json(capsys) -> dict:
    captured = capsys.readouterr()
    return json.loads(captured.out)


INFO_KEYS = {
    "schema",
    "path",
    "generation",
    "kind",
    "format",
    "format_version",
    "num_documents",
    "size_bytes",
    "settings",
    "manifest",
}


def test_info_json_impact_and_dense(bm25_dir, dense_dir, capsys):
    assert main(["info", "--index", str(bm25_dir), "--json"]) == 0
    data = _json(capsys)
    assert INFO_KEYS <= set(data) and data["schema"] == "sparse-ir.info/1"
    assert data["kind"] == "impact" and data["num_documents"] == 3
    assert data["size_bytes"] > 0 and "files" not in data["manifest"]
    assert data["settings"]["query_encoder"] == "bm25"

    assert main(["info", str(dense_dir), "--json"]) == 0
    data = _json(capsys)
    assert data["kind"] == "dense" and data["num_documents"] == 3
    assert data["manifest"]["dim"] == 4

    # The text form shows the same facts.
    assert main(["info", str(bm25_dir)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("generation: ") and '"num_documents": 3' in out


def test_info_index_given_twice_differently_is_refused(bm25_dir, dense_dir, capsys):
    assert main(["info", str(bm25_dir), "--index", str(dense_dir)]) == 1
    assert "two index directories" in capsys.readouterr().err
    assert main(["info"]) == 1
    assert "no index given" in capsys.readouterr().err


def test_verify_json_ok_and_damaged(bm25_dir, tmp_path, capsys):
    import shutil

    assert main(["verify", str(bm25_dir), "--json"]) == 0
    data = _json(capsys)
    assert data["schema"] == "sparse-ir.verify/1" and data["ok"] is True
    assert data["problems"] == [] and data["files_checked"] > 0

    damaged = tmp_path / "damaged"
    shutil.copytree(bm25_dir, damaged)
    generation = next(p for p in damaged.iterdir() if p.is_dir())
    victim = max(
        (p for p in generation.iterdir() if p.suffix == ".bin"), key=lambda p: p.stat().st_size
    )
    raw = bytearray(victim.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    victim.write_bytes(bytes(raw))
    assert main(["verify", "--index", str(damaged), "--json"]) == 1
    data = _json(capsys)
    assert data["ok"] is False and data["problems"]
    assert data["generation"].endswith(generation.name)


def test_inspect_json(tiny_bert_dir, capsys):
    args = ["inspect", "--model", str(tiny_bert_dir), "cancer", "cells", "--top", "5"]
    assert main([*args, "--json"]) == 0
    data = _json(capsys)
    assert data["schema"] == "sparse-ir.inspect/1" and data["encoded_as"] == "query"
    assert data["text"] == "cancer cells" and len(data["terms"]) == 5
    weights = [t["weight"] for t in data["terms"]]
    assert weights == sorted(weights, reverse=True)
    assert {type(t["expansion"]) for t in data["terms"]} == {bool}
    assert main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"{data['active_terms']} active terms")
    assert [line.split()[-2] for line in lines[1:]] == [t["token"] for t in data["terms"]]


def test_evaluate_json_single_run_has_the_same_shape(tmp_path, capsys):
    run = tmp_path / "run.trec"
    run.write_text("q1 Q0 d1 1 9 t\nq1 Q0 d2 2 3 t\n")
    qrels = tmp_path / "qrels.tsv"
    qrels.write_text("query-id\tcorpus-id\tscore\nq1\td2\t1\n")
    assert main(["evaluate", "--run", str(run), "--qrels", str(qrels), "--json"]) == 0
    data = _json(capsys)
    assert data["schema"] == "sparse-ir.evaluate/1" and data["judged"] == 1
    assert [r["run"] for r in data["runs"]] == [str(run)]
    assert data["runs"][0]["scores"]["MRR@10"] == 0.5 and "vs_first" not in data["runs"][0]


def test_global_flags_after_the_subcommand(bm25_dir, capsys):
    assert main(["info", str(bm25_dir), "--json", "-q"]) == 0
    assert _json(capsys)["num_documents"] == 3
    assert main(["verify", str(bm25_dir), "--quiet", "-vv"]) == 0
    assert "OK" in capsys.readouterr().out
    assert main(["search", "--index", str(bm25_dir), "coral", "--json", "-q"]) == 0
    assert _json(capsys)["hits"][0]["doc_id"] == "d3"
    # Given on both sides they add up (-v before, -v after: debug).
    import argparse

    from sparse_ir.cli import build_parser

    args = build_parser().parse_args(["-v", "info", str(bm25_dir), "-v"])
    assert isinstance(args, argparse.Namespace) and args.verbose == 2
    args = build_parser().parse_args(["info", str(bm25_dir)])
    assert args.verbose == 0 and args.quiet is False


def test_version_and_light_startup(bm25_dir, tmp_path):
    """``info`` imports neither torch nor the other commands' modules; ``--version`` still
    prints the installed version."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "sparse_ir", "info", str(bm25_dir), "--json"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert json.loads(done.stdout)["num_documents"] == 3
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines()}
    for heavy in ("torch", "transformers", "sparse_ir.training", "sparse_ir.fusion"):
        assert heavy not in imported, heavy
    done = subprocess.run(
        [sys.executable, "-m", "sparse_ir", "--version"], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0 and done.stdout.startswith("sparse-ir ")


def test_models_json(capsys):
    assert main(["models", "--json"]) == 0
    data = _json(capsys)
    assert data["schema"] == "sparse-ir.models/1"
    names = {m["name"] for m in data["models"]}
    assert "splade-tiny" in names
    assert all(
        set(m) == {"name", "kind", "description", "distribution", "path"} for m in data["models"]
    )
    assert main(["models"]) == 0
    assert "splade-tiny" in capsys.readouterr().out


def test_lucene_info_json(capsys):
    from conftest import in_ci

    status = main(["lucene", "info", "--json"])
    if status == 4 and not in_ci():
        pytest.skip("Java or the Anserini jar is not installed (extra lucene)")
    assert status == 0
    data = _json(capsys)
    assert data["schema"] == "sparse-ir.lucene-info/1"
    assert data["anserini_jar"].endswith(".jar") and data["java_version"]
