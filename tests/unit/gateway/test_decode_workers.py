"""Decodes run in worker processes that are killed at their deadline or when their caller
gives up, hold their budget share until the process is dead, and one account's queue of
slow decodes does not delay another account's image."""

from __future__ import annotations

import asyncio
import functools
import os
import time
import zlib
from typing import cast

import pytest

from pixelrelay.errors import ApiError, E
from pixelrelay.storage_client import StorageClient
from pixelrelay_gateway.inputs.decode_pool import DecodeWorkers
from pixelrelay_gateway.inputs.fetch import SafeFetcher
from pixelrelay_gateway.inputs.images import MAX_PIXELS, DecodeBudget, inspect_image
from pixelrelay_gateway.inputs.references import ReferenceLoader
from pixelrelay_gateway.inputs.work_bounds import MAX_JPEG_SCANS
from tests.unit.gateway.test_decode_bombs import chunk, encoded, png_with, with_scans

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
        max_image_bytes=20 * 1024 * 1024,
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


async def test_reading_a_header_never_stalls_the_event_loop() -> None:
    """20 MB of empty comment segments before the pixels: PIL walks them in Python as it
    opens the file (4 s of CPU), which once ran on the event loop, every request stalled."""
    workers = DecodeWorkers(1, timeout=0.5)
    await workers.start()
    small = encoded("L", (64, 64), "JPEG")
    tiny_segments = small[:2] + b"\xff\xfe\x00\x02" * 5_000_000 + small[2:]
    stalls: list[float] = []

    async def ticker() -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(0.01)
            stalls.append(time.monotonic() - before - 0.01)

    ticking = asyncio.create_task(ticker())
    await asyncio.sleep(0.05)  # ticking
    with pytest.raises(ApiError) as caught:
        await inspect_image(tiny_segments, "file", DecodeBudget(MAX_PIXELS * 4), workers)
    ticking.cancel()
    assert "more than 0.5 s" in caught.value.message
    assert max(stalls) < 0.1, f"the loop stalled {max(stalls):.2f} s"
    await workers.close()


async def test_a_png_with_many_icc_profiles_is_refused() -> None:
    """PIL inflates each as it opens the file: 2,000 of 1 MB in a 2 MB file cost 1.3 s."""
    icc = chunk(b"iCCP", b"icc\x00\x00" + zlib.compress(bytes(1_000_000), 9))
    workers = DecodeWorkers(1, timeout=5)
    started = time.monotonic()
    with pytest.raises(ApiError) as caught:
        await inspect_image(png_with(icc * 2000), "file", DecodeBudget(MAX_PIXELS * 4), workers)
    assert time.monotonic() - started < 1.0
    assert caught.value.kind is E.INVALID_IMAGE and "one ICC profile" in caught.value.message
    await workers.close()
