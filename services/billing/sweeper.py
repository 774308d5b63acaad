"""Finds holds that outlived their deadline and announces them expired on the bus.

A hold's deadline is the gateway's SUBMIT_HOLD_SECONDS until its job is queued, then
HOLD_TTL_SECONDS. Past it, nobody will capture it: the submit died before its job was
queued, or the job was lost. The sweeper does not release it itself: it publishes the
task's ``expired`` event and billing's settlement consumer releases the hold like on any
failure and announces ``settled`` (settlement.py), so a sweeper killed at any point loses
nothing (the next sweep finds the hold still pending and publishes again; JetStream drops
the duplicate) and every release has one path. A hold whose task's completed or failed
event is already on the bus is left to that event: its images may be stored.
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
from pixelrelay.lifecycle import repeat
from pixelrelay.v1 import events_pb2

log = logging.getLogger(__name__)


Publish = Callable[[events_pb2.TaskEvent], Awaitable[None]]
# Whether the task's completed or failed event is on the bus (task_events.last_event).
Outcome = Callable[[str], Awaitable[bool]]

HOLDS_OVERDUE = Gauge(
    "pixelrelay_holds_overdue",
    "Pending holds more than OVERDUE_AFTER_S past their deadline (announced expired, or "
    "waiting for their event, and still not settled)",
)
LEDGER_PROBLEMS = Gauge(
    "pixelrelay_ledger_problems", "Problems found by the last ledger check (0 = balanced)"
)
# How long past its deadline a hold may stay pending before the gauge counts it: the
# sweep's period and the settlement consumer's retries fit well within it.
OVERDUE_AFTER_S = 120


async def sweep_once(ledger: Ledger, db: Database, publish: Publish, outcome: Outcome) -> int:
    """Announce each hold past its deadline expired; returns how many were announced."""
    expired = await db.run(ledger.expired_holds, now=int(time.time()))
    announced = 0
    for task_id in expired:
        if await outcome(task_id):  # the settlement consumer settles it from that event
            continue
        await publish(task_events.expired(task_id))
        announced += 1
    if announced:
        log.info("expired holds announced", extra={"count": announced})
    return announced


async def sweep_and_report(
    ledger: Ledger, db: Database, publish: Publish, outcome: Outcome
) -> None:
    """One sweep; holds still pending long after their deadline (the bus, the database or
    the settlement consumer is down) stay in HOLDS_OVERDUE, for the alert on holds older
    than their TTL."""
    try:
        await sweep_once(ledger, db, publish, outcome)
    finally:
        overdue = await db.run(ledger.expired_holds, now=int(time.time()) - OVERDUE_AFTER_S)
        HOLDS_OVERDUE.set(len(overdue))


async def has_outcome(js: JetStreamContext, task_id: str) -> bool:
    for kind in ("completed", "failed"):
        if await task_events.last_event(js, kind, task_id) is not None:
            return True
    return False


async def run_sweeper(
    ledger: Ledger, db: Database, js: JetStreamContext, stop: asyncio.Event, interval: float
) -> None:
    publish = functools.partial(task_events.publish_event, js)
    outcome = functools.partial(has_outcome, js)
    await repeat("sweep", lambda: sweep_and_report(ledger, db, publish, outcome), interval, stop)


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
