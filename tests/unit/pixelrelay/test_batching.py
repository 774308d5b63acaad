from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from pixelrelay.batching import Batcher


class Recorder:
    """A flush that doubles numbers, fails negative ones, and remembers its batches."""

    def __init__(self, delay: float = 0.0):
        self.batches: list[list[int]] = []
        self.delay = delay

    async def __call__(self, items: list[int]) -> Sequence[int | BaseException]:
        self.batches.append(items)
        await asyncio.sleep(self.delay)
        return [ValueError(f"negative {i}") if i < 0 else i * 2 for i in items]


async def test_a_lone_item_is_flushed_at_once() -> None:
    flush = Recorder()
    assert await Batcher("test", flush).submit(21) == 42
    assert flush.batches == [[21]]


async def test_items_submitted_together_share_one_flush() -> None:
    flush = Recorder()
    batcher = Batcher("test", flush)
    results = await asyncio.gather(*(batcher.submit(i) for i in range(10)))
    assert results == [i * 2 for i in range(10)]
    assert flush.batches == [list(range(10))]


async def test_items_arriving_during_a_flush_wait_for_the_next_one() -> None:
    flush = Recorder(delay=0.05)
    batcher = Batcher("test", flush)
    first = asyncio.ensure_future(batcher.submit(1))
    while not flush.batches:  # until the first flush is in flight
        await asyncio.sleep(0)
    later = await asyncio.gather(batcher.submit(2), batcher.submit(3))
    assert (await first, later) == (2, [4, 6])
    assert flush.batches == [[1], [2, 3]]


async def test_batches_are_capped_and_run_up_to_the_concurrency() -> None:
    flush = Recorder(delay=0.01)
    batcher = Batcher("test", flush, max_size=4, concurrency=2)
    assert await asyncio.gather(*(batcher.submit(i) for i in range(10))) == [
        i * 2 for i in range(10)
    ]
    assert sorted(len(b) for b in flush.batches) == [2, 4, 4]


async def test_each_caller_gets_its_own_error() -> None:
    batcher = Batcher("test", Recorder())
    results = await asyncio.gather(
        batcher.submit(1), batcher.submit(-1), batcher.submit(2), return_exceptions=True
    )
    assert results[0] == 2 and results[2] == 4
    assert isinstance(results[1], ValueError)


async def test_a_failed_flush_fails_every_caller_of_that_batch_only() -> None:
    calls = 0

    async def flaky(items: list[int]) -> list[int]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("billing is down")
        return items

    batcher = Batcher("test", flaky)
    failed = await asyncio.gather(batcher.submit(1), batcher.submit(2), return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in failed)
    assert await batcher.submit(3) == 3


async def test_a_flush_answering_the_wrong_count_fails_the_batch() -> None:
    async def short(items: list[int]) -> list[int]:
        return items[:1]

    batcher = Batcher("test", short)
    with pytest.raises(RuntimeError, match="1 results for 2"):
        await asyncio.gather(batcher.submit(1), batcher.submit(2))


async def test_a_cancelled_caller_does_not_disturb_the_others() -> None:
    flush = Recorder(delay=0.05)
    batcher = Batcher("test", flush)
    gone = asyncio.ensure_future(batcher.submit(1))
    stays = asyncio.ensure_future(batcher.submit(2))
    while not flush.batches:  # until both are inside the flush
        await asyncio.sleep(0)
    gone.cancel()
    assert await stays == 4
    assert gone.cancelled()
