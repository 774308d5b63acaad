"""A key's token bucket: a burst of its rate, then rate/60 per second."""

from __future__ import annotations

import pytest

from gateway.core.ratelimit import RateLimiter
from pixelrelay.errors import ApiError, E


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def limiter(default: int = 0) -> tuple[RateLimiter, Clock]:
    clock = Clock()
    limits = RateLimiter(default)
    limits._now = clock
    return limits, clock


def test_a_burst_of_the_rate_then_429_with_the_wait() -> None:
    limits, clock = limiter()
    for _ in range(6):
        limits.take("key_a", 6)
    with pytest.raises(ApiError) as refused:
        limits.take("key_a", 6)
    assert refused.value.kind is E.RATE_LIMITED and refused.value.retry_after == 10
    limits.take("key_b", 6)  # another key has its own bucket
    clock.now += 10  # one token back: 6 per minute
    limits.take("key_a", 6)
    with pytest.raises(ApiError):
        limits.take("key_a", 6)


def test_no_limit_or_the_default() -> None:
    unlimited, _ = limiter()
    for _ in range(1000):
        unlimited.take("key_a", 0)
    defaulted, _ = limiter(default=2)
    defaulted.take("key_a", 0)
    defaulted.take("key_a", 0)
    with pytest.raises(ApiError):
        defaulted.take("key_a", 0)


def test_a_changed_limit_takes_effect_at_once() -> None:
    limits, _ = limiter()
    limits.take("key_a", 1)
    with pytest.raises(ApiError):
        limits.take("key_a", 1)
    limits.take("key_a", 5)  # raised by an operator: a fresh bucket of the new size
