"""Hard negatives: the best-ranked non-relevant documents of each training query.

Two miners, same output ``{query_id: [doc_id, ...]}`` (best first, judged documents removed):

* :func:`mine_bm25_negatives`: BM25 (Lucene's variant, k1=0.9, b=0.4 as in Anserini's BEIR
  baselines) through bm25s, with English stop words and Snowball stemming when PyStemmer is
  installed;
* :func:`mine_index_negatives`: the current model's own ranking, by encoding the corpus into
  an :class:`~sparse_ir.index.ImpactIndex` (the ANCE/SPLADE++ "self-mined" negatives).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence

from sparse_ir.corpus import Document, Query
from sparse_ir.errors import MissingDependencyError

__all__ = ["mine_bm25_negatives", "mine_index_negatives"]

logger = logging.getLogger(__name__)


def _drop_judged(ranked: Sequence[str], judged: Mapping[str, int], depth: int) -> list[str]:
    return [d for d in ranked if d not in judged][:depth]


def mine_bm25_negatives(
    queries: Sequence[Query],
    corpus: Sequence[Document],
    qrels: Mapping[str, Mapping[str, int]],
    *,
    depth: int = 30,
    show_progress: bool | None = None,
) -> dict[str, list[str]]:
    """The top-``depth`` BM25 documents of each query that are not judged for it.

    Args:
        queries: the queries to mine for.
        corpus: the documents (title + text are indexed).
        qrels: judgements; every judged document (relevant or not) is excluded.
        depth: negatives kept per query.
    """
    try:
        import bm25s
    except ImportError:
        raise MissingDependencyError("BM25 negative mining", "bm25s", "train") from None
    try:
        import Stemmer

        stemmer = Stemmer.Stemmer("english").stemWords
    except ImportError:
        logger.info("PyStemmer not installed: BM25 negatives mined without stemming")
        stemmer = None
    quiet = show_progress is False or show_progress is None
    # bm25s sets its own logger to DEBUG at import; keep its debug lines out of our output
    # unless our own debug logging is on.
    bm25s_logger = logging.getLogger("bm25s")
    level = bm25s_logger.level
    if not logger.isEnabledFor(logging.DEBUG):
        bm25s_logger.setLevel(logging.INFO)
    try:
        return _bm25_rank(bm25s, stemmer, queries, corpus, qrels, depth, quiet)
    finally:
        bm25s_logger.setLevel(level)


def _bm25_rank(bm25s, stemmer, queries, corpus, qrels, depth, quiet) -> dict[str, list[str]]:
    tokens = bm25s.tokenize(
        [d.full_text for d in corpus], stopwords="en", stemmer=stemmer, show_progress=not quiet
    )
    retriever = bm25s.BM25(k1=0.9, b=0.4, method="lucene")
    retriever.index(tokens, show_progress=not quiet)
    query_tokens = bm25s.tokenize(
        [q.text for q in queries], stopwords="en", stemmer=stemmer, show_progress=False
    )
    largest_judged = max((len(qrels.get(q.id, {})) for q in queries), default=0)
    k = min(len(corpus), depth + largest_judged)
    # n_threads=1: bm25s' thread pool would fight the other users of this machine's cores,
    # and a single thread retrieves SciFact's queries in well under a second.
    ranked, _ = retriever.retrieve(query_tokens, k=k, show_progress=not quiet, n_threads=1)
    ids = [d.id for d in corpus]
    return {
        q.id: _drop_judged([ids[i] for i in row.tolist()], qrels.get(q.id, {}), depth)
        for q, row in zip(queries, ranked)
    }


def mine_index_negatives(
    document_encoder,
    query_encoder,
    queries: Sequence[Query],
    corpus: Sequence[Document],
    qrels: Mapping[str, Mapping[str, int]],
    *,
    depth: int = 30,
    work_dir: str | os.PathLike | None = None,
    show_progress: bool | None = None,
) -> dict[str, list[str]]:
    """The top-``depth`` documents of each query under the current model, judged ones removed.

    The corpus is encoded with ``document_encoder`` into a temporary impact index (removed
    afterwards) and searched with ``query_encoder`` (the same SPLADE encoder, or an
    :class:`~sparse_ir.training.inference_free.IdfQueryEncoder`).
    """
    from sparse_ir.pipeline import index_corpus

    if work_dir is not None:
        os.makedirs(work_dir, exist_ok=True)
    directory = tempfile.mkdtemp(prefix="mine-", dir=work_dir)
    try:
        index, _ = index_corpus(
            document_encoder,
            corpus,
            os.path.join(directory, "index"),
            store_contents=False,
            total=len(corpus),
            show_progress=show_progress,
        )
        largest_judged = max((len(qrels.get(q.id, {})) for q in queries), default=0)
        vectors = query_encoder.encode_queries(
            [q.text for q in queries], ids=[q.id for q in queries], show_progress=show_progress
        )
        run = index.search_batch(
            index.quantizer.quantize(vectors), min(len(corpus), depth + largest_judged)
        )
        return {
            q.id: _drop_judged([hit.doc_id for hit in run[q.id]], qrels.get(q.id, {}), depth)
            for q in queries
        }
    finally:
        shutil.rmtree(directory, ignore_errors=True)
