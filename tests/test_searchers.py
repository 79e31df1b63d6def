"""One shape for every searcher: modes as values, deprecated aliases, N-way hybrids, encoders."""

from __future__ import annotations

import json
import shutil
from typing import get_args

import numpy as np
import pytest

from sparse_ir.fusion import Fusion
from sparse_ir.hybrid import HybridRuns, HybridSearcher
from sparse_ir.index.dense import DenseIndex
from sparse_ir.index.impact_index import ImpactIndex
from sparse_ir.index.modes import (
    DEFAULT_BOUND_WEIGHT,
    DEFAULT_CUT_RATIO,
    Approximate,
    Exhaustive,
    Pruned,
    SearchModeName,
    SearchStats,
    resolve_mode,
)
from sparse_ir.results import Run
from sparse_ir.search import DenseSearcher, Searcher
from sparse_ir.sparse_batch import SparseBatch

VOCAB = tuple(f"w{i}" for i in range(30))
TEXTS = ["w1 w2 w3", "w4", "w2 w5 w7 w9", "w11 w1", "w20 w21 w22 w3", "w0"]


class WordEncoder:
    """A toy query encoder: each vocabulary word of a text weighs 1 + its count / 2."""

    vocab = VOCAB
    dim = len(VOCAB)

    def encode_queries(self, texts, *, ids=None, show_progress=None):
        texts = [texts] if isinstance(texts, str) else list(texts)
        rows = [{w: 1.0 + t.split().count(w) / 2 for w in t.split() if w in VOCAB} for t in texts]
        return SparseBatch.from_dicts(rows, VOCAB, ids)


class VectorEncoder(WordEncoder):
    """The same weights as dense vectors."""

    def encode_queries(self, texts, *, show_progress=None):
        return super().encode_queries(texts).to_scipy().toarray().astype(np.float32)


@pytest.fixture(scope="module")
def indexes(tmp_path_factory):
    rng = np.random.default_rng(7)
    rows = []
    for _ in range(60):
        terms = rng.choice(len(VOCAB), size=int(rng.integers(1, 8)), replace=False)
        rows.append({VOCAB[t]: float(rng.uniform(0.1, 3.0)) for t in terms})
    ids = [f"doc{i}" for i in range(len(rows))]
    docs = SparseBatch.from_dicts(rows, VOCAB, ids)
    root = tmp_path_factory.mktemp("searchers")
    sparse = ImpactIndex.build(docs, root / "sparse", show_progress=False)
    dense_rows = docs.to_scipy().toarray().astype(np.float32)
    # The dense index numbers the documents in reverse: hybrids renumber to the first index.
    dense = DenseIndex.build(dense_rows[::-1].copy(), root / "dense", ids=ids[::-1])
    return sparse, dense


# -- modes -------------------------------------------------------------------------------------


