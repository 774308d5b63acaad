"""Per-key request rate limits: a key allowed R requests per minute may burst R, then
gets R/60 per second, counted across every gateway replica.

The buckets live in billing's database (services/billing/pixelrelay_billing/ratelimits.py): each request of
a limited key asks billing, batched with the others that arrive together. While billing
cannot be reached (only reads of one's own tasks work then, authcache.py), a bucket in
this process stands in, so a key may then get up to R per replica. Keys without a limit
(and no DEFAULT_RATE_LIMIT) never ask.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from pixelrelay.errors import ApiError, E
from pixelrelay.v1 import billing_pb2

TakeShared = Callable[[str, int], Awaitable[billing_pb2.TakeResult]]

MAX_TRACKED_KEYS = 100_000


@dataclass
class _Bucket:
    tokens: float
    updated: float
    rate: int


def refused(rate: int, retry_after: int) -> ApiError:
    return ApiError(
        E.RATE_LIMITED, f"this key allows {rate} requests per minute", retry_after=retry_after
    )


class RateLimiter:
    def __init__(self, take_shared: TakeShared, default_per_minute: int = 0):
        self._take_shared = take_shared
        self.default_per_minute = default_per_minute
        self.fallback = LocalBuckets()

    async def take(self, key_id: str, per_minute: int) -> None:
        """Spend one request of ``key_id``'s budget, or raise 50001 with Retry-After."""
        rate = per_minute or self.default_per_minute
        if rate <= 0:
            return
        try:
            verdict = await self._take_shared(key_id, rate)
        except ApiError as err:
            if err.kind is not E.UNAVAILABLE:
                raise
            self.fallback.take(key_id, rate)
            return
        if not verdict.allowed:
            raise refused(rate, verdict.retry_after_s)


class LocalBuckets:
    """This process's buckets: the stand-in while billing is down."""

    def __init__(self) -> None:
        self._buckets: dict[str, _Bucket] = {}
        self._now = time.monotonic

    def take(self, key_id: str, rate: int) -> None:
        now = self._now()
        bucket = self._buckets.get(key_id)
        if bucket is None or bucket.rate != rate:
            if len(self._buckets) >= MAX_TRACKED_KEYS:
                self._buckets.clear()  # crude, bounded memory; limits restart generously
            bucket = self._buckets[key_id] = _Bucket(float(rate), now, rate)
        bucket.tokens = min(float(rate), bucket.tokens + (now - bucket.updated) * rate / 60)
        bucket.updated = now
        if bucket.tokens < 1:
            raise refused(rate, math.ceil((1 - bucket.tokens) * 60 / rate))
        bucket.tokens -= 1
