"""Task records: shared by every gateway replica through the database.

The prompt is never stored; the job on the bus is the only copy and it is deleted
once the dispatcher acks it.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any, TypeVar

import orjson
from google.protobuf import json_format
from google.protobuf.message import Message
from sqlalchemy import BigInteger, Column, Index, Text, bindparam, delete, func, insert, update
from sqlalchemy import select as core_select
from sqlalchemy.engine import Engine
from sqlmodel import Field, Session, SQLModel, col, or_, select

from pixelrelay.db import DirectSql, PreparedRead, quick
from pixelrelay.errors import ApiError, E
from pixelrelay.v1 import admin_pb2, common_pb2, events_pb2, public_api_pb2
from pixelrelay_gateway.core.margin import TaskCosts

M = TypeVar("M", bound=Message)


class TaskStatus(StrEnum):
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"


TERMINAL = (TaskStatus.COMPLETED, TaskStatus.FAILED)
# A page of tasks (the task list, usage): 0 asks the default.
DEFAULT_PAGE = 20
MAX_PAGE = 100


def now_ms() -> int:
    return int(time.time() * 1000)


class TaskRecord(SQLModel, table=True):
    __tablename__ = "task"
    __table_args__ = (
        Index("task_by_owner", "account_id", "created_at_ms", "id"),
        Index("task_by_age", "created_at_ms"),  # the retention purge
    )

    id: str = Field(primary_key=True)
    account_id: str
    key_id: str
    model: str
    status: TaskStatus = TaskStatus.PROCESSING
    created_at_ms: int = Field(sa_column=Column(BigInteger, nullable=False))
    started_at_ms: int | None = Field(default=None, sa_column=Column(BigInteger))
    # When the task completed (its images stored) or failed.
    finished_at_ms: int | None = Field(default=None, sa_column=Column(BigInteger))
    # When billing's settled event was recorded: credits_charged is final from then on.
    settled_at_ms: int | None = Field(default=None, sa_column=Column(BigInteger))
    upstream_ms: int | None = None
    spec_json: str = Field(sa_column=Column(Text, nullable=False))
    credits_reserved: int = 0
    price_id: str = ""
    credits_charged: int = 0
    images_json: str = Field(default="[]", sa_column=Column(Text, nullable=False))
    attempts_json: str = Field(default="[]", sa_column=Column(Text, nullable=False))
    usage_json: str | None = Field(default=None, sa_column=Column(Text))  # upstream tokens
    error_code: int | None = None
    error_type: str | None = None
    error_message: str | None = None

    def to_proto(self) -> public_api_pb2.Task:
        return task_from_row(self.__dict__)


def task_from_row(row: Mapping[Any, Any], now: float | None = None) -> public_api_pb2.Task:
    """A task row (a record's fields or a result mapping) as the public Task message.

    Once its images' lifetime is over (storage deletes them, retention.py) the task says
    when (``expired_at``) and lists no images: a URL that cannot work is not shown."""
    task = public_api_pb2.Task(
        id=row["id"],
        model=row["model"],
        status=str(row["status"]),
        created_at=row["created_at_ms"] // 1000,
        created_at_ms=row["created_at_ms"],
        started_at_ms=row["started_at_ms"] or 0,
        finished_at_ms=row["finished_at_ms"] or 0,
        upstream_ms=row["upstream_ms"] or 0,
        credits_reserved=row["credits_reserved"],
        price_id=row["price_id"],
        credits_charged=row["credits_charged"],
        credits_settled=row["settled_at_ms"] is not None,
        spec=_from_plain(common_pb2.ImageSpec, orjson.loads(row["spec_json"])),
        images=[_from_plain(common_pb2.StoredImage, d) for d in orjson.loads(row["images_json"])],
        attempts=[_from_plain(common_pb2.Attempt, d) for d in orjson.loads(row["attempts_json"])],
    )
    if row["usage_json"]:
        task.usage.CopyFrom(_from_plain(common_pb2.Usage, orjson.loads(row["usage_json"])))
    expiry = _images_expiry(task.images)
    if expiry and (now or time.time()) >= expiry:
        task.expired_at = expiry
        del task.images[:]
    if row["error_code"] is not None:
        task.error.CopyFrom(
            public_api_pb2.TaskError(
                code=row["error_code"],
                type=row["error_type"] or "",
                message=row["error_message"] or "",
            )
        )
    return task


def _images_expiry(images: Sequence[common_pb2.StoredImage]) -> int:
    """When the first of ``images`` is deleted; 0 if there are none. Images stored before
    storage said (no ``kept_until``) were kept as long as their URL lasted."""
    return min((i.kept_until or i.expires_at for i in images), default=0)


# Flat messages are stored as plain JSON objects of their set fields (ints stay ints), so
# reading one back is a constructor call, not protobuf's slow JSON parser (polls do this).


def _plain(message: Message) -> dict[str, Any]:
    plain: dict[str, Any] = {}
    for field, value in message.ListFields():
        if field.message_type is not None:  # an attempt's usage: a nested object
            plain[field.name] = [_plain(v) for v in value] if field.is_repeated else _plain(value)
        else:
            plain[field.name] = list(value) if field.is_repeated else value
    return plain


def _from_plain(cls: type[M], data: dict[str, Any]) -> M:
    try:
        return cls(**data)
    except (TypeError, ValueError):  # rows written in the protobuf JSON form (int64 as text)
        return json_format.ParseDict(data, cls())


def message_to_json(message: Message) -> str:
    return orjson.dumps(_plain(message)).decode()


def messages_to_json(messages: Sequence[Message]) -> str:
    return orjson.dumps([_plain(m) for m in messages]).decode()


def encode_cursor(record: TaskRecord) -> str:
    return base64.urlsafe_b64encode(f"{record.created_at_ms}:{record.id}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[int, str]:
    try:
        created, task_id = base64.urlsafe_b64decode(cursor.encode()).decode().split(":", 1)
        return int(created), task_id
    except (ValueError, UnicodeDecodeError):
        raise ApiError(
            E.INVALID_PARAMETER, "cursor is not one this API returned", param="cursor"
        ) from None


_TASKS = TaskRecord.__table__  # type: ignore[attr-defined]
_INSERT = insert(_TASKS)
_BY_ID = core_select(_TASKS).where(_TASKS.c.id == bindparam("t_id"))
_MARK_STARTED = (
    update(_TASKS)
    .where(
        _TASKS.c.id == bindparam("t_id"),
        _TASKS.c.status == TaskStatus.PROCESSING,
        _TASKS.c.started_at_ms.is_(None),
    )
    .values(started_at_ms=bindparam("at"))
)
_COMPLETE = (
    update(_TASKS)
    .where(_TASKS.c.id == bindparam("t_id"), _TASKS.c.status == TaskStatus.PROCESSING)
    .values(
        status=TaskStatus.COMPLETED,
        images_json=bindparam("images"),
        attempts_json=bindparam("attempts"),
        finished_at_ms=bindparam("at"),
        upstream_ms=bindparam("upstream_ms"),
        usage_json=bindparam("usage"),
    )
)
_FAIL = (
    update(_TASKS)
    .where(_TASKS.c.id == bindparam("t_id"), _TASKS.c.status == TaskStatus.PROCESSING)
    .values(
        status=TaskStatus.FAILED,
        error_code=bindparam("code"),
        error_type=bindparam("type"),
        error_message=bindparam("message"),
        attempts_json=bindparam("attempts"),
        finished_at_ms=bindparam("at"),
    )
)
# A release leaves the reserved price; a capture at a cheaper tier (quality=auto) names its own.
_SETTLE = (
    update(_TASKS)
    .where(_TASKS.c.id == bindparam("t_id"), _TASKS.c.settled_at_ms.is_(None))
    .values(
        credits_charged=bindparam("charged"),
        price_id=func.coalesce(bindparam("price_id", type_=Text), _TASKS.c.price_id),
        settled_at_ms=bindparam("at"),
    )
)


class TaskStore:
    def __init__(self, engine: Engine):
        self.engine = engine
        self._by_id = PreparedRead(engine, _BY_ID)
        self._direct = DirectSql(engine)  # for the writes every task makes

    @quick
    def insert_many(self, records: Sequence[TaskRecord]) -> list[None]:
        """New tasks, in one transaction (the gateway batches concurrent submits)."""
        with self._direct.begin() as conn:
            conn.execute(_INSERT, [record.model_dump() for record in records])
        return [None] * len(records)

    @quick
    def delete(self, task_id: str) -> None:
        with Session(self.engine, expire_on_commit=False) as s, s.begin():
            s.execute(delete(TaskRecord).where(col(TaskRecord.id) == task_id))

    def purge(self, *, created_before_ms: int, batch: int = 1000) -> int:
        """Delete the records of tasks created before ``created_before_ms`` (past
        TASK_RETENTION_DAYS), ``batch`` rows per transaction so no lock is held long; the
        ledger keeps its entries, which name the task id. A scan: run it in the pool."""
        stale = (
            core_select(_TASKS.c.id)
            .where(_TASKS.c.created_at_ms < created_before_ms)
            .limit(batch)
            .scalar_subquery()
        )
        purged = 0
        while True:
            with self.engine.begin() as conn:
                gone = int(conn.execute(delete(_TASKS).where(_TASKS.c.id.in_(stale))).rowcount)
            purged += gone
            if gone < batch:
                return purged

    def ids_of(self, account_id: str) -> list[str]:
        """Every task id of one account (account deletion)."""
        query = core_select(_TASKS.c.id).where(_TASKS.c.account_id == account_id)
        with self.engine.connect() as conn:
            return list(conn.execute(query).scalars())

    def delete_account(self, account_id: str) -> int:
        with self.engine.begin() as conn:
            gone = conn.execute(delete(_TASKS).where(_TASKS.c.account_id == account_id))
            return int(gone.rowcount)

    @quick
    def get(self, task_id: str, account_id: str | None = None) -> public_api_pb2.Task:
        # The poll path: row → message without SQLAlchemy's per-call work or a model object.
        row = self._by_id.one(t_id=task_id)
        if row is None or (account_id is not None and row["account_id"] != account_id):
            raise ApiError(E.TASK_NOT_FOUND, param="id")
        return task_from_row(row)

    @quick
    def get_for_operator(self, task_id: str) -> admin_pb2.OperatorTask:
        """Any account's task, with its owner (Admin.GetTask)."""
        row = self._by_id.one(t_id=task_id)
        if row is None:
            raise ApiError(E.TASK_NOT_FOUND, param="task_id")
        return admin_pb2.OperatorTask(
            task=task_from_row(row), account_id=row["account_id"], key_id=row["key_id"]
        )

    def live_results(
        self, *, after_id: str, limit: int, now_ms: int
    ) -> tuple[list[tuple[str, list[str]]], str]:
        """Completed tasks after ``after_id`` (by id) whose images are within their
        lifetime, with their result keys; and where to go on from ("" after the last)."""
        query = (
            core_select(_TASKS.c.id, _TASKS.c.images_json)
            .where(_TASKS.c.status == TaskStatus.COMPLETED, _TASKS.c.id > after_id)
            .order_by(_TASKS.c.id)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            rows = list(conn.execute(query))
        live = []
        for row in rows:
            images = [_from_plain(common_pb2.StoredImage, d) for d in orjson.loads(row.images_json)]
            expiry = _images_expiry(images)
            if images and (not expiry or expiry * 1000 > now_ms):
                live.append((row.id, [image.key for image in images]))
        return live, (rows[-1].id if len(rows) == limit else "")

    def mark_images_lost(self, task_id: str, at_ms: int) -> None:
        """The task's images are gone before their time: from now on it answers as a task
        whose images are past their lifetime (``expired_at``, no URLs)."""
        with Session(self.engine) as s, s.begin():
            record = s.get(TaskRecord, task_id, with_for_update=True)
            if record is None:
                return
            images = [
                _from_plain(common_pb2.StoredImage, d) for d in orjson.loads(record.images_json)
            ]
            for image in images:
                image.kept_until = min(image.kept_until or image.expires_at, at_ms // 1000)
            record.images_json = messages_to_json(images)

    def costs(self, since_ms: int, until_ms: int) -> list[TaskCosts]:
        """Every settled task made in [since_ms, until_ms): what the margin reads."""
        query = core_select(
            _TASKS.c.account_id,
            _TASKS.c.model,
            _TASKS.c.status,
            _TASKS.c.credits_charged,
            _TASKS.c.attempts_json,
        ).where(
            _TASKS.c.created_at_ms >= since_ms,
            _TASKS.c.created_at_ms < until_ms,
            _TASKS.c.status.in_([TaskStatus.COMPLETED, TaskStatus.FAILED]),
        )
        with self.engine.connect() as conn:
            return [
                TaskCosts(
                    account_id=row.account_id,
                    model=row.model,
                    credits_charged=row.credits_charged,
                    attempts=[
                        _from_plain(common_pb2.Attempt, d) for d in orjson.loads(row.attempts_json)
                    ],
                    completed=row.status == TaskStatus.COMPLETED,
                )
                for row in conn.execute(query)
            ]

    def page(
        self,
        *,
        account_id: str,
        limit: int,
        cursor: str = "",
        status: str = "",
        since_ms: int = 0,
        until_ms: int = 0,
    ) -> tuple[list[TaskRecord], str]:
        """Newest first; ``since_ms`` inclusive and ``until_ms`` exclusive, 0 = unbounded."""
        query = select(TaskRecord).where(TaskRecord.account_id == account_id)
        if status:
            query = query.where(TaskRecord.status == status)
        if since_ms:
            query = query.where(col(TaskRecord.created_at_ms) >= since_ms)
        if until_ms:
            query = query.where(col(TaskRecord.created_at_ms) < until_ms)
        if cursor:
            created, task_id = decode_cursor(cursor)
            query = query.where(
                or_(
                    col(TaskRecord.created_at_ms) < created,
                    (col(TaskRecord.created_at_ms) == created) & (col(TaskRecord.id) < task_id),
                )
            )
        query = query.order_by(
            col(TaskRecord.created_at_ms).desc(), col(TaskRecord.id).desc()
        ).limit(limit + 1)
        with Session(self.engine, expire_on_commit=False) as s:
            rows = list(s.exec(query))
            for row in rows:
                s.expunge(row)
        more = len(rows) > limit
        rows = rows[:limit]
        return rows, (encode_cursor(rows[-1]) if more else "")

    # -- transitions driven by bus events; each applies at most once ----------------------

    @quick
    def mark_started(self, task_id: str, at_ms: int) -> None:
        with self._direct.begin() as conn:
            conn.execute(_MARK_STARTED, {"t_id": task_id, "at": at_ms})

    @quick
    def mark_completed(self, task_id: str, done: events_pb2.TaskCompleted, at_ms: int) -> bool:
        """Processing → completed with its images, once; False if it was not processing
        (already completed: a redelivery; or failed first). The charge is billing's,
        recorded by ``mark_settled`` whenever it comes."""
        with self._direct.begin() as conn:
            done_now = conn.execute(
                _COMPLETE,
                {
                    "t_id": task_id,
                    "images": messages_to_json(done.images),
                    "attempts": messages_to_json(done.attempts),
                    "at": at_ms,
                    "upstream_ms": done.upstream_ms,
                    "usage": message_to_json(done.usage) if done.HasField("usage") else None,
                },
            )
        return bool(done_now.rowcount)

    @quick
    def mark_failed(self, task_id: str, failed: events_pb2.TaskFailed, at_ms: int) -> bool:
        return self._fail(
            task_id,
            failed.code,
            failed.type,
            failed.message,
            messages_to_json(failed.attempts),
            at_ms,
        )

    def _fail(
        self, task_id: str, code: int, type_: str, message: str, attempts: str, at_ms: int
    ) -> bool:
        """Processing → failed, once."""
        values = {"code": code, "type": type_, "message": message, "attempts": attempts}
        with self._direct.begin() as conn:
            failed_now = conn.execute(_FAIL, {"t_id": task_id, "at": at_ms, **values})
        return bool(failed_now.rowcount)

    @quick
    def mark_settled(self, task_id: str, settled: events_pb2.TaskSettled, at_ms: int) -> bool:
        """Billing's settlement: the credits charged (and the price row charged, a cheaper
        tier for quality=auto), once. A hold billing released because it expired fails a
        task still processing (returns True then): no other event will. Any other release
        follows the failed event that caused it, which the task records itself."""
        values = {
            "t_id": task_id,
            "charged": settled.charged,
            "price_id": settled.price_id or None,
            "at": at_ms,
        }
        with self._direct.begin() as conn:
            conn.execute(_SETTLE, values)
        if settled.captured or settled.reason != E.TASK_EXPIRED.type:
            return False
        kind = E.TASK_EXPIRED
        return self._fail(task_id, kind.code, kind.type, kind.description, "[]", at_ms)
