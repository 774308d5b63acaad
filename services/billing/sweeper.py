"""Releases holds that outlived their deadline, and fails their tasks on the bus.

A hold's deadline is the gateway's SUBMIT_HOLD_SECONDS until its job is queued, then
HOLD_TTL_SECONDS. Past it, nobody will capture it: the submit died before its job was
queued, or the job was lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable

from nats.js import JetStreamContext

from billing.ledger import Ledger
from pixelrelay import task_events
from pixelrelay.db import Database
from pixelrelay.errors import ApiError, E
from pixelrelay.v1 import events_pb2

log = logging.getLogger(__name__)


Publish = Callable[[events_pb2.TaskEvent], Awaitable[None]]


async def sweep_once(ledger: Ledger, db: Database, publish: Publish) -> int:
    """Fail and release each hold past its deadline; returns how many were released.

    The failed event goes out first: if the bus is down, the hold stays pending and the
    next sweep tries again (released first, a task whose event was lost stayed processing
    for ever). The gateway's handler of that event releases the hold too, so a sweeper
    killed in between loses nothing. A hold captured meanwhile (its images arrived just
    now) stays captured; the gateway ignores the failed event of a captured task.
    """
    expired = await db.run(ledger.expired_holds, now=int(time.time()))
    released = 0
    for task_id in expired:
        await publish(task_events.failed(task_id, E.TASK_EXPIRED))
        try:
            await db.run(ledger.release, task_id=task_id, reason="expired")
        except ApiError as err:
            if err.kind is E.HOLD_CONFLICT:  # captured meanwhile: nothing to release
                continue
            raise
        released += 1
    if released:
        log.info("expired holds released", extra={"count": released})
    return released


async def run_sweeper(
    ledger: Ledger, db: Database, js: JetStreamContext, stop: asyncio.Event, interval: float
) -> None:
    publish = functools.partial(task_events.publish_event, js)
    while not stop.is_set():
        try:
            await sweep_once(ledger, db, publish)
        except Exception:
            log.exception("sweep failed; will retry")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
