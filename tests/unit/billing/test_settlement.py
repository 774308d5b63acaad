"""Billing's settlement consumer against a real ledger: each event settles its hold once,
in one transaction with the events that arrive together, and is acked only after its
settled event is published."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, cast

import pytest
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from pixelrelay import bus, task_events
from pixelrelay.db import Database
from pixelrelay.errors import ApiError, E
from pixelrelay.v1 import common_pb2, events_pb2
from pixelrelay_billing.ledger import Ledger, Settle
from pixelrelay_billing.models import HoldState
from pixelrelay_billing.prices import PriceList
from pixelrelay_billing.settlement import Settlement

ITEM = common_pb2.PriceItem(model="gpt-image-2", resolution="1k", n=1)
FOUR = common_pb2.PriceItem(model="gpt-image-2-official", resolution="1k", n=4, quality="high")


class FakeJetStream:
    """Records what is published (subject, body); ``down`` fails every publish."""

    def __init__(self) -> None:
        self.published: list[tuple[str, events_pb2.TaskEvent]] = []
        self.dead: list[str] = []
        self.down = False
        self._nc = SimpleNamespace(is_connected=True, is_closed=False)  # for bus.publish_raw

    async def publish(self, subject: str, payload: bytes, **_: Any) -> None:
        if self.down:
            raise TimeoutError
        if subject.startswith("pixelrelay.deadletter"):
            self.dead.append(subject)
        else:
            self.published.append((subject, events_pb2.TaskEvent.FromString(payload)))

    def settled(self) -> dict[str, events_pb2.TaskSettled]:
        return {e.task_id: e.settled for _, e in self.published if e.HasField("settled")}


@dataclass
class Meta:
    num_delivered: int = 1

    @dataclass
    class Seq:
        stream: int = 1

    sequence: Seq = field(default_factory=Seq)


class FakeMsg:
    def __init__(self, event: events_pb2.TaskEvent | bytes):
        self.data = event if isinstance(event, bytes) else event.SerializeToString()
        self.subject = "pixelrelay.events.task.x.y"
        self.metadata = Meta()
        self.acked = False
        self.naked = False

    async def ack(self) -> None:
        self.acked = True

    async def nak(self, delay: float = 0) -> None:
        self.naked = True


def completed(task_id: str, images: int, quality: str = "") -> events_pb2.TaskEvent:
    shown = [common_pb2.StoredImage(index=i) for i in range(images)]
    ok = [common_pb2.Attempt(channel="sim", outcome="ok")]
    return task_events.completed(task_id, images=shown, quality=quality, upstream_ms=1, attempts=ok)


Deliver = Callable[[FakeMsg], Awaitable[None]]


def setup(database: Database) -> tuple[Ledger, str, FakeJetStream, Deliver]:
    """A ledger with one account, and the settlement consumer's handler on a fake bus."""
    ledger = Ledger(database.engine, PriceList.load(), signup_grant=1000)
    account = ledger.create_account(name="a").id
    js = FakeJetStream()
    settlement = Settlement(ledger, database, cast(JetStreamContext, js))
    return ledger, account, js, lambda msg: settlement(cast(Msg, msg))


