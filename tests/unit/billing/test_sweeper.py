"""Billing's sweeper against a real ledger: which holds it announces expired, which it
leaves to an event already on the bus, and what it reports."""

from __future__ import annotations

import asyncio
import time

import pytest
from sqlalchemy import text

from pixelrelay.db import Database
from pixelrelay.errors import ApiError, E
from pixelrelay.v1 import common_pb2, events_pb2
from pixelrelay_billing.ledger import Ledger
from pixelrelay_billing.models import HoldState
from pixelrelay_billing.prices import PriceList
from pixelrelay_billing.sweeper import (
    HOLDS_OVERDUE,
    LEDGER_PROBLEMS,
    Outcome,
    Sweeper,
    run_ledger_checks,
)

ITEM = common_pb2.PriceItem(model="gpt-image-2", resolution="1k", n=1)


class Bus:
    """Where the sweeper's events go; ``down`` makes every publish fail like a bus outage."""

    def __init__(self) -> None:
        self.events: list[events_pb2.TaskEvent] = []
        self.down = False

    async def publish(self, event: events_pb2.TaskEvent) -> None:
        if self.down:
            raise ApiError(E.UNAVAILABLE, "the bus is down")
        self.events.append(event)


def hold(ledger: Ledger, task_id: str, account_id: str, expires_at: int) -> None:
    ledger.reserve(task_id=task_id, account_id=account_id, item=ITEM, expires_at=expires_at)


def outcomes(*task_ids: str) -> Outcome:
    """The tasks whose completed or failed event is on the bus (or, as ``queued``, whose job
    is in the work queue)."""

    async def has(task_id: str) -> bool:
        return task_id in task_ids

    return has


NOTHING_QUEUED = outcomes()
HOUR = 3600


async def test_expired_holds_are_announced_the_rest_kept(database: Database) -> None:
    """The sweeper only announces: billing's settlement consumer releases on the event."""
    ledger = Ledger(database.engine, PriceList.load(), signup_grant=100)
    account = ledger.create_account(name="a").id
    hold(ledger, "old", account, expires_at=1)
    hold(ledger, "queued", account, expires_at=2**40)
    bus = Bus()
    assert (
        await Sweeper(ledger, database, bus.publish, outcomes(), NOTHING_QUEUED, HOUR).sweep_once()
        == 1
    )
    assert [(e.task_id, e.WhichOneof("kind")) for e in bus.events] == [("old", "expired")]
    assert ledger.get_hold(task_id="old").state == HoldState.PENDING
    assert ledger.get_hold(task_id="queued").state == HoldState.PENDING


async def test_a_hold_whose_outcome_is_on_the_bus_is_left_to_it(database: Database) -> None:
    """Its images may be stored and their event not yet settled (the consumer lags, or was
    down): announced expired, the hold could be released under a completed task."""
    ledger = Ledger(database.engine, PriceList.load(), signup_grant=100)
    account = ledger.create_account(name="a").id
    hold(ledger, "late", account, expires_at=1)
    hold(ledger, "lost", account, expires_at=1)
    bus = Bus()
    assert (
        await Sweeper(
            ledger, database, bus.publish, outcomes("late"), NOTHING_QUEUED, HOUR
        ).sweep_once()
        == 1
    )
    assert [e.task_id for e in bus.events] == ["lost"]


async def test_a_job_still_queued_gets_the_task_deadline_until_it_passes(
    database: Database,
) -> None:
    """Its job waits in the queue (or runs, unacked) past the submit's short deadline: the
    hold is extended to the task's deadline (HOLD_TTL from its submit), not failed; once
    that has passed too, it is announced expired even with its job still queued."""
    ledger = Ledger(database.engine, PriceList.load(), signup_grant=100)
    account = ledger.create_account(name="a").id
    hold(ledger, "waiting", account, expires_at=1)
    hold(ledger, "lost", account, expires_at=1)
    bus = Bus()
    queued = outcomes("waiting")
    assert await Sweeper(ledger, database, bus.publish, outcomes(), queued, HOUR).sweep_once() == 1
    assert [e.task_id for e in bus.events] == ["lost"]
    deadline = ledger.get_hold(task_id="waiting").expires_at
    assert abs(deadline - (time.time() + HOUR)) < 60  # the task's: an hour from its submit
    bus.events.clear()
    assert await Sweeper(ledger, database, bus.publish, outcomes(), queued, HOUR).sweep_once() == 1
    assert [e.task_id for e in bus.events] == ["lost"]  # "waiting" is not due yet
    ledger.extend_holds([])  # nothing to extend: no statement fails
    with database.engine.begin() as conn:  # its task's deadline passes in the queue
        conn.execute(text("UPDATE hold SET expires_at = 1 WHERE task_id = 'waiting'"))
    bus.events.clear()
    assert await Sweeper(ledger, database, bus.publish, outcomes(), queued, 0).sweep_once() == 2
    assert sorted(e.task_id for e in bus.events) == ["lost", "waiting"]


async def test_a_bus_outage_leaves_the_hold_for_the_next_sweep(database: Database) -> None:
    ledger = Ledger(database.engine, PriceList.load(), signup_grant=100)
    account = ledger.create_account(name="a").id
    hold(ledger, "old", account, expires_at=1)
    bus = Bus()
    bus.down = True
    with pytest.raises(ApiError):
        await Sweeper(ledger, database, bus.publish, outcomes(), NOTHING_QUEUED, HOUR).sweep_once()
    assert ledger.get_hold(task_id="old").state == HoldState.PENDING
    bus.down = False
    assert (
        await Sweeper(ledger, database, bus.publish, outcomes(), NOTHING_QUEUED, HOUR).sweep_once()
        == 1
    )
    assert [e.task_id for e in bus.events] == ["old"]


async def test_holds_long_past_their_deadline_are_reported(database: Database) -> None:
    """The gauge behind the 'holds older than their TTL' alert: a hold announced expired
    but not released (the settlement consumer or the database is down) stays counted."""
    ledger = Ledger(database.engine, PriceList.load(), signup_grant=100)
    account = ledger.create_account(name="a").id
    now = int(time.time())
    hold(ledger, "old", account, expires_at=1)
    hold(ledger, "just", account, expires_at=now - 1)  # announced, within the grace
    hold(ledger, "fresh", account, expires_at=2**40)
    bus = Bus()
    await Sweeper(
        ledger, database, bus.publish, outcomes(), NOTHING_QUEUED, HOUR
    ).sweep_and_report()
    assert sorted(e.task_id for e in bus.events) == ["just", "old"]
    assert HOLDS_OVERDUE._value.get() == 1
    ledger.release(task_id="old", reason="expired")
    await Sweeper(
        ledger, database, bus.publish, outcomes(), NOTHING_QUEUED, HOUR
    ).sweep_and_report()
    assert HOLDS_OVERDUE._value.get() == 0


async def test_the_periodic_ledger_check_reports_problems(database: Database) -> None:
    ledger = Ledger(database.engine, PriceList.load(), signup_grant=100)
    ledger.create_account(name="a")
    stop = asyncio.Event()
    checks = asyncio.create_task(run_ledger_checks(ledger, database, stop, interval=0.01))
    await asyncio.sleep(0.1)
    assert LEDGER_PROBLEMS._value.get() == 0
    with database.engine.begin() as conn:  # credits out of nowhere: no ledger entry
        conn.execute(text("UPDATE account SET balance = balance + 1"))
    await asyncio.sleep(0.2)
    stop.set()
    await checks
    assert LEDGER_PROBLEMS._value.get() >= 1
