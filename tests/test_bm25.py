"""BM25 as an impact index: the weights by hand, the analyzer and the ranking against bm25s."""

from __future__ import annotations

import importlib
import json
import math

import numpy as np
import pytest

pytest.importorskip("Stemmer")
pytest.importorskip("bm25s")

from sparse_ir.corpus import Document  # noqa: E402
from sparse_ir.encoders.bm25 import (  # noqa: E402
    BM25_SCALE,
    Analyzer,
    BM25Encoder,
    bm25_document_weights,
    build_bm25_index,
    lucene_idf,
)
from sparse_ir.errors import InputError  # noqa: E402
from sparse_ir.index.impact_index import ImpactIndex  # noqa: E402

# "A" is one letter (not a word of the token pattern), "the" a stop-word, "Cats" stems to "cat".
CORPUS = ["cat cat dog", "dog bird A", "The Cats"]


def test_weights_match_the_formula_by_hand():
    encoder = BM25Encoder().fit(CORPUS)  # k1 0.9, b 0.4
    assert encoder.vocab == ("bird", "cat", "dog")
    assert encoder.num_documents == 3
    assert encoder.average_length == 2.0  # lengths 3, 2, 1
    assert encoder.document_frequencies.tolist() == [1, 2, 2]
    idf_cat = math.log(1 + (3 - 2 + 0.5) / (2 + 0.5))  # = log 1.6, also dog's
    idf_bird = math.log(1 + (3 - 1 + 0.5) / (1 + 0.5))  # = log 8/3
    norm = {
        3: 0.9 * (0.6 + 0.4 * 3 / 2),
        2: 0.9 * (0.6 + 0.4 * 2 / 2),
        1: 0.9 * (0.6 + 0.4 * 1 / 2),
    }  # k1 · (1 − b + b · dl / avgdl)
    expected = [
        {"cat": idf_cat * 2 * 1.9 / (2 + norm[3]), "dog": idf_cat * 1.9 / (1 + norm[3])},
        {"bird": idf_bird * 1.9 / (1 + norm[2]), "dog": idf_cat * 1.9 / (1 + norm[2])},
        {"cat": idf_cat * 1.9 / (1 + norm[1])},
    ]
    batch = encoder.encode_documents(CORPUS, ids=["d0", "d1", "d2"])
    assert batch.ids == ("d0", "d1", "d2") and batch.values.dtype == np.float32
    for row, want in zip(batch.to_dicts(), expected):
        assert row.keys() == want.keys()
        for term, weight in want.items():
            assert row[term] == pytest.approx(weight, rel=1e-6)
    np.testing.assert_allclose(encoder.idf, [idf_bird, idf_cat, idf_cat], rtol=1e-12)


def test_pure_functions_on_arrays():
    assert lucene_idf(np.array([1, 3]), 3).tolist() == pytest.approx(
        [math.log(1 + 2.5 / 1.5), math.log(1 + 0.5 / 3.5)]
    )
    weights = bm25_document_weights(
        np.array([1, 4]),
        np.array([10, 10]),
        np.array([2, 2]),
        num_documents=5,
        average_length=10.0,
        k1=1.2,
        b=0.75,
    )
    idf = math.log(1 + 3.5 / 2.5)
    assert weights.tolist() == pytest.approx([idf * 2.2 / 2.2, idf * 4 * 2.2 / 5.2])
    # b = 0: no length normalization; k1 = 0: tf ignored (weight = idf)
    assert bm25_document_weights(
        np.array([3]),
        np.array([100]),
        np.array([2]),
        num_documents=5,
        average_length=1.0,
        k1=0.0,
        b=0.0,
    ).tolist() == pytest.approx([idf])


def test_queries_weigh_each_distinct_term_once_or_by_count():
    encoder = BM25Encoder().fit(CORPUS)
    distinct = encoder.encode_queries(["cats, cat and a bird", "zebra"], ids=["q1", "q2"])
    assert distinct.is_quantized and distinct.ids == ("q1", "q2")
    assert distinct.to_dicts() == [{"bird": 1, "cat": 1}, {}]  # unknown terms dropped
    encoder.query_weighting = "count"
    assert encoder.encode_queries("cats, cat and a bird").to_dicts() == [{"bird": 1, "cat": 2}]
    with pytest.raises(ValueError, match="query_weighting"):
        BM25Encoder(query_weighting="idf")


def test_a_single_string_is_one_text():
    encoder = BM25Encoder().fit("cat dog")
    assert len(encoder.encode_documents("cat dog")) == 1
    assert len(encoder.encode_queries("dog")) == 1
    assert encoder.num_documents == 1


