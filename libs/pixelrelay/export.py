"""An account's export (ExportAccount's stream) as a file: one JSON document, or CSV of
its tasks or of its ledger. The REST API and `pixelrelay admin export-account` both write
it from here, so the two give the same file.

Rows are flat and prompt-free (the platform never stored a prompt): a task's parameters,
status, timings and credits; a ledger entry as billing keeps it.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Iterable
from typing import Any

import orjson

from pixelrelay.v1 import billing_pb2, public_api_pb2

FORMATS = ("json", "csv")
PARTS = ("tasks", "ledger")  # what a CSV holds (a JSON document holds both)

TASK_COLUMNS = (
    "id",
    "created_at",
    "finished_at_ms",
    "model",
    "status",
    "resolution",
    "size",
    "width",
    "height",
    "n",
    "quality",
    "output_format",
    "images",
    "credits_reserved",
    "credits_charged",
    "price_id",
    "error_code",
    "error_type",
    "expired_at",
)
LEDGER_COLUMNS = ("id", "txn_id", "created_at", "kind", "book", "amount", "task_id", "memo")


def task_row(task: public_api_pb2.Task) -> dict[str, Any]:
    spec = task.spec
    return {
        "id": task.id,
        "created_at": task.created_at,
        "finished_at_ms": task.finished_at_ms or None,
        "model": task.model,
        "status": task.status,
        "resolution": spec.resolution,
        "size": spec.size,
        "width": spec.width,
        "height": spec.height,
        "n": spec.n,
        "quality": spec.quality or None,
        "output_format": spec.output_format,
        "images": len(task.images),
        "credits_reserved": task.credits_reserved,
        "credits_charged": task.credits_charged,
        "price_id": task.price_id,
        "error_code": task.error.code if task.HasField("error") else None,
        "error_type": task.error.type if task.HasField("error") else None,
        "expired_at": task.expired_at or None,
    }


def entry_row(entry: billing_pb2.LedgerEntryInfo) -> dict[str, Any]:
    return {
        "id": entry.id,
        "txn_id": entry.txn_id,
        "created_at": entry.created_at,
        "kind": entry.kind,
        "book": entry.book,
        "amount": entry.amount,
        "task_id": entry.task_id or None,
        "memo": entry.memo or None,
    }


def account_json(account: billing_pb2.Account) -> dict[str, Any]:
    return {
        "id": account.id,
        "name": account.name,
        "balance": account.balance,
        "held": account.held,
        "created_at": account.created_at,
        "deleted_at": account.deleted_at or None,
        "deleted_reason": account.deleted_reason or None,
    }


async def started(
    items: AsyncIterator[public_api_pb2.ExportItem],
) -> AsyncIterator[public_api_pb2.ExportItem]:
    """``items``, once its first has arrived: a refused credential or an unknown account
    raises here, before any of the file is written (an HTTP answer: before its status)."""
    first = await anext(items)

    async def everything() -> AsyncIterator[public_api_pb2.ExportItem]:
        yield first
        async for item in items:
            yield item

    return everything()


async def render(
    items: AsyncIterator[public_api_pb2.ExportItem], fmt: str, part: str = "tasks"
) -> AsyncIterator[bytes]:
    """The file, in pieces as the stream arrives (an account may have many tasks)."""
    if fmt == "json":
        async for piece in _json(items):
            yield piece
        return
    columns = TASK_COLUMNS if part == "tasks" else LEDGER_COLUMNS
    yield _csv_line(columns)
    async for item in items:
        kind = item.WhichOneof("item")
        if kind == "task" and part == "tasks":
            yield _csv_line(task_row(item.task)[c] for c in columns)
        elif kind == "entry" and part == "ledger":
            yield _csv_line(entry_row(item.entry)[c] for c in columns)


async def _json(items: AsyncIterator[public_api_pb2.ExportItem]) -> AsyncIterator[bytes]:
    """{"account": {…}, "tasks": […], "ledger": […]}: the stream gives them in that order."""
    opened = -1  # index in PARTS of the list being written
    first = True
    async for item in items:
        kind = item.WhichOneof("item")
        if kind == "account":
            yield b'{"account":' + orjson.dumps(account_json(item.account))
            continue
        part = PARTS.index("tasks" if kind == "task" else "ledger")
        row = task_row(item.task) if kind == "task" else entry_row(item.entry)
        if part != opened:
            yield _open_until(opened, part)
            opened, first = part, True
        yield (b"" if first else b",") + orjson.dumps(row)
        first = False
    yield _open_until(opened, len(PARTS)) + b"}\n"


def _open_until(opened: int, part: int) -> bytes:
    """Close the list ``opened`` (if one is), write the parts before ``part`` as empty
    lists, and open ``part``'s (none past the last)."""
    out = b"]" if opened >= 0 else b""
    for skipped in PARTS[opened + 1 : part]:
        out += f',"{skipped}":[]'.encode()
    if part < len(PARTS):
        out += f',"{PARTS[part]}":['.encode()
    return out


def _csv_line(values: Iterable[Any]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(["" if v is None else v for v in values])
    return out.getvalue().encode()
