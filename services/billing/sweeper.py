"""Releases holds that outlived their deadline, and fails their tasks on the bus.

A hold's deadline is the gateway's SUBMIT_HOLD_SECONDS until its job is queued, then
HOLD_TTL_SECONDS. Past it, nobody will capture it: the submit died before its job was
queued, or the job was lost.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable

from nats.js import JetStreamContext
from prometheus_client import Gauge

from billing.ledger import Ledger
from pixelrelay import task_events
from pixelrelay.db import Database
from pixelrelay.errors import ApiError, E
from pixelrelay.lifecycle import repeat
from pixelrelay.v1 import events_pb2

log = logging.getLogger(__name__)


Publish = Callable[[events_pb2.TaskEvent], Awaitable[None]]

HOLDS_OVERDUE = Gauge(
    "pixelrelay_holds_overdue",
    "Pending holds past their deadline that the last sweep could not release",
)
LEDGER_PROBLEMS = Gauge(
    "pixelrelay_ledger_problems", "Problems found by the last ledger check (0 = balanced)"
)


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


async def sweep_and_report(ledger: Ledger, db: Database, publish: Publish) -> None:
    """One sweep; what it could not release (the bus or the database is down) stays in
    HOLDS_OVERDUE until a later sweep does, for the alert on holds older than their TTL."""
    try:
        await sweep_once(ledger, db, publish)
    finally:
        overdue = await db.run(ledger.expired_holds, now=int(time.time()))
        HOLDS_OVERDUE.set(len(overdue))


async def run_sweeper(
    ledger: Ledger, db: Database, js: JetStreamContext, stop: asyncio.Event, interval: float
) -> None:
    publish = functools.partial(task_events.publish_event, js)
    await repeat("sweep", lambda: sweep_and_report(ledger, db, publish), interval, stop)


async def check_ledger(ledger: Ledger, db: Database) -> None:
    """Recompute every balance from the entries (LEDGER_CHECK_INTERVAL), so a ledger that
    stopped balancing pages someone (LEDGER_PROBLEMS) instead of waiting for an audit. A
    problem names ids and sums, nothing secret, so it is logged."""
    result = await db.run(ledger.check)
    LEDGER_PROBLEMS.set(len(result.problems))
    for problem in result.problems[:20]:
        log.error("ledger check: %s", problem)


async def run_ledger_checks(
    ledger: Ledger, db: Database, stop: asyncio.Event, interval: float
) -> None:
    await repeat("ledger check", lambda: check_ledger(ledger, db), interval, stop)
