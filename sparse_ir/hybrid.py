"""Hybrid search: several searchers (sparse, dense, ...) queried together, results fused.

Sparse and dense retrievers fail on different queries; fusing their rankings is a cheap,
reliable gain in first-stage retrieval. :class:`HybridSearcher` runs N >= 2 searchers of any
kind (:class:`~sparse_ir.search.Searcher`, :class:`~sparse_ir.search.DenseSearcher`, ...) over
the same documents, takes each one's top ``fusion.depth`` hits and fuses them with a
:class:`~sparse_ir.fusion.Fusion` rule (convex combination of normalized scores, or RRF).
Run i of the fusion is searcher i's run.
"""

from __future__ import annotations

import os
import threading
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import NamedTuple, Self

import numpy as np

from sparse_ir.fusion import FusedHit, Fusion
from sparse_ir.index.filters import FilterLike, allowed_documents
from sparse_ir.results import Hit, Run
from sparse_ir.search import DenseSearcher, Searcher

__all__ = ["HybridRuns", "HybridSearcher", "HybridTimings", "index_format", "open_searcher"]


def index_format(path: str | os.PathLike) -> str:
    """The manifest ``format`` of the index at ``path`` (``sparse_ir.index.manifest``'s
    IMPACT_FORMAT or DENSE_FORMAT), read without opening the index."""
    from sparse_ir.index.segments import SEGMENTS_FORMAT
    from sparse_ir.index.storage import IndexDirectory, read_manifest_unchecked

    body, _ = read_manifest_unchecked(IndexDirectory(path).current())
    if body.get("format") == SEGMENTS_FORMAT:  # a live index: the kind of its segments
        return str(body.get("kind"))
    return str(body.get("format"))


def _deleted(index) -> list[int]:
    """Deleted document numbers of a live index (none for a single build)."""
    import numpy as np

    mask = getattr(index, "deleted_mask", None)
    return [] if mask is None else np.flatnonzero(mask()).tolist()


def pair_stamp(index) -> str:
    """The stamp of the last paired change of a live index (``""``: none, or not live).

    ``sparse-ir add/delete --dense-index`` commits both indexes of a hybrid pair with one
    stamp (:attr:`~sparse_ir.index.segments.CommitManifest.pair`)."""
    return str(getattr(getattr(index, "commit", None), "pair", "") or "")


def check_pair(first, second) -> None:
    """Raise ``ValueError`` when two live indexes were changed as a pair and their last
    paired changes differ: one commit of a paired ``sparse-ir add/delete`` is missing (the
    command was interrupted between its two commits), or one index was changed alone."""
    a, b = pair_stamp(first), pair_stamp(second)
    if a and b and a != b:
        raise ValueError(
            f"the indexes {first.directory} and {second.directory} were not changed "
            f"together: their last paired changes differ ({a!r} vs {b!r}). A sparse-ir add or "
            "delete with --dense-index was interrupted between its two commits (the sparse "
            "index commits first), or one index was changed alone. Run the interrupted "
            "command again on both (add with --upsert): that brings both to the same "
            "documents and stamp"
        )


def _live_ids(index) -> set[str]:
    """Ids of the documents an index can return (a live index's deleted ones left out)."""
    ids = index.doc_ids
    deleted = set(_deleted(index))
    return {d for i, d in enumerate(ids) if i not in deleted} if deleted else set(ids)


def _tie_keys(index) -> np.ndarray | None:
    """The tie key of each document number of a hybrid's first index: a live index's
    ordinals when its numbers do not follow them (None: the numbers are the keys)."""
    if getattr(index, "numbers_follow_ordinals", True):
        return None
    return index.ordinals


def open_searcher(
    path: str | os.PathLike, *, model: str | None = None, device: str = "cpu", mode=None, **options
) -> Searcher | DenseSearcher:
    """The searcher of the index at ``path``, whatever its kind: a
    :class:`~sparse_ir.search.Searcher` for an impact index (SPLADE, BM25...: the query
    encoder its settings record) or a :class:`~sparse_ir.search.DenseSearcher` for a dense
    index. ``model``, ``device``, ``mode`` and ``options`` go to that class's ``from_index``.
    """
    from sparse_ir.index.check import INDEX_KINDS
    from sparse_ir.index.manifest import DENSE_FORMAT, IMPACT_FORMAT

    kind = index_format(path)
    if kind in _SHARDED_FORMATS:
        return _open_sharded_searcher(path, model=model, device=device, mode=mode, **options)
    if kind == IMPACT_FORMAT:
        return Searcher.from_index(path, model=model, device=device, mode=mode, **options)
    if kind == DENSE_FORMAT:
        return DenseSearcher.from_index(path, model=model, device=device, mode=mode, **options)
    raise ValueError(
        f"{path}: unknown index format {kind!r} (known: {', '.join(sorted(INDEX_KINDS))})"
    )


