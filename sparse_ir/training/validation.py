"""Effectiveness and sparsity of a model on held-out queries, measured on our own index.

The documents are encoded and indexed with :func:`sparse_ir.pipeline.index_corpus` (the same
path users take), the queries searched with :meth:`ImpactIndex.search_batch`, the run scored
with ir_measures. Sparsity figures:

* average active terms per document and per query;
* FLOPS = Σ_j p_j^(q) · p_j^(d), with p_j the fraction of queries (documents) where term j is
  active: the expected number of multiplications between a query and a document (Paria et al.
  2020; the figure SPLADE papers report);
* postings per query = Σ_{j ∈ q} df_j averaged over queries: the multiplications a query costs
  on this index (its FLOPS times the number of documents).
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from sparse_ir.corpus import Document, Query

__all__ = ["Measurement", "measure"]


@dataclass
class Measurement:
    """What :func:`measure` reports for one model on one query set."""

    ndcg_at_10: float
    recall_at_100: float
    document_terms: float
    query_terms: float
    flops: float
    postings_per_query: float
    query_latency_ms: float
    documents: int
    queries: int
    encode_seconds: float

    def to_dict(self) -> dict:
        """Plain dict (for JSON history files)."""
        return asdict(self)


def measure(
    document_encoder,
    query_encoder,
    corpus: Sequence[Document],
    queries: Sequence[Query],
    qrels: dict,
    *,
    work_dir: str | os.PathLike | None = None,
    index_path: str | os.PathLike | None = None,
    k: int = 100,
    latency_repeats: int = 3,
    show_progress: bool | None = None,
) -> Measurement:
    """Encode + index ``corpus``, search ``queries``, evaluate against ``qrels``.

    Args:
        document_encoder: a :class:`~sparse_ir.encoders.splade.SpladeEncoder`.
        query_encoder: the same encoder, or an inference-free query encoder.
        index_path: keep the index there (default: a temporary directory, removed).
        k: hits per query (nDCG@10 needs 10; R@100 needs 100).
        latency_repeats: single-thread search passes over the queries; the median per-query
            time is reported (query encoding excluded).
    """
    from sparse_ir.eval import evaluate
    from sparse_ir.pipeline import index_corpus

    temporary = None
    if index_path is None:
        if work_dir is not None:
            os.makedirs(work_dir, exist_ok=True)
        temporary = tempfile.mkdtemp(prefix="validation-", dir=work_dir)
        index_path = os.path.join(temporary, "index")
    try:
        started = time.perf_counter()
        index, _ = index_corpus(
            document_encoder,
            corpus,
            index_path,
            store_contents=False,
            total=len(corpus),
            show_progress=show_progress,
        )
        encode_seconds = time.perf_counter() - started
        vectors = query_encoder.encode_queries(
            [q.text for q in queries], ids=[q.id for q in queries], show_progress=False
        )
        quantized = index.quantizer.quantize(vectors)
        run = index.search_batch(quantized, k, threads=1)  # also compiles the kernel
        timings = []
        for _ in range(max(1, latency_repeats)):
            started = time.perf_counter()
            index.search_batch(quantized, k, threads=1)
            timings.append((time.perf_counter() - started) / max(1, len(queries)))
        scores = evaluate(run, qrels, ["nDCG@10", "R@100"])
        df = index.document_frequency().astype(np.float64)
        query_df = np.zeros(index.vocab_size, np.float64)
        postings = []
        for i in range(len(quantized)):
            terms, _ = quantized.row(i)
            query_df[terms] += 1
            postings.append(float(df[terms].sum()))
        n_docs = max(1, index.num_documents)
        flops = float(np.dot(query_df / max(1, len(quantized)), df / n_docs))
        return Measurement(
            ndcg_at_10=scores["nDCG@10"],
            recall_at_100=scores["R@100"],
            document_terms=index.num_postings / n_docs,
            query_terms=quantized.nnz / max(1, len(quantized)),
            flops=flops,
            postings_per_query=statistics.fmean(postings) if postings else 0.0,
            query_latency_ms=1000 * statistics.median(timings),
            documents=index.num_documents,
            queries=len(queries),
            encode_seconds=encode_seconds,
        )
    finally:
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)
