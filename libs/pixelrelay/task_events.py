"""Every event of a task's life, built and published one way.

Published on ``pixelrelay.events.task.<kind>`` with ``Nats-Msg-Id = <task>.<kind>``, so
an event published twice (a redelivered job, a retried publish) is stored once. The
gateway's consumer applies them to the task record and settles the hold.

    started     the dispatcher picked the job up
    completed   storage stored the images (after writing the task's manifest)
    failed      the dispatcher (upstream failed for good, storage failed for good, an
                unreadable job), its dead-letter handler (job abandoned), or billing's
                sweeper (the hold expired first)
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from nats.js import JetStreamContext

from pixelrelay.bus import EVENTS_PREFIX, publish
from pixelrelay.errors import ErrorKind
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


def kind_of(event: events_pb2.TaskEvent) -> str:
    kind = event.WhichOneof("kind")
    if kind is None:
        raise ValueError("TaskEvent without a kind")
    return kind


async def publish_event(js: JetStreamContext, event: events_pb2.TaskEvent) -> None:
    """Publish and wait for the stream's ack; a bus outage becomes 90002."""
    kind = kind_of(event)
    await publish(
        js, f"{EVENTS_PREFIX}.{kind}", event.SerializeToString(), msg_id=f"{event.task_id}.{kind}"
    )
