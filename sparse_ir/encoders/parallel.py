"""Encoding with several worker processes, one per core.

One PyTorch process with N threads scales poorly past a few cores on small models (each
matmul is too small to split well), and on a busy machine its threads wait for one another at
every parallel region: when a competing process takes one core, a 2-thread encode falls to a
fraction of its speed while 2 single-threaded workers each keep what their core gives them
(figures in docs/encoding.md). Each worker loads the model once; texts are sent in chunks and
the rows come back in order.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Sequence

from sparse_ir.encoders.base import as_texts
from sparse_ir.sparse_batch import SparseBatch

__all__ = ["ParallelSpladeEncoder", "auto_processes", "usable_cores"]

#: Texts from which ``auto_processes`` picks worker processes: below it, starting the workers
#: (each loads the model: seconds) costs more than it saves.
AUTO_PROCESSES_MIN_TEXTS = 2000

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


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, else ``os.cpu_count()``)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def auto_processes(texts: int | None, device: str = "cpu") -> int:
    """Worker processes for encoding ``texts`` texts: one per usable core for a large CPU job,
    else 1 (one process, its threads on every core).

    Args:
        texts: how many texts will be encoded (None: unknown, taken as small).
        device: the encoder's device; only CPU encoding uses worker processes.

    Example:
        >>> auto_processes(10)
        1
        >>> auto_processes(10**6, "cuda")
        1
    """
    cores = usable_cores()
    if device != "cpu" or cores < 2 or texts is None or texts < AUTO_PROCESSES_MIN_TEXTS:
        return 1
    return cores


class ParallelSpladeEncoder:
    """A SpladeEncoder spread over ``processes`` worker processes (CPU only).

    Args:
        name_or_path: the model, as for :meth:`SpladeEncoder.from_pretrained`.
        processes: worker processes (default: one per usable core).
        threads: PyTorch threads per worker (default: usable cores / processes, at least 1).
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

        cores = usable_cores()
        self.processes = processes or cores
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
