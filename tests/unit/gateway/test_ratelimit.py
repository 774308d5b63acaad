"""The gateway's side of per-key limits: billing decides (shared buckets), a local bucket
stands in while billing is down, keys without a limit never ask."""

from __future__ import annotations

import pytest

from pixelrelay.errors import ApiError, E
from pixelrelay.v1 import billing_pb2
from pixelrelay_gateway.core.ratelimit import LocalBuckets, RateLimiter


class Billing:
    def __init__(self) -> None:
        self.asked: list[tuple[str, int]] = []
        self.down = False
        self.allow = True

    async def take(self, key_id: str, per_minute: int) -> billing_pb2.TakeResult:
        if self.down:
            raise ApiError(E.UNAVAILABLE, "billing is down")
        self.asked.append((key_id, per_minute))
        return billing_pb2.TakeResult(allowed=self.allow, retry_after_s=0 if self.allow else 7)


async def test_billing_decides_and_its_wait_is_passed_on() -> None:
    billing = Billing()
    limits = RateLimiter(billing.take)
    await limits.take("key_a", 6)
    billing.allow = False
    with pytest.raises(ApiError) as refused:
        await limits.take("key_a", 6)
    assert refused.value.kind is E.RATE_LIMITED and refused.value.retry_after == 7
    assert billing.asked == [("key_a", 6), ("key_a", 6)]


async def test_no_limit_never_asks_and_the_default_applies() -> None:
    billing = Billing()
    await RateLimiter(billing.take).take("key_a", 0)
    assert billing.asked == []
    await RateLimiter(billing.take, default_per_minute=2).take("key_a", 0)
    assert billing.asked == [("key_a", 2)]


async def test_while_billing_is_down_a_local_bucket_stands_in() -> None:
    billing = Billing()
    billing.down = True
    limits = RateLimiter(billing.take)
    await limits.take("key_a", 2)
    await limits.take("key_a", 2)
    with pytest.raises(ApiError) as refused:
        await limits.take("key_a", 2)
    assert refused.value.kind is E.RATE_LIMITED


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_local_bucket_bursts_then_refills() -> None:
    clock = Clock()
    local = LocalBuckets()
    local._now = clock
    for _ in range(6):
        local.take("key_a", 6)
    with pytest.raises(ApiError) as refused:
        local.take("key_a", 6)
    assert refused.value.retry_after == 10
    local.take("key_b", 6)  # another key has its own bucket
    clock.now += 10  # one token back: 6 per minute
    local.take("key_a", 6)
    with pytest.raises(ApiError):
        local.take("key_a", 6)
