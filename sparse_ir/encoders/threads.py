"""One PyTorch thread for small batches: what keeps a one-query encode fast on a busy machine.

A parallel region of PyTorch's OpenMP threads ends only when every thread has finished its
share; when another process holds one of the cores, a 2-thread region waits for the thread that
is not running, and the threads that are spin while they wait. A query of a few dozen tokens
gains little from a second thread on a quiet machine and loses several times its latency on a
busy one (figures in docs/encoding.md), so the encoders run batches of at most
``single_thread_tokens`` tokens on the calling thread only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch

__all__ = ["DEFAULT_SINGLE_THREAD_TOKENS", "check_single_thread_tokens", "threads_for"]

#: Batches of at most this many tokens run on one thread (one query; a few short texts).
DEFAULT_SINGLE_THREAD_TOKENS = 256


def check_single_thread_tokens(value: object) -> int:
    """``value`` if it is an integer >= 0, else a ValueError naming the option."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"single_thread_tokens must be an integer >= 0, got {value!r}")
    return value


def threads_for(
    token_ids: Sequence[Sequence[int]], single_thread_tokens: int
) -> contextlib.AbstractContextManager:
    """The context to run a batch of ``token_ids`` in: one thread if it is small, else as is.

    Example:
        >>> with threads_for([[101, 2054, 102]], 256):
        ...     torch.get_num_threads()
        1
    """
    if sum(map(len, token_ids)) <= single_thread_tokens:
        return one_thread()
    return contextlib.nullcontext()


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run PyTorch's operators on the calling thread only, for the duration of the block."""
    previous = torch.get_num_threads()
    if previous == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
