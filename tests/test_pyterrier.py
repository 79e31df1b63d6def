"""sparse_ir.pyterrier with PyTerrier really installed: retrieval and encoding transformers,
pipelines with ``>>``, and ``pt.Experiment`` (skipped only without the extra and outside CI; a
missing extra fails under CI)."""

from __future__ import annotations

import pytest
from conftest import in_ci

try:
    import pandas as pd
    import pyterrier as pt
except ImportError:  # pragma: no cover
    if in_ci():
        raise
    pytest.skip(
        "pyterrier is not installed (pip install 'sparse-ir[pyterrier]')", allow_module_level=True
    )

from sparse_ir.corpus import Document
from sparse_ir.pyterrier import SparseIR, SparseIREncoder, read_qrels, read_topics

DOCS = [
    Document("d1", "Reefs", "Coral reefs bleach when the ocean warms."),
    Document("d2", "Yeast", "Protein folding in yeast cells under heat stress."),
    Document("d3", "Oceans", "Warming oceans change coral and fish populations in the ocean."),
    Document("d4 with space", "Heat", "Heat shock proteins help folding."),
]
TOPICS = pd.DataFrame({"qid": ["q1", "q2"], "query": ["coral ocean", "protein folding"]})
QRELS = pd.DataFrame(
    {"qid": ["q1", "q2", "q2"], "docno": ["d3", "d2", "d4 with space"], "label": [1, 1, 1]}
)


@pytest.fixture(scope="module")
def bm25_dir(tmp_path_factory):
    from sparse_ir.encoders.bm25 import build_bm25_index

    path = tmp_path_factory.mktemp("pt") / "bm25"
    build_bm25_index(DOCS, path, show_progress=False)
    return path


@pytest.fixture(scope="module")
def splade_dir(tmp_path_factory, tiny_bert_dir):
    from sparse_ir.encoders.splade import SpladeEncoder
    from sparse_ir.pipeline import index_corpus

    path = tmp_path_factory.mktemp("pt") / "splade"
    encoder = SpladeEncoder.from_pretrained(str(tiny_bert_dir))
    index_corpus(encoder, DOCS, path, show_progress=False)
    return path


def test_retrieval_frame_equals_the_searcher(bm25_dir):
    from sparse_ir import open_searcher

    retriever = SparseIR(bm25_dir, k=3)
    frame = retriever(TOPICS)
    assert list(frame.columns) == ["qid", "query", "docno", "docid", "score", "rank"]
    run = open_searcher(bm25_dir).search_batch(list(TOPICS["query"]), 3, query_ids=["q1", "q2"])
    for qid, hits in run.items():
        rows = frame[frame["qid"] == qid]
        assert list(rows["docno"]) == [h.doc_id for h in hits]
        assert list(rows["score"]) == [float(h.score) for h in hits]
        assert list(rows["docid"]) == [h.docno for h in hits]
        assert list(rows["rank"]) == list(range(len(hits)))  # PyTerrier ranks from 0
    one = retriever.search("protein folding")
    assert one.iloc[0]["docno"] == frame[frame["qid"] == "q2"].iloc[0]["docno"]


def test_pipeline_with_a_reranker_and_cutoff(bm25_dir):
    # Re-rank by the stored text's length (shortest first): the order really changes.
    rerank = pt.apply.doc_score(lambda row: -len(row["text"]))
    pipeline = SparseIR(bm25_dir, k=4, text=True) >> rerank
    frame = pipeline(TOPICS.iloc[[1]])
    lengths = [len(t) for t in frame.sort_values("rank")["text"]]
    assert lengths == sorted(lengths) and len(frame) >= 2
    assert list((SparseIR(bm25_dir) % 1)(TOPICS)["rank"]) == [0, 0]


def test_experiment_compares_with_the_same_numbers_as_evaluate(bm25_dir, splade_dir, tmp_path):
    from ir_measures import RR, nDCG

    from sparse_ir.eval import per_query

    systems = [SparseIR(bm25_dir), SparseIR(splade_dir)]
    table = pt.Experiment(
        systems, TOPICS, QRELS, [nDCG @ 10, RR @ 10], names=["bm25", "splade"], baseline=0
    )
    assert list(table["name"]) == ["bm25", "splade"]
    assert "nDCG@10 p-value" in table.columns
    run = open_run(bm25_dir)
    qrels = {"q1": {"d3": 1}, "q2": {"d2": 1, "d4 with space": 1}}
    ours = per_query(run, qrels, ["nDCG@10"])["nDCG@10"]
    expected = sum(ours.values()) / len(ours)
    assert table.loc[0, "nDCG@10"] == pytest.approx(expected, abs=1e-9)


def open_run(path):
    from sparse_ir import open_searcher

    return open_searcher(path).search_batch(list(TOPICS["query"]), 1000, query_ids=["q1", "q2"])


def test_query_encoder_pipeline_ranks_as_the_retriever(splade_dir, tiny_bert_dir):
    encoder = SparseIREncoder(str(tiny_bert_dir))
    encoded = encoder.query_encoder()(TOPICS)
    assert isinstance(encoded.loc[0, "query_toks"], dict) and encoded.loc[0, "query_toks"]
    direct = SparseIR(splade_dir, k=4)(TOPICS)
    piped = (encoder.query_encoder() >> SparseIR(splade_dir, k=4))(TOPICS)
    assert list(piped["docno"]) == list(direct["docno"])
    assert list(piped["score"]) == list(direct["score"])

    docs = pd.DataFrame({"docno": [d.id for d in DOCS], "text": [d.text for d in DOCS]})
    toks = encoder.doc_encoder()(docs)["toks"]
    assert len(toks) == 4 and all(isinstance(t, dict) and t for t in toks)


def test_bad_input_is_named(bm25_dir, tmp_path):
    with pytest.raises(ValueError, match="needs the column"):
        SparseIR(bm25_dir)(pd.DataFrame({"qid": ["q1"]}))
    with pytest.raises(ValueError, match="k must be at least 1"):
        SparseIR(bm25_dir, k=0)
    with pytest.raises(TypeError, match="index directory or a searcher"):
        SparseIR(42)
    from sparse_ir.encoders.bm25 import build_bm25_index

    bare = tmp_path / "bare"
    build_bm25_index(DOCS, bare, show_progress=False, store_contents=False)
    with pytest.raises(ValueError, match="contents stored"):
        SparseIR(bare, text=True)(TOPICS)


def test_topics_and_qrels_readers(tmp_path):
    queries = tmp_path / "queries.jsonl"
    queries.write_text('{"_id": "q1", "text": "coral ocean"}\n{"_id": "q2", "text": "x y"}\n')
    qrels = tmp_path / "qrels.tsv"
    qrels.write_text("query-id\tcorpus-id\tscore\nq1\td3\t1\nq2\td2\t2\n")
    assert read_topics(queries).to_dict("list") == {
        "qid": ["q1", "q2"],
        "query": ["coral ocean", "x y"],
    }
    assert read_qrels(qrels).to_dict("records") == [
        {"qid": "q1", "docno": "d3", "label": 1},
        {"qid": "q2", "docno": "d2", "label": 2},
    ]
