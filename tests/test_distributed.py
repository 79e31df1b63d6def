"""Scale-out on a real local Ray cluster: scatter-gather search, encoding, faults.

One cluster for the whole module (starting Ray costs ~15 s on this machine): 2 CPUs, no
dashboard, a 300 MB object store, shut down at the end. Actors reserve a fraction of a CPU so
that several fit.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest
from conftest import in_ci, random_batch

from sparse_ir.index.impact_index import ImpactIndex
from sparse_ir.index.sharded import ShardedDenseIndex, ShardedIndex
from sparse_ir.sparse_batch import SparseBatch

pytestmark = pytest.mark.slow

BOUNDS = (0, 61, 130, 131, 240)


@pytest.fixture(scope="module")
def ray_cluster():
    try:
        import ray
    except ImportError:
        if in_ci():
            pytest.fail("ray is not installed (pip install -e '.[all]' installs it)")
        pytest.skip("ray is not installed")
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=300 << 20,
        log_to_driver=False,
        configure_logging=False,
    )
    yield ray
    ray.shutdown()


def _split(batch: SparseBatch) -> list[SparseBatch]:
    edges = [*BOUNDS, len(batch)]
    return [batch.select(range(a, b)) for a, b in zip(edges[:-1], edges[1:])]


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    rng = np.random.default_rng(5)
    docs = random_batch(rng, 300, 15, 6, integer=True)
    docs = SparseBatch(docs.indptr, docs.indices, (docs.values % 5) + 1, docs.vocab, docs.ids)
    queries = random_batch(rng, 50, 15, 4, integer=True)
    root = tmp_path_factory.mktemp("distributed")
    single = ImpactIndex.build(docs, root / "single", show_progress=False)
    sharded = ShardedIndex.build(_split(docs), root / "sharded", show_progress=False)
    # Compile (or load from numba's cache) the kernels here once, before several actor
    # processes would each compile them at the same time.
    for mode in (None, "exhaustive"):
        sharded.search_batch(queries, 5, mode=mode, threads=1)
        sharded.search(queries.select([0]), 5, mode=mode)
    return docs, queries, single, sharded


def _distributed(path, **options):
    from sparse_ir.distributed.search import DistributedIndex

    return DistributedIndex(path, **{"num_cpus": 0.25, "timeout": 60, **options})


@pytest.mark.parametrize("shards_per_actor", [1, 3])
def test_ray_search_equals_the_single_index(ray_cluster, collection, shards_per_actor):
    docs, queries, single, sharded = collection
    ids = [f"q{i}" for i in range(len(queries))]
    with _distributed(sharded.directory, shards_per_actor=shards_per_actor, chunk_size=7) as index:
        assert len(index.actors) == (5 if shards_per_actor == 1 else 2)
        assert index.num_documents == 300 and index.doc_ids == single.doc_ids
        run = index.search_batch(queries, 20, query_ids=ids)
        assert run.complete and list(run.results) == ids
        assert run.results == single.search_batch(queries, 20, query_ids=ids, threads=1).results
        for row in (0, 7, 33):
            query = queries.select([row])
            assert index.search(query, 9) == single.search(query, 9)
            assert index.search(query, 9, mode="exhaustive") == single.search(query, 9)
            top = index.search_arrays(query, 4)
            assert top.docnos.tolist() == [h.docno for h in single.search(query, 4)]


def test_searcher_and_hybrid_over_a_distributed_sharded_pair(ray_cluster, collection, tmp_path):
    from sparse_ir.fusion import Fusion
    from sparse_ir.hybrid import HybridSearcher
    from sparse_ir.index.dense import DenseIndex
    from sparse_ir.search import DenseSearcher, Searcher

    docs, _, single, sharded = collection
    rng = np.random.default_rng(2)
    vectors = rng.normal(size=(len(docs), 6)).astype(np.float32)
    ids = list(docs.ids)
    edges = [*BOUNDS, len(docs)]
    dense_single = DenseIndex.build(vectors, tmp_path / "dense", ids=ids)
    ShardedDenseIndex.build(
        [(ids[a:b], vectors[a:b]) for a, b in zip(edges[:-1], edges[1:])], tmp_path / "dsharded"
    )
    queries = rng.normal(size=(6, 6)).astype(np.float32)
    vocab = docs.vocab

    class Vectors:
        dim = 6

        def encode_queries(self, texts, *, show_progress=None):
            texts = [texts] if isinstance(texts, str) else texts
            return queries[[int(t.split()[0]) for t in texts]]

    class Words:
        def __init__(self):
            self.vocab = vocab

        def encode_queries(self, texts, *, ids=None, show_progress=None):
            texts = [texts] if isinstance(texts, str) else texts
            return SparseBatch.from_dicts(
                [{w: 1.0 for w in t.split()[1:]} for t in texts], vocab, ids
            )

    texts = ["0 t1 t2", "3 t5", "5 t0 t9 t10 t14"]
    with (
        _distributed(sharded.directory) as sparse,
        _distributed(tmp_path / "dsharded", shards_per_actor=5) as dense,
    ):
        dense_run = dense.search_batch(queries, 8)
        for qid, hits in dense_single.search_batch(queries, 8).items():
            assert [h.docno for h in dense_run[qid]] == [h.docno for h in hits]
        assert Searcher(sparse, Words()).search(texts[2], 5) == Searcher(single, Words()).search(
            texts[2], 5
        )
        one = HybridSearcher(
            [Searcher(single, Words()), DenseSearcher(dense_single, Vectors())], Fusion()
        )
        many = HybridSearcher(
            [Searcher(sparse, Words()), DenseSearcher(dense, Vectors())], Fusion()
        )
        expected, got = one.search_batch(texts, 10), many.search_batch(texts, 10)
        for qid, hits in expected.items():
            assert [h.doc_id for h in got[qid]] == [h.doc_id for h in hits]


def test_a_shard_actor_killed_during_a_query_batch_is_restarted_and_the_batch_is_exact(
    ray_cluster, collection
):
    _, queries, single, sharded = collection
    batch = SparseBatch.concatenate([queries] * 8)
    ids = [f"q{i}" for i in range(len(batch))]
    expected = single.search_batch(batch, 10, query_ids=ids, threads=1).results
    with _distributed(sharded.directory, chunk_size=2, max_restarts=2) as index:
        victim = index.pids()[2]
        outcome = {}

        def search():
            outcome["run"] = index.search_batch(batch, 10, query_ids=ids)

        worker = threading.Thread(target=search)
        worker.start()
        time.sleep(0.3)  # the batch's chunks are in flight
        os.kill(victim, signal.SIGKILL)
        worker.join(timeout=120)
        assert outcome["run"].complete and outcome["run"].results == expected
        assert index.pids()[2] != victim  # Ray started a new actor process for shard-00002
        # A query right after a kill waits for the restart and is answered in full.
        os.kill(index.pids()[1], signal.SIGKILL)
        query = queries.select([3])
        assert index.search(query, 10) == single.search(query, 10)


def test_a_shard_that_stays_dead_fails_clearly_or_is_reported_missing(ray_cluster, collection):
    from sparse_ir.distributed.search import ShardUnavailableError

    _, queries, single, sharded = collection
    query = queries.select([5])
    with _distributed(sharded.directory, max_restarts=0, timeout=20) as index:
        os.kill(index.pids()[1], signal.SIGKILL)
        with pytest.raises(ShardUnavailableError, match="shard-00001 did not answer") as caught:
            index.search(query, 10)
        assert caught.value.shards == ("shard-00001",)
        index.allow_partial = True
        hits = index.search(query, 10)
        assert hits.missing_shards == ("shard-00001",)
        # The answer is the exact top-10 of the other shards' documents.
        lost = range(int(index.offsets[1]), int(index.offsets[2]))
        full = single.search(query, 300)
        assert hits == [h for h in full if h.docno not in lost][:10]
        run = index.search_batch(queries, 5)
        assert run.missing_shards == ("shard-00001",) and len(run) == len(queries)
