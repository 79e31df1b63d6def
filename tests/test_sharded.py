"""Sharded indexes on one machine: exactly the single index over all documents, and checked."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import random_batch

from sparse_ir.errors import IndexCorruptError, IndexFormatError, InputError
from sparse_ir.index.dense import DenseIndex
from sparse_ir.index.impact_index import ImpactIndex
from sparse_ir.index.sharded import (
    ShardedDenseIndex,
    ShardedIndex,
    global_quantizer,
    open_sharded,
    shard_name,
    write_sharded_manifest,
)
from sparse_ir.quantize import Quantizer
from sparse_ir.sparse_batch import SparseBatch

SPLITS = (0, 37, 37, 90, 160)  # an empty shard included


def _split(batch: SparseBatch, bounds=SPLITS) -> list[SparseBatch]:
    edges = [*bounds, len(batch)]
    return [batch.select(range(a, b)) for a, b in zip(edges[:-1], edges[1:]) if b > a]


@pytest.fixture(scope="module")
def collection():
    rng = np.random.default_rng(7)
    # Integer impacts in a narrow range over a small vocabulary: many tied scores.
    docs = random_batch(rng, 200, 12, 5, integer=True)
    docs = SparseBatch(docs.indptr, docs.indices, (docs.values % 4) + 1, docs.vocab, docs.ids)
    queries = random_batch(rng, 40, 12, 4, integer=True, ids=True)
    queries = SparseBatch(queries.indptr, queries.indices, (queries.values % 3) + 1, queries.vocab)
    return docs, queries


@pytest.fixture(scope="module")
def pair(collection, tmp_path_factory):
    docs, _ = collection
    root = tmp_path_factory.mktemp("sharded")
    single = ImpactIndex.build(docs, root / "single", show_progress=False)
    sharded = ShardedIndex.build(_split(docs), root / "sharded", show_progress=False)
    return single, sharded


@pytest.mark.parametrize("mode", ["exhaustive", "pruned", None])
def test_every_query_equals_the_single_index_ties_included(pair, collection, mode):
    single, sharded = pair
    _, queries = collection
    assert sharded.num_shards == 4 and sharded.num_documents == single.num_documents
    assert sharded.doc_ids == single.doc_ids
    for row in range(len(queries)):
        query = queries.select([row])
        for k in (1, 5, 17, 500):
            expected = single.search(query, k, mode=mode)
            assert sharded.search(query, k, mode=mode) == expected
            top = sharded.search_arrays(query, k, mode=mode)
            assert top.docnos.tolist() == [h.docno for h in expected]
            assert sharded.reference_search(query, k) == single.reference_search(query, k)


def test_search_batch_equals_the_single_index(pair, collection):
    single, sharded = pair
    _, queries = collection
    ids = [f"q{i}" for i in range(len(queries))]
    expected = single.search_batch(queries, 13, query_ids=ids, threads=1)
    got = sharded.search_batch(queries, 13, query_ids=ids, threads=1)
    assert list(got.results) == ids
    assert got.results == expected.results


@pytest.mark.parametrize("mode", ["exhaustive", "pruned"])
def test_a_filter_over_global_numbers_equals_the_single_index(pair, collection, mode):
    single, sharded = pair
    _, queries = collection
    mask = np.random.default_rng(3).random(single.num_documents) < 0.3
    ids = {single.doc_ids[d] for d in range(0, single.num_documents, 7)}
    for row in range(len(queries)):
        query = queries.select([row])
        for chosen in (mask, ids):
            expected = single.search(query, 9, mode=mode, filter=chosen)
            assert sharded.search(query, 9, mode=mode, filter=chosen) == expected
    run = sharded.search_batch(queries, 9, threads=1, filter=mask)
    assert run.results == single.search_batch(queries, 9, threads=1, filter=mask).results
    with pytest.raises(InputError, match="sharded indexes do not support metadata"):
        sharded.search(queries.select([0]), 3, filter="year>=2020")


def test_facts_and_documents_follow_the_global_numbering(pair, collection):
    single, sharded = pair
    docs, queries = collection
    assert sharded.vocab == single.vocab and sharded.vocab_hash == single.vocab_hash
    assert sharded.quantizer == single.quantizer
    assert sharded.num_postings == single.num_postings
    assert sharded.locate(0) == (0, 0) and sharded.locate(37) == (1, 0)
    assert sharded.locate(199) == (3, 39)
    for docno in (0, 36, 37, 89, 90, 150, 199):
        assert sharded.docno(single.doc_ids[docno]) == docno
        query = docs.select([docno])
        assert sharded.explain(query, docno) == single.explain(query, docno)
    with pytest.raises(IndexError, match="outside 0..199"):
        sharded.locate(200)
    sharded.verify()
    assert "shards=4" in repr(sharded)


def test_a_searcher_searches_a_sharded_index_unchanged(pair):
    from sparse_ir.search import Searcher

    single, sharded = pair
    vocab = single.vocab

    class Words:
        def __init__(self):
            self.vocab = vocab

        def encode_queries(self, texts, *, ids=None, show_progress=None):
            texts = [texts] if isinstance(texts, str) else texts
            return SparseBatch.from_dicts(
                [{w: 1.0 for w in t.split() if w in vocab} for t in texts], vocab, ids
            )

    texts = ["t1 t2 t3", "t0", "t4 t5 t9 t11"]
    for text in texts:
        assert Searcher(sharded, Words()).search(text, 7) == Searcher(single, Words()).search(
            text, 7
        )
    expected = Searcher(single, Words()).search_batch(texts, 9, query_ids=["a", "b", "c"])
    got = Searcher(sharded, Words()).search_batch(texts, 9, query_ids=["a", "b", "c"])
    assert got.results == expected.results


def test_the_global_fitted_quantizer_gives_the_single_builds_impacts(tmp_path):
    rng = np.random.default_rng(3)
    docs = random_batch(rng, 120, 30, 8)  # float weights
    shards = _split(docs, (0, 50, 80))
    quantizer = global_quantizer([s.values.max() for s in shards], bits=8)
    assert quantizer == Quantizer.fit(docs, bits=8)
    single = ImpactIndex.build(docs, tmp_path / "one", quantizer=Quantizer.fit(docs, bits=8))
    sharded = ShardedIndex.build(shards, tmp_path / "many", quantizer=quantizer)
    for docno in range(len(docs)):
        shard, local = sharded.locate(docno)
        assert sharded.shards[shard].document_vector(local) == single.document_vector(docno)
    queries = random_batch(rng, 20, 30, 6)
    assert sharded.search_batch(queries, 10).results == single.search_batch(queries, 10).results
    with pytest.raises(InputError, match="no positive weight"):
        global_quantizer([0.0], bits=8)
    with pytest.raises(ValueError, match="not both"):
        global_quantizer([1.0], bits=8, scale=10.0)


def test_shards_that_do_not_fit_together_are_refused(tmp_path, collection):
    docs, _ = collection
    parts = _split(docs)
    ImpactIndex.build(parts[0], tmp_path / shard_name(0), show_progress=False)
    ImpactIndex.build(parts[0], tmp_path / shard_name(1), show_progress=False)
    with pytest.raises(InputError, match="'doc0' is in shard shard-00000 and in shard shard-00001"):
        write_sharded_manifest(tmp_path, [shard_name(0), shard_name(1)])
    ImpactIndex.build(
        parts[1], tmp_path / shard_name(1), quantizer=Quantizer(scale=7), show_progress=False
    )
    with pytest.raises(InputError, match="shard shard-00001 has another quantizer"):
        write_sharded_manifest(tmp_path, [shard_name(0), shard_name(1)])
    DenseIndex.build(np.eye(2, dtype=np.float32), tmp_path / "dense", ids=["x", "y"])
    with pytest.raises(InputError, match="several kinds"):
        write_sharded_manifest(tmp_path, [shard_name(0), "dense"])
    with pytest.raises(InputError, match="at least one shard"):
        write_sharded_manifest(tmp_path, [])


def test_damage_and_a_rebuilt_shard_are_detected(tmp_path, collection):
    docs, _ = collection
    path = tmp_path / "sharded"
    ShardedIndex.build(_split(docs), path, show_progress=False)
    manifest = path / "manifest.json"
    original = manifest.read_bytes()
    manifest.write_bytes(original.replace(b'"num_documents": 200', b'"num_documents": 201'))
    with pytest.raises(IndexCorruptError, match="checksum mismatch"):
        ShardedIndex.open(path)
    manifest.write_bytes(original)
    with pytest.raises(IndexFormatError, match="not 'sparse-ir-sharded-dense-index'"):
        ShardedDenseIndex.open(path)
    assert isinstance(open_sharded(path), ShardedIndex)
    # Rebuilding a shard publishes a generation the manifest does not name: the pinned one is
    # kept (keep_previous) and still searched, until a second rebuild removes it.
    ImpactIndex.build(_split(docs)[1], path / shard_name(1), show_progress=False)
    assert ShardedIndex.open(path).shards[1].directory.name == "gen-000001"
    ImpactIndex.build(_split(docs)[1], path / shard_name(1), show_progress=False)
    with pytest.raises(IndexCorruptError, match="shard shard-00001's generation gen-000001"):
        ShardedIndex.open(path)
    write_sharded_manifest(path, [shard_name(n) for n in range(4)])
    assert ShardedIndex.open(path, verify=True).num_documents == 200
    with pytest.raises(FileNotFoundError):
        ShardedIndex.open(tmp_path / "nothing")
    body = json.loads(manifest.read_text())
    assert [s["path"] for s in body["shards"]] == [shard_name(n) for n in range(4)]


def test_dense_shards_and_a_hybrid_over_a_sharded_pair(tmp_path, collection):
    from sparse_ir.fusion import Fusion
    from sparse_ir.hybrid import HybridSearcher
    from sparse_ir.search import DenseSearcher, Searcher

    docs, _ = collection
    rng = np.random.default_rng(11)
    vectors = rng.normal(size=(len(docs), 8)).astype(np.float32)
    ids = list(docs.ids)
    single = DenseIndex.build(vectors, tmp_path / "dense", ids=ids)
    edges = [*SPLITS, len(docs)]
    pieces = [(ids[a:b], vectors[a:b]) for a, b in zip(edges[:-1], edges[1:]) if b > a]
    sharded = ShardedDenseIndex.build(pieces, tmp_path / "dense-sharded")
    queries = rng.normal(size=(15, 8)).astype(np.float32)
    expected = single.search_batch(queries, 11)
    got = sharded.search_batch(queries, 11)
    for qid, hits in expected.items():
        assert [h.docno for h in got[qid]] == [h.docno for h in hits]
        np.testing.assert_allclose([h.score for h in got[qid]], [h.score for h in hits], rtol=1e-6)
    assert [h.doc_id for h in sharded.search(queries[0], 3)] == [
        h.doc_id for h in single.search(queries[0], 3)
    ]

    class Vectors:  # a toy dense encoder: query i is row i of `queries`
        dim = 8

        def encode_queries(self, texts, *, show_progress=None):
            texts = [texts] if isinstance(texts, str) else texts
            return queries[[int(t.split()[0]) for t in texts]]

    vocab = docs.vocab

    class Words:
        def __init__(self):
            self.vocab = vocab

        def encode_queries(self, texts, *, ids=None, show_progress=None):
            texts = [texts] if isinstance(texts, str) else texts
            return SparseBatch.from_dicts(
                [{w: 1.0 for w in t.split()[1:]} for t in texts], vocab, ids
            )

    sparse_single = ImpactIndex.build(docs, tmp_path / "sparse", show_progress=False)
    sparse_sharded = ShardedIndex.build(_split(docs), tmp_path / "sparse-sharded")
    texts = ["0 t1 t2", "3 t5", "7 t0 t9 t10"]
    one = HybridSearcher(
        [Searcher(sparse_single, Words()), DenseSearcher(single, Vectors())], Fusion()
    )
    many = HybridSearcher(
        [Searcher(sparse_sharded, Words()), DenseSearcher(sharded, Vectors())], Fusion()
    )
    expected_run = one.search_batch(texts, 10)
    got_run = many.search_batch(texts, 10)
    for qid, hits in expected_run.items():
        assert [h.doc_id for h in got_run[qid]] == [h.doc_id for h in hits]


def test_verify_index_checks_a_sharded_index_and_every_shard(tmp_path, collection):
    from sparse_ir.index.check import verify_index

    docs, _ = collection
    path = tmp_path / "sharded"
    ShardedIndex.build(_split(docs), path, show_progress=False)
    report = verify_index(path)
    assert report.ok, report.summary()
    assert report.format == "sparse-ir-sharded-impact-index v1" and report.files_checked > 4
    shard = ShardedIndex.open(path).shards[2]
    target = shard.directory / "impact_order_impacts.bin"
    data = bytearray(target.read_bytes())
    data[-20] ^= 0xFF
    target.write_bytes(bytes(data))
    report = verify_index(path)
    assert not report.ok and "shard-00002" in report.problems[0]
