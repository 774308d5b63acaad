"""Billing's sweeper against a real ledger: what it releases, what it announces, and the
race with a capture that arrives between finding a hold expired and releasing it."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text

from billing.ledger import Ledger
from billing.models import HoldState
from billing.prices import PriceList
from billing.sweeper import (
    HOLDS_OVERDUE,
    LEDGER_PROBLEMS,
    run_ledger_checks,
    sweep_and_report,
    sweep_once,
)
from pixelrelay.db import Database
from pixelrelay.errors import ApiError, E
from pixelrelay.v1 import common_pb2, events_pb2

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


class CaptureWinsTheRace(Ledger):
    """The gateway's capture lands after the sweeper listed the hold as expired."""

    def expired_holds(self, *, now: int, limit: int = 500) -> list[str]:
        found = super().expired_holds(now=now, limit=limit)
        for task_id in found:
            if task_id.startswith("late"):
                self.capture(task_id=task_id, delivered=1)
        return found


def hold(ledger: Ledger, task_id: str, account_id: str, expires_at: int) -> None:
    ledger.reserve(task_id=task_id, account_id=account_id, item=ITEM, expires_at=expires_at)


async def test_expired_holds_are_failed_and_released_the_rest_kept(database: Database) -> None:
    ledger = Ledger(database.engine, PriceList.load(), signup_grant=100)
    account = ledger.create_account(name="a").id
    hold(ledger, "old", account, expires_at=1)
    hold(ledger, "queued", account, expires_at=2**40)
    bus = Bus()
    assert await sweep_once(ledger, database, bus.publish) == 1
    assert [(e.task_id, e.failed.type) for e in bus.events] == [("old", "task_expired")]
    assert ledger.get_hold(task_id="old").state == HoldState.RELEASED
    assert ledger.get_hold(task_id="queued").state == HoldState.PENDING
    assert ledger.get_account(account_id=account).balance == 93
    assert ledger.check().problems == []


async def test_a_hold_captured_meanwhile_stays_captured(database: Database) -> None:
    ledger = CaptureWinsTheRace(database.engine, PriceList.load(), signup_grant=100)
    account = ledger.create_account(name="a").id
    hold(ledger, "late", account, expires_at=1)
    hold(ledger, "lost", account, expires_at=1)
    bus = Bus()
    assert await sweep_once(ledger, database, bus.publish) == 1
    assert ledger.get_hold(task_id="late").state == HoldState.CAPTURED
    assert ledger.get_hold(task_id="lost").state == HoldState.RELEASED
    # Both were announced failed; the gateway ignores it for the captured one (its
    # release gets HOLD_CONFLICT), so that task completes, charged once.
    assert sorted(e.task_id for e in bus.events) == ["late", "lost"]
    assert (
        ledger.get_account(account_id=account).balance,
        ledger.get_account(account_id=account).held,
    ) == (93, 0)
    assert ledger.check().problems == []


async def test_a_bus_outage_leaves_the_hold_for_the_next_sweep(database: Database) -> None:
    """Released first, a hold whose failed event was then lost left its task processing
    for ever: nothing would find it again."""
    ledger = Ledger(database.engine, PriceList.load(), signup_grant=100)
    account = ledger.create_account(name="a").id
    hold(ledger, "old", account, expires_at=1)
    bus = Bus()
    bus.down = True
    with pytest.raises(ApiError):
        await sweep_once(ledger, database, bus.publish)
    assert ledger.get_hold(task_id="old").state == HoldState.PENDING
    bus.down = False
    assert await sweep_once(ledger, database, bus.publish) == 1
    assert [e.task_id for e in bus.events] == ["old"]
    assert ledger.get_hold(task_id="old").state == HoldState.RELEASED


async def test_holds_the_sweeper_could_not_release_are_reported(database: Database) -> None:
    """The gauge behind the 'holds older than their TTL' alert."""
    ledger = Ledger(database.engine, PriceList.load(), signup_grant=100)
    account = ledger.create_account(name="a").id
    hold(ledger, "old", account, expires_at=1)
    hold(ledger, "fresh", account, expires_at=2**40)
    bus = Bus()
    bus.down = True
    with pytest.raises(ApiError):
        await sweep_and_report(ledger, database, bus.publish)
    assert HOLDS_OVERDUE._value.get() == 1
    bus.down = False
    await sweep_and_report(ledger, database, bus.publish)
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