_SHARDED_FORMATS = ("sparse-ir-sharded-impact-index", "sparse-ir-sharded-dense-index")


def _open_sharded_searcher(path, *, model, device, mode, **options):
    """The searcher of a sharded index (:mod:`sparse_ir.index.sharded`): its shards' model."""
    from sparse_ir.index.sharded import ShardedDenseIndex, open_sharded

    index = open_sharded(path)
    if isinstance(index, ShardedDenseIndex):
        from sparse_ir.encoders.dense import DenseEncoder

        name = model or index.settings.get("model")
        if not name:
            raise ValueError(f"the sharded index {path} does not record its model; pass model=")
        return DenseSearcher(index, DenseEncoder.from_pretrained(name, device=device, **options))
    from sparse_ir.encoders.registry import load_query_encoder

    encoder = load_query_encoder(index.settings, model=model, device=device, index=index, **options)
    return Searcher(index, encoder, mode=mode)


@dataclass
class HybridTimings:
    """Seconds spent in each stage of the last :meth:`HybridSearcher.search` call.

    ``encode[i]`` and ``search[i]`` are searcher i's (labelled ``branches[i]``). ``elapsed``
    is the wall-clock time of the whole call; with parallel branches it is less than the sum
    of the stages (:attr:`total`).
    """

    branches: tuple[str, ...] = ()
    encode: list[float] = field(default_factory=list)
    search: list[float] = field(default_factory=list)
    fusion: float = 0.0
    elapsed: float = 0.0

    @property
    def total(self) -> float:
        """Sum of the stages (the time of a sequential search)."""
        return sum(self.encode) + sum(self.search) + self.fusion

    def stages(self) -> dict[str, float]:
        """Every stage by name: ``"<branch>_encode"``, ``"<branch>_search"``, ``"fusion"``
        (e.g. ``sparse_encode``, ``dense_search`` for a sparse + dense hybrid)."""
        out = {}
        for branch, encode, search in zip(self.branches, self.encode, self.search):
            out[f"{branch}_encode"] = encode
            out[f"{branch}_search"] = search
        out["fusion"] = self.fusion
        return out


class HybridRuns(NamedTuple):
    """The fused run and each searcher's run (:meth:`HybridSearcher.search_batch_components`)."""

    fused: Run
    components: tuple[Run, ...]