def test_validation_names_the_bad_value():
    with pytest.raises(ValueError, match="k1"):
        BM25Encoder(k1=-1)
    with pytest.raises(ValueError, match="b must"):
        BM25Encoder(b=1.5)
    with pytest.raises(ValueError, match="not fitted"):
        BM25Encoder().encode_queries("x")
    with pytest.raises(ValueError, match="unknown stemmer"):
        Analyzer(stemmer="klingon")
    with pytest.raises(ValueError, match="2 ids for 1 texts"):
        BM25Encoder().fit(CORPUS).encode_documents(["x"], ids=["a", "b"])
    with pytest.raises(InputError, match="text 1 is a int"):
        BM25Encoder().fit(["ok", 3])


def test_analyzer_options_and_record():
    plain = Analyzer(stopwords=(), stemmer=None, lowercase=False)
    assert plain.analyze("The Cats of a town") == ["The", "Cats", "of", "town"]
    assert Analyzer().analyze("The Cats of a town") == ["cat", "town"]
    assert Analyzer(max_token_length=4).analyze("tiny enormous") == ["tini"]
    record = Analyzer().to_dict()
    assert "the" in record["stopwords"] and record["stemmer"] == "english"
    assert Analyzer.from_dict(json.loads(json.dumps(record))) == Analyzer()
    with pytest.raises(InputError, match="unknown analyzer settings"):
        Analyzer.from_dict({**record, "lemmatize": True})


def test_save_and_load_round_trip(tmp_path):
    encoder = BM25Encoder(k1=1.2, b=0.75, query_weighting="count").fit(CORPUS)
    encoder.save(tmp_path / "bm25")
    assert sorted(p.name for p in (tmp_path / "bm25").iterdir()) == [
        "bm25.json",
        "document_frequencies.npy",
    ]
    loaded = BM25Encoder.from_pretrained(tmp_path / "bm25", device="cpu")
    assert loaded.settings() == encoder.settings()
    assert loaded.vocab == encoder.vocab
    np.testing.assert_array_equal(loaded.document_frequencies, encoder.document_frequencies)
    a, b = encoder.encode_documents(CORPUS), loaded.encode_documents(CORPUS)
    np.testing.assert_array_equal(a.values, b.values)
    assert loaded.encode_queries("cat cat").to_dicts() == [{"cat": 2}]
    assert BM25Encoder.from_pretrained(
        tmp_path / "bm25", query_weighting="distinct"
    ).encode_queries("cat cat").to_dicts() == [{"cat": 1}]
    record = json.loads((tmp_path / "bm25" / "bm25.json").read_text())
    (tmp_path / "bm25" / "bm25.json").write_text(json.dumps({**record, "format_version": 99}))
    with pytest.raises(InputError, match="version 99"):
        BM25Encoder.from_pretrained(tmp_path / "bm25")
    with pytest.raises(FileNotFoundError):
        BM25Encoder.from_pretrained(tmp_path / "nothing")


def test_index_records_the_encoder_and_searches_bm25(tmp_path):
    documents = [Document(f"d{i}", "", text) for i, text in enumerate(CORPUS)]
    index, encoder = build_bm25_index(documents, tmp_path / "ix", show_progress=False)
    assert index.settings["query_encoder"] == "bm25"
    assert index.settings["bm25"]["k1"] == 0.9 and index.settings["bm25"]["b"] == 0.4
    assert index.quantizer.scale == BM25_SCALE
    loaded = BM25Encoder.from_index_settings(tmp_path / "ix", index.settings)
    assert loaded.settings() == encoder.settings() and loaded.vocab == index.vocab
    np.testing.assert_array_equal(loaded.document_frequencies, encoder.document_frequencies)
    query = loaded.encode_queries("cats and birds")
    hits = index.search(query, k=3)
    weights = encoder.encode_documents(CORPUS).to_dicts()
    expected = {
        f"d{i}": sum(round(w[t] * BM25_SCALE) for t in ("cat", "bird") if t in w)
        for i, w in enumerate(weights)
    }
    assert [(h.doc_id, h.score) for h in hits] == sorted(
        expected.items(), key=lambda item: (-item[1], item[0])
    )
    parts = index.explain(query, hits[0].docno)
    assert {p.token for p in parts} <= {"cat", "bird"} and all(p.query_weight == 1 for p in parts)


def test_registry_names_the_encoder():
    from sparse_ir.encoders.registry import QUERY_ENCODER_KINDS

    module, name = QUERY_ENCODER_KINDS["bm25"].split(":")
    assert getattr(importlib.import_module(module), name) is BM25Encoder


