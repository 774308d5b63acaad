"""What this dispatcher tells the operator about its channels (channel_health.proto).

Per channel: the breaker's state now, and the upstream calls of the last ``window``
seconds (requests, errors by class, latency buckets of the calls that returned images),
kept in slots of ``slot`` seconds so memory stays the same whatever the load. Published on
the bus every CHANNEL_HEALTH_EVERY seconds; the gateways keep the latest of each
dispatcher and merge them (pixelrelay_gateway/core/channel_health.py).
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from pixelrelay.channel_health import BUCKETS, bucket_of
from pixelrelay.v1 import channel_health_pb2

OK = "ok"  # the outcome of a call that returned images (router.Attempt)
WINDOW_SECONDS = 300
SLOT_SECONDS = 10


@dataclass
class _Slot:
    index: int  # monotonic seconds // slot
    requests: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    latency: list[int] = field(default_factory=lambda: [0] * BUCKETS)


class CallWindow:
    """The calls of one channel in the last ``window`` seconds."""

    def __init__(
        self,
        window: int = WINDOW_SECONDS,
        slot: int = SLOT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.window = window
        self.slot = slot
        self._clock = clock
        self._slots: deque[_Slot] = deque()

    def record(self, outcome: str, latency_ms: float) -> None:
        slot = self._current()
        slot.requests += 1
        if outcome == OK:
            slot.latency[bucket_of(latency_ms)] += 1
        else:
            slot.errors[outcome] += 1

    def totals(self, name: str, breaker: str) -> channel_health_pb2.ChannelWindow:
        self._forget_old()
        errors: Counter[str] = Counter()
        latency = [0] * BUCKETS
        for slot in self._slots:
            errors.update(slot.errors)
            latency = [a + b for a, b in zip(latency, slot.latency, strict=True)]
        return channel_health_pb2.ChannelWindow(
            name=name,
            breaker=breaker,
            requests=sum(slot.requests for slot in self._slots),
            errors=sum(errors.values()),
            errors_by_class=dict(errors),
            latency_counts=latency,
        )

    def _now(self) -> int:
        return int(self._clock() // self.slot)

    def _current(self) -> _Slot:
        now = self._now()
        if not self._slots or self._slots[-1].index != now:
            self._slots.append(_Slot(now))
            self._forget_old()
        return self._slots[-1]

    def _forget_old(self) -> None:
        oldest = self._now() - self.window // self.slot + 1
        while self._slots and self._slots[0].index < oldest:
            self._slots.popleft()


def snapshot(
    replica: str, channels: list[channel_health_pb2.ChannelWindow], *, every: float
) -> channel_health_pb2.ChannelHealthSnapshot:
    return channel_health_pb2.ChannelHealthSnapshot(
        replica=replica,
        at_ms=int(time.time() * 1000),
        every_ms=int(every * 1000),
        window_seconds=WINDOW_SECONDS,
        channels=channels,
    )
