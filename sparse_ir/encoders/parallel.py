"""Encoding with several worker processes, for machines with many cores.

One PyTorch process with N threads scales poorly past a few cores on small models (each
matmul is too small to split well); N processes with a few threads each keep every core busy.
Each worker loads the model once; texts are sent in chunks and the rows come back in order.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Sequence

from sparse_ir.encoders.base import as_texts
from sparse_ir.sparse_batch import SparseBatch

__all__ = ["ParallelSpladeEncoder"]

_worker_encoder = None


def _init_worker(name_or_path: str, threads: int, options: dict) -> None:
    import torch

    from sparse_ir.encoders.splade import SpladeEncoder

    global _worker_encoder
    torch.set_num_threads(threads)
    _worker_encoder = SpladeEncoder.from_pretrained(name_or_path, **options)


def _encode_chunk(job: tuple[list[str], dict]) -> tuple[SparseBatch, object]:
    from sparse_ir.encoders.splade import EncodeStats

    texts, options = job
    stats = EncodeStats()
    batch = _worker_encoder.encode(texts, show_progress=False, stats=stats, **options)
    return batch, stats


class ParallelSpladeEncoder:
    """A SpladeEncoder spread over ``processes`` worker processes (CPU only).

    Args:
        name_or_path: the model, as for :meth:`SpladeEncoder.from_pretrained`.
        processes: worker processes (default: one per 2 cores).
        threads: PyTorch threads per worker (default: cores / processes).
        chunk_size: texts sent to a worker at a time.
        **options: encoder options (``precision``, ``batch_size``, ...).

    Use it as a context manager (or call :meth:`close`) so the workers stop.
    """

    def __init__(
        self,
        name_or_path: str = "splade-tiny",
        *,
        processes: int | None = None,
        threads: int | None = None,
        chunk_size: int = 256,
        **options,
    ):
        from sparse_ir.encoders.splade import SpladeEncoder

        cores = os.cpu_count() or 1
        self.processes = processes or max(1, cores // 2)
        threads = threads or max(1, cores // self.processes)
        self.chunk_size = chunk_size
        # The parent keeps a copy for the vocabulary and default lengths (cheap for SPLADE).
        self._local = SpladeEncoder.from_pretrained(name_or_path, **options)
        context = multiprocessing.get_context("spawn")
        self._pool = context.Pool(
            self.processes, initializer=_init_worker, initargs=(str(name_or_path), threads, options)
        )

    @property
    def vocab(self) -> tuple[str, ...]:
        """The output vocabulary."""
        return self._local.vocab

    # The settings an index records about its encoder (see sparse_ir.pipeline), and the
    # tokenizer, are the workers' own: they load the same model with the same options.
    name = property(lambda self: self._local.name)
    pooling = property(lambda self: self._local.pooling)
    precision = property(lambda self: self._local.precision)
    document_max_length = property(lambda self: self._local.document_max_length)
    query_max_length = property(lambda self: self._local.query_max_length)
    tokenizer = property(lambda self: self._local.tokenizer)

    def encode_documents(
        self,
        texts: str | Sequence[str],
        *,
        ids: Sequence[str] | None = None,
        max_length: int | None = None,
        **options,
    ) -> SparseBatch:
        """Encode documents across the workers; rows in input order, one ``str`` is one row
        (see :meth:`encode`)."""
        texts = as_texts(texts)
        if self._local.document_prompt:  # a sentence-transformers model's prompt
            texts = [self._local.document_prompt + text for text in texts]
        return self.encode(
            texts, ids=ids, max_length=max_length or self._local.document_max_length, **options
        )

    def encode_queries(
        self,
        texts: str | Sequence[str],
        *,
        ids: Sequence[str] | None = None,
        max_length: int | None = None,
        **options,
    ) -> SparseBatch:
        """Encode queries across the workers; rows in input order, one ``str`` is one row
        (see :meth:`encode`). A model with its own query side (an inference-free Router)
        encodes queries in this process with it."""
        texts = as_texts(texts)
        if self._local.query_encoder is not None:
            return self._local.encode_queries(texts, ids=ids, max_length=max_length, **options)
        if self._local.query_prompt:
            texts = [self._local.query_prompt + text for text in texts]
        return self.encode(
            texts, ids=ids, max_length=max_length or self._local.query_max_length, **options
        )

    def encode(
        self,
        texts: Sequence[str],
        *,
        max_length: int,
        ids: Sequence[str] | None = None,
        max_active_dims: int | None = None,
        threshold: float = 0.0,
        show_progress: bool | None = None,
        stats=None,
    ) -> SparseBatch:
        """Encode texts across the workers, as :meth:`SpladeEncoder.encode` does in one process.

        Args:
            texts, max_length, ids, max_active_dims, threshold, show_progress: as for
                :meth:`SpladeEncoder.encode`.
            stats: an :class:`~sparse_ir.encoders.splade.EncodeStats` to add the workers'
                counts to.
        """
        from tqdm.auto import tqdm

        if isinstance(texts, str):
            raise TypeError("encode takes a sequence of texts, not one string; wrap it in a list")
        texts = list(texts)
        if ids is not None and len(ids) != len(texts):
            raise ValueError(f"{len(ids)} ids for {len(texts)} texts")
        options = {
            "max_length": max_length,
            "max_active_dims": max_active_dims,
            "threshold": threshold,
        }
        jobs = [
            (texts[i : i + self.chunk_size], options) for i in range(0, len(texts), self.chunk_size)
        ]
        parts = []
        with tqdm(
            total=len(texts),
            desc="encoding",
            unit="text",
            disable=None if show_progress is None else not show_progress,
        ) as progress:
            for part, part_stats in self._pool.imap(_encode_chunk, jobs):
                parts.append(part)
                if stats is not None:
                    stats.add(part_stats)
                progress.update(len(part))
        if not parts:
            return SparseBatch.empty(self.vocab, ids)
        merged = SparseBatch.concatenate(parts)
        if ids is not None:
            merged = SparseBatch(
                merged.indptr,
                merged.indices,
                merged.values,
                merged.vocab,
                tuple(str(i) for i in ids),
            )
        return merged

    def close(self) -> None:
        """Stop the workers."""
        self._pool.terminate()
        self._pool.join()

    def __enter__(self) -> ParallelSpladeEncoder:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
