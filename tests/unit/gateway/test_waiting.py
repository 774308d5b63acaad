"""Synchronous calls wait for their task: woken at once by a settle announcement, still
served by polling when one is lost, and given up on (the task as it stands) at the end."""

from __future__ import annotations

import asyncio
import time

import pytest

from pixelrelay.v1 import public_api_pb2
from pixelrelay_gateway.core import waiting
from pixelrelay_gateway.core.waiting import TaskWaiters, settled_subject


class Record:
    def __init__(self) -> None:
        self.status = "processing"
        self.reads = 0

    async def read(self) -> public_api_pb2.Task:
        self.reads += 1
        return public_api_pb2.Task(id="task_1", status=self.status)


async def test_an_announcement_wakes_the_waiter_at_once() -> None:
    waiters, record = TaskWaiters(), Record()
    started = time.monotonic()
    waiting_task = asyncio.create_task(waiters.wait("task_1", record.read, within=30))
    await asyncio.sleep(0.05)
    record.status = "completed"
    waiters.on_subject(settled_subject("task_1"))
    assert (await waiting_task).status == "completed"
    assert time.monotonic() - started < waiting.POLL_SECONDS  # not by the poll
    assert waiters._waiting == {}  # forgotten once nobody waits


async def test_a_lost_announcement_costs_one_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(waiting, "POLL_SECONDS", 0.05)
    waiters, record = TaskWaiters(), Record()
    waiting_task = asyncio.create_task(waiters.wait("task_1", record.read, within=30))
    await asyncio.sleep(0.1)
    record.status = "failed"  # settled on another replica whose announcement was lost
    assert (await waiting_task).status == "failed"


async def test_after_the_wait_the_task_is_returned_as_it_stands(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(waiting, "POLL_SECONDS", 0.05)
    waiters, record = TaskWaiters(), Record()
    assert (await waiters.wait("task_1", record.read, within=0.2)).status == "processing"
    assert record.reads >= 2


async def test_two_waiters_on_one_task_are_both_woken() -> None:
    waiters, record = TaskWaiters(), Record()
    both = [asyncio.create_task(waiters.wait("task_1", record.read, within=30)) for _ in range(2)]
    await asyncio.sleep(0.05)
    record.status = "completed"
    waiters.settled("task_1")
    assert [t.status for t in await asyncio.gather(*both)] == ["completed", "completed"]
    assert waiters._waiting == {}
