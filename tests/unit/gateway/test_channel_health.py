"""The gateway's merge of the dispatchers' channel health snapshots."""

from __future__ import annotations

from pixelrelay.channel_health import BUCKETS, bucket_of
from pixelrelay.v1 import channel_health_pb2
from pixelrelay_gateway.core.channel_health import ChannelHealthBoard, merge


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def window(
    name: str, breaker: str, requests: int, errors: dict[str, int], latencies: list[int]
) -> channel_health_pb2.ChannelWindow:
    counts = [0] * BUCKETS
    for ms in latencies:
        counts[bucket_of(ms)] += 1
    return channel_health_pb2.ChannelWindow(
        name=name,
        breaker=breaker,
        requests=requests,
        errors=sum(errors.values()),
        errors_by_class=errors,
        latency_counts=counts,
    )


def snapshot(
    replica: str, *windows: channel_health_pb2.ChannelWindow, every_ms: int = 5000
) -> channel_health_pb2.ChannelHealthSnapshot:
    return channel_health_pb2.ChannelHealthSnapshot(
        replica=replica, every_ms=every_ms, window_seconds=300, channels=windows
    )


def test_replicas_add_up_and_the_worst_breaker_shows() -> None:
    a = snapshot(
        "dispatcher-0-aaa",
        window("sim", "closed", 10, {}, [100] * 10),
        window("backup", "closed", 0, {}, []),
    )
    b = snapshot(
        "dispatcher-1-bbb",
        window("sim", "open", 10, {"upstream_unavailable": 4}, [1000] * 6),
    )
    backup, sim = merge([a, b])
    assert (sim.name, sim.breaker, sim.replicas, sim.replicas_not_closed) == ("sim", "open", 2, 1)
    assert (sim.requests, sim.errors, sim.error_rate) == (20, 4, 0.2)
    assert dict(sim.errors_by_class) == {"upstream_unavailable": 4}
    # 10 calls of 100 ms and 6 of 1 s: the median is the first kind, p95 the second
    assert 100 <= sim.p50_ms <= 110 and 1000 <= sim.p95_ms <= 1100
    assert (backup.breaker, backup.requests, backup.error_rate, backup.p50_ms) == (
        "closed",
        0,
        0.0,
        0,
    )


def test_the_board_keeps_each_replicas_latest_and_forgets_the_silent() -> None:
    clock = Clock()
    board = ChannelHealthBoard(clock=clock)
    board.heard(snapshot("d0", window("sim", "open", 1, {"X": 1}, [])).SerializeToString())
    board.heard(snapshot("d0", window("sim", "closed", 5, {}, [50] * 5)).SerializeToString())
    board.heard(
        snapshot("d1", window("sim", "closed", 2, {}, [50] * 2), every_ms=1000).SerializeToString()
    )
    board.heard(b"\xff not a snapshot")
    listed = board.channels()
    assert (listed.replicas, listed.window_seconds) == (2, 300)
    [sim] = listed.channels
    assert (sim.breaker, sim.requests, sim.errors) == ("closed", 7, 0)
    clock.now += 3.5  # d1 (every second) missed three; d0 (every 5 s) has not
    [sim] = board.channels().channels
    assert (board.channels().replicas, sim.requests) == (1, 5)
    clock.now += 12
    assert board.channels() == type(board.channels())()
