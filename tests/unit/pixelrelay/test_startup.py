from __future__ import annotations

import asyncio
import random

import pytest

from pixelrelay.startup import Backoff, StopRequested, keep_trying, unless_stopped


def test_backoff_grows_to_its_cap_with_jitter() -> None:
    rng = random.Random(3)
    backoff = Backoff(first=0.5, factor=2.0, cap=15.0)
    delays = [backoff.delay(n, rng) for n in range(10)]
    assert 0.4 <= delays[0] <= 0.6 and 0.8 <= delays[1] <= 1.2
    assert all(12.0 <= d <= 18.0 for d in delays[6:])  # 0.5 * 2**6 = 32 > the cap


async def test_keep_trying_retries_until_the_dependency_answers() -> None:
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionRefusedError("not yet")
        return "up"

    fast = Backoff(first=0.01, cap=0.02)
    assert await keep_trying("flaky", flaky, asyncio.Event(), fast) == "up"
    assert calls == 3


async def test_a_stop_ends_the_wait() -> None:
    stop = asyncio.Event()

    async def never() -> None:
        raise ConnectionRefusedError("down")

    asyncio.get_running_loop().call_later(0.05, stop.set)
    with pytest.raises(StopRequested, match="the thing"):
        await keep_trying("the thing", never, stop, Backoff(first=10.0))
    stop2 = asyncio.Event()
    asyncio.get_running_loop().call_later(0.05, stop2.set)
    with pytest.raises(StopRequested, match="forever"):
        await unless_stopped("forever", asyncio.sleep(60), stop2)
    assert await unless_stopped("quick", asyncio.sleep(0, "done"), asyncio.Event()) == "done"