def test_mode_values_equal_their_names(indexes):
    sparse, _ = indexes
    assert get_args(SearchModeName) == ("exhaustive", "pruned", "approximate")
    for name, value in (
        ("exhaustive", Exhaustive()),
        ("pruned", Pruned()),
        ("approximate", Approximate()),
    ):
        assert resolve_mode(name, has_search_layout=True) == value
        assert value.name == name
        queries = WordEncoder().encode_queries(TEXTS)
        for q in range(len(TEXTS)):
            one = queries.select([q])
            assert sparse.search(one, 5, mode=name) == sparse.search(one, 5, mode=value)
        assert (
            sparse.search_batch(queries, 5, mode=name).results
            == sparse.search_batch(queries, 5, mode=value).results
        )
    assert Approximate() == Approximate(DEFAULT_CUT_RATIO, DEFAULT_BOUND_WEIGHT)
    assert resolve_mode(None, has_search_layout=True) == Pruned()
    assert resolve_mode(None, has_search_layout=False) == Exhaustive()
    assert Pruned().exact and Exhaustive().exact and not Approximate().exact
    assert Approximate(0.5, 1.0).exact
    assert Exhaustive().kernel_params() is None
    assert Approximate(1.2, 0.6).kernel_params().as_tuple()[2:] == (1.2, 0.6, 1.0, 0)
    knobs = Approximate(1.2, 0.6, term_share=0.8, max_verified=300).kernel_params()
    assert knobs.as_tuple()[2:] == (1.2, 0.6, 0.8, 300)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: Approximate(cut_ratio=0), "cut_ratio must be > 0"),
        (lambda: Approximate(cut_ratio=-1.0), "cut_ratio must be > 0"),
        (lambda: Approximate(bound_weight=1.5), r"bound_weight must be in \[0, 1\]"),
        (lambda: Approximate(cut_ratio="1"), "cut_ratio must be a number"),
        (lambda: Approximate(estimate_postings=0), "estimate_postings must be an integer >= 1"),
        (lambda: Pruned(cut_ratio=1.0), r"must be in \(0, 1\)"),
        (lambda: Pruned(estimate_candidates=2.5), "estimate_candidates must be an integer"),
        (lambda: resolve_mode("fast", has_search_layout=True), "mode must be one of"),
        (lambda: resolve_mode(3, has_search_layout=True), "mode must be one of"),
        (lambda: resolve_mode("pruned", has_search_layout=False), "no search layout"),
    ],
)
def test_modes_are_validated(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_search_stats_name_the_kernel_figures(indexes):
    from sparse_ir.index.pruned import STATS_FIELDS

    sparse, _ = indexes
    assert SearchStats._fields[: len(STATS_FIELDS)] == STATS_FIELDS
    query = WordEncoder().encode_queries("w1 w2 w3")
    for mode in ("exhaustive", "pruned", Approximate(2.0, 0.5)):
        hits, stats = sparse.search_with_stats(query, 5, mode=mode)
        assert isinstance(stats, SearchStats)
        assert hits == sparse.search(query, 5, mode=mode)
        assert stats.mode == resolve_mode(mode, has_search_layout=True).name
        assert stats.postings > 0 and not stats.int64_accumulator
    _, stats = sparse.search_with_stats(query, 5, mode="exhaustive")
    terms, _ = sparse.prepare_query(query)
    assert stats.postings == int(sparse.document_frequency()[terms].sum())
    # A tiny estimate leaves postings below the cuts: the cut and verify steps run.
    _, stats = sparse.search_with_stats(
        query, 3, mode=Pruned(estimate_postings=2, estimate_candidates=1)
    )
    assert stats.mode == "pruned"


def test_deprecated_keywords_warn_and_give_the_same_result(indexes):
    sparse, dense = indexes
    queries = WordEncoder().encode_queries(TEXTS)
    one = queries.select([2])
    with pytest.warns(DeprecationWarning, match="Approximate"):
        old = sparse.search(one, 5, mode="approximate", cut_ratio=2.0, bound_weight=0.5)
    assert old == sparse.search(one, 5, mode=Approximate(2.0, 0.5))
    with pytest.warns(DeprecationWarning, match="Approximate"):
        old_run = sparse.search_batch(queries, 5, mode="approximate", cut_ratio=3.0)
    assert old_run.results == sparse.search_batch(queries, 5, mode=Approximate(3.0)).results
    vectors = VectorEncoder().encode_queries(TEXTS)
    with pytest.warns(DeprecationWarning, match="mode="):
        old_dense = dense.search_batch(vectors, 5, method="exact")
    assert old_dense.results == dense.search_batch(vectors, 5, mode="exact").results
    searcher = Searcher(sparse, WordEncoder())
    with pytest.warns(DeprecationWarning, match="query_ids"):
        old_run = searcher.search_batch(TEXTS, 4, ids=[f"q{i}" for i in range(len(TEXTS))])
    assert (
        old_run.results
        == searcher.search_batch(TEXTS, 4, query_ids=[f"q{i}" for i in range(len(TEXTS))]).results
    )


# -- searchers ---------------------------------------------------------------------------------


def _same_hits(left, right):
    """Equal hits; float scores to float32 rounding (one query vs a batch in BLAS)."""
    assert [(h.doc_id, h.docno) for h in left] == [(h.doc_id, h.docno) for h in right]
    assert [h.score for h in left] == pytest.approx([h.score for h in right], rel=1e-5)


def test_searchers_share_one_shape(indexes):
    sparse, dense = indexes
    for searcher in (Searcher(sparse, WordEncoder()), DenseSearcher(dense, VectorEncoder())):
        run = searcher.search_batch(TEXTS, 5, query_ids=[f"q{i}" for i in range(len(TEXTS))])
        assert isinstance(run, Run) and list(run.results) == [f"q{i}" for i in range(6)]
        for i, text in enumerate(TEXTS):
            _same_hits(searcher.search(text, 5), run[f"q{i}"])
        _same_hits(searcher.search_batch(TEXTS[0], 5)["0"], searcher.search(TEXTS[0], 5))
        assert searcher.index is not None and searcher.encoder is not None
        with pytest.raises(ValueError, match="2 query ids for 6 texts"):
            searcher.search_batch(TEXTS, 5, query_ids=["a", "b"])
    searcher = Searcher(sparse, WordEncoder(), mode="exhaustive")
    assert searcher.search("w1 w2", 3, mode=Approximate(5.0, 0.1)) == sparse.search(
        searcher.encode("w1 w2"), 3, mode=Approximate(5.0, 0.1)
    )


@pytest.mark.parametrize("fusion", [Fusion(), Fusion.rrf(rrf_k=10, depth=8)])
@pytest.mark.parametrize("three", [False, True])
def test_hybrid_runs_equal_fusing_the_component_runs(indexes, fusion, three):
    sparse, dense = indexes
    searchers = [Searcher(sparse, WordEncoder()), DenseSearcher(dense, VectorEncoder())]
    if three:
        searchers.append(Searcher(sparse, WordEncoder(), mode="exhaustive"))
    hybrid = HybridSearcher(searchers, fusion)
    ids = [f"q{i}" for i in range(len(TEXTS))]
    runs = hybrid.search_batch_components(TEXTS, 4, query_ids=ids)
    assert isinstance(runs, HybridRuns) and len(runs.components) == len(searchers)
    depth = max(4, fusion.depth)
    for searcher, component in zip(searchers, runs.components):
        alone = searcher.search_batch(TEXTS, depth, query_ids=ids)
        # Same documents and scores; numbers are the first index's.
        assert {q: [(h.doc_id, h.score) for h in hits] for q, hits in alone.items()} == {
            q: [(h.doc_id, h.score) for h in hits] for q, hits in component.items()
        }
        for hits in component.results.values():
            assert all(h.docno == sparse.docno(h.doc_id) for h in hits)
    assert runs.fused.results == fusion.fuse(list(runs.components), k=4).results
    assert hybrid.search_batch(TEXTS, 4, query_ids=ids).results == runs.fused.results
    for i, text in enumerate(TEXTS):
        _same_hits(hybrid.search(text, 4), runs.fused[f"q{i}"])
        assert len(hybrid.timings.encode) == len(searchers)
    expected = {"sparse", "dense"} if not three else {"sparse1", "dense", "sparse3"}
    assert {stage.rsplit("_", 1)[0] for stage in hybrid.timings.stages()} == expected | {"fusion"}
    with HybridSearcher(searchers, fusion, parallel=True) as parallel:
        _same_hits(parallel.search(TEXTS[2], 4), hybrid.search(TEXTS[2], 4))
    modes = [None, "exact"] + (["pruned"] if three else [])
    _same_hits(hybrid.search(TEXTS[0], 4, mode=modes), hybrid.search(TEXTS[0], 4))
    with pytest.raises(ValueError, match="one mode per searcher"):
        hybrid.search(TEXTS[0], 4, mode="pruned")


# -- encoders ----------------------------------------------------------------------------------


def test_encoder_protocols():
    from sparse_ir.encoders.base import DenseQueryEncoder, DocumentEncoder, QueryEncoder

    assert isinstance(WordEncoder(), QueryEncoder)
    assert isinstance(VectorEncoder(), DenseQueryEncoder)
    assert not isinstance(WordEncoder(), DocumentEncoder)


def test_single_str_and_idf_kind_picked_by_from_index(tiny_bert_dir, tmp_path):
    from transformers import AutoTokenizer

    from sparse_ir.corpus import Document
    from sparse_ir.encoders.splade import SpladeEncoder
    from sparse_ir.pipeline import index_corpus
    from sparse_ir.training.inference_free import IdfQueryEncoder

    texts = ["tumor cells grow in mice", "gene expression in blood", "python data file"]
    corpus = [Document(f"d{i}", "", text) for i, text in enumerate(texts)]
    splade = SpladeEncoder.from_pretrained(str(tiny_bert_dir), precision="float32")
    single = splade.encode_queries("tumor cells")
    assert len(single) == 1
    assert single.to_dicts() == splade.encode_queries(["tumor cells"]).to_dicts()
    assert len(splade.encode_documents("tumor cells")) == 1

    index, _ = index_corpus(splade, corpus, tmp_path / "plain", show_progress=False)
    assert index.settings["query_encoder"] == "splade"
    assert isinstance(Searcher.from_index(tmp_path / "plain").encoder, SpladeEncoder)

    checkpoint = tmp_path / "doc-only"
    shutil.copytree(tiny_bert_dir, checkpoint)
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    rows = json.loads((checkpoint / "config.json").read_text())["vocab_size"]
    idf = IdfQueryEncoder.from_corpus(tokenizer, texts, rows)
    idf.save(checkpoint)
    assert (
        idf.encode_queries("tumor cells").to_dicts()
        == idf.encode_queries(["tumor cells"]).to_dicts()
    )
    index, _ = index_corpus(
        SpladeEncoder.from_pretrained(checkpoint, precision="float32"),
        corpus,
        tmp_path / "idf",
        show_progress=False,
    )
    assert index.settings["query_encoder"] == "idf"
    searcher = Searcher.from_index(tmp_path / "idf")
    assert isinstance(searcher.encoder, IdfQueryEncoder)
    assert searcher.search("tumor cells", 2)[0].doc_id == "d0"


def test_unknown_query_encoder_kind_is_refused():
    from sparse_ir.encoders.registry import QUERY_ENCODER_KINDS, load_query_encoder

    assert set(QUERY_ENCODER_KINDS) >= {"splade", "idf"}
    with pytest.raises(ValueError, match="unknown query encoder kind 'bm99'"):
        load_query_encoder({"query_encoder": "bm99", "model": "x"})
    with pytest.raises(ValueError, match="does not record its model"):
        load_query_encoder({})
