"""The deadline of a queued task's hold, given late and in batches.

A hold is reserved with the short submit deadline (SUBMIT_HOLD_SECONDS), so a submit that
dies before its job is queued frees the credits soon. A queued task needs the task's
deadline (HOLD_TTL_SECONDS) instead. The dispatcher that takes the job gives it that
(Billing.ClaimHold); a job still waiting in the queue gets it from here, a third of the
submit deadline after its submit, if its task has not settled by then. Most tasks settle
or are taken sooner, so at light load a task costs billing no extension at all; under
load the extensions due together travel in one call.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

Extend = Callable[[list[str]], Awaitable[None]]
Unsettled = Callable[[list[str]], Awaitable[list[str]]]


class HoldExtensions:
    def __init__(
        self,
        extend: Extend,
        unsettled: Unsettled,
        submit_hold_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._extend = extend
        self._unsettled = unsettled
        self.after = submit_hold_seconds / 3
        self.submit_hold_seconds = submit_hold_seconds
        self._clock = clock
        self._queued: collections.deque[tuple[float, str]] = collections.deque()  # by time

    @property
    def check_every(self) -> float:
        """How often ``extend_due`` should run: a due hold is extended within 1.5 × after."""
        return self.after / 2

    def add(self, task_id: str) -> None:
        """``task_id``'s job was just queued."""
        self._queued.append((self._clock(), task_id))

    def __len__(self) -> int:
        return len(self._queued)

    async def extend_due(self) -> None:
        """Extend the holds of the tasks queued ``after`` seconds ago or more that have
        not settled. If billing cannot be told, they are tried again next time, until
        their submit deadline has passed (then the hold is gone: nothing left to extend)."""
        await self._extend_queued_before(self._clock() - self.after)

    async def flush(self) -> None:
        """At shutdown: every task still waiting gets its deadline now."""
        await self._extend_queued_before(float("inf"))

    async def _extend_queued_before(self, cutoff: float) -> None:
        due: list[tuple[float, str]] = []
        while self._queued and self._queued[0][0] <= cutoff:
            due.append(self._queued.popleft())
        if not due:
            return
        try:
            waiting = await self._unsettled([task_id for _, task_id in due])
            if waiting:
                await self._extend(waiting)
        except Exception:
            alive = self._clock() - self.submit_hold_seconds
            self._queued.extendleft(reversed([d for d in due if d[0] > alive]))
            log.warning("could not extend queued tasks' holds; will retry", exc_info=True)
            return
        log.debug("holds extended", extra={"tasks": len(waiting), "due": len(due)})
