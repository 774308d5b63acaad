"""An account export as a file: JSON always has every section, CSV quotes what it must,
and an export that fails at its first item writes nothing."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator, Sequence

import pytest

from pixelrelay import export
from pixelrelay.errors import ApiError, E
from pixelrelay.v1 import billing_pb2, common_pb2
from pixelrelay.v1 import public_api_pb2 as api

ACCOUNT = api.ExportItem(account=billing_pb2.Account(id="acct_1", name="n", balance=5))
TASK = api.ExportItem(
    task=api.Task(
        id="task_1",
        status="failed",
        spec=common_pb2.ImageSpec(resolution="1k", n=2),
        error=api.TaskError(code=70001, type="upstream_failed"),
    )
)
ENTRY = api.ExportItem(
    entry=billing_pb2.LedgerEntryInfo(id=9, kind="adjustment", amount=-3, memo='a, "quoted"')
)


async def stream(items: Sequence[api.ExportItem]) -> AsyncIterator[api.ExportItem]:
    for item in items:
        yield item


async def file(items: Sequence[api.ExportItem], fmt: str, part: str = "tasks") -> str:
    return b"".join([p async for p in export.render(stream(items), fmt, part)]).decode()


@pytest.mark.parametrize(
    ("items", "tasks", "entries"),
    [
        ([ACCOUNT], 0, 0),
        ([ACCOUNT, TASK, TASK], 2, 0),
        ([ACCOUNT, ENTRY], 0, 1),
        ([ACCOUNT, TASK, ENTRY, ENTRY], 1, 2),
    ],
)
async def test_the_json_document_has_every_section(
    items: list[api.ExportItem], tasks: int, entries: int
) -> None:
    document = json.loads(await file(items, "json"))
    assert document["account"]["id"] == "acct_1"
    assert (len(document["tasks"]), len(document["ledger"])) == (tasks, entries)


async def test_csv_rows_are_flat_and_quoted() -> None:
    tasks = list(csv.DictReader(io.StringIO(await file([ACCOUNT, TASK, ENTRY], "csv", "tasks"))))
    assert [(t["id"], t["n"], t["error_type"], t["expired_at"]) for t in tasks] == [
        ("task_1", "2", "upstream_failed", "")
    ]
    ledger = list(csv.DictReader(io.StringIO(await file([ACCOUNT, TASK, ENTRY], "csv", "ledger"))))
    assert [(e["id"], e["amount"], e["memo"]) for e in ledger] == [("9", "-3", 'a, "quoted"')]


async def test_an_export_refused_at_its_first_item_writes_nothing() -> None:
    async def refused() -> AsyncIterator[api.ExportItem]:
        raise ApiError(E.ADMIN_TOKEN_INVALID)
        yield ACCOUNT  # pragma: no cover - makes this a generator

    with pytest.raises(ApiError):
        await export.started(refused())
    items = await export.started(stream([ACCOUNT, TASK]))
    assert [i.WhichOneof("item") async for i in items] == ["account", "task"]