async def test_completed_failed_and_expired_settle_once_each(database: Database) -> None:
    ledger, account, js, settle = setup(database)
    for task_id in ("done", "broke", "late"):
        ledger.reserve(task_id=task_id, account_id=account, item=ITEM, expires_at=2**40)
    ledger.reserve(task_id="some", account_id=account, item=FOUR, expires_at=2**40)
    msgs = [
        FakeMsg(completed("done", 1)),
        FakeMsg(task_events.failed("broke", E.UPSTREAM_FAILED)),
        FakeMsg(task_events.expired("late")),
        FakeMsg(completed("some", 2)),  # two of four delivered
    ]
    await asyncio.gather(*(settle(m) for m in msgs))  # arrive together: one transaction
    assert all(m.acked for m in msgs)
    settled = js.settled()
    assert (settled["done"].captured, settled["done"].charged, settled["done"].refunded) == (
        True,
        7,
        0,
    )
    assert (settled["broke"].captured, settled["broke"].reason) == (False, E.UPSTREAM_FAILED.type)
    assert (settled["late"].captured, settled["late"].reason) == (False, "task_expired")
    held = ledger.get_hold(task_id="some").amount
    assert (settled["some"].charged, settled["some"].refunded) == (held // 2, held - held // 2)
    assert [s for s, _ in js.published][0].startswith("pixelrelay.events.task.settled.")
    assert ledger.get_account(account_id=account).held == 0
    assert ledger.check().problems == []


async def test_a_redelivered_event_announces_the_same_settlement(database: Database) -> None:
    """Billing killed after the commit (or after the publish) gets the event again: the
    hold is not settled twice, and the same settled event goes out again."""
    ledger, account, js, settle = setup(database)
    ledger.reserve(task_id="t", account_id=account, item=ITEM, expires_at=2**40)
    await settle(FakeMsg(completed("t", 1)))
    await settle(FakeMsg(completed("t", 1)))
    assert [s.charged for s in (e.settled for _, e in js.published)] == [7, 7]
    assert ledger.get_account(account_id=account).balance == 993
    assert ledger.check().problems == []


async def test_images_after_an_expiry_are_not_charged(database: Database) -> None:
    """The sweeper's expired event settled first: the images' capture is refused, acked,
    and nothing more is announced (the release's settled event stands)."""
    ledger, account, js, settle = setup(database)
    ledger.reserve(task_id="t", account_id=account, item=ITEM, expires_at=1)
    await settle(FakeMsg(task_events.expired("t")))
    late = FakeMsg(completed("t", 1))
    await settle(late)
    assert late.acked
    assert [e.settled.captured for _, e in js.published] == [False]
    assert ledger.get_hold(task_id="t").state == HoldState.RELEASED
    assert ledger.get_account(account_id=account).balance == 1000


async def test_a_bus_outage_leaves_the_event_unacked_and_settles_once(
    database: Database,
) -> None:
    ledger, account, js, settle = setup(database)
    ledger.reserve(task_id="t", account_id=account, item=ITEM, expires_at=2**40)
    js.down = True
    first = FakeMsg(completed("t", 1))
    try:
        await settle(first)
    except ApiError as err:  # bus.consume naks it; JetStream redelivers
        assert err.kind is E.UNAVAILABLE
    assert not first.acked
    js.down = False
    again = FakeMsg(completed("t", 1))
    await settle(again)
    assert again.acked and js.settled()["t"].charged == 7
    assert ledger.get_account(account_id=account).balance == 993


async def test_events_no_retry_settles_are_dead_lettered(database: Database) -> None:
    _, _, js, settle = setup(database)
    for bad in (
        FakeMsg(b"\xff not a task event"),
        FakeMsg(completed("no_such_task", 1)),
        FakeMsg(task_events.started("t", worker="w", delivery=1)),
    ):
        await settle(bad)
        assert bad.acked
    assert len(js.dead) == 3 and js.published == []


async def test_settle_many_refuses_per_task_and_commits_the_rest(database: Database) -> None:
    ledger, account, _, _ = setup(database)
    ledger.reserve(task_id="a", account_id=account, item=ITEM, expires_at=2**40)
    ledger.reserve(task_id="b", account_id=account, item=ITEM, expires_at=2**40)
    results = ledger.settle_many([Settle("a", 1), Settle("b", 5), Settle("nope", None, reason="x")])
    assert not isinstance(results[0], ApiError) and results[0].captured == 7
    assert isinstance(results[1], ApiError) and results[1].kind is E.INVALID_AMOUNT
    assert isinstance(results[2], ApiError) and results[2].kind is E.HOLD_NOT_FOUND
    assert ledger.get_hold(task_id="b").state == HoldState.PENDING
    assert ledger.check().problems == []


async def test_nothing_is_published_while_the_client_reconnects(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """nats-py would buffer it and send it once the bus is back, even after its caller was
    told it failed (a refused submit's job would then run): the publish waits for the
    connection, goes out if it comes back in time, and is never made otherwise."""
    monkeypatch.setattr(bus, "PUBLISH_TIMEOUT_S", 0.3)
    js = FakeJetStream()
    js._nc.is_connected = False
    event = task_events.failed("task_x", E.UPSTREAM_FAILED)
    with pytest.raises(ApiError) as refused:
        await task_events.publish_event(cast(Any, js), event)
    assert refused.value.kind is E.UNAVAILABLE and js.published == []
    asyncio.get_running_loop().call_later(0.1, setattr, js._nc, "is_connected", True)
    await task_events.publish_event(cast(Any, js), event)  # back within the wait
    assert [e.task_id for _, e in js.published] == ["task_x"]
