"""Every event of a task's life, built and published one way.

Published on ``pixelrelay.events.task.<kind>.<task id>`` with ``Nats-Msg-Id =
<task>.<kind>``, so an event published twice (a redelivered job, a retried publish) is
stored once, and one task's events can be read back by subject (``last_event``). Each kind
has one publisher:

    started     the dispatcher: it picked the job up
    completed   storage: the images are stored (before it answers the dispatcher)
    failed      the dispatcher: the upstream failed for good, storage failed for good, or
                (its dead-letter handler) the job was abandoned
    expired     billing's sweeper: the hold outlived its deadline with neither of the two
                above on the bus
    settled     billing's settlement consumer: the hold captured (completed) or released
                (failed, expired), or Release for a submit never queued

Billing settles from completed, failed and expired; the gateway records started,
completed, failed and settled on the task.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext

from pixelrelay.bus import EVENTS_PREFIX, EVENTS_STREAM, publish
from pixelrelay.errors import ApiError, E, ErrorKind
from pixelrelay.v1 import common_pb2, events_pb2


def _now_ms() -> int:
    return int(time.time() * 1000)


def started(task_id: str, *, worker: str, delivery: int) -> events_pb2.TaskEvent:
    return events_pb2.TaskEvent(
        task_id=task_id,
        at_ms=_now_ms(),
        started=events_pb2.TaskStarted(worker=worker, delivery=delivery),
    )


def completed(
    task_id: str,
    *,
    images: Iterable[common_pb2.StoredImage],
    quality: str,
    upstream_ms: int,
    attempts: Iterable[common_pb2.Attempt],
    usage: common_pb2.Usage | None = None,
) -> events_pb2.TaskEvent:
    return events_pb2.TaskEvent(
        task_id=task_id,
        at_ms=_now_ms(),
        completed=events_pb2.TaskCompleted(
            images=images,
            quality=quality,
            upstream_ms=upstream_ms,
            attempts=attempts,
            usage=usage,
        ),
    )


def failed(
    task_id: str,
    kind: ErrorKind,
    message: str | None = None,
    attempts: Iterable[common_pb2.Attempt] = (),
) -> events_pb2.TaskEvent:
    """``message`` is shown to the client: never upstream text (errors.py)."""
    return events_pb2.TaskEvent(
        task_id=task_id,
        at_ms=_now_ms(),
        failed=events_pb2.TaskFailed(
            code=kind.code,
            type=kind.type,
            message=message or kind.description,
            attempts=attempts,
        ),
    )


def expired(task_id: str) -> events_pb2.TaskEvent:
    return events_pb2.TaskEvent(task_id=task_id, at_ms=_now_ms(), expired=events_pb2.TaskExpired())


def settled(task_id: str, outcome: events_pb2.TaskSettled) -> events_pb2.TaskEvent:
    return events_pb2.TaskEvent(task_id=task_id, at_ms=_now_ms(), settled=outcome)


def subject(kind: str, task_id: str) -> str:
    return f"{EVENTS_PREFIX}.{kind}.{task_id}"


def kinds_subjects(*kinds: str) -> list[str]:
    """The subjects of every task's events of these kinds (a consumer's filter)."""
    return [f"{EVENTS_PREFIX}.{kind}.*" for kind in kinds]


def kind_of(event: events_pb2.TaskEvent) -> str:
    kind = event.WhichOneof("kind")
    if kind is None:
        raise ValueError("TaskEvent without a kind")
    return kind


async def publish_event(js: JetStreamContext, event: events_pb2.TaskEvent) -> None:
    """Publish and wait for the stream's ack; a bus outage becomes 90002."""
    kind = kind_of(event)
    await publish(
        js,
        subject(kind, event.task_id),
        event.SerializeToString(),
        msg_id=f"{event.task_id}.{kind}",
    )


async def last_event(js: JetStreamContext, kind: str, task_id: str) -> events_pb2.TaskEvent | None:
    """The task's event of this kind if the stream holds one (a lookup by subject, served by
    the stream, no consumer); a bus outage becomes 90002."""
    try:
        msg = await js.get_last_msg(EVENTS_STREAM, subject(kind, task_id))
    except nats.js.errors.NotFoundError:
        return None
    except (TimeoutError, nats.errors.Error, nats.js.errors.Error) as exc:
        raise ApiError(E.UNAVAILABLE, "the event stream is unavailable") from exc
    return events_pb2.TaskEvent.FromString(msg.data or b"")
