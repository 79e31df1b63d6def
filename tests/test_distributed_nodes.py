"""The default search placement on a real multi-node Ray cluster started on this machine.

``ray.cluster_utils.Cluster`` starts a head (no CPUs: it only runs the client) and two worker
nodes, each its own raylet with its own resources, as the nodes of a real cluster would be; the
default placement must put one shard actor on each node, its shards searched on the node's
CPUs. Everything is stopped at the end (the cluster's own processes only).
"""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest
from conftest import in_ci, random_batch

from sparse_ir.index.impact_index import ImpactIndex
from sparse_ir.index.sharded import ShardedIndex
from sparse_ir.sparse_batch import SparseBatch

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def two_nodes():
    try:
        import ray
        from ray.cluster_utils import Cluster
    except ImportError:
        if in_ci():
            pytest.fail("ray is not installed (pip install -e '.[all]' installs it)")
        pytest.skip("ray is not installed")
    if ray.is_initialized():  # another module's cluster: this one needs its own
        ray.shutdown()
    os.environ.setdefault("RAY_worker_niceness", "0")
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 0, "object_store_memory": 100 << 20},
    )
    try:
        big = cluster.add_node(num_cpus=2, object_store_memory=100 << 20)
        small = cluster.add_node(num_cpus=1, object_store_memory=100 << 20)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)
        yield ray, big.node_id, small.node_id
    finally:
        ray.shutdown()
        cluster.shutdown()


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    rng = np.random.default_rng(11)
    docs = random_batch(rng, 200, 15, 6, integer=True)
    docs = SparseBatch(docs.indptr, docs.indices, (docs.values % 5) + 1, docs.vocab, docs.ids)
    queries = random_batch(rng, 30, 15, 4, integer=True)
    root = tmp_path_factory.mktemp("nodes")
    single = ImpactIndex.build(docs, root / "single", show_progress=False)
    edges = [0, 40, 80, 120, 160, 200]
    parts = [docs.select(range(a, b)) for a, b in zip(edges[:-1], edges[1:])]
    sharded = ShardedIndex.build(parts, root / "sharded", show_progress=False)
    sharded.search(queries.select([0]), 5)  # compile (or load) the kernels once, here
    return queries, single, sharded


def test_the_default_places_one_actor_per_node_searching_on_its_cpus(two_nodes, collection):
    from sparse_ir.distributed.search import DistributedIndex

    ray, big, small = two_nodes
    queries, single, sharded = collection
    with DistributedIndex(sharded.directory, timeout=60) as index:
        # The node with the most free CPUs first: 3 shards on its 2 CPUs, 2 on the other's 1.
        assert index.groups == [[0, 1, 2], [3, 4]]
        assert index.placement.nodes == [big, small] and index.node_ids() == [big, small]
        assert index.placement.threads == [2, 1] and index.placement.num_cpus == [2.0, 1.0]
        for row in range(len(queries)):
            query = queries.select([row])
            assert index.search(query, 10) == single.search(query, 10)
        assert (
            index.search_batch(queries, 10).results
            == single.search_batch(queries, 10, threads=1).results
        )
        # A killed actor comes back on its node; the query waits for it and is exact.
        victim = index.pids()[1]
        os.kill(victim, signal.SIGKILL)
        assert index.search(queries.select([2]), 10) == single.search(queries.select([2]), 10)
        assert index.node_ids() == [big, small] and index.pids()[1] != victim
