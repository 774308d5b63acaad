"""Billing settles every hold from the bus: the one owner of a hold's end.

    completed (storage)  → capture the delivered images, at the tier the upstream reports
    failed (dispatcher)  → release, the error type as memo
    expired (sweeper)    → release, memo "expired"
and then publishes the task's ``settled`` event, the only word on its money, which the
gateway records. The events that arrive together are settled in one transaction
(``Ledger.settle_many`` through a Batcher); each message is acked only after its
``settled`` is on the bus, so billing killed at any point (mid-batch, after the commit,
after the publish) redelivers it and the hold, settled once, is announced again the same
way (JetStream drops the duplicate within its window, the gateway ignores a later one).

Images that arrive after their hold was released (it expired first) are not charged: the
capture is refused (HOLD_CONFLICT) and nothing more is announced; the release's own
``settled`` stands and the gateway deletes the images.
"""

from __future__ import annotations

import logging

from google.protobuf.message import DecodeError
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from prometheus_client import Counter

from pixelrelay import bus, task_events
from pixelrelay.batching import Batcher
from pixelrelay.crashpoints import crash_point
from pixelrelay.db import Database
from pixelrelay.errors import ApiError, E
from pixelrelay.v1 import events_pb2
from pixelrelay_billing.ledger import Ledger, Settle
from pixelrelay_billing.models import Hold, HoldState

log = logging.getLogger(__name__)

# The kinds billing settles from; the consumer sees no others.
SETTLES_ON = ("completed", "failed", "expired")
EXPIRED_MEMO = "expired"
MAX_DELAY_S = 30.0

CREDITS_CHARGED = Counter(
    "pixelrelay_credits_charged_total",
    "Credits captured, by the channel that delivered (beside the dispatchers' "
    "pixelrelay_upstream_cost_micros_total: the margin)",
    ["channel"],
)
SETTLED = Counter("pixelrelay_holds_settled_total", "Holds settled from the bus", ["outcome"])
EVENTS_DEAD = Counter(
    "pixelrelay_settlement_events_dead_lettered_total",
    "Task events billing could never settle, kept aside",
    ["reason"],
)


def settle_request(event: events_pb2.TaskEvent) -> Settle | None:
    """What the event asks of the task's hold; None for a kind billing does not settle on."""
    kind = event.WhichOneof("kind")
    if kind == "completed":
        done = event.completed
        return Settle(event.task_id, delivered=len(done.images), quality=done.quality)
    if kind == "failed":
        return Settle(event.task_id, delivered=None, reason=event.failed.type)
    if kind == "expired":
        return Settle(event.task_id, delivered=None, reason=EXPIRED_MEMO)
    return None


def outcome(hold: Hold, request: Settle) -> events_pb2.TaskSettled:
    """The settled event's body for a hold as it now stands."""
    if hold.state == HoldState.CAPTURED:
        return events_pb2.TaskSettled(
            captured=True,
            charged=hold.captured,
            refunded=hold.amount - hold.captured,
            price_id=hold.price_id,
            delivered=request.delivered or 0,
        )
    reason = E.TASK_EXPIRED.type if request.reason == EXPIRED_MEMO else request.reason
    return events_pb2.TaskSettled(captured=False, refunded=hold.amount, reason=reason)


class Settlement:
    """The settlement consumer's message handler (bus.consume runs many at once; the
    Batcher turns those that arrive together into one transaction)."""

    def __init__(self, ledger: Ledger, db: Database, js: JetStreamContext):
        self.ledger = ledger
        self.db = db
        self.js = js
        # Each caller gets its hold, or its own refusal raised (Batcher).
        self._batches: Batcher[Settle, Hold] = Batcher("settle", self._settle)

    async def _settle(self, requests: list[Settle]) -> list[Hold | ApiError]:
        crash_point("billing.before_capture")
        settled = await self.db.run(self.ledger.settle_many, requests)
        crash_point("billing.after_capture")  # committed; nothing announced nor acked yet
        return settled

    async def __call__(self, msg: Msg) -> None:
        try:
            event = events_pb2.TaskEvent.FromString(msg.data)
        except DecodeError:
            await self._dead(msg, "undecodable")
            return
        if not event.task_id:  # the gateway's reasons, for the same message
            await self._dead(msg, "no_task_id")
            return
        request = settle_request(event)
        if request is None:
            kindless = event.WhichOneof("kind") is None
            await self._dead(msg, "no_kind" if kindless else "not_settled_on")
            return
        try:
            hold = await self._batches.submit(request)
        except ApiError as err:
            if err.kind is E.UNAVAILABLE:  # the database is down: it will pass
                log.warning("settlement deferred", extra={"task_id": request.task_id})
                delivered = msg.metadata.num_delivered
                await msg.nak(delay=bus.backoff(delivered, first=0.5, most=MAX_DELAY_S))
            else:
                await self._refused(msg, event, err)
            return
        await self._announce(event, request, hold)
        crash_point("billing.after_settled")  # announced, not yet acked: redelivered
        await msg.ack()

    async def _announce(self, event: events_pb2.TaskEvent, request: Settle, hold: Hold) -> None:
        body = outcome(hold, request)
        await task_events.publish_event(self.js, task_events.settled(event.task_id, body))
        SETTLED.labels("captured" if body.captured else "released").inc()
        if body.charged:
            delivered = next((a.channel for a in event.completed.attempts if a.outcome == "ok"), "")
            CREDITS_CHARGED.labels(delivered).inc(body.charged)
        log.info(
            "task settled",
            extra={"task_id": event.task_id, "charged": body.charged, "reason": body.reason},
        )

    async def _refused(self, msg: Msg, event: events_pb2.TaskEvent, err: ApiError) -> None:
        if err.kind is E.HOLD_CONFLICT:
            # Settled the other way first (images after an expiry, a failure after a
            # completion): that settlement was announced; this event changes nothing.
            log.warning(
                "event for a settled hold", extra={"task_id": event.task_id, "error": err.message}
            )
            await msg.ack()
        else:  # no hold for the task, an impossible image count: no retry settles it
            await self._dead(msg, err.kind.type)

    async def _dead(self, msg: Msg, reason: str) -> None:
        log.error("task event dead-lettered", extra={"subject": msg.subject, "reason": reason})
        EVENTS_DEAD.labels(reason).inc()
        await bus.dead_letter(self.js, msg, reason)
