"""Scale-out on a real local Ray cluster: scatter-gather search, encoding, faults.

One cluster for the whole module (starting Ray costs ~15 s on this machine): 2 CPUs, no
dashboard, a 300 MB object store, shut down at the end. Actors reserve a fraction of a CPU so
that several fit.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import numpy as np
import pytest
from conftest import in_ci, random_batch

from sparse_ir.errors import InputError
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
    # Ray runs workers at niceness 15: on this machine, shared with other jobs at 0, they
    # would crawl.
    os.environ.setdefault("RAY_worker_niceness", "0")
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


def _wait_for_free_cpus(ray, cpus: float, timeout: float = 60) -> None:
    """Until the cluster reports ``cpus`` free (actors killed just before release theirs a
    moment later, and the default placement reads the free CPUs)."""
    from sparse_ir.distributed.search import cluster_nodes

    deadline = time.monotonic() + timeout
    while sum(n.free_cpus for n in cluster_nodes(ray)) < cpus:
        assert time.monotonic() < deadline, f"the cluster did not free {cpus} CPUs"
        time.sleep(0.1)


def _distributed(path, **options):
    """One actor per shard unless told otherwise (the default depends on the CPUs free)."""
    from sparse_ir.distributed.search import DistributedIndex

    placement = {} if "actors" in options else {"shards_per_actor": 1}
    return DistributedIndex(path, **{"num_cpus": 0.25, "timeout": 60, **placement, **options})


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


def test_the_default_is_one_actor_per_node_on_its_free_cpus_and_a_dead_group_names_its_shards(
    ray_cluster, collection
):
    from sparse_ir.distributed.search import DistributedIndex, ShardUnavailableError

    _, queries, single, sharded = collection
    # One node with 2 free CPUs: one actor holding the 5 shards, searching them on 2 threads
    # (runs of 3 and 2 shards) with 2 CPUs reserved, pinned to the node.
    (node,) = [n["NodeID"] for n in ray_cluster.nodes() if n["Alive"]]
    _wait_for_free_cpus(ray_cluster, 2)
    with DistributedIndex(sharded.directory, timeout=60) as index:
        assert index.groups == [[0, 1, 2, 3, 4]]
        assert index.placement.threads == [2] and index.placement.num_cpus == [2.0]
        assert index.placement.nodes == [node] and index.node_ids() == [node]
        run = index.search_batch(queries, 10)
        assert run.results == single.search_batch(queries, 10, threads=1).results
        for row in range(len(queries)):
            query = queries.select([row])
            assert index.search(query, 7) == single.search(query, 7)
        # Killed, the actor is restarted by Ray on its node, and answers in full.
        victim = index.pids()[0]
        os.kill(victim, signal.SIGKILL)
        assert index.search(queries.select([3]), 10) == single.search(queries.select([3]), 10)
        assert index.pids()[0] != victim and index.node_ids() == [node]
    # Overrides: threads alone reserves as many CPUs; an explicit num_cpus is kept.
    _wait_for_free_cpus(ray_cluster, 2)
    with DistributedIndex(sharded.directory, threads=1, timeout=60) as index:
        assert index.placement.threads == [1] and index.placement.num_cpus == [1.0]
    _wait_for_free_cpus(ray_cluster, 2)
    with DistributedIndex(sharded.directory, num_cpus=0.5, timeout=60) as index:
        assert index.placement.threads == [2] and index.placement.num_cpus == [0.5]
    # One actor searching its 5 shards on 2 threads: the same answers.
    with _distributed(sharded.directory, actors=1, threads=2, num_cpus=0.5) as index:
        for row in range(len(queries)):
            query = queries.select([row])
            assert index.search(query, 7) == single.search(query, 7)
    with _distributed(sharded.directory, actors=2, max_restarts=0, timeout=20) as index:
        assert index.groups == [[0, 1, 2], [3, 4]]
        query = queries.select([4])
        assert index.search(query, 10) == single.search(query, 10)
        os.kill(index.pids()[1], signal.SIGKILL)
        with pytest.raises(ShardUnavailableError, match="shard-00003, shard-00004") as caught:
            index.search(query, 10)
        assert caught.value.shards == ("shard-00003", "shard-00004")
        index.allow_partial = True
        hits = index.search(query, 10)
        assert hits.missing_shards == ("shard-00003", "shard-00004")
        kept = int(index.offsets[3])
        assert hits == [h for h in single.search(query, 300) if h.docno < kept][:10]


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
        with pytest.raises(InputError, match="distributed search does not take filter"):
            Searcher(sparse, Words()).search(texts[2], 5, filter={ids[0]})
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
        # Arrays cannot say what is missing: refused, naming the shard, even with allow_partial.
        with pytest.raises(ShardUnavailableError, match="shard-00001") as caught:
            index.search_arrays(query, 10)
        assert caught.value.shards == ("shard-00001",)


# -- distributed encoding ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory):
    from conftest import TINY_WORDS

    rng = np.random.default_rng(9)
    path = tmp_path_factory.mktemp("corpus") / "corpus.jsonl"
    records = []
    for i in range(240):
        words = rng.choice(TINY_WORDS, size=int(rng.integers(3, 30)))
        records.append({"_id": f"d{i:04d}", "title": f"title {i}", "text": " ".join(words)})
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path, records


def _encode(tmp_path, corpus, model, **options):
    from sparse_ir.distributed.encode import EncodeJob, encode_corpus_on_ray

    job = EncodeJob(
        corpus, tmp_path, model=str(model), precision="float32", **{"part_size": 16, **options}
    )
    return encode_corpus_on_ray(job)


def test_ray_encoding_gives_the_single_process_vectors_resumes_and_indexes(
    ray_cluster, small_corpus, tiny_bert_dir, tmp_path
):
    from sparse_ir.distributed.encode import index_shards_on_ray, read_encode_result
    from sparse_ir.encoders.splade import SpladeEncoder

    path, records = small_corpus
    result = _encode(tmp_path / "parts", path, tiny_bert_dir, actors=2)
    # Read blocks of about one part (240 documents in 15 blocks): parts of 16, both actors
    # encoding, one part at a time each.
    assert result.documents == 240 and result.encoded == len(result.parts)
    assert result.sizes == [16] * 15
    assert len(result.workers) == 2 and sum(w["parts"] for w in result.workers.values()) == 15
    assert min(w["parts"] for w in result.workers.values()) >= 3
    # Each actor reports what its parts cost the kernel (page faults, system CPU): counted,
    # not left at the zeros a summary without them would give.
    for worker in result.workers.values():
        assert worker["page_faults"] > 0 and worker["system_seconds"] >= 0.0
    vectors = SparseBatch.concatenate(list(result.batches()))
    assert list(vectors.ids) == [r["_id"] for r in records]  # corpus order
    single = SpladeEncoder.from_pretrained(str(tiny_bert_dir), precision="float32")
    expected = single.encode_documents(
        [f"{r['title']} {r['text']}" for r in records], ids=[r["_id"] for r in records]
    )
    np.testing.assert_allclose(
        vectors.to_scipy().toarray(), expected.to_scipy().toarray(), atol=1e-5
    )
    assert result.settings["model"] == single.name or result.settings["model"]
    # A second run finds every part and encodes nothing.
    again = _encode(tmp_path / "parts", path, tiny_bert_dir, actors=1)
    assert again.kept == len(result.parts) and again.encoded == 0 and again.parts == result.parts
    assert read_encode_result(tmp_path / "parts").parts == result.parts
    # Parquet input: the same parts.
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({k: [r[k] for r in records] for k in ("_id", "title", "text")})
    pq.write_table(table, tmp_path / "corpus.parquet")
    from_parquet = _encode(tmp_path / "pq", tmp_path / "corpus.parquet", tiny_bert_dir)
    parquet_vectors = SparseBatch.concatenate(list(from_parquet.batches()))
    assert parquet_vectors.ids == vectors.ids
    np.testing.assert_allclose(parquet_vectors.values, vectors.values, atol=1e-5)
    # Sharded index built by Ray tasks: the single index of the same vectors.
    sharded = index_shards_on_ray(result, tmp_path / "index", shards=3, num_cpus=0.5)
    assert sharded.num_shards == 3
    one = ImpactIndex.build(vectors, tmp_path / "one", show_progress=False)
    queries = single.encode_queries(["cancer cells", "gene expression in mice", "python data"])
    assert sharded.search_batch(queries, 20).results == one.search_batch(queries, 20).results


def test_an_encoder_actor_killed_mid_run_leaves_every_document_exactly_once(
    ray_cluster, small_corpus, tiny_bert_dir, tmp_path
):
    path, records = small_corpus
    output = tmp_path / "parts"
    killed = []

    def kill_one_worker():
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not killed:
            workers = output / ".workers"
            parts = list(output.glob("part-*.npz"))
            if len(parts) >= 2 and workers.is_dir() and any(workers.iterdir()):
                victim = int(sorted(workers.iterdir())[0].name)
                os.kill(victim, signal.SIGKILL)
                killed.append(victim)
            time.sleep(0.01)

    watcher = threading.Thread(target=kill_one_worker)
    watcher.start()
    result = _encode(output, path, tiny_bert_dir, actors=2, part_size=8)
    watcher.join()
    assert killed, "no encoder actor was killed"
    vectors = SparseBatch.concatenate(list(result.batches()))
    assert list(vectors.ids) == [r["_id"] for r in records]  # each once, in order
    assert sorted(p.name for p in output.glob("part-*.npz")) == sorted(result.parts)


# -- SciFact end to end through the cluster ------------------------------------------------------


@pytest.fixture(scope="module")
def scifact_on_ray(ray_cluster, scifact_dir, tmp_path_factory):
    """SciFact encoded by 2 splade-tiny actors (1 thread each) and indexed in 4 shards by Ray
    tasks: once for the module (a few minutes on this machine)."""
    from sparse_ir.distributed.encode import EncodeJob, encode_corpus_on_ray, index_shards_on_ray

    root = tmp_path_factory.mktemp("scifact-ray")
    job = EncodeJob(scifact_dir / "corpus.jsonl", root / "encoded", actors=2, part_size=500)
    encoded = encode_corpus_on_ray(job)
    return encoded, index_shards_on_ray(encoded, root / "index", shards=4, num_cpus=0.5)


def test_scifact_through_ray_equals_the_single_machine_path(
    scifact_on_ray, scifact_vectors, scifact_dir, tmp_path
):
    from sparse_ir.distributed.search import DistributedIndex
    from sparse_ir.eval import evaluate, read_qrels
    from sparse_ir.quantize import Quantizer

    encoded, sharded = scifact_on_ray
    docs, queries = scifact_vectors
    vectors = SparseBatch.concatenate(list(encoded.batches()))
    # The vectors: every document once, in corpus order, the single-machine encoder's weights
    # (the reference vectors are splade-tiny's by the textbook formula, float32).
    assert list(vectors.ids) == list(docs.ids) and vectors.vocab == docs.vocab
    difference = abs(vectors.to_scipy() - docs.to_scipy())
    assert difference.max() < 1e-4, difference.max()
    quantizer = Quantizer()
    assert sharded.quantizer == quantizer and sharded.num_documents == 5183
    # The single-machine index of these vectors, and the sharded one searched through Ray.
    single = ImpactIndex.build(vectors, tmp_path / "single", quantizer=quantizer)
    quantized_queries = quantizer.quantize(queries)
    with DistributedIndex(sharded.directory, num_cpus=0.25, chunk_size=50) as distributed:
        run = distributed.search_batch(quantized_queries, 100)
    assert run.complete and len(run) == 300
    assert run.results == single.search_batch(quantized_queries, 100, threads=1).results
    ndcg = evaluate(run, read_qrels(scifact_dir / "qrels" / "test.tsv"))["nDCG@10"]
    assert ndcg >= 0.643, ndcg
    print(f"SciFact through Ray: nDCG@10 {ndcg:.4f}; max |w_ray - w_ref| {difference.max():.2e}")


def test_index_command_with_ray_builds_a_searchable_sharded_index(
    ray_cluster, small_corpus, tiny_bert_dir, tmp_path, capsys
):
    from sparse_ir.cli import main
    from sparse_ir.hybrid import open_searcher
    from sparse_ir.index.sharded import ShardedIndex

    path, _ = small_corpus
    output = tmp_path / "index"
    argv = ["-q", "index", "--ray", "--input", str(path), "--output", str(output)]
    argv += ["--model", str(tiny_bert_dir), "--precision", "float32"]
    argv += ["--shards", "3", "--part-size", "40", "--actors", "2"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["shards"] == 3 and summary["documents"] == 240 and summary["parts_kept"] == 0
    searcher = open_searcher(output)
    assert isinstance(searcher.index, ShardedIndex)
    hits = searcher.search("cancer cells in mice", 5)
    assert len(hits) == 5 and hits == searcher.index.reference_search(
        searcher.encode("cancer cells in mice"), 5
    )
    assert main(argv) == 0  # a re-run keeps every part
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["parts_kept"] >= 6