class HybridSearcher:
    """Search with N >= 2 searchers over the same documents and fuse their rankings.

    Args:
        searchers: the searchers, in the fusion's run order (fusion weights follow it).
            Anything with ``index`` (``doc_ids``, ``docno``, ``num_documents``, ``search``),
            ``encode(text)`` and ``search_batch`` works: :class:`~sparse_ir.search.Searcher`,
            :class:`~sparse_ir.search.DenseSearcher`.
        fusion: the fusion rule (default: min-max convex combination, equal weights, depth
            1000); its weights, if any, must be one per searcher.
        parallel: run searchers 2..N on worker threads beside the first. Off by default: it
            pays only when other cores are idle (measured on a busy 2-core machine it was
            slower than running the branches one after the other).

    Fused hits carry the first searcher's document numbers, whatever the order of documents
    in the other indexes. Equal fused scores are ordered by the first index's tie key: its
    document number, or for a live index its ordinal (the order in which each id first
    entered it, :meth:`~sparse_ir.index.live_index.LiveImpactIndex.ordinal`), so a live
    pair kept by ``sparse-ir add/delete`` fuses, ties included, exactly like the one-shot
    pair of its documents in ordinal order. A ``filter=`` is evaluated once, on the first
    searcher's index (its ids, its document numbers for a mask, its metadata for a field
    condition), and the same documents are allowed in every branch.

    Example:
        >>> import tempfile
        >>> import numpy as np
        >>> from sparse_ir import (DenseIndex, DenseSearcher, Fusion, HybridSearcher,
        ...                        ImpactIndex, Searcher, SparseBatch)
        >>> vocab = ("cat", "dog")
        >>> docs = SparseBatch.from_dicts([{"cat": 2.0}, {"dog": 1.0}, {"cat": 1.0, "dog": 1.0}],
        ...                               vocab, ids=["a", "b", "c"])
        >>> sparse = ImpactIndex.build(docs, tempfile.mkdtemp() + "/s", show_progress=False)
        >>> dense = DenseIndex.build(np.array([[1, 0], [0, 1], [0.7, 0.7]], np.float32),
        ...                          tempfile.mkdtemp() + "/d", ids=["a", "b", "c"])
        >>> class Words:  # toy encoders: a word count, as sparse and as dense vectors
        ...     vocab, dim = vocab, 2
        ...     def encode_queries(self, texts, *, ids=None, show_progress=None):
        ...         texts = [texts] if isinstance(texts, str) else texts
        ...         return SparseBatch.from_dicts(
        ...             [{w: 1.0 for w in t.split()} for t in texts], vocab, ids)
        >>> class Vectors(Words):
        ...     def encode_queries(self, texts, *, show_progress=None):
        ...         return super().encode_queries(texts).to_scipy().toarray()
        >>> hybrid = HybridSearcher([Searcher(sparse, Words()), DenseSearcher(dense, Vectors())],
        ...                         Fusion.rrf())
        >>> [hit.doc_id for hit in hybrid.search("cat", k=2)]
        ['a', 'c']
        >>> hybrid.search_batch(["dog"], k=1, query_ids=["q"])["q"][0].doc_id
        'b'
    """

    def __init__(
        self, searchers: Sequence, fusion: Fusion | None = None, *, parallel: bool = False
    ):
        searchers = tuple(searchers)
        if len(searchers) < 2:
            raise ValueError(f"a hybrid needs at least 2 searchers, got {len(searchers)}")
        fusion = fusion if fusion is not None else Fusion()
        if not isinstance(fusion, Fusion):
            raise TypeError(
                f"fusion must be a sparse_ir.fusion.Fusion, got {type(fusion).__name__}"
            )
        if fusion.weights is not None and len(fusion.weights) != len(searchers):
            raise ValueError(
                f"the fusion has {len(fusion.weights)} weights "
                f"{list(fusion.weights)} for {len(searchers)} searchers; give "
                "one weight per searcher, in order"
            )
        first = searchers[0].index
        same_numbering = [True]
        for searcher in searchers[1:]:
            index = searcher.index
            check_pair(first, index)
            if index.num_documents != first.num_documents:
                raise ValueError(
                    f"the index {first.directory} has {first.num_documents} "
                    f"documents, the index {index.directory} "
                    f"{index.num_documents}: build both from the same corpus"
                )
            # Fused hits are tie-broken by document number: when the indexes number the
            # documents differently, the others' hits take the first index's numbers.
            same = index.doc_ids == first.doc_ids and _deleted(index) == _deleted(first)
            if not same and _live_ids(index) != _live_ids(first):
                raise ValueError(
                    f"the indexes {first.directory} and {index.directory} hold "
                    "different documents; build both from the same corpus"
                )
            same_numbering.append(same)
        self.searchers = searchers
        self.fusion = fusion
        self.parallel = bool(parallel)
        self.timings = HybridTimings()
        self._same_numbering = same_numbering
        self._tie_keys = _tie_keys(first)
        labels = [getattr(s, "kind", f"searcher{i}") for i, s in enumerate(searchers)]
        self._labels = tuple(
            label if labels.count(label) == 1 else f"{label}{i + 1}"
            for i, label in enumerate(labels)
        )
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._position_cache: dict[int, np.ndarray] = {}

    @classmethod
    def from_indexes(
        cls,
        sparse_path: str | os.PathLike,
        dense_path: str | os.PathLike,
        *,
        fusion: Fusion | None = None,
        sparse_model: str | None = None,
        dense_model: str | None = None,
        device: str = "cpu",
        sparse_mode=None,
        dense_mode: str | None = None,
        parallel: bool = False,
        dense_precision: str = "float32",
        dense_method: str | None = None,
    ) -> HybridSearcher:
        """A sparse and a dense searcher opened from their indexes, with the models recorded.

        The default fusion is the convex combination ``0.5 · sparse + 0.5 · dense``.
        ``dense_precision="bfloat16"`` runs the dense query encoder in bfloat16 (faster on CPUs
        with AVX512-BF16; the documents' float32 vectors are unchanged). ``dense_method`` is
        the deprecated name of ``dense_mode``.
        """
        if dense_method is not None:
            warnings.warn(
                "HybridSearcher.from_indexes(dense_method=) is deprecated: use dense_mode=",
                DeprecationWarning,
                stacklevel=2,
            )
            dense_mode = dense_method
        if dense_mode not in (None, "exact", "hnsw"):
            raise ValueError(f"dense_mode must be 'exact' or 'hnsw', got {dense_mode!r}")
        sparse = Searcher.from_index(
            sparse_path, model=sparse_model, device=device, mode=sparse_mode
        )
        dense = DenseSearcher.from_index(
            dense_path, model=dense_model, device=device, mode=dense_mode, precision=dense_precision
        )
        return cls(
            [sparse, dense], fusion if fusion is not None else Fusion.convex(0.5), parallel=parallel
        )

    @classmethod
    def from_paths(
        cls,
        paths: Sequence[str | os.PathLike],
        fusion: Fusion | None = None,
        *,
        device: str = "cpu",
        sparse_mode=None,
        dense_mode: str | None = None,
        parallel: bool = False,
        dense_precision: str = "float32",
    ) -> HybridSearcher:
        """N >= 2 indexes of any kinds (impact: SPLADE, BM25...; dense), each opened with the
        query encoder it records (:func:`open_searcher`), fused in the order given.

        ``sparse_mode`` applies to every impact index, ``dense_mode`` and ``dense_precision``
        to every dense one. The default fusion is the convex combination with equal weights.
        """
        from sparse_ir.index.manifest import DENSE_FORMAT

        searchers = []
        for path in paths:
            if index_format(path) == DENSE_FORMAT:
                searchers.append(
                    DenseSearcher.from_index(
                        path, device=device, mode=dense_mode, precision=dense_precision
                    )
                )
            else:
                searchers.append(open_searcher(path, device=device, mode=sparse_mode))
        return cls(searchers, fusion, parallel=parallel)

    @property
    def sparse(self):
        """The first searcher (the sparse one in a sparse + dense hybrid)."""
        return self.searchers[0]

    @property
    def sparse_index(self):
        """The first searcher's index (its document numbers are the fused hits')."""
        return self.searchers[0].index

    def search(
        self,
        text: str,
        k: int = 10,
        *,
        mode: Sequence | None = None,
        filter: FilterLike = None,  # noqa: A002 (the public name)
    ) -> list[FusedHit]:
        """The fused top-``k`` for a text query; each hit carries every searcher's score.

        ``mode``: one mode per searcher (None entries: that searcher's default), or None.
        ``filter``: which documents may be returned (:mod:`sparse_ir.index.filters`), applied
        to every branch, so the result equals fusing the branches' filtered rankings.
        With ``parallel``, searchers 2..N (encode + search) run on worker threads while this
        thread runs the first (the kernels release the GIL). ``self.timings`` holds the
        seconds of each stage afterwards.
        """
        modes = self._modes(mode)
        masks = self._branch_filters(filter)
        depth = max(k, self.fusion.depth)
        count = len(self.searchers)
        timings = HybridTimings(self._labels, [0.0] * count, [0.0] * count)
        started = time.perf_counter()
        if self.parallel:
            futures = [
                self._executor().submit(self._branch, i, text, depth, modes[i], timings, masks[i])
                for i in range(1, count)
            ]
            hit_lists = [self._branch(0, text, depth, modes[0], timings, masks[0])]
            hit_lists += [future.result() for future in futures]
        else:
            hit_lists = [
                self._branch(i, text, depth, modes[i], timings, masks[i]) for i in range(count)
            ]
        fusion_started = time.perf_counter()
        fused = self.fusion.fuse_hits(hit_lists, k=k, tie_keys=self._tie_keys)
        now = time.perf_counter()
        timings.fusion = now - fusion_started
        timings.elapsed = now - started
        self.timings = timings
        return fused

    def _branch(
        self, i: int, text: str, depth: int, mode, timings: HybridTimings, mask=None
    ) -> list[Hit]:
        searcher = self.searchers[i]
        started = time.perf_counter()
        query = searcher.encode(text)
        encoded = time.perf_counter()
        if mode is None:
            mode = getattr(searcher, "mode", None)
        options = {} if mask is None else {"filter": mask}
        hits = searcher.index.search(query, depth, mode=mode, **options)
        timings.encode[i] = encoded - started
        timings.search[i] = time.perf_counter() - encoded
        return self._renumber(i, hits)

    def search_batch(
        self,
        texts: str | Sequence[str],
        k: int = 10,
        *,
        query_ids: Sequence[str] | None = None,
        mode: Sequence | None = None,
        threads: int | None = None,
        show_progress: bool | None = None,
        filter: FilterLike = None,  # noqa: A002 (the public name)
        ids: Sequence[str] | None = None,
    ) -> Run:
        """Encode and search many queries: the fused run, keyed by ``query_ids`` (default:
        positions). ``mode`` and ``filter`` as in :meth:`search`; ``ids``: deprecated name of
        ``query_ids``.
        """
        if ids is not None:
            warnings.warn(
                "HybridSearcher.search_batch(ids=) is deprecated: use query_ids=",
                DeprecationWarning,
                stacklevel=2,
            )
            query_ids = ids
        return self.search_batch_components(
            texts,
            k,
            query_ids=query_ids,
            mode=mode,
            threads=threads,
            show_progress=show_progress,
            filter=filter,
        ).fused

    def search_batch_components(
        self,
        texts: str | Sequence[str],
        k: int = 10,
        *,
        query_ids: Sequence[str] | None = None,
        mode: Sequence | None = None,
        threads: int | None = None,
        show_progress: bool | None = None,
        filter: FilterLike = None,  # noqa: A002 (the public name)
    ) -> HybridRuns:
        """:meth:`search_batch`, with each searcher's run (its top ``fusion.depth``, named by
        its kind: "sparse", "dense"...)."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        query_ids = [str(i) for i in (query_ids if query_ids is not None else range(len(texts)))]
        if len(query_ids) != len(texts):
            raise ValueError(f"{len(query_ids)} query ids for {len(texts)} texts")
        modes = self._modes(mode)
        masks = self._branch_filters(filter)
        depth = max(k, self.fusion.depth)
        runs = []
        for i, searcher in enumerate(self.searchers):
            options = {} if masks[i] is None else {"filter": masks[i]}
            run = searcher.search_batch(
                texts,
                depth,
                query_ids=query_ids,
                mode=modes[i],
                threads=threads,
                show_progress=show_progress,
                **options,
            )
            run.name = self._labels[i]
            for qid, hits in run.results.items():
                run.results[qid] = self._renumber(i, hits)
            runs.append(run)
        fused = self.fusion.fuse(runs, k=k, name="hybrid", tie_keys=self._tie_keys)
        return HybridRuns(fused, tuple(runs))

    def _modes(self, mode) -> list:
        if mode is None:
            return [None] * len(self.searchers)
        if isinstance(mode, str) or len(mode) != len(self.searchers):
            raise ValueError(
                f"mode must be None or one mode per searcher ({len(self.searchers)}), got {mode!r}"
            )
        return list(mode)

    def _branch_filters(self, filter) -> list:  # noqa: A002 (the public name)
        """Each searcher's bool mask of the documents a filter allows (None: no filter),
        evaluated on the first index and carried to the others by document id."""
        allowed = allowed_documents(filter, self.sparse_index)
        if allowed is None:
            return [None] * len(self.searchers)
        first = allowed.view(bool)
        masks = []
        for i, searcher in enumerate(self.searchers):
            if self._same_numbering[i]:
                masks.append(first)
                continue
            mask = np.zeros(searcher.index.num_documents, bool)
            mask[self._positions(i)[first]] = True
            masks.append(mask)
        return masks

    def _positions(self, i: int) -> np.ndarray:
        """Where each document of the first index is in searcher i's index (computed once)."""
        with self._lock:
            positions = self._position_cache.get(i)
            if positions is None:
                index = self.searchers[i].index
                positions = np.fromiter(
                    (index.docno(doc_id) for doc_id in self.sparse_index.doc_ids),
                    np.int64,
                    count=index.num_documents,
                )
                self._position_cache[i] = positions
            return positions

    def _renumber(self, i: int, hits: list[Hit]) -> list[Hit]:
        if self._same_numbering[i]:
            return hits
        first = self.sparse_index
        return [hit._replace(docno=first.docno(hit.doc_id)) for hit in hits]

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    max_workers=len(self.searchers) - 1, thread_name_prefix="sparse-ir-hybrid"
                )
            return self._pool

    def close(self) -> None:
        """Stop the worker threads (searching again starts new ones)."""
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        parts = ", ".join(
            f"{label}={s.index.directory}" for label, s in zip(self._labels, self.searchers)
        )
        return f"HybridSearcher({parts}, fusion={self.fusion.describe()!r})"
