"""Usage as a person reads it: a task's line (what was held, charged and given back), made
from the task record, on which billing's settled event is recorded (events.py)."""

from __future__ import annotations

from pixelrelay.db import Database
from pixelrelay.limits import page_limit, unix_seconds
from pixelrelay.v1 import public_api_pb2
from pixelrelay_gateway.core.store import DEFAULT_PAGE, MAX_PAGE, TaskStore


def refunded(task: public_api_pb2.Task) -> int:
    """What came back of the hold once billing settled it: the rest of a capture, all of a
    failed task's; nothing before."""
    return task.credits_reserved - task.credits_charged if task.credits_settled else 0


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


async def usage_page(
    db: Database, store: TaskStore, account_id: str, request: public_api_pb2.ListTaskUsageRequest
) -> public_api_pb2.ListTaskUsageResponse:
    """One page of an account's usage for a period: the customer's own and the operator's."""
    since = unix_seconds(request.since, "since")
    until = unix_seconds(request.until, "until")
    records, next_cursor = await db.run(
        store.page,
        account_id=account_id,
        limit=page_limit(request.limit, default=DEFAULT_PAGE, maximum=MAX_PAGE),
        cursor=request.cursor,
        since_ms=since * 1000,
        until_ms=until * 1000,
    )
    return public_api_pb2.ListTaskUsageResponse(
        tasks=[task_usage(r.to_proto()) for r in records], next_cursor=next_cursor
    )
