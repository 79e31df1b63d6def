"""Hybrid search: a SPLADE impact index and a dense index queried together, results fused.

Sparse and dense retrievers fail on different queries; fusing their rankings is a cheap,
reliable gain in first-stage retrieval. :class:`HybridSearcher` encodes the query with both
models, takes each index's top ``fusion.depth`` hits and fuses them with a
:class:`~sparse_ir.fusion.Fusion` rule (convex combination of normalized scores, or RRF).
Run 0 of the fusion is the sparse run, run 1 the dense run.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Self

from sparse_ir.fusion import FusedHit, Fusion
from sparse_ir.index.dense import DenseIndex
from sparse_ir.index.impact_index import ImpactIndex
from sparse_ir.results import Hit, Run
from sparse_ir.search import Searcher

__all__ = ["HybridSearcher", "HybridTimings"]


@dataclass
class HybridTimings:
    """Seconds spent in each stage of the last :meth:`HybridSearcher.search` call.

    ``elapsed`` is the wall-clock time of the whole call; with parallel branches it is less
    than the sum of the stages (:attr:`total`).
    """

    elapsed: float = 0.0
    sparse_encode: float = 0.0
    sparse_search: float = 0.0
    dense_encode: float = 0.0
    dense_search: float = 0.0
    fusion: float = 0.0
    stages: tuple[str, ...] = field(default=("sparse_encode", "sparse_search", "dense_encode",
                                             "dense_search", "fusion"), repr=False)

    @property
    def total(self) -> float:
        """Sum of the stages (the time of a sequential search)."""
        return sum(getattr(self, stage) for stage in self.stages)


class HybridSearcher:
    """Search a sparse and a dense index with one text query and fuse the two rankings.

    Args:
        sparse_index: an :class:`~sparse_ir.index.ImpactIndex`.
        splade_encoder: the SPLADE encoder the sparse index was built with.
        dense_index: a :class:`~sparse_ir.index.dense.DenseIndex` over the same documents.
        dense_encoder: the dense encoder it was built with.
        fusion: the fusion rule (default: min-max convex combination, alpha 0.5, depth 1000).
        dense_method: ``"exact"`` or ``"hnsw"`` (when the dense index has a graph).
        parallel: run the dense branch on a worker thread beside the sparse branch. Off by
            default: it pays only when a second core is idle (measured on a busy 2-core
            machine it was slower than running the branches one after the other).
    """

    def __init__(self, sparse_index: ImpactIndex, splade_encoder, dense_index: DenseIndex,
                 dense_encoder, fusion: Fusion | None = None, *, dense_method: str = "exact",
                 parallel: bool = False):
        fusion = fusion if fusion is not None else Fusion.convex(0.5)
        if not isinstance(fusion, Fusion):
            raise TypeError(f"fusion must be a sparse_ir.fusion.Fusion, got "
                            f"{type(fusion).__name__}")
        if fusion.weights is not None and len(fusion.weights) != 2:
            raise ValueError(f"hybrid fusion needs 2 weights (sparse, dense), got "
                             f"{fusion.weights}")
        if dense_encoder.dim != dense_index.dim:
            raise ValueError(f"the dense encoder makes {dense_encoder.dim}-d vectors, the index "
                             f"{dense_index.directory} holds {dense_index.dim}-d vectors; use "
                             f"the model it was built with "
                             f"({dense_index.settings.get('model', '?')})")
        if dense_method not in ("exact", "hnsw"):
            raise ValueError(f"dense_method must be 'exact' or 'hnsw', got {dense_method!r}")
        if sparse_index.num_documents != dense_index.num_documents:
            raise ValueError(f"the sparse index has {sparse_index.num_documents} documents, the "
                             f"dense index {dense_index.num_documents}: build both from the "
                             "same corpus")
        self.sparse = Searcher(sparse_index, splade_encoder)
        # Fused hits are tie-broken by document number: when the two indexes number the
        # documents differently, dense hits take the sparse index's numbers.
        self._same_numbering = sparse_index.doc_ids == dense_index.doc_ids
        if not self._same_numbering and set(sparse_index.doc_ids) != set(dense_index.doc_ids):
            raise ValueError(f"the indexes {sparse_index.directory} and "
                             f"{dense_index.directory} hold different documents; build both "
                             "from the same corpus")
        self.dense_index = dense_index
        self.dense_encoder = dense_encoder
        self.fusion = fusion
        self.dense_method = dense_method
        self.parallel = bool(parallel)
        self.timings = HybridTimings()
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_indexes(cls, sparse_path: str | os.PathLike, dense_path: str | os.PathLike, *,
                     fusion: Fusion | None = None, sparse_model: str | None = None,
                     dense_model: str | None = None, device: str = "cpu",
                     dense_method: str = "exact", parallel: bool = False,
                     dense_precision: str = "float32") -> HybridSearcher:
        """Open both indexes and load the models recorded in their manifests.

        ``dense_precision="bfloat16"`` runs the dense query encoder in bfloat16 (faster on CPUs
        with AVX512-BF16; the documents' float32 vectors are unchanged).
        """
        from sparse_ir.encoders.dense import DenseEncoder

        sparse = Searcher.from_index(sparse_path, model=sparse_model, device=device)
        dense_index = DenseIndex.open(dense_path)
        settings = dense_index.settings
        name = dense_model or settings.get("model")
        if not name:
            raise ValueError(f"the dense index {dense_path} does not record its model; "
                             "pass dense_model=...")
        options = {key: settings[key] for key in ("pooling", "normalize", "query_max_length",
                                                  "document_max_length", "lowercase",
                                                  "query_prompt", "document_prompt")
                   if key in settings and dense_model is None}
        encoder = DenseEncoder.from_pretrained(name, device=device, precision=dense_precision,
                                               **options)
        return cls(sparse.index, sparse.encoder, dense_index, encoder, fusion,
                   dense_method=dense_method, parallel=parallel)

    @property
    def sparse_index(self) -> ImpactIndex:
        """The sparse (impact) index."""
        return self.sparse.index

    def search(self, text: str, k: int = 10) -> list[FusedHit]:
        """The fused top-``k`` for a text query; each hit carries the sparse and dense scores.

        With ``parallel``, the dense branch (encode + search) runs on a worker thread while
        this thread runs the sparse branch (both libraries release the GIL in their kernels).
        ``self.timings`` holds the seconds of each stage afterwards.
        """
        depth = max(k, self.fusion.depth)
        timings = HybridTimings()
        started = time.perf_counter()
        if self.parallel:
            dense_future = self._executor().submit(self._dense_branch, text, depth, timings)
            sparse_hits = self._sparse_branch(text, depth, timings)
            dense_hits = dense_future.result()
        else:
            sparse_hits = self._sparse_branch(text, depth, timings)
            dense_hits = self._dense_branch(text, depth, timings)
        fusion_started = time.perf_counter()
        fused = self.fusion.fuse_hits([sparse_hits, dense_hits], k=k)
        now = time.perf_counter()
        timings.fusion = now - fusion_started
        timings.elapsed = now - started
        self.timings = timings
        return fused

    def _sparse_branch(self, text: str, depth: int, timings: HybridTimings) -> list[Hit]:
        started = time.perf_counter()
        query = self.sparse.encode(text)
        encoded = time.perf_counter()
        hits = self.sparse_index.search(query, depth)
        timings.sparse_encode = encoded - started
        timings.sparse_search = time.perf_counter() - encoded
        return hits

    def _dense_branch(self, text: str, depth: int, timings: HybridTimings) -> list[Hit]:
        started = time.perf_counter()
        query = self.dense_encoder.encode_queries([text], show_progress=False)
        encoded = time.perf_counter()
        hits = self.dense_index.search(query[0], depth, method=self.dense_method)
        timings.dense_encode = encoded - started
        timings.dense_search = time.perf_counter() - encoded
        return self._renumber(hits)

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=1,
                                                thread_name_prefix="sparse-ir-dense")
            return self._pool

    def close(self) -> None:
        """Stop the worker thread (searching again starts a new one)."""
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def search_batch(self, texts: Sequence[str], k: int = 10, *,
                     ids: Sequence[str] | None = None, show_progress: bool | None = None
                     ) -> tuple[Run, Run, Run]:
        """Encode and search many queries: ``(fused, sparse, dense)`` runs keyed by ``ids``."""
        ids = [str(i) for i in (ids if ids is not None else range(len(texts)))]
        if len(ids) != len(texts):
            raise ValueError(f"{len(ids)} ids for {len(texts)} texts")
        depth = max(k, self.fusion.depth)
        sparse_run = self.sparse.search_batch(texts, depth, ids=ids, show_progress=show_progress)
        vectors = self.dense_encoder.encode_queries(list(texts), show_progress=show_progress)
        dense_run = self.dense_index.search_batch(vectors, depth, query_ids=ids,
                                                  method=self.dense_method)
        sparse_run.name, dense_run.name = "sparse", "dense"
        for qid, hits in dense_run.results.items():
            dense_run.results[qid] = self._renumber(hits)
        fused = self.fusion.fuse([sparse_run, dense_run], k=k, name="hybrid")
        return fused, sparse_run, dense_run

    def _renumber(self, hits: list[Hit]) -> list[Hit]:
        if self._same_numbering:
            return hits
        return [hit._replace(docno=self.sparse_index.docno(hit.doc_id)) for hit in hits]

    def __repr__(self) -> str:
        return (f"HybridSearcher(sparse={self.sparse_index.directory}, "
                f"dense={self.dense_index.directory}, fusion={self.fusion.describe()!r})")
