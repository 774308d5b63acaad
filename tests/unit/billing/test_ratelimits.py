"""Request buckets in billing's database: exact bursts and refills, shared by every caller
(two gateways are two callers of one table), on SQLite and PostgreSQL."""

from __future__ import annotations

import threading

from pixelrelay.db import Database
from pixelrelay_billing.ratelimits import RateBuckets, Take, Verdict


class Clock:
    def __init__(self) -> None:
        self.ms = 1_000_000

    def __call__(self) -> int:
        return self.ms


def test_a_key_bursts_its_limit_then_refills_at_its_rate(database: Database) -> None:
    clock = Clock()
    buckets = RateBuckets(database.engine, clock)
    verdicts = buckets.take_many([Take("k", 6)] * 8)
    assert [v.allowed for v in verdicts] == [True] * 6 + [False] * 2
    assert verdicts[-1] == Verdict(False, 10)  # 6 a minute: one every 10 s
    clock.ms += 9_999
    assert buckets.take_many([Take("k", 6)]) == [Verdict(False, 1)]
    clock.ms += 1
    assert buckets.take_many([Take("k", 6)]) == [Verdict(True)]


def test_two_callers_share_one_budget(database: Database) -> None:
    """Like two gateway replicas: R in total, not R each."""
    clock = Clock()
    one, two = RateBuckets(database.engine, clock), RateBuckets(database.engine, clock)
    allowed = 0
    for i in range(20):
        buckets = one if i % 2 else two
        allowed += buckets.take_many([Take("shared", 10)])[0].allowed
    assert allowed == 10
    assert one.take_many([Take("other", 10)])[0].allowed  # keys are separate


def test_concurrent_callers_never_overspend(database: Database) -> None:
    buckets = RateBuckets(database.engine, Clock())
    results: list[bool] = []
    lock = threading.Lock()

    def caller() -> None:
        for _ in range(10):
            verdicts = buckets.take_many([Take("race", 25), Take("race", 25)])
            with lock:
                results.extend(v.allowed for v in verdicts)

    threads = [threading.Thread(target=caller) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 80 and sum(results) == 25


def test_a_lowered_limit_caps_what_the_key_had(database: Database) -> None:
    clock = Clock()
    buckets = RateBuckets(database.engine, clock)
    buckets.take_many([Take("k", 100)])  # 99 left
    verdicts = buckets.take_many([Take("k", 3)] * 4)
    assert [v.allowed for v in verdicts] == [True, True, True, False]


def test_a_clock_behind_never_refills_twice(database: Database) -> None:
    clock = Clock()
    ahead, behind = RateBuckets(database.engine, clock), RateBuckets(database.engine, Clock())
    clock.ms += 60_000
    assert all(v.allowed for v in ahead.take_many([Take("k", 2)] * 2))
    assert not behind.take_many([Take("k", 2)])[0].allowed
