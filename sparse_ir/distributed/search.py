"""Scatter-gather search of a sharded index on Ray actors.

Each actor holds a group of consecutive shards of a :mod:`sparse_ir.index.sharded` index,
memory-mapped from the shared storage they were written to. By default there is one actor per
Ray node, holding that node's share of the shards and searching them on as many threads as
the CPUs it reserves (:func:`default_placement`). A query (or a chunk of a batch) goes to every
actor; each merges its shards' exact top-k lists and answers one list per
query as packed arrays; the client merges those with the same exact merge as the local
:class:`~sparse_ir.index.sharded.ShardedIndex` and names the hits from the shards' id
columns, so the answer is the one index's over all documents.

The per-query path is kept short because on a small machine it is most of the latency: the
query goes as one ``bytes`` argument (built once, for every actor), the answer comes back as
``bytes`` (no pickled arrays, no Hit objects, no ids), all calls are in flight at once and
gathered by one ``ray.get``, and the actors record no task events.

Faults: actors are created with ``max_restarts`` (Ray starts a dead actor again and re-opens
its shards) and ``max_task_retries`` (calls in flight when it died are sent again). A call
that has not answered within ``timeout`` seconds — an actor still restarting, or one that
used up its restarts — raises :class:`ShardUnavailableError` naming the shards, never a
silently partial answer; with ``allow_partial=True`` the answer is what the other shards
returned, and its ``missing_shards`` says which were missing.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from sparse_ir.errors import SparseIRError
from sparse_ir.results import Hit, Run

if TYPE_CHECKING:
    from sparse_ir.index.impact_index import TopK

__all__ = [
    "DistributedIndex",
    "ShardUnavailableError",
    "ShardedRun",
    "ShardedHits",
    "ShardGroup",
    "NodeSlot",
    "Placement",
    "default_placement",
    "cluster_nodes",
    "shard_groups",
    "pack_query",
    "unpack_query",
    "pack_top",
    "unpack_top",
]

logger = logging.getLogger(__name__)


class ShardUnavailableError(SparseIRError, RuntimeError):
    """Shards that did not answer in time (their actor died and did not come back).

    Attributes:
        shards: the names of the shards without an answer (``shard-00002``...).
    """

    def __init__(self, message: str, shards: Sequence[str]):
        super().__init__(message)
        self.shards = tuple(shards)


@dataclass
class ShardedRun(Run):
    """A :class:`~sparse_ir.results.Run` that says which shards it lacks (empty: complete).

    Example:
        >>> ShardedRun({}, missing_shards=("shard-00001",)).complete
        False
    """

    missing_shards: tuple[str, ...] = ()

    @property
    def complete(self) -> bool:
        """True when every shard answered."""
        return not self.missing_shards


class ShardedHits(list):
    """The hits of one query (a list), with ``missing_shards`` like :class:`ShardedRun`."""

    missing_shards: tuple[str, ...] = ()


class ShardGroup:
    """The actor's body: a group of shards of one sharded index, searched in this process.

    The group merges its own shards' top-k (global document numbers, the exact
    :func:`~sparse_ir.index.composite.merge_topk`), so each actor sends back one short list
    per query, as raw arrays: no :class:`~sparse_ir.results.Hit` and no document id crosses
    the wire (the client names the hits from the shards' id columns).
    """

    def __init__(self, path: str, numbers: Sequence[int], threads: int = 1):
        from sparse_ir.index.composite import part_offsets
        from sparse_ir.index.sharded import open_sharded_kind

        kind = open_sharded_kind(path)
        _, records = kind.read_manifest(path)
        offsets = part_offsets([record.num_documents for record in records])
        self.shards = kind.open_shards(path, list(numbers))
        self.starts = [int(offsets[n]) for n in numbers]
        self.threads = threads
        # One query's shards are searched side by side (the kernels release the GIL) as
        # `threads` runs of consecutive shards: the calling thread searches the first run and
        # the pool the others, so a query costs threads - 1 hand-offs, not one per shard.
        self._runs = [list(run) for run in np.array_split(np.arange(len(self.shards)), threads)]
        self._runs = [run for run in self._runs if run]
        self._pool = None
        if len(self._runs) > 1:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(len(self._runs) - 1)

    def pid(self) -> int:
        """This actor's process id (for operators, and for the fault tests)."""
        return os.getpid()

    def node_id(self) -> str:
        """The Ray node this actor runs on (hex id)."""
        import ray

        return ray.get_runtime_context().get_node_id()

    def search_one(self, query: bytes, k: int, mode) -> bytes:
        """The group's top-``k`` of one prepared impact query (:func:`pack_query`), packed by
        :func:`pack_top` with global document numbers."""
        from sparse_ir.index.composite import merge_topk

        prepared = unpack_query(query)

        def run(numbers):
            return [self.shards[n].search_arrays(prepared, k, mode=mode) for n in numbers]

        if self._pool is None:
            parts = run(self._runs[0])
        else:
            others = [self._pool.submit(run, numbers) for numbers in self._runs[1:]]
            parts = run(self._runs[0])
            for future in others:
                parts.extend(future.result())
        return pack_top(merge_topk(parts, self.starts, k))

    def search_batch(self, queries, k: int, mode) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The group's top-``k`` of every query: ``(counts, docnos, scores)``, the lists laid
        end to end (``counts[q]`` hits of query ``q``), global document numbers.

        ``queries``: ``(indptr, terms, weights)`` of prepared impact queries, or a ``[q, dim]``
        float32 matrix for dense shards.
        """
        from sparse_ir.index.composite import merge_topk
        from sparse_ir.index.sharded import _as_topk

        runs = []
        for shard in self.shards:
            if isinstance(queries, tuple):
                batch = _as_impact_batch(queries, shard.vocab)
                runs.append(shard.search_batch(batch, k, mode=mode, threads=self.threads))
            else:
                matrix = np.array(queries, np.float32)
                runs.append(shard.search_batch(matrix, k, mode=mode or "exact"))
        tops = [
            merge_topk([_as_topk(hits) for hits in per_query], self.starts, k)
            for per_query in zip(*(run.results.values() for run in runs))
        ]
        counts = np.array([len(top.docnos) for top in tops], np.int64)
        if not tops:
            return counts, np.empty(0, np.int64), np.empty(0, np.int64)
        return (
            counts,
            np.concatenate([top.docnos for top in tops]),
            np.concatenate([top.scores for top in tops]),
        )


def pack_query(terms: np.ndarray, weights: np.ndarray) -> bytes:
    """One prepared impact query as bytes: the int32 term ids, then the int64 weights.

    Bytes are the cheapest argument Ray passes (no pickling of arrays), and the query is
    serialized once for every actor.

    Example:
        >>> terms, weights = unpack_query(pack_query(np.array([3, 7]), np.array([2, 5])))
        >>> terms.tolist(), weights.tolist(), terms.dtype.name, weights.dtype.name
        ([3, 7], [2, 5], 'int32', 'int64')
    """
    return np.asarray(terms, "<i4").tobytes() + np.asarray(weights, "<i8").tobytes()


def unpack_query(blob: bytes) -> tuple[np.ndarray, np.ndarray]:
    """The ``(terms, weights)`` of :func:`pack_query` (writable copies, the dtypes a search
    of this process uses: numba compiles a kernel per array type)."""
    count = len(blob) // 12
    if len(blob) != 12 * count:
        raise ValueError(f"a packed query has 12 bytes per term, got {len(blob)} bytes")
    terms = np.frombuffer(blob, "<i4", count).astype(np.int32)
    return terms, np.frombuffer(blob, "<i8", count, offset=4 * count).astype(np.int64)


def pack_top(top: TopK) -> bytes:
    """A top-k list of an impact search as bytes: int64 document numbers, then int64 scores.

    Example:
        >>> from sparse_ir.index.impact_index import TopK
        >>> back = unpack_top(pack_top(TopK(np.array([4, 1]), np.array([9, 9]))))
        >>> back.docnos.tolist(), back.scores.tolist()
        ([4, 1], [9, 9])
    """
    return np.asarray(top.docnos, "<i8").tobytes() + np.asarray(top.scores, "<i8").tobytes()


def unpack_top(blob: bytes) -> TopK:
    """The :class:`TopK` of :func:`pack_top`."""
    from sparse_ir.index.impact_index import TopK

    count = len(blob) // 16
    if len(blob) != 16 * count:
        raise ValueError(f"a packed top-k list has 16 bytes per hit, got {len(blob)} bytes")
    return TopK(
        np.frombuffer(blob, "<i8", count), np.frombuffer(blob, "<i8", count, offset=8 * count)
    )


@dataclass(frozen=True)
class NodeSlot:
    """A Ray node as the default placement sees it: its id and the CPUs it has free."""

    node_id: str
    free_cpus: float


@dataclass(frozen=True)
class Placement:
    """Where the shard actors go: per actor, its shards, its node (None: anywhere), the
    CPUs Ray reserves for it and its search threads."""

    groups: list[list[int]]
    nodes: list[str | None]
    num_cpus: list[float]
    threads: list[int]


def default_placement(
    shards: int,
    nodes: Sequence[NodeSlot],
    *,
    threads: int | None = None,
    num_cpus: float | None = None,
) -> Placement:
    """The default placement of a sharded index's search actors: **one actor per node**.

    The nodes are taken most free CPUs first (at most one per shard); the shards are split into
    that many runs of consecutive shards (:func:`shard_groups`), one per node, and each actor
    searches a query's shards on ``threads = min(its shards, the node's free CPUs)`` threads
    (at least 1) and reserves that many CPUs. ``threads`` / ``num_cpus`` given by the caller
    replace the computed ones (``num_cpus`` defaults to ``threads``).

    Why one actor per node: a query costs Ray a round trip to every actor it is scattered to
    (about 1 ms here, and a fraction of a millisecond of the client's CPU each), while threads
    inside an actor cost microseconds; so on one machine one actor on all its cores answers
    fastest (measured in docs/scale.md on 5k and on 1M documents), and on a cluster the
    client's cost grows with the nodes, not with the shards.

    Example:
        >>> place = default_placement(4, [NodeSlot("a", 2.0)])  # this 2-CPU machine
        >>> place.groups, place.threads, place.num_cpus
        ([[0, 1, 2, 3]], [2], [2.0])
        >>> place = default_placement(5, [NodeSlot("a", 1.0), NodeSlot("b", 16.0)])
        >>> place.groups, place.nodes, place.threads
        ([[0, 1, 2], [3, 4]], ['b', 'a'], [3, 1])
        >>> default_placement(400, [NodeSlot(f"n{i:02d}", 16.0) for i in range(16)]).threads[:2]
        [16, 16]
        >>> default_placement(3, []).nodes  # no node with a free CPU: one actor, waits for one
        [None]
    """
    if shards < 1:
        raise ValueError(f"shards must be >= 1, got {shards}")
    usable = sorted((n for n in nodes if n.free_cpus >= 1), key=lambda n: (-n.free_cpus, n.node_id))
    chosen = usable[:shards] or [None]
    groups = shard_groups(shards, len(chosen))
    counts = [
        threads
        if threads is not None
        else max(1, min(len(group), int(node.free_cpus + 1e-9) if node else 1))
        for group, node in zip(groups, chosen)
    ]
    return Placement(
        groups,
        [node.node_id if node else None for node in chosen],
        [float(num_cpus) if num_cpus is not None else float(count) for count in counts],
        counts,
    )


def cluster_nodes(ray) -> list[NodeSlot]:
    """The alive nodes of the connected cluster and the CPUs each has free now.

    Free CPUs per node come from Ray's developer API (``available_resources_per_node``);
    where it is missing, each node's total CPUs.
    """
    try:
        from ray._private.state import available_resources_per_node

        free = available_resources_per_node()
    except (ImportError, AttributeError):  # pragma: no cover - older or newer Ray
        free = None
    slots = []
    for node in ray.nodes():
        if not node.get("Alive"):
            continue
        node_id = node["NodeID"]
        resources = free.get(node_id, {}) if free is not None else node.get("Resources", {})
        slots.append(NodeSlot(node_id, float(resources.get("CPU", 0.0))))
    return slots


def shard_groups(shards: int, actors: int) -> list[list[int]]:
    """Shards ``0 .. shards-1`` in ``actors`` runs of consecutive shards, sizes within one.

    Example:
        >>> shard_groups(5, 2)
        [[0, 1, 2], [3, 4]]
        >>> shard_groups(4, 4)
        [[0], [1], [2], [3]]
    """
    if not 1 <= actors <= shards:
        raise ValueError(f"need 1 <= actors <= shards, got {actors} actors for {shards} shards")
    size, extra = divmod(shards, actors)
    groups, start = [], 0
    for group in range(actors):
        end = start + size + (group < extra)
        groups.append(list(range(start, end)))
        start = end
    return groups


def _as_impact_batch(queries, vocab):
    from sparse_ir.sparse_batch import SparseBatch

    indptr, terms, weights = queries
    # Writable copies in the dtypes of an in-process search: arrays from Ray's object store are
    # read-only, and numba would compile (minutes on a busy machine) a kernel for that type.
    return SparseBatch(
        np.array(indptr, np.int64), np.array(terms, np.int32), np.array(weights, np.int32), vocab
    )


class DistributedIndex:
    """A sharded index (:mod:`sparse_ir.index.sharded`) searched by Ray actors.

    The search API of the local index — ``search``, ``search_arrays``, ``search_batch``,
    ``prepare_query``, ``vocab``, ``quantizer``, ``doc_ids``, ``settings``, ``num_documents``
    — so a :class:`~sparse_ir.search.Searcher` (impact shards) or
    :class:`~sparse_ir.search.DenseSearcher` (dense shards), and a hybrid of both, search it
    unchanged.

    Args:
        path: the sharded index, on storage every node reads at the same path (the client
            reads the manifest and the shards' document-id columns there too).
        actors: shard actors to start; the shards are split into that many runs of
            consecutive shards (:func:`shard_groups`), placed by Ray by their ``num_cpus``.
            Default (neither ``actors`` nor ``shards_per_actor``): **one actor per Ray node**
            with a free CPU, at most one per shard, most free CPUs first, each holding a run
            of consecutive shards and pinned to its node (softly: a restart after the node is
            lost goes elsewhere), searching on ``threads = min(its shards, the node's free
            CPUs)`` threads with as many CPUs reserved (:func:`default_placement`). On one
            machine that is one actor on all the cores; on 16 nodes of 16 CPUs, 16 actors of
            16 threads. Few actors with threads beat many actors: every actor costs a Ray round
            trip per query, every thread a few microseconds (docs/scale.md).
        shards_per_actor: instead of ``actors``, the shards each actor holds (1: one actor
            per shard).
        num_cpus: CPUs Ray reserves per actor (default: ``threads``); ``num_gpus`` is not
            needed to search.
        threads: search threads inside an actor (default: 1 with ``actors`` or
            ``shards_per_actor``, else the default placement's): a query's shards in the actor
            are searched side by side as ``threads`` runs of shards, and a batch chunk's
            queries on ``threads`` threads per shard.
        max_restarts: times Ray restarts a dead actor (default 3).
        timeout: seconds a search waits for every shard (default 60), restarts included.
        allow_partial: on a timeout, answer with the shards that did answer (the answer's
            ``missing_shards`` names the others) instead of raising.
        chunk_size: queries per call of :meth:`search_batch` (default 64): chunks of a batch
            are in flight at once, spread over the actors.
        address: the Ray cluster (see :func:`~sparse_ir.distributed.cluster.init_ray`); used
            only when Ray is not initialized yet.
        start_timeout: seconds to wait for the actors to open their shards (default 600).

    Example (not run here: it needs a Ray cluster)::

        index = DistributedIndex("indexes/msmarco-sharded")  # one actor per node
        print(index.placement.groups, index.placement.threads)
        searcher = Searcher(index, SpladeEncoder.from_pretrained(index.settings["model"]))
        run = searcher.search_batch(texts, k=100)
        index.close()
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        actors: int | None = None,
        shards_per_actor: int | None = None,
        num_cpus: float | None = None,
        threads: int | None = None,
        max_restarts: int = 3,
        timeout: float = 60.0,
        allow_partial: bool = False,
        chunk_size: int = 64,
        address: str | None = None,
        start_timeout: float = 600.0,
    ):
        from sparse_ir.distributed.cluster import init_ray
        from sparse_ir.index.sharded import SHARDED_DENSE_FORMAT, open_sharded_kind

        if actors is not None and shards_per_actor is not None:
            raise ValueError("give actors or shards_per_actor, not both")
        if (
            (actors is not None and actors < 1)
            or (shards_per_actor is not None and shards_per_actor < 1)
            or chunk_size < 1
            or (threads is not None and threads < 1)
            or (num_cpus is not None and num_cpus < 0)
            or timeout <= 0
            or max_restarts < 0
        ):
            raise ValueError(
                "actors, shards_per_actor, threads and chunk_size must be >= 1, num_cpus "
                f">= 0, timeout > 0, max_restarts >= 0; got {actors}, {shards_per_actor}, "
                f"{threads}, {chunk_size}, {num_cpus}, {timeout}, {max_restarts}"
            )
        self.directory = Path(path).resolve()
        kind = open_sharded_kind(self.directory)
        self._body, self.records = kind.read_manifest(self.directory)
        self.is_dense = kind.FORMAT == SHARDED_DENSE_FORMAT
        self._first = kind.open_shards(self.directory, [0])[0]  # vocabulary, quantizer, dim
        from sparse_ir.index.composite import part_offsets

        self.offsets = part_offsets([r.num_documents for r in self.records])
        self._starts = self.offsets[:-1].tolist()
        self._no_offsets = [0] * len(self.records)
        self.timeout = float(timeout)
        self.allow_partial = bool(allow_partial)
        self.chunk_size = int(chunk_size)
        self._doc_id_list: list[str] | None = None
        self._id_columns: list | None = None
        ray = init_ray(address)
        shards = len(self.records)
        if actors is None and shards_per_actor is None:
            self.placement = default_placement(
                shards, cluster_nodes(ray), threads=threads, num_cpus=num_cpus
            )
        else:
            if shards_per_actor is not None:
                groups = [
                    list(range(start, min(start + shards_per_actor, shards)))
                    for start in range(0, shards, shards_per_actor)
                ]
            else:
                groups = shard_groups(shards, min(actors, shards))
            count = 1 if threads is None else threads
            cpus = float(count) if num_cpus is None else float(num_cpus)
            self.placement = Placement(
                groups, [None] * len(groups), [cpus] * len(groups), [count] * len(groups)
            )
        self.groups = self.placement.groups
        # Task events feed Ray's state API and dashboard (``ray list tasks``); on the path of
        # every query they cost more than the search of a small shard, so these actors' calls
        # record none (actor restarts and errors are still reported).
        remote = ray.remote(ShardGroup)
        self.actors = []
        for group, node, cpus, count in zip(
            self.groups, self.placement.nodes, self.placement.num_cpus, self.placement.threads
        ):
            options = {
                "num_cpus": cpus,
                "max_restarts": max_restarts,
                "max_task_retries": max_restarts,
                "enable_task_events": False,
            }
            if node is not None:
                from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

                options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node, soft=True)
            self.actors.append(remote.options(**options).remote(str(self.directory), group, count))
        self._wait_started(start_timeout)

    def _wait_started(self, start_timeout: float) -> None:
        """Block until every actor has opened its shards (a clear error naming those that
        could not, e.g. a shard missing on the node's storage)."""
        ray = _ray()
        from ray.exceptions import GetTimeoutError, RayActorError

        refs = [actor.pid.remote() for actor in self.actors]
        try:
            ray.get(refs, timeout=start_timeout)
        except (GetTimeoutError, RayActorError) as error:
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
            names = [
                self.records[n].path
                for ref, group in zip(refs, self.groups)
                if ref not in ready
                for n in group
            ]
            self.close()
            raise ShardUnavailableError(
                f"{self.directory}: the actors of shard(s) {', '.join(names)} did not start "
                f"within {start_timeout:g}s: {error}",
                names,
            ) from None

    # -- facts ------------------------------------------------------------------------------------

    @property
    def num_documents(self) -> int:
        """Documents of all shards."""
        return int(self.offsets[-1])

    @property
    def shard_names(self) -> list[str]:
        """The shards' directory names, in document order."""
        return [record.path for record in self.records]

    @property
    def settings(self) -> dict:
        """The first shard's build facts with the sharded manifest's settings."""
        return {**self._first.settings, **self._body.get("settings", {})}

    def __getattr__(self, name: str):
        # vocab, quantizer, vocab_hash, vocab_size, dim, term_id...: the first shard's (the
        # manifest guarantees every shard has the same).
        if name in ("vocab", "quantizer", "vocab_hash", "vocab_size", "dim", "term_id"):
            return getattr(self._first, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def _columns(self) -> list:
        """Each pinned shard's document-id column, memory-mapped (read a hit at a time: the
        client holds no list of ids)."""
        if self._id_columns is None:
            from sparse_ir.index.strings import StringColumn

            self._id_columns = [
                StringColumn(
                    self.directory / record.path / record.generation,
                    "doc_ids",
                    record.num_documents,
                )
                for record in self.records
            ]
        return self._id_columns

    @property
    def doc_ids(self) -> list[str]:
        """External id of every document, by global number (read once from the shards)."""
        if self._doc_id_list is None:
            self._doc_id_list = [d for column in self._columns() for d in column.all()]
        return self._doc_id_list

    def pids(self) -> list[int]:
        """Process id of each actor (by group), e.g. to see where they run."""
        ray = _ray()
        return ray.get([actor.pid.remote() for actor in self.actors], timeout=self.timeout)

    def node_ids(self) -> list[str]:
        """The Ray node (hex id) each actor runs on now (by group)."""
        ray = _ray()
        return ray.get([actor.node_id.remote() for actor in self.actors], timeout=self.timeout)

    def close(self) -> None:
        """Stop the actors (the cluster keeps running)."""
        ray = _ray()
        for actor in self.actors:
            ray.kill(actor, no_restart=True)
        self.actors = []

    def __enter__(self) -> DistributedIndex:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- search -----------------------------------------------------------------------------------

    def prepare_query(self, query):
        """Term ids and integer weights of a query (impact shards)."""
        return self._first.prepare_query(query)

    def search(self, query, k: int = 10, *, mode=None, filter=None) -> ShardedHits:  # noqa: A002
        """The top-``k`` documents of all shards for one query (a sparse query form, or a
        dense vector), scattered to every actor and merged. ``filter`` must be None:
        distributed search does not take filters yet (an error, never ignored)."""
        _refuse_filter(filter)
        if self.is_dense:
            array = np.asarray(query, np.float32)
            run = self.search_batch(array[None, :] if array.ndim == 1 else array, k, mode=mode)
            hits = ShardedHits(run.results["0"])
            hits.missing_shards = run.missing_shards
            return hits
        top, missing = self._search_one(query, k, mode)
        hits = ShardedHits(self._hits(top))
        hits.missing_shards = missing
        return hits

    def _search_one(self, query, k: int, mode) -> tuple[TopK, tuple[str, ...]]:
        """One impact query: every group's top-k (one call per actor, one ``ray.get``),
        merged; and the shards without an answer (only with ``allow_partial``)."""
        from sparse_ir.index.composite import merge_topk

        blob = pack_query(*self.prepare_query(query))  # serialized once for every actor
        refs = [actor.search_one.remote(blob, k, mode) for actor in self.actors]
        answers, missing = self._gather(refs)
        parts = [unpack_top(answer) for answer in answers if answer is not None]
        top = merge_topk(parts, self._no_offsets[: len(parts)], k)
        return top, tuple(self.records[n].path for n in missing)

    def search_arrays(self, query, k: int = 10, *, mode=None, filter=None):  # noqa: A002
        """:meth:`search` as ``TopK(docnos, scores)`` with global document numbers.

        A ``TopK`` has no place to say which shards are missing, so a partial answer is never
        returned here, even with ``allow_partial``: :class:`ShardUnavailableError` names the
        shards (use :meth:`search`, whose hits carry ``missing_shards``)."""
        from sparse_ir.index.impact_index import TopK

        _refuse_filter(filter)
        if self.is_dense:
            hits = self.search(query, k, mode=mode)
            missing = hits.missing_shards
            top = TopK(
                np.array([h.docno for h in hits], np.int64), np.array([h.score for h in hits])
            )
        else:
            top, missing = self._search_one(query, k, mode)
        if missing:
            raise ShardUnavailableError(
                f"{self.directory}: shard(s) {', '.join(missing)} did not answer, and "
                "search_arrays cannot report a partial answer: use search(), whose hits name "
                "the missing shards",
                missing,
            )
        return top

    def search_batch(
        self,
        queries,
        k: int = 10,
        *,
        query_ids: Sequence[str] | None = None,
        mode=None,
        threads: int | None = None,
        filter=None,  # noqa: A002 (the public name)
    ) -> ShardedRun:
        """Top-``k`` of many queries: chunks of ``chunk_size`` queries are sent to every actor
        at once and merged as they come. ``threads`` is accepted for the common shape (the
        actors' ``threads`` decide); ``filter`` must be None (see :meth:`search`)."""
        _refuse_filter(filter)
        if self.is_dense:
            matrix = np.ascontiguousarray(np.atleast_2d(np.asarray(queries, np.float32)))
            ids = _ids(query_ids, len(matrix))
            chunks = [
                matrix[start : start + self.chunk_size]
                for start in range(0, len(matrix), self.chunk_size)
            ]
            return self._scatter(ids, chunks, k, mode or "exact")
        ids, indptr, terms, weights = self._first._batch_query_arrays(queries)
        if query_ids is not None:
            ids = _ids(query_ids, len(ids))
        return self._search_prepared(ids, indptr, terms, weights, k, mode)

    def _search_prepared(self, ids, indptr, terms, weights, k, mode) -> ShardedRun:
        chunks = []
        for start in range(0, len(ids), self.chunk_size):
            end = min(start + self.chunk_size, len(ids))
            lo, hi = int(indptr[start]), int(indptr[end])
            chunks.append(
                (
                    indptr[start : end + 1] - lo,
                    np.asarray(terms[lo:hi], np.int32),
                    np.asarray(weights[lo:hi], np.int32),
                )
            )
        return self._scatter(ids, chunks, k, mode)

    def _scatter(self, ids, chunks, k, mode) -> ShardedRun:
        """Send every chunk to every actor (all calls in flight at once), gather them with
        one ``ray.get``, merge each query's group lists."""
        from sparse_ir.index.composite import merge_topk
        from sparse_ir.index.impact_index import TopK

        ray = _ray()
        # A chunk sent to several actors is put in the object store once; a small one is
        # faster inlined in each call.
        chunk_refs = [
            ray.put(chunk) if _nbytes(chunk) > _INLINE_BYTES and len(self.actors) > 1 else chunk
            for chunk in chunks
        ]
        refs = [
            [actor.search_batch.remote(ref, k, mode) for actor in self.actors] for ref in chunk_refs
        ]
        answers, missing = self._gather([r for row in refs for r in row])
        run = ShardedRun(name="dense" if self.is_dense else "sparse-ir")
        run.missing_shards = tuple(self.records[n].path for n in missing)
        per_actor = len(self.actors)
        query = 0
        for row, chunk in enumerate(chunks):
            size = len(chunk) if self.is_dense else len(chunk[0]) - 1
            lists = []  # per answering actor: the chunk's top-k lists
            answered = answers[row * per_actor : (row + 1) * per_actor]
            for counts, docnos, scores in (a for a in answered if a is not None):
                ends = np.cumsum(counts).tolist()
                lists.append(
                    [TopK(docnos[a:b], scores[a:b]) for a, b in zip([0, *ends[:-1]], ends)]
                )
            for position in range(size):
                parts = [group[position] for group in lists]
                top = merge_topk(parts, self._no_offsets[: len(parts)], k)
                run.results[ids[query]] = self._hits(top)
                query += 1
        return run

    def _hits(self, top: TopK) -> list[Hit]:
        """Hits of global document numbers, named from the shards' id columns."""
        docnos = top.docnos.tolist()
        shards = (np.searchsorted(self.offsets, top.docnos, side="right") - 1).tolist()
        columns, starts = self._columns(), self._starts
        return [
            Hit(columns[s][d - starts[s]], score, d)
            for d, s, score in zip(docnos, shards, top.scores.tolist())
        ]

    def _gather(self, refs: list) -> tuple[list, list[int]]:
        """Every answer (None where an actor gave none within the timeout) and the numbers
        of the shards without an answer; raises :class:`ShardUnavailableError` unless
        ``allow_partial``."""
        ray = _ray()
        from ray.exceptions import GetTimeoutError, RayActorError

        deadline = time.monotonic() + self.timeout
        try:  # the common case: every answer, in one call
            return ray.get(refs, timeout=self.timeout), []
        except (GetTimeoutError, RayActorError):
            pass  # find out which calls failed (waiting for the others until the deadline)
        answers: list = [None] * len(refs)
        failures: dict[int, str] = {}
        for position, ref in enumerate(refs):
            remaining = max(deadline - time.monotonic(), 0.0)
            try:
                answers[position] = ray.get(ref, timeout=remaining)
            except GetTimeoutError:
                failures[position] = f"no answer within {self.timeout:g}s (restarting?)"
                ray.cancel(ref, force=False)
            except RayActorError as error:
                failures[position] = f"its actor died ({type(error).__name__})"
        if not failures:
            return answers, []
        group_of = {p: p % len(self.actors) for p in failures}
        missing = sorted({n for p in failures for n in self.groups[group_of[p]]})
        names = [self.records[n].path for n in missing]
        reason = next(iter(failures.values()))
        if not self.allow_partial:
            raise ShardUnavailableError(
                f"{self.directory}: shard(s) {', '.join(names)} did not answer: {reason}; "
                "retry later, raise timeout=, or pass allow_partial=True to accept an answer "
                "without them",
                names,
            )
        logger.warning("answering without shard(s) %s: %s", ", ".join(names), reason)
        for position in failures:
            answers[position] = None
        return answers, missing


_INLINE_BYTES = 64 << 10


def _nbytes(chunk) -> int:
    if isinstance(chunk, tuple):
        return sum(np.asarray(part).nbytes for part in chunk)
    return np.asarray(chunk).nbytes


def _ids(query_ids, count: int) -> list[str]:
    ids = [str(i) for i in range(count)] if query_ids is None else [str(q) for q in query_ids]
    if len(ids) != count:
        raise ValueError(f"{len(ids)} query ids for {count} queries")
    return ids


def _ray():
    from sparse_ir.distributed.cluster import import_ray

    return import_ray()


def _refuse_filter(filter) -> None:  # noqa: A002 (the public name)
    """Distributed search has no filters yet: say so rather than return unfiltered hits."""
    if filter is not None:
        from sparse_ir.errors import InputError

        raise InputError(
            "distributed search does not take filter= yet; open the sharded index locally "
            "(ShardedIndex.open) to search it with a filter"
        )
