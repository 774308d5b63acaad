"""Group calls that arrive together into one batch (group commit).

A caller submits one item and awaits its own result. Items that arrive while a batch is
being flushed wait for the next flush, so under load one round trip or one transaction
serves many callers, and an idle system flushes a lone item at once: no timer, no added
latency. The gateway batches billing holds and task inserts this way (docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from pixelrelay.metrics import BATCH_SIZE

In = TypeVar("In")
Out = TypeVar("Out")

# Per item, a result or the exception that item's caller gets.
FlushFn = Callable[[list[In]], Awaitable[Sequence[Out | BaseException]]]


class Batcher(Generic[In, Out]):
    def __init__(
        self, name: str, flush: FlushFn[In, Out], *, max_size: int = 128, concurrency: int = 1
    ):
        self._sizes = BATCH_SIZE.labels(name)
        self._flush = flush
        self.max_size = max_size
        self.concurrency = concurrency  # batches in flight at once
        self._queue: list[tuple[In, asyncio.Future[Out]]] = []
        self._flushing = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, item: In) -> Out:
        future: asyncio.Future[Out] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if self._flushing < self.concurrency:
            self._flushing += 1
            # Started on the next loop turn, so everything submitted in this turn joins.
            task = asyncio.create_task(self._drain())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await future

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue[: self.max_size], self._queue[self.max_size :]
                self._sizes.observe(len(batch))
                try:
                    results = await self._flush([item for item, _ in batch])
                    if len(results) != len(batch):
                        raise RuntimeError(f"flush gave {len(results)} results for {len(batch)}")
                except Exception as exc:  # the whole batch failed: every caller learns why
                    results = [exc] * len(batch)
                for (_, future), result in zip(batch, results, strict=True):
                    if future.done():  # its caller went away (cancelled)
                        continue
                    if isinstance(result, BaseException):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        finally:
            self._flushing -= 1
