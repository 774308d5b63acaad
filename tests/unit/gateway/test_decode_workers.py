"""Decodes run in worker processes that are killed at their deadline or when their caller
gives up, hold their budget share until the process is dead, and one account's queue of
slow decodes does not delay another account's image."""

from __future__ import annotations

import asyncio
import functools
import os
import time
from typing import cast

import pytest

from gateway.inputs.decode_pool import DecodeWorkers
from gateway.inputs.fetch import SafeFetcher
from gateway.inputs.images import MAX_PIXELS, DecodeBudget, inspect_image
from gateway.inputs.references import ReferenceLoader
from gateway.inputs.work_bounds import MAX_JPEG_SCANS
from pixelrelay.errors import ApiError, E
from pixelrelay.storage_client import StorageClient
from tests.unit.gateway.test_decode_bombs import encoded, with_scans

SMALL = encoded("RGB", (64, 64), "PNG")


@functools.cache
def slow_jpeg() -> bytes:
    """Within every limit (40 MP, 100 scans) and still about 2.5 s of CPU to decode."""
    return with_scans(encoded("L", (6000, 6600), "JPEG", progressive=True), MAX_JPEG_SCANS)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_a_decode_past_its_deadline_is_killed_and_its_worker_replaced() -> None:
    workers = DecodeWorkers(1, timeout=0.5)
    await workers.start()
    pid = workers._idle[0].process.pid
    budget = DecodeBudget(MAX_PIXELS * 4)
    started = time.monotonic()
    with pytest.raises(ApiError) as caught:
        await inspect_image(slow_jpeg(), "file", budget, workers)
    assert time.monotonic() - started < 2.0
    assert (caught.value.kind, caught.value.param) == (E.INVALID_IMAGE, "file")
    assert "more than 0.5 s" in caught.value.message
    assert not alive(pid) and budget.free == MAX_PIXELS * 4
    image = await inspect_image(SMALL, "file", budget, workers)  # a fresh worker
    assert image.width == 64
    await workers.close()


async def test_a_cancelled_decode_holds_its_share_until_its_worker_is_dead() -> None:
    """A thread once went on decoding for ~8 s after the 30 s reference deadline had
    cancelled its caller and released its share."""
    workers = DecodeWorkers(1, timeout=30)
    await workers.start()
    pid = workers._idle[0].process.pid
    budget = DecodeBudget(MAX_PIXELS * 4)
    decoding = asyncio.create_task(inspect_image(slow_jpeg(), "file", budget, workers))
    await asyncio.sleep(0.3)
    assert budget.free < MAX_PIXELS * 4 and alive(pid)
    decoding.cancel()
    with pytest.raises(asyncio.CancelledError):
        await decoding
    assert not alive(pid)  # the work has stopped by the time the share is back
    assert budget.free == MAX_PIXELS * 4
    await workers.close()


async def test_one_accounts_slow_decodes_do_not_delay_anothers() -> None:
    workers = DecodeWorkers(2, timeout=30)
    await workers.start()
    loader = ReferenceLoader(
        cast(SafeFetcher, None),
        cast(StorageClient, None),
        DecodeBudget(MAX_PIXELS * 8),
        workers,
        decodes_per_account=1,
    )
    heavy = [
        asyncio.create_task(loader.inspect(slow_jpeg(), f"image_urls[{i}]", "acct_a"))
        for i in range(2)
    ]
    await asyncio.sleep(0.2)
    started = time.monotonic()
    image = await loader.inspect(SMALL, "file", "acct_b")
    waited = time.monotonic() - started
    assert image.width == 64
    assert waited < 1.0, f"acct_b waited {waited:.2f} s behind acct_a's decodes"
    assert not any(task.done() for task in heavy)
    for task in heavy:
        task.cancel()
    await asyncio.gather(*heavy, return_exceptions=True)
    await workers.close()


async def test_a_worker_that_cannot_start_fails_the_start_not_every_decode(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("sys.executable", "/bin/false")
    with pytest.raises(RuntimeError, match="did not start"):
        await DecodeWorkers(1, timeout=1).start()
