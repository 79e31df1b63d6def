"""Whole jobs built from the stages: encode a corpus in shards, index it, search a query set.

These are what the CLI and the scripts call; each stage stays usable on its own.
"""

from __future__ import annotations

import collections
import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from sparse_ir.corpus import Document
from sparse_ir.quantize import Quantizer
from sparse_ir.sparse_batch import SparseBatch

__all__ = [
    "encode_corpus",
    "index_corpus",
    "encoder_settings",
    "count_lines",
    "dense_index_corpus",
    "query_encoder_kind",
]

logger = logging.getLogger(__name__)


def count_lines(path: str | os.PathLike) -> int:
    """Number of non-blank lines of a (possibly gzipped) text file: a progress-bar total."""
    from sparse_ir.jsonl import open_text_binary

    with open_text_binary(path) as handle:
        return sum(1 for line in handle if line.strip())


def encoder_settings(encoder) -> dict:
    """What an index records about the encoder that produced its vectors.

    ``"query_encoder"`` names the kind of query encoder the index is searched with (a kind of
    :data:`~sparse_ir.encoders.registry.QUERY_ENCODER_KINDS`): see :func:`query_encoder_kind`.
    ``"model"`` is absolute for a local directory, with its ``"model_fingerprint"``.
    """
    from sparse_ir.encoders.st_format import model_provenance

    return {
        **model_provenance(encoder),
        "pooling": encoder.pooling,
        "document_max_length": encoder.document_max_length,
        "query_max_length": encoder.query_max_length,
        "precision": encoder.precision,
        "query_encoder": query_encoder_kind(encoder.name),
    }


def query_encoder_kind(model: str | os.PathLike | None) -> str:
    """The kind of query encoder that goes with a document model.

    ``"idf"`` for an inference-free checkpoint (a directory holding the IDF table that
    :class:`~sparse_ir.training.inference_free.IdfQueryEncoder` saves), else ``"splade"``.
    A hub model is not looked up: pass ``settings={"query_encoder": "idf"}`` when indexing.
    """
    from sparse_ir.encoders.registry import resolve_model
    from sparse_ir.errors import MissingDependencyError
    from sparse_ir.training.inference_free import IDF_FILE

    try:
        directory = Path(resolve_model(model)) if model else None
    except MissingDependencyError:  # a bundled model not installed: not a checkpoint
        directory = None
    if directory is not None and (directory / IDF_FILE).is_file():
        return "idf"
    if directory is not None and _static_query_side(directory):
        return "idf"
    return "splade"


def _static_query_side(directory: Path) -> bool:
    """True for a sentence-transformers Router whose queries go through static weights."""
    from sparse_ir.encoders.st_format import StaticModule, read_layout

    layout = read_layout(directory) if directory.is_dir() else None
    return layout is not None and isinstance(layout.query, StaticModule)


def encode_corpus(
    encoder,
    documents: Iterable[Document],
    *,
    shard_size: int = 2048,
    max_length: int | None = None,
    progress=None,
    stats=None,
) -> Iterator[tuple[SparseBatch, list[Document]]]:
    """Encode documents shard by shard; yield ``(vectors, documents)`` of each shard.

    Each shard is sorted by length internally by the encoder, and comes back in input order.
    ``progress`` (a tqdm bar) is advanced after every forward pass by an encoder whose
    ``encode`` takes a ``progress`` bar (SpladeEncoder), else by each shard's documents.
    """
    shard: list[Document] = []
    per_batch = progress is not None and _takes_progress(encoder)

    def flush() -> tuple[SparseBatch, list[Document]]:
        batch = encoder.encode_documents(
            [d.full_text for d in shard],
            ids=[d.id for d in shard],
            max_length=max_length,
            show_progress=False,
            stats=stats,
            **({"progress": progress} if per_batch else {}),
        )
        if progress is not None and not per_batch:
            progress.update(len(shard))
        return batch, list(shard)

    for document in documents:
        shard.append(document)
        if len(shard) >= shard_size:
            yield flush()
            shard.clear()
    if shard:
        yield flush()


def _takes_progress(encoder) -> bool:
    """True when the encoder's ``encode`` advances a caller's progress bar per forward pass."""
    import inspect

    try:
        return "progress" in inspect.signature(encoder.encode).parameters
    except (TypeError, ValueError, AttributeError):
        return False


