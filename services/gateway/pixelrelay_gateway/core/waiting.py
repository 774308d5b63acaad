"""Requests waiting for a task to settle (GenerateImages, /v1).

Whichever gateway replica applies a task's final event announces it on the core NATS
subject ``pixelrelay.settled.<task id>`` (no stream: a lost announcement costs one poll
interval, nothing more); every replica listens and wakes its own waiters, which then read
the record. A waiter also rereads the record every POLL_SECONDS on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

from pixelrelay.bus import SETTLED_PREFIX
from pixelrelay.v1 import public_api_pb2
from pixelrelay_gateway.core.store import TERMINAL

POLL_SECONDS = 1.0


def settled_subject(task_id: str) -> str:
    return f"{SETTLED_PREFIX}.{task_id}"


class _Waiting:
    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.count = 0


class TaskWaiters:
    def __init__(self, *, longest: float = 300.0) -> None:
        self.longest = longest  # SYNC_WAIT_SECONDS: no request waits longer
        self._waiting: dict[str, _Waiting] = {}

    def settled(self, task_id: str) -> None:
        """A replica applied the task's final event."""
        waiting = self._waiting.get(task_id)
        if waiting is not None:
            waiting.event.set()

    def on_subject(self, subject: str) -> None:
        self.settled(subject.rpartition(".")[2])

    async def wait(
        self,
        task_id: str,
        read: Callable[[], Awaitable[public_api_pb2.Task]],
        within: float,
    ) -> public_api_pb2.Task:
        """The task once it is completed or failed, or as it stands after ``within``
        seconds (at most ``longest``; 0: ``longest``)."""
        within = min(within, self.longest) if within > 0 else self.longest
        waiting = self._waiting.setdefault(task_id, _Waiting())
        waiting.count += 1
        deadline = time.monotonic() + within
        try:
            while True:
                waiting.event.clear()
                task = await read()
                remaining = deadline - time.monotonic()
                if task.status in TERMINAL or remaining <= 0:
                    return task
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(waiting.event.wait(), min(POLL_SECONDS, remaining))
        finally:
            waiting.count -= 1
            if waiting.count == 0:
                del self._waiting[task_id]
