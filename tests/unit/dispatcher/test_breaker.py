from __future__ import annotations

from pixelrelay_dispatcher.breaker import CircuitBreaker, State


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def breaker(clock: Clock) -> CircuitBreaker:
    return CircuitBreaker(
        consecutive_failures=3, failure_rate=0.5, min_calls=10, window=30, cooldown=5, clock=clock
    )


def test_opens_after_consecutive_failures_and_probes_after_cooldown() -> None:
    clock = Clock()
    b = breaker(clock)
    for _ in range(2):
        b.record_failure()
    assert b.state is State.CLOSED and b.allow()
    b.record_failure()
    assert b.state is State.OPEN and not b.allow()
    clock.now += 5
    assert b.state is State.HALF_OPEN
    assert b.allow()  # the probe
    assert not b.allow()  # only one at a time
    b.record_success()
    assert b.state is State.CLOSED and b.allow()


def test_a_failed_probe_opens_again() -> None:
    clock = Clock()
    b = breaker(clock)
    for _ in range(3):
        b.record_failure()
    clock.now += 5
    assert b.allow()
    b.record_failure()
    assert b.state is State.OPEN and not b.allow()
    clock.now += 4.9
    assert not b.allow()


def test_opens_on_failure_rate_over_the_window() -> None:
    clock = Clock()
    b = breaker(clock)
    for i in range(10):  # alternate: never 3 in a row, but 50% failed
        (b.record_failure if i % 2 else b.record_success)()
        clock.now += 1
    assert b.state is State.OPEN


def test_old_calls_leave_the_window() -> None:
    clock = Clock()
    b = breaker(clock)
    for i in range(9):
        (b.record_failure if i % 2 else b.record_success)()
    clock.now += 31
    b.record_success()
    b.record_failure()
    assert b.state is State.CLOSED


def test_retry_after_holds_it_open_for_that_long() -> None:
    clock = Clock()
    b = breaker(clock)
    b.hold_open(12)
    assert not b.allow()
    clock.now += 11.9
    assert not b.allow()
    clock.now += 0.2
    assert b.allow()
