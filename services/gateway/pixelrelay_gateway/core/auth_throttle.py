"""Throttling of failed authentication per client address.

A client that keeps presenting wrong API keys or admin tokens is guessing. After
``limit`` failures within ``window`` seconds, every request from that address whose
credentials are not already known good is refused (429, ``auth_throttled``) until the
window ends, without asking billing. Known good: a key billing accepted lately
(``vouched``, the gateway's auth cache): one guesser behind a NAT or an unlisted proxy once
locked out every valid key sharing its address; now it locks out only guesses (and keys
this gateway has not seen lately). Requests without credentials (the pages, health checks)
are untouched. Successes do not reset the count, so a valid key cannot launder guesses.

Counts live in this gateway replica's memory: with N replicas behind a balancer a guesser
gets at most N × ``limit`` tries per window, still far too few for a 256-bit key.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pixelrelay.errors import ApiError, E

# Addresses followed at once; past it the oldest windows are dropped, so a flood from
# many addresses costs bounded memory.
MAX_TRACKED = 100_000

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(spec: str) -> list[Network]:
    """``TRUSTED_PROXIES``: comma-separated addresses or CIDR blocks."""
    parts = [part.strip() for part in spec.split(",")]
    return [ipaddress.ip_network(part, strict=False) for part in parts if part]


@dataclass
class _Window:
    started: float
    failures: int


class AuthThrottle:
    def __init__(
        self,
        limit: int,
        window: float = 60.0,
        trusted_proxies: list[Network] | None = None,
        clock: Callable[[], float] = time.monotonic,
        vouched: Callable[[str], bool] = lambda _credential: False,
    ):
        self.limit = limit
        self.vouched = vouched
        self.window = window
        self.trusted_proxies = trusted_proxies or []
        self.clock = clock
        self._windows: dict[str, _Window] = {}
        # address → when its block ends; empty in the common case, so checking is free
        self.blocked: dict[str, float] = {}

    def client(self, peer: str, forwarded_for: str | None) -> str:
        """The address to count: the peer, or, when the peer is a trusted proxy, the
        nearest address in ``X-Forwarded-For`` that is not one (proxies append)."""
        if not self._trusted(peer) or not forwarded_for:
            return peer
        hops = [hop.strip() for hop in forwarded_for.split(",")]
        for hop in reversed(hops):
            if not self._trusted(hop):
                return hop
        return hops[0] or peer

    def check(self, address: str, credential: str = "") -> None:
        """Raises 429 while ``address`` is blocked, unless ``credential`` (the
        Authorization value) is vouched for."""
        until = self.blocked.get(address)
        if until is None or self.vouched(credential):
            return
        now = self.clock()
        if now >= until:
            del self.blocked[address]
            return
        raise ApiError(E.AUTH_THROTTLED, retry_after=until - now)

    def failed(self, address: str) -> None:
        if self.limit <= 0:
            return
        now = self.clock()
        window = self._windows.get(address)
        if window is None or now - window.started >= self.window:
            self._windows.pop(address, None)  # re-inserted last: the dict stays oldest-first
            self._evict(now)
            window = self._windows[address] = _Window(now, 0)
        window.failures += 1
        if window.failures >= self.limit:
            self.blocked[address] = window.started + self.window

    def _evict(self, now: float) -> None:
        while len(self._windows) >= MAX_TRACKED:
            del self._windows[next(iter(self._windows))]
        if len(self.blocked) >= MAX_TRACKED:
            self.blocked = {a: until for a, until in self.blocked.items() if until > now}
            while len(self.blocked) >= MAX_TRACKED:
                del self.blocked[next(iter(self.blocked))]

    def _trusted(self, address: str) -> bool:
        return in_networks(address, self.trusted_proxies)


def in_networks(address: str, networks: Sequence[Network]) -> bool:
    """``address`` is an IP inside one of ``networks`` (a hostname or junk is not)."""
    if not networks:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)
