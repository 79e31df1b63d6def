"""Scatter-gather search of a sharded index on Ray actors.

Each actor holds a group of shards of a :mod:`sparse_ir.index.sharded` index, memory-mapped
from the shared storage they were written to. A query (or a chunk of a batch) goes to every
actor; each answers its shards' exact top-k lists; the client merges them with the same exact
merge as the local :class:`~sparse_ir.index.sharded.ShardedIndex`, so the answer is the one
index's over all documents.

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

import numpy as np

from sparse_ir.errors import SparseIRError
from sparse_ir.results import Hit, Run

__all__ = ["DistributedIndex", "ShardUnavailableError", "ShardedRun", "ShardedHits", "ShardGroup"]

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

    Results are per shard: ``(docnos, scores, doc_ids)`` of each query's top-k, shard-local
    numbers (the client adds the offsets and merges).
    """

    def __init__(self, path: str, numbers: Sequence[int], threads: int = 1):
        from sparse_ir.index.sharded import open_sharded_kind

        self.kind = open_sharded_kind(path)
        self.shards = self.kind.open_shards(path, list(numbers))
        self.threads = threads

    def pid(self) -> int:
        """This actor's process id (for operators, and for the fault tests)."""
        return os.getpid()

    def search_one(self, terms, weights, k: int, mode) -> list:
        """Each shard's top-``k`` of one prepared impact query: ``[shard] -> (docnos,
        scores, ids)`` (no Hit objects: the lightest answer)."""
        query = (np.array(terms, np.int32), np.array(weights, np.int64))
        out = []
        for shard in self.shards:
            top = shard.search_arrays(query, k, mode=mode)
            ids = shard.doc_ids
            docnos = top.docnos.tolist()
            # Plain lists: a small answer of Python objects travels inline with the reply,
            # where numpy buffers would take a trip through the object store.
            out.append((docnos, top.scores.tolist(), [ids[d] for d in docnos]))
        return out

    def search_batch(self, queries, k: int, mode) -> list:
        """Each shard's top-``k`` of every query: ``[shard][query] -> (docnos, scores, ids)``.

        ``queries``: ``(indptr, terms, weights)`` of prepared impact queries, or a ``[q, dim]``
        float32 matrix for dense shards.
        """
        out = []
        for shard in self.shards:
            if isinstance(queries, tuple):
                run = shard.search_batch(
                    _as_impact_batch(queries, shard.vocab), k, mode=mode, threads=self.threads
                )
            else:
                run = shard.search_batch(np.array(queries, np.float32), k, mode=mode or "exact")
            ids = shard.doc_ids
            out.append(
                [
                    (
                        np.fromiter((h.docno for h in hits), np.int64, len(hits)),
                        np.array([h.score for h in hits]),
                        [ids[h.docno] for h in hits],
                    )
                    for hits in run.results.values()
                ]
            )
        return out

    def doc_ids(self) -> list[list[str]]:
        """Every shard's document ids."""
        return [shard.doc_ids for shard in self.shards]


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
        path: the sharded index, on storage every node reads at the same path.
        shards_per_actor: shards held by one actor (default 1: one actor per shard).
        num_cpus: CPUs Ray reserves per actor (default 1); ``num_gpus`` is not needed to search.
        threads: search threads inside an actor (default 1).
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

        index = DistributedIndex("indexes/msmarco-sharded", shards_per_actor=2)
        searcher = Searcher(index, SpladeEncoder.from_pretrained(index.settings["model"]))
        run = searcher.search_batch(texts, k=100)
        index.close()
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        shards_per_actor: int = 1,
        num_cpus: float = 1.0,
        threads: int = 1,
        max_restarts: int = 3,
        timeout: float = 60.0,
        allow_partial: bool = False,
        chunk_size: int = 64,
        address: str | None = None,
        start_timeout: float = 600.0,
    ):
        from sparse_ir.distributed.cluster import init_ray
        from sparse_ir.index.sharded import SHARDED_DENSE_FORMAT, open_sharded_kind

        if shards_per_actor < 1 or chunk_size < 1 or timeout <= 0 or max_restarts < 0:
            raise ValueError(
                "shards_per_actor and chunk_size must be >= 1, timeout > 0, max_restarts >= 0; "
                f"got {shards_per_actor}, {chunk_size}, {timeout}, {max_restarts}"
            )
        self.directory = Path(path).resolve()
        kind = open_sharded_kind(self.directory)
        self._body, self.records = kind.read_manifest(self.directory)
        self.is_dense = kind.FORMAT == SHARDED_DENSE_FORMAT
        self._first = kind.open_shards(self.directory, [0])[0]  # vocabulary, quantizer, dim
        from sparse_ir.index.composite import part_offsets

        self.offsets = part_offsets([r.num_documents for r in self.records])
        self.timeout = float(timeout)
        self.allow_partial = bool(allow_partial)
        self.chunk_size = int(chunk_size)
        self._doc_id_list: list[str] | None = None
        ray = init_ray(address)
        remote = ray.remote(ShardGroup).options(
            num_cpus=num_cpus, max_restarts=max_restarts, max_task_retries=max_restarts
        )
        numbers = list(range(len(self.records)))
        self.groups = [
            numbers[start : start + shards_per_actor]
            for start in range(0, len(numbers), shards_per_actor)
        ]
        self.actors = [remote.remote(str(self.directory), group, threads) for group in self.groups]
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

    @property
    def doc_ids(self) -> list[str]:
        """External id of every document, by global number (fetched from the actors once)."""
        if self._doc_id_list is None:
            groups = self._gather([actor.doc_ids.remote() for actor in self.actors])[0]
            self._doc_id_list = [d for group in groups for shard in group for d in shard]
        return self._doc_id_list

    def pids(self) -> list[int]:
        """Process id of each actor (by group), e.g. to see where they run."""
        ray = _ray()
        return ray.get([actor.pid.remote() for actor in self.actors], timeout=self.timeout)

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
        from sparse_ir.index.composite import merge_topk

        terms, weights = self.prepare_query(query)
        terms, weights = terms.tolist(), weights.tolist()  # inline arguments (see search_one)
        refs = [actor.search_one.remote(terms, weights, k, mode) for actor in self.actors]
        answers, missing = self._gather(refs)
        hits = ShardedHits(self._merge_one(answers, None, k, merge_topk))
        hits.missing_shards = tuple(self.records[n].path for n in missing)
        return hits

    def search_arrays(self, query, k: int = 10, *, mode=None, filter=None):  # noqa: A002
        """:meth:`search` as ``TopK(docnos, scores)`` with global document numbers."""
        from sparse_ir.index.impact_index import TopK

        hits = self.search(query, k, mode=mode, filter=filter)
        return TopK(np.array([h.docno for h in hits], np.int64), np.array([h.score for h in hits]))

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
        """Send every chunk to every actor, gather, merge."""
        from sparse_ir.index.composite import merge_topk

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
            groups = answers[row * per_actor : (row + 1) * per_actor]
            for position in range(size):
                run.results[ids[query]] = self._merge_one(groups, position, k, merge_topk)
                query += 1
        return run

    def _merge_one(self, groups, position, k, merge) -> list[Hit]:
        from sparse_ir.index.impact_index import TopK

        parts, offsets, names = [], [], {}
        for group_numbers, answer in zip(self.groups, groups):
            if answer is None:
                continue
            for number, shard_answer in zip(group_numbers, answer):
                # position None: an answer of search_one (one query, no per-query list)
                docnos, scores, doc_ids = (
                    shard_answer if position is None else shard_answer[position]
                )
                at = int(self.offsets[number])
                docnos = np.asarray(docnos, np.int64)
                parts.append(TopK(docnos, np.asarray(scores)))
                offsets.append(at)
                names.update(zip((docnos + at).tolist(), doc_ids))
        if not parts:
            return []
        top = merge(parts, offsets, k)
        return [Hit(names[d], s, d) for d, s in zip(top.docnos.tolist(), top.scores.tolist())]

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
