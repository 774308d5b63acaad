"""Who a key belongs to, remembered for half a second.

Every call authenticates (polls included), and asking billing each time doubles the RPCs
on the hottest path. A revoked or expired key still stops working within the TTL, on
every replica: the requirement is "within a second". Failures are never cached.

While billing is unreachable, reads of one's own tasks go on for a key verified in the
last ``OUTAGE_GRACE_SECONDS`` (polls survive a billing outage); a key billing refused is
forgotten at once, so a revocation seen before the outage holds through it.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from prometheus_client import Counter

from pixelrelay.errors import ApiError, E
from pixelrelay.v1 import billing_pb2

TTL_SECONDS = 0.5
# While billing is unreachable, a key verified this recently may still read its own tasks
# (polls go on through a billing outage); it may not submit or spend.
OUTAGE_GRACE_SECONDS = 600.0
MAX_ENTRIES = 50_000

OUTAGE_READS = Counter(
    "pixelrelay_auth_outage_grace_total",
    "Reads let through on a key verified earlier, while billing was unreachable",
)


@dataclass(frozen=True)
class _Entry:
    fresh_until: float
    verified_at: float
    principal: billing_pb2.Principal


class AuthCache:
    def __init__(
        self,
        lookup: Callable[[str], Awaitable[billing_pb2.Principal]],
        ttl: float = TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        outage_grace: float = OUTAGE_GRACE_SECONDS,
    ):
        self._lookup = lookup
        self._ttl = ttl
        self._clock = clock
        self._grace = outage_grace
        self._entries: dict[bytes, _Entry] = {}

    def vouches_for(self, api_key: str) -> bool:
        """Billing accepted ``api_key`` within the outage grace and has not refused it
        since (the failed-auth throttle lets such keys through)."""
        hit = self._entries.get(hashlib.sha256(api_key.encode()).digest())
        return hit is not None and self._clock() - hit.verified_at < self._grace

    def forget(self, api_key: str) -> None:
        """A key or session just ended here: refused at once, even in an outage."""
        self._entries.pop(hashlib.sha256(api_key.encode()).digest(), None)

    async def principal(self, api_key: str, *, in_outage: bool = False) -> billing_pb2.Principal:
        """The key's principal: remembered for ``ttl``; with ``in_outage``, a key verified
        within the grace period is accepted while billing cannot be reached."""
        digest = hashlib.sha256(api_key.encode()).digest()  # the key itself is not kept
        now = self._clock()
        hit = self._entries.get(digest)
        if hit is not None and hit.fresh_until > now:
            return hit.principal
        try:
            principal = await self._lookup(api_key)
        except ApiError as err:
            if err.kind is not E.UNAVAILABLE:
                self._entries.pop(digest, None)  # revoked or expired: no grace, ever
                raise
            if in_outage and hit is not None and now - hit.verified_at < self._grace:
                OUTAGE_READS.inc()
                return hit.principal
            raise
        if len(self._entries) >= MAX_ENTRIES:
            self._entries = {
                k: v for k, v in self._entries.items() if now - v.verified_at < self._grace
            }
            if len(self._entries) >= MAX_ENTRIES:
                self._entries.clear()
        self._entries[digest] = _Entry(now + self._ttl, now, principal)
        return principal
