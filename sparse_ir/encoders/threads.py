"""One PyTorch thread for small batches: what keeps a one-query encode fast on a busy machine.

A parallel region of PyTorch's OpenMP threads ends only when every thread has finished its
share; when another process holds one of the cores, a 2-thread region waits for the thread that
is not running, and the threads that are spin while they wait. A query of a few dozen tokens
gains little from a second thread on a quiet machine and loses several times its latency on a
busy one (figures in docs/encoding.md), so the encoders run batches of at most
``single_thread_tokens`` tokens on the calling thread only.

Larger batches (documents) meet the same wait: with one competing busy process on 2 cores, a
2-thread encode of splade-tiny ran at a small fraction of a 1-thread one. With
``adapt_threads`` (the encoders' default) each batch runs on no more threads than the cores
other processes leave free, measured from ``/proc`` as the encode goes (:class:`BatchThreads`,
:class:`CoreMeter`); on a quiet machine that is every configured thread.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Sequence

import torch

__all__ = [
    "DEFAULT_SINGLE_THREAD_TOKENS",
    "BatchThreads",
    "CoreMeter",
    "check_adapt_threads",
    "check_single_thread_tokens",
    "fitted_threads",
    "threads_for",
]

#: Batches of at most this many tokens run on one thread (one query; a few short texts).
DEFAULT_SINGLE_THREAD_TOKENS = 256


def check_single_thread_tokens(value: object) -> int:
    """``value`` if it is an integer >= 0, else a ValueError naming the option."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"single_thread_tokens must be an integer >= 0, got {value!r}")
    return value


def check_adapt_threads(value: object) -> bool:
    """``value`` if it is a bool, else a ValueError naming the option."""
    if not isinstance(value, bool):
        raise ValueError(f"adapt_threads must be True or False, got {value!r}")
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


# -- fitting the threads to the cores other processes leave free -----------------------------------

#: Shortest span (seconds) over which the cores left free are measured before the threads change.
MEASURE_SECONDS = 0.1


class CoreMeter:
    """How many of this process's usable cores other processes keep busy (Linux ``/proc``).

    Between two readings, the busy time of the usable cores (``/proc/stat``: user, system,
    interrupts and time stolen by a hypervisor; ``nice`` time counts as free, since a niced
    process yields its core to ours at once) less this process's own CPU time is what the
    others used. Before any span has been measured, :meth:`busy_elsewhere` counts the tasks
    runnable now (``/proc/loadavg``) that are not this process's. Where ``/proc`` is missing
    it answers None and the threads stay as configured.

    Example:
        >>> meter = CoreMeter()
        >>> busy = meter.busy_elsewhere()
        >>> busy is None or busy >= 0
        True
    """

    def __init__(self) -> None:
        self.cpus = _usable_cpus()
        self.ticks_per_second = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self._nice = _own_nice()
        self._last: float | None = None
        self._start = self._reading()

    def _reading(self) -> tuple[float, float, float] | None:
        busy = _busy_ticks(self.cpus, count_nice=self._nice)
        if busy is None:
            return None
        return time.monotonic(), busy / self.ticks_per_second, time.process_time()

    def busy_elsewhere(self) -> float | None:
        """Cores kept busy by other processes: over the span since the last measurement if it
        is at least :data:`MEASURE_SECONDS` long (a new span starts then), else the last
        span's figure, else the instant count of runnable tasks that are not ours."""
        now = self._reading()
        if now is None or self._start is None:
            return _runnable_elsewhere()
        elapsed = now[0] - self._start[0]
        if elapsed < MEASURE_SECONDS:
            return self._last if self._last is not None else _runnable_elsewhere()
        others = (now[1] - self._start[1]) - (now[2] - self._start[2])
        self._last = max(0.0, others / elapsed)
        self._start = now
        return self._last


def fitted_threads(configured: int, busy_elsewhere: float | None, cores: int) -> int:
    """PyTorch threads for the next batch: the cores others leave free, rounded, at least 1 and
    at most ``configured``.

    A thread that shares its core with another process holds up every parallel region of the
    batch, so threads beyond the free cores cost far more than they give.

    Example:
        >>> fitted_threads(2, 0.1, 2), fitted_threads(2, 1.0, 2), fitted_threads(2, 3.5, 2)
        (2, 1, 1)
        >>> fitted_threads(2, None, 2)
        2
    """
    if busy_elsewhere is None:
        return configured
    free = cores - busy_elsewhere
    return max(1, min(configured, int(free + 0.5)))


class BatchThreads:
    """The threads of each batch of one encode call: one for a small batch; for a larger one
    the configured threads (``torch.get_num_threads()`` when the call starts), or, with
    ``adapt``, no more than the cores other processes leave free (re-measured as the call
    goes; see :class:`CoreMeter`).

    Example:
        >>> threads = BatchThreads(single_thread_tokens=256, adapt=True)
        >>> with threads.batch([[101, 2054, 102]]):
        ...     torch.get_num_threads()
        1
    """

    def __init__(self, single_thread_tokens: int, adapt: bool):
        self.single_thread_tokens = single_thread_tokens
        self.configured = torch.get_num_threads()
        self.adapt = adapt and self.configured > 1
        #: made at the first large batch (a one-query call never reads /proc)
        self.meter: CoreMeter | None = None
        #: threads each batch ran on, in order (what the tests and benchmarks read)
        self.chosen: list[int] = []

    def batch(self, token_ids: Sequence[Sequence[int]]) -> contextlib.AbstractContextManager:
        """The context to run one batch in."""
        if sum(map(len, token_ids)) <= self.single_thread_tokens:
            self.chosen.append(1)
            return one_thread()
        threads = self.configured
        if self.adapt:
            if self.meter is None:
                self.meter = CoreMeter()
            busy = self.meter.busy_elsewhere()
            threads = fitted_threads(self.configured, busy, len(self.meter.cpus))
        self.chosen.append(threads)
        return set_threads(threads)


@contextlib.contextmanager
def set_threads(threads: int) -> Iterator[None]:
    """Run PyTorch's operators on ``threads`` threads for the duration of the block."""
    previous = torch.get_num_threads()
    if previous == threads:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _usable_cpus() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


def _own_nice() -> bool:
    try:
        return os.getpriority(os.PRIO_PROCESS, 0) > 0
    except (AttributeError, OSError):
        return False


def _busy_ticks(cpus: Sequence[int], *, count_nice: bool) -> int | None:
    """Busy clock ticks of ``cpus`` since boot (``/proc/stat``), or None without it."""
    wanted = {f"cpu{c}" for c in cpus}
    total = 0
    try:
        with open("/proc/stat") as handle:
            for line in handle:
                fields = line.split()
                if fields and fields[0] in wanted:
                    # user nice system idle iowait irq softirq steal (guest is inside user)
                    user, nice, system, _, _, irq, softirq, steal = map(int, fields[1:9])
                    total += user + system + irq + softirq + steal + (nice if count_nice else 0)
    except (OSError, ValueError):
        return None
    return total


def _runnable_elsewhere() -> float | None:
    """Tasks runnable now that are not this process's threads (``/proc/loadavg``)."""
    try:
        with open("/proc/loadavg") as handle:
            running = int(handle.read().split()[3].split("/")[0])
        ours = 0
        for task in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{task}/stat") as handle:
                    ours += handle.read().rsplit(")", 1)[1].split()[0] == "R"
            except OSError:
                continue
    except (OSError, ValueError, IndexError):
        return None
    return float(max(0, running - ours))