def index_corpus(
    encoder,
    documents: Iterable[Document],
    path: str | os.PathLike,
    *,
    quantizer: Quantizer | None = None,
    memory_budget: int | str = "1GB",
    store_contents: bool = True,
    shard_size: int = 2048,
    total: int | None = None,
    show_progress: bool | None = None,
    settings: dict | None = None,
    doc_ordered_postings: bool | None = None,
):
    """Encode a corpus and build an :class:`~sparse_ir.index.ImpactIndex` at ``path``.

    ``doc_ordered_postings`` is :meth:`ImpactIndex.build`'s (True: format version 1 files too).
    Returns ``(index, encode_stats)``. The index is published only when everything succeeded;
    an interruption leaves the previous index (if any) in place. The documents' metadata
    (:attr:`~sparse_ir.corpus.Document.metadata`) is stored with the index.
    """
    from tqdm.auto import tqdm

    from sparse_ir.encoders.splade import EncodeStats
    from sparse_ir.index.impact_index import ImpactIndex

    stats = EncodeStats()
    pending: collections.deque[tuple[str, str]] = collections.deque()
    pending_metadata: collections.deque = collections.deque()
    progress = tqdm(
        total=total,
        desc="encoding + indexing",
        unit="doc",
        disable=None if show_progress is None else not show_progress,
    )

    def vectors() -> Iterator[SparseBatch]:
        for batch, shard in encode_corpus(
            encoder, documents, shard_size=shard_size, progress=progress, stats=stats
        ):
            if store_contents:
                pending.extend((d.title, d.text) for d in shard)
            pending_metadata.extend(d.metadata for d in shard)
            yield batch

    try:
        index = ImpactIndex.build(
            vectors(),
            path,
            quantizer=quantizer or Quantizer(),
            memory_budget=memory_budget,
            contents=_Drain(pending) if store_contents else None,
            show_progress=False,
            settings={**encoder_settings(encoder), **(settings or {})},
            total_documents=total,
            metadata=_Drain(pending_metadata),
            doc_ordered_postings=doc_ordered_postings,
        )
    finally:
        progress.close()
    if stats.empty_texts:
        logger.warning(
            "%d document(s) had empty text and were indexed as empty vectors", stats.empty_texts
        )
    return index, stats


class _Drain:
    """An endless iterator over a deque that the vector generator refills shard by shard."""

    def __init__(self, queue: collections.deque):
        self.queue = queue

    def __iter__(self):
        return self

    def __next__(self):
        if not self.queue:
            return None
        return self.queue.popleft()


def dense_index_corpus(
    encoder,
    documents: Iterable[Document],
    path: str | os.PathLike,
    *,
    shard_size: int = 2048,
    total: int | None = None,
    hnsw=None,
    show_progress: bool | None = None,
    settings: dict | None = None,
):
    """Encode a corpus with a dense encoder and build a :class:`~sparse_ir.index.dense.DenseIndex`.

    Returns ``(index, encode_stats)``. Shards of ``shard_size`` documents are encoded and
    appended in turn, so memory holds one shard of vectors; the index is published only when
    everything succeeded. The documents' metadata is stored with the index.
    """
    from tqdm.auto import tqdm

    from sparse_ir.encoders.dense import DenseEncodeStats
    from sparse_ir.index.dense import DenseIndex

    stats = DenseEncodeStats()
    progress = tqdm(
        total=total,
        desc="encoding (dense)",
        unit="doc",
        disable=None if show_progress is None else not show_progress,
    )

    def batches() -> Iterator[tuple[list[str], object]]:
        shard: list[Document] = []
        for document in documents:
            shard.append(document)
            if len(shard) >= shard_size:
                pending_metadata.extend(d.metadata for d in shard)
                yield _encode_dense_shard(encoder, shard, stats, progress)
                shard = []
        if shard:
            pending_metadata.extend(d.metadata for d in shard)
            yield _encode_dense_shard(encoder, shard, stats, progress)

    pending_metadata: collections.deque = collections.deque()
    try:
        index = DenseIndex.build(
            batches(),
            path,
            settings={**encoder.settings(), **(settings or {})},
            hnsw=hnsw,
            show_progress=show_progress,
            metadata=_Drain(pending_metadata),
        )
    finally:
        progress.close()
    if stats.empty_texts:
        logger.warning(
            "%d document(s) had empty text and were stored as zero vectors", stats.empty_texts
        )
    return index, stats


def _encode_dense_shard(encoder, shard: list[Document], stats, progress):
    vectors = encoder.encode_documents(
        [d.full_text for d in shard], show_progress=False, stats=stats
    )
    progress.update(len(shard))
    return [d.id for d in shard], vectors
