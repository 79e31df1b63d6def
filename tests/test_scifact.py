"""SciFact with the real splade-tiny vectors: effectiveness and exactness against brute force.

The vectors in ../shared/data/scifact-splade-tiny are splade-tiny's output by the textbook
formula (documents at 256 tokens, the 300 test queries at 64), so these tests check the index,
quantizer, search and evaluation on real data in seconds, without running the model.
"""

import numpy as np
import pytest

from sparse_ir.eval import evaluate, read_qrels
from sparse_ir.index.impact_index import ImpactIndex
from sparse_ir.quantize import Quantizer


@pytest.fixture(scope="module")
def scifact_index(scifact_vectors, tmp_path_factory):
    docs, _ = scifact_vectors
    return ImpactIndex.build(
        docs,
        tmp_path_factory.mktemp("scifact") / "ix",
        quantizer=Quantizer(),
        memory_budget="16MB",
        show_progress=False,
    )


def test_ndcg_of_splade_tiny_on_scifact(scifact_index, scifact_vectors, scifact_dir):
    _, queries = scifact_vectors
    run = scifact_index.search_batch(queries, 1000)
    scores = evaluate(run, read_qrels(scifact_dir / "qrels" / "test.tsv"))
    # Float exact scoring gives 0.6448; Lucene over round(w*100) impacts 0.6439.
    assert scores["nDCG@10"] >= 0.643, scores
    assert scores["R@100"] > 0.85


def test_top_100_equals_scipy_brute_force_for_all_300_queries(scifact_index, scifact_vectors):
    docs, queries = scifact_vectors
    quantized_docs = scifact_index.quantizer.quantize(docs)
    quantized_queries = scifact_index.quantizer.quantize(queries)
    brute = (
        quantized_queries.to_scipy().astype(np.int64) @ quantized_docs.to_scipy().astype(np.int64).T
    ).toarray()
    run = scifact_index.search_batch(quantized_queries, 100, threads=2)
    assert len(run) == 300
    for row, qid in enumerate(quantized_queries.ids):
        candidates = np.flatnonzero(brute[row] > 0)
        order = np.lexsort((candidates, -brute[row][candidates]))[:100]
        expected = [(int(d), int(brute[row][d])) for d in candidates[order]]
        assert [(h.docno, h.score) for h in run[qid]] == expected, qid


def test_spilled_build_is_identical_on_real_data(scifact_index, scifact_vectors, tmp_path):
    docs, _ = scifact_vectors
    shards = [
        docs.select(range(start, min(start + 500, len(docs)))) for start in range(0, len(docs), 500)
    ]
    from sparse_ir.index import builder

    # A budget of 150,000 buffered postings (the builder's bytes per posting changes with it).
    spilled = ImpactIndex.build(
        iter(shards),
        tmp_path / "spilled",
        memory_budget=builder._BYTES_PER_BUFFERED_POSTING * 150_000,
        show_progress=False,
    )
    assert spilled.settings["runs_spilled"] >= 5
    for name in ("term_offsets.bin", "impact_order_docs.bin", "impact_order_impacts.bin"):
        assert (spilled.directory / name).read_bytes() == (
            scifact_index.directory / name
        ).read_bytes()
