"""Who a key belongs to, remembered for half a second.

Every call authenticates (polls included), and asking billing each time doubles the RPCs
on the hottest path. A revoked or expired key still stops working within the TTL, on
every replica: the requirement is "within a second". Failures are never cached.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable

from pixelrelay.v1 import billing_pb2

TTL_SECONDS = 0.5
MAX_ENTRIES = 50_000


class AuthCache:
    def __init__(
        self,
        lookup: Callable[[str], Awaitable[billing_pb2.Principal]],
        ttl: float = TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._lookup = lookup
        self._ttl = ttl
        self._clock = clock
        self._entries: dict[bytes, tuple[float, billing_pb2.Principal]] = {}

    async def principal(self, api_key: str) -> billing_pb2.Principal:
        digest = hashlib.sha256(api_key.encode()).digest()  # the key itself is not kept
        now = self._clock()
        hit = self._entries.get(digest)
        if hit is not None and hit[0] > now:
            return hit[1]
        principal = await self._lookup(api_key)
        if len(self._entries) >= MAX_ENTRIES:
            self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
        self._entries[digest] = (now + self._ttl, principal)
        return principal
