"""OpenSearch / Elasticsearch export: mapping, bulk NDJSON, token map and query bodies checked
against the engines' documented formats and golden files (no server here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sparse_ir.export.opensearch import (
    MAX_ID_BYTES,
    export_search_engine,
    feature_names,
    index_mapping,
    query_body,
    read_token_map,
)
from sparse_ir.index.impact_index import ImpactIndex
from sparse_ir.quantize import Quantizer
from sparse_ir.sparse_batch import SparseBatch

GOLDEN = Path(__file__).parent / "data" / "opensearch"
VOCAB = [".", "cancer", "a.b", "tumor", "##s"]
DOCS = {
    "d1": {"cancer": 3, "tumor": 1},
    "Extinction risk from global warming:170": {".": 2, "a.b": 5, "##s": 1},
    "d3": {"tumor": 7},
}


@pytest.fixture
def index(tmp_path):
    batch = SparseBatch.from_dicts(list(DOCS.values()), VOCAB, ids=list(DOCS))
    return ImpactIndex.build(
        iter([batch]), tmp_path / "index", quantizer=Quantizer(scale=1), show_progress=False
    )


def _pairs(directory: Path):
    """Every (action, source) pair of the bulk files, checking the NDJSON shape."""
    files = sorted(directory.glob("bulk-*.ndjson"))
    assert files
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert text.endswith("\n")  # the bulk API needs the final newline
        lines = text.split("\n")[:-1]
        assert len(lines) % 2 == 0
        for action_line, source_line in zip(lines[::2], lines[1::2]):
            action, source = json.loads(action_line), json.loads(source_line)
            assert list(action) == ["index"] and set(action["index"]) == {"_index", "_id"}
            assert action["index"]["_id"] == source["id"]
            yield action, source


@pytest.mark.parametrize("engine", ["opensearch", "elasticsearch"])
def test_export_matches_golden_files(index, tmp_path, engine):
    out = tmp_path / engine
    report = export_search_engine(
        index, out, engine=engine, index_name="scifact", show_progress=False
    )
    assert report.documents == 3 and report.exact and report.renamed_tokens == 2
    for name in ("mapping.json", "token_map.json", "bulk-00000.ndjson"):
        golden = (GOLDEN / engine / name).read_text(encoding="utf-8")
        assert (out / name).read_text(encoding="utf-8") == golden, name
    token_map = read_token_map(out)
    back = {name: token for token, name in token_map.items()}
    total = 0
    for _, source in _pairs(out):
        features = source["vector"]
        assert all("." not in name and name for name in features)
        assert all(isinstance(v, int) and v > 0 for v in features.values())
        original = {back.get(name, name): value for name, value in features.items()}
        assert original == DOCS[source["id"]]
        total += sum(features.values())
    assert total == report.impact_sum == sum(sum(d.values()) for d in DOCS.values())
    settings = json.loads((out / "export.json").read_text())
    assert settings["impact_sum"] == total and settings["engine"] == engine


def test_mapping_follows_the_documented_types():
    assert index_mapping("opensearch")["mappings"]["properties"]["vector"] == {
        "type": "rank_features"
    }
    assert index_mapping("elasticsearch", field="v")["mappings"]["properties"]["v"] == {
        "type": "sparse_vector"
    }
    with pytest.raises(ValueError, match="engine must be one of"):
        index_mapping("solr")


def test_query_bodies_and_dot_product():
    names, token_map = feature_names(VOCAB)
    assert token_map == {".": "__t0", "a.b": "__t2"} and names[1] == "cancer"
    weights = {"cancer": 2, ".": 4, "tumor": 0}
    body = query_body("opensearch", weights, token_map=token_map, k=5)
    assert body == {
        "size": 5,
        "query": {
            "bool": {
                "should": [
                    {"rank_feature": {"field": "vector.cancer", "linear": {}, "boost": 2}},
                    {"rank_feature": {"field": "vector.__t0", "linear": {}, "boost": 4}},
                ]
            }
        },
    }
    assert query_body("opensearch", weights, token_map=token_map, neural_sparse=True) == {
        "size": 10,
        "query": {"neural_sparse": {"vector": {"query_tokens": {"cancer": 2, "__t0": 4}}}},
    }
    assert query_body("elasticsearch", weights, token_map=token_map) == {
        "size": 10,
        "query": {"sparse_vector": {"field": "vector", "query_vector": {"cancer": 2, "__t0": 4}}},
    }
    # linear rank_feature: each clause scores boost x stored value; the bool adds them.
    document = {"cancer": 3, "__t0": 2}
    clauses = body["query"]["bool"]["should"]
    score = sum(
        c["rank_feature"]["boost"] * document.get(c["rank_feature"]["field"][7:], 0)
        for c in clauses
    )
    assert score == 2 * 3 + 4 * 2


def test_long_ids_are_refused(tmp_path):
    long_id = "x" * (MAX_ID_BYTES + 1)
    batch = SparseBatch.from_dicts([{"cancer": 1}], VOCAB, ids=[long_id])
    index = ImpactIndex.build(
        iter([batch]), tmp_path / "i", quantizer=Quantizer(scale=1), show_progress=False
    )
    from sparse_ir.errors import InputError

    with pytest.raises(InputError, match="limits _id to 512"):
        export_search_engine(index, tmp_path / "out", engine="opensearch", show_progress=False)
    assert not (tmp_path / "out").exists()


def test_cli_export_opensearch(index, tmp_path):
    from sparse_ir.cli import main

    queries = SparseBatch.from_dicts([{"cancer": 2, "a.b": 1}], VOCAB, ids=["q1"])
    queries.save(tmp_path / "q.npz")
    out = tmp_path / "os"
    assert (
        main(
            [
                "-q",
                "export",
                "opensearch",
                "--index",
                str(tmp_path / "index"),
                "--output",
                str(out),
                "--query-vectors",
                str(tmp_path / "q.npz"),
                "--k",
                "3",
            ]
        )
        == 0
    )
    line = json.loads((out / "queries.jsonl").read_text())
    assert line["id"] == "q1" and line["body"]["size"] == 3
    fields = [c["rank_feature"]["field"] for c in line["body"]["query"]["bool"]["should"]]
    assert sorted(fields) == ["vector.__t2", "vector.cancer"]
