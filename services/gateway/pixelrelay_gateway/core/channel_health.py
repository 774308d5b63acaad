"""The dispatchers' channel health, for the operator (Admin.ListChannels).

Every gateway hears every dispatcher's snapshot (core NATS, pixelrelay_dispatcher/health.py) and keeps
the latest of each; one not renewed for three of its periods is forgotten (the dispatcher
stopped or lost the bus). Asked, it merges them per channel: calls, errors and latency
buckets add up across replicas, and the breaker shown is the worst replica's, since each
dispatcher keeps breakers of its own.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from google.protobuf.message import DecodeError

from pixelrelay.channel_health import BUCKETS, percentile
from pixelrelay.v1 import admin_pb2, channel_health_pb2

log = logging.getLogger(__name__)

MISSED_SNAPSHOTS = 3  # a dispatcher silent for this many of its periods is forgotten
_SEVERITY = {"closed": 0, "half_open": 1, "open": 2}


@dataclass
class _Heard:
    snapshot: channel_health_pb2.ChannelHealthSnapshot
    at: float  # our monotonic clock: a dispatcher's wall clock may differ from ours


@dataclass
class ChannelHealthBoard:
    clock: Callable[[], float] = time.monotonic
    _latest: dict[str, _Heard] = field(default_factory=dict)

    def heard(self, data: bytes) -> None:
        try:
            snapshot = channel_health_pb2.ChannelHealthSnapshot.FromString(data)
        except DecodeError:
            log.warning("undecodable channel health snapshot ignored")
            return
        if snapshot.replica:
            self._latest[snapshot.replica] = _Heard(snapshot, self.clock())

    def current(self) -> list[channel_health_pb2.ChannelHealthSnapshot]:
        """The latest snapshot of each dispatcher still reporting."""
        now = self.clock()
        for replica, heard in list(self._latest.items()):
            if now - heard.at > MISSED_SNAPSHOTS * heard.snapshot.every_ms / 1000:
                del self._latest[replica]
        return [heard.snapshot for heard in self._latest.values()]

    def channels(self) -> admin_pb2.ListChannelsResponse:
        snapshots = self.current()
        return admin_pb2.ListChannelsResponse(
            channels=merge(snapshots),
            replicas=len(snapshots),
            window_seconds=max((s.window_seconds for s in snapshots), default=0),
        )


def merge(
    snapshots: Iterable[channel_health_pb2.ChannelHealthSnapshot],
) -> list[admin_pb2.ChannelStatus]:
    """One status per channel named in any snapshot, by name."""
    by_name: dict[str, list[channel_health_pb2.ChannelWindow]] = {}
    for snapshot in snapshots:
        for window in snapshot.channels:
            by_name.setdefault(window.name, []).append(window)
    return [_merged(name, by_name[name]) for name in sorted(by_name)]


def _merged(name: str, windows: list[channel_health_pb2.ChannelWindow]) -> admin_pb2.ChannelStatus:
    requests = sum(w.requests for w in windows)
    errors: Counter[str] = Counter()
    latency = [0] * BUCKETS
    for window in windows:
        errors.update(dict(window.errors_by_class))
        if len(window.latency_counts) == BUCKETS:  # a replica of another layout: left out
            latency = [a + b for a, b in zip(latency, window.latency_counts, strict=True)]
    failed = sum(w.errors for w in windows)
    states = [w.breaker if w.breaker in _SEVERITY else "open" for w in windows]
    return admin_pb2.ChannelStatus(
        name=name,
        breaker=max(states, key=_SEVERITY.__getitem__),
        replicas=len(windows),
        replicas_not_closed=sum(1 for state in states if state != "closed"),
        requests=requests,
        errors=failed,
        error_rate=failed / requests if requests else 0.0,
        p50_ms=percentile(latency, 0.5),
        p95_ms=percentile(latency, 0.95),
        errors_by_class=dict(errors),
    )
