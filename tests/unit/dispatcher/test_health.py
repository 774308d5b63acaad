"""A dispatcher's call window per channel: what its health snapshot reports."""

from __future__ import annotations

from pixelrelay.channel_health import BOUNDS_MS, bucket_of, percentile
from pixelrelay_dispatcher.health import CallWindow


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_calls_are_counted_with_errors_by_class_and_latency_of_successes() -> None:
    window = CallWindow(window=60, slot=10, clock=Clock())
    for ms in (100, 200, 300, 400):
        window.record("ok", ms)
    window.record("upstream_unavailable", 5)
    window.record("upstream_no_answer", 180_000)
    window.record("upstream_unavailable", 7)
    totals = window.totals("sim", "closed")
    assert (totals.name, totals.breaker, totals.requests, totals.errors) == ("sim", "closed", 7, 3)
    assert dict(totals.errors_by_class) == {"upstream_unavailable": 2, "upstream_no_answer": 1}
    assert sum(totals.latency_counts) == 4  # failed calls' time is not a latency of images
    assert 200 <= percentile(totals.latency_counts, 0.5) <= 220
    assert 400 <= percentile(totals.latency_counts, 0.95) <= 440


def test_calls_leave_the_window_a_slot_at_a_time() -> None:
    clock = Clock()
    window = CallWindow(window=60, slot=10, clock=clock)
    window.record("ok", 100)
    clock.now += 30
    window.record("upstream_unavailable", 100)
    clock.now += 35  # the first call's slot is past the minute
    totals = window.totals("sim", "open")
    assert (totals.requests, totals.errors, sum(totals.latency_counts)) == (1, 1, 0)
    clock.now += 60
    assert window.totals("sim", "open").requests == 0


def test_percentiles_are_within_ten_percent_above() -> None:
    counts = [0] * (len(BOUNDS_MS) + 1)
    assert percentile(counts, 0.5) == 0
    for latency in (3, 47, 1234, 65_000, 10**9):  # the last: past the last bound
        one = list(counts)
        one[bucket_of(latency)] = 1
        read = percentile(one, 0.5)
        assert read >= min(latency, BOUNDS_MS[-1]) and read <= max(5, latency * 1.1)