def test_cli_index_bm25(tmp_path, capsys):
    from sparse_ir.cli import main

    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(
        "".join(
            json.dumps({"_id": f"d{i}", "title": "", "text": t}) + "\n"
            for i, t in enumerate(CORPUS)
        )
    )
    assert (
        main(
            [
                "index",
                "--bm25",
                "--input",
                str(corpus),
                "--output",
                str(tmp_path / "ix"),
                "--k1",
                "1.5",
                "--b",
                "0.75",
            ]
        )
        == 0
    )
    assert "3 documents" in capsys.readouterr().out
    index = ImpactIndex.open(tmp_path / "ix")
    assert index.settings["bm25"]["k1"] == 1.5 and index.settings["bm25"]["b"] == 0.75
    assert index.vocab == ("bird", "cat", "dog")
    assert (
        main(["index", "--bm25", "--vectors", str(tmp_path), "--output", str(tmp_path / "ix2")])
        == 1
    )


# -- against bm25s on SciFact --------------------------------------------------------------------


def _bm25s(texts, k1, b):
    import bm25s
    import Stemmer

    tokens = bm25s.tokenize(
        texts, stopwords="en", stemmer=Stemmer.Stemmer("english"), show_progress=False
    )
    retriever = bm25s.BM25(k1=k1, b=b, method="lucene")
    retriever.index(tokens, show_progress=False)
    return retriever


def test_analyzer_is_bm25s_tokenize(scifact_dir):
    import bm25s
    import Stemmer

    from sparse_ir.corpus import load_corpus

    texts = [d.full_text for d in load_corpus(scifact_dir / "corpus.jsonl")[:300]]
    theirs = bm25s.tokenize(
        texts,
        stopwords="en",
        stemmer=Stemmer.Stemmer("english"),
        return_ids=False,
        show_progress=False,
    )
    analyzer = Analyzer()
    assert [analyzer.analyze(t) for t in texts] == theirs


@pytest.mark.slow
@pytest.mark.parametrize("weighting", ["count", "distinct"])
def test_exact_search_ranks_as_bm25s_on_scifact(tmp_path, scifact_dir, weighting):
    import bm25s
    import Stemmer

    from sparse_ir.eval import evaluate, load_beir
    from sparse_ir.results import Run

    data = load_beir(scifact_dir, "test")
    k1, b = 0.9, 0.4
    index, encoder = build_bm25_index(
        data.corpus, tmp_path / "ix", k1=k1, b=b, store_contents=False, show_progress=False
    )
    encoder.query_weighting = weighting
    texts = [q.text for q in data.queries]
    queries = encoder.encode_queries(texts, ids=[q.id for q in data.queries])
    ours = index.search_batch(queries, 10, threads=1)

    retriever = _bm25s([d.full_text for d in data.corpus], k1, b)
    stemmer = Stemmer.Stemmer("english")
    query_tokens = bm25s.tokenize(
        texts, stopwords="en", stemmer=stemmer, return_ids=False, show_progress=False
    )
    if weighting == "distinct":
        query_tokens = [sorted(set(tokens)) for tokens in query_tokens]
    doc_ids = index.doc_ids
    theirs = {}
    for qid, tokens, query_row in zip(
        (q.id for q in data.queries), query_tokens, range(len(queries))
    ):
        scores = (
            retriever.get_scores(tokens).astype(np.float64) if tokens else np.zeros(len(doc_ids))
        )  # bm25s's own scoring
        top = sorted(np.flatnonzero(scores > 0), key=lambda d: (-scores[d], d))[:10]
        theirs[qid] = {doc_ids[d]: float(scores[d]) for d in top}
        # Same ranking up to quantization: where the lists differ, bm25s scores the two
        # documents within the rounding of our impacts (≤ 0.0005 per query term, in bm25s's
        # units divided by k1 + 1) plus float32 noise.
        weights = queries.row(query_row)[1]
        tolerance = float(weights.sum()) * 0.5 / BM25_SCALE / (k1 + 1) * 2 + 1e-4
        for mine, want in zip(ours[qid], top):
            assert abs(scores[index.docno(mine.doc_id)] - scores[want]) <= tolerance, qid
    ndcg_ours = evaluate(ours, data.qrels, ["nDCG@10"])["nDCG@10"]
    ndcg_theirs = evaluate(Run.from_dict(theirs), data.qrels, ["nDCG@10"])["nDCG@10"]
    assert abs(ndcg_ours - ndcg_theirs) <= 0.003
    assert ndcg_ours > 0.66  # BM25 flat on SciFact: 0.665-0.69 depending on the analyzer
