"""Billing alone keeps a hold's deadline: it finds the holds past theirs and decides.

A hold is made with the short SUBMIT_HOLD_SECONDS deadline, so a submit that died before its
job was queued frees its credits within a minute. Past its deadline, each pending hold is
looked at on the bus, without any service's help:
    its task's completed or failed event is there     → left to it: billing's settlement
                                                        consumer settles it from that event
    its job is in the work queue (waiting, or taken  → extended to the task's deadline
    and not yet acked), within the task's deadline     (HOLD_TTL_SECONDS from its submit)
    otherwise (never queued, lost, or past the       → its ``expired`` event is published,
    task's deadline)                                    and the settlement consumer releases
                                                        it like on any failure
The sweeper releases nothing itself, so killed at any point it loses nothing (the next
sweep finds the hold still pending and publishes again; JetStream drops the duplicate),
and every release has one path. A job whose task expired is dropped by the dispatcher
that takes it: it finds the task's settled event on the bus.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from nats.js import JetStreamContext
from prometheus_client import Gauge

from pixelrelay import bus, task_events
from pixelrelay.db import Database
from pixelrelay.lifecycle import repeat
from pixelrelay.v1 import events_pb2
from pixelrelay_billing.ledger import Ledger

log = logging.getLogger(__name__)


Publish = Callable[[events_pb2.TaskEvent], Awaitable[None]]
# Whether the task's completed or failed event is on the bus (task_events.last_event),
# and whether its job is in the work queue (bus.job_queued).
Outcome = Callable[[str], Awaitable[bool]]
Queued = Callable[[str], Awaitable[bool]]

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


@dataclass(frozen=True)
class Sweeper:
    """What a sweep reads and where it publishes: the bus in production, fakes in tests."""

    ledger: Ledger
    db: Database
    publish: Publish
    outcome: Outcome
    queued: Queued
    hold_ttl: int

    @classmethod
    def on_bus(cls, ledger: Ledger, db: Database, js: JetStreamContext, hold_ttl: int) -> Sweeper:
        return cls(
            ledger,
            db,
            publish=functools.partial(task_events.publish_event, js),
            outcome=functools.partial(has_outcome, js),
            queued=functools.partial(bus.job_queued, js),
            hold_ttl=hold_ttl,
        )

    async def sweep_once(self) -> int:
        """Decide for each hold past its deadline (the module's table); returns how many
        were announced expired."""
        now = int(time.time())
        overdue = await self.db.run(self.ledger.expired_holds, now=now)
        extend: list[tuple[str, int]] = []
        announced = 0
        for task_id, made_at in overdue:
            if await self.outcome(task_id):
                continue
            task_deadline = made_at + self.hold_ttl
            if task_deadline > now and await self.queued(task_id):
                extend.append((task_id, task_deadline))
                continue
            await self.publish(task_events.expired(task_id))
            announced += 1
        if extend:
            await self.db.run(self.ledger.extend_holds, extend)
        if announced or extend:
            log.info("holds swept", extra={"expired": announced, "extended": len(extend)})
        return announced

    async def sweep_and_report(self) -> None:
        """One sweep; holds still pending long after their deadline (the bus, the database
        or the settlement consumer is down) stay in HOLDS_OVERDUE, for the alert on holds
        older than their TTL."""
        try:
            await self.sweep_once()
        finally:
            now = int(time.time()) - OVERDUE_AFTER_S
            overdue = await self.db.run(self.ledger.expired_holds, now=now)
            HOLDS_OVERDUE.set(len(overdue))


async def has_outcome(js: JetStreamContext, task_id: str) -> bool:
    for kind in ("completed", "failed"):
        if await task_events.last_event(js, kind, task_id) is not None:
            return True
    return False


async def run_sweeper(sweeper: Sweeper, stop: asyncio.Event, interval: float) -> None:
    await repeat("sweep", sweeper.sweep_and_report, interval, stop)


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
