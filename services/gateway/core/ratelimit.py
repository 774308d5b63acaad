"""Per-key request rate limits: a token bucket per key, in this gateway process.

A key allowed R requests per minute may burst R requests, then gets R/60 per second.
Each gateway replica keeps its own buckets, so with N replicas behind a balancer a key
can reach up to N×R; size limits with that in mind.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from pixelrelay.errors import ApiError, E

MAX_TRACKED_KEYS = 100_000


@dataclass
class _Bucket:
    tokens: float
    updated: float
    rate: int


class RateLimiter:
    def __init__(self, default_per_minute: int = 0):
        self.default_per_minute = default_per_minute
        self._buckets: dict[str, _Bucket] = {}
        self._now = time.monotonic

    def take(self, key_id: str, per_minute: int) -> None:
        """Spend one request of ``key_id``'s budget, or raise 50001 with Retry-After."""
        rate = per_minute or self.default_per_minute
        if rate <= 0:
            return
        now = self._now()
        bucket = self._buckets.get(key_id)
        if bucket is None or bucket.rate != rate:
            if len(self._buckets) >= MAX_TRACKED_KEYS:
                self._buckets.clear()  # crude, bounded memory; limits restart generously
            bucket = self._buckets[key_id] = _Bucket(float(rate), now, rate)
        bucket.tokens = min(float(rate), bucket.tokens + (now - bucket.updated) * rate / 60)
        bucket.updated = now
        if bucket.tokens < 1:
            wait = (1 - bucket.tokens) * 60 / rate
            raise ApiError(
                E.RATE_LIMITED,
                f"this key allows {rate} requests per minute",
                retry_after=math.ceil(wait),
            )
        bucket.tokens -= 1
