"""Micro-batching: concurrent text queries encoded in one encoder call.

Encoding a query costs far more than searching with it, and an encoder call on 16 texts costs
much less than 16 calls on one. :class:`QueryBatcher` queues the texts of concurrent requests;
one task takes the first waiting text, gathers more for at most ``window`` seconds (up to
``max_batch``), encodes them in ONE call on a worker thread and hands each request its row.
Texts arriving while the encoder runs make up the next batch, so under load batches fill up
without anyone waiting for the window. A text that arrives alone after a batch of one (no
concurrent queries: a single client) does not wait for the window, since nobody is coming
to share its call: without concurrency, micro-batching costs nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Executor

__all__ = ["QueryBatcher"]

logger = logging.getLogger(__name__)


class QueryBatcher:
    """Encode concurrent texts in batches; ``await batcher.encode(text)`` gives one row.

    Args:
        encode: ``texts -> list of per-text results`` (runs on ``executor``; one call at a
            time, so the encoder needs no locking).
        executor: where ``encode`` runs (off the event loop).
        window: seconds the first text of a batch waits for others (0: take only what is
            already waiting).
        max_batch: the most texts per call (1 turns batching off: one call per text).
    """

    def __init__(
        self,
        encode: Callable[[list[str]], Sequence],
        executor: Executor,
        *,
        window: float,
        max_batch: int,
    ):
        self._encode = encode
        self._executor = executor
        self.window = float(window)
        self.max_batch = int(max_batch)
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None
        #: Encoder calls made and texts encoded (for /stats and /metrics).
        self.batches = 0
        self.texts = 0
        self.largest_batch = 0
        #: Texts of the last encoder call (1 and nothing waiting: no window for the next).
        self.last_batch = 0
        #: Batches that waited for the window (for tests and /stats).
        self.waited = 0

    def start(self) -> None:
        """Start the batching task on the running event loop."""
        self._queue = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="query-batcher")

    async def stop(self) -> None:
        """Stop the task; texts still queued get an error."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        while self._queue is not None and not self._queue.empty():
            _, future = self._queue.get_nowait()
            if not future.done():
                future.set_exception(RuntimeError("the service is shutting down"))

    async def encode(self, text: str):
        """The encoder's result for ``text``, computed in a batch with concurrent texts."""
        if self._queue is None:
            raise RuntimeError("QueryBatcher.start() was not called")
        future = asyncio.get_running_loop().create_future()
        await self._queue.put((text, future))
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        queue = self._queue
        while True:
            items = [await queue.get()]
            waiting = queue.qsize()
            if (
                self.window > 0
                and waiting + 1 < self.max_batch
                and (waiting > 0 or self.last_batch > 1)
            ):
                self.waited += 1
                await asyncio.sleep(self.window)
            while len(items) < self.max_batch and not queue.empty():
                items.append(queue.get_nowait())
            items = [(text, future) for text, future in items if not future.done()]
            if not items:
                continue
            try:
                results = await loop.run_in_executor(
                    self._executor, self._encode, [text for text, _ in items]
                )
            except Exception as error:  # handed to every waiting request, which reports it
                for _, future in items:
                    if not future.done():
                        future.set_exception(error)
                continue
            self.batches += 1
            self.last_batch = len(items)
            self.texts += len(items)
            self.largest_batch = max(self.largest_batch, len(items))
            for (_, future), result in zip(items, results, strict=True):
                if not future.done():
                    future.set_result(result)
