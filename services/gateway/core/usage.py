"""Usage as a person reads it: a task's line (what was held, charged and given back), made
from the task record, which billing's capture and release settle (events.py)."""

from __future__ import annotations

from gateway.core.store import TaskStatus
from pixelrelay.v1 import public_api_pb2


def refunded(task: public_api_pb2.Task) -> int:
    """What came back of the hold: the rest of a capture, all of a failed task's (its hold
    was released); nothing while it runs."""
    if task.status == TaskStatus.COMPLETED:
        return task.credits_reserved - task.credits_charged
    if task.status == TaskStatus.FAILED:
        return task.credits_reserved
    return 0


def task_usage(task: public_api_pb2.Task) -> public_api_pb2.TaskUsage:
    return public_api_pb2.TaskUsage(
        task_id=task.id,
        created_at=task.created_at,
        model=task.model,
        size=task.spec.size,
        resolution=task.spec.resolution,
        n=task.spec.n,
        quality=task.spec.quality,
        reserved=task.credits_reserved,
        charged=task.credits_charged,
        refunded=refunded(task),
        status=task.status,
        price_id=task.price_id,
    )
