from __future__ import annotations

import time

import pytest

from pixelrelay import task_events
from pixelrelay.errors import E
from pixelrelay.v1 import common_pb2, events_pb2


def test_each_builder_makes_its_kind_stamped_now() -> None:
    before = int(time.time() * 1000)
    events = [
        task_events.started("task_1", worker="w", delivery=2),
        task_events.completed("task_1", images=[], quality="high", upstream_ms=5, attempts=[]),
        task_events.failed("task_1", E.TASK_EXPIRED),
    ]
    assert [task_events.kind_of(e) for e in events] == ["started", "completed", "failed"]
    assert all(before <= e.at_ms <= int(time.time() * 1000) for e in events)


def test_a_failure_says_its_kind_and_keeps_its_attempts() -> None:
    attempt = common_pb2.Attempt(channel="a")
    failed = task_events.failed("task_1", E.UPSTREAM_FAILED, attempts=[attempt]).failed
    assert (failed.code, failed.type) == (E.UPSTREAM_FAILED.code, "upstream_failed")
    assert failed.message == E.UPSTREAM_FAILED.description and list(failed.attempts) == [attempt]


def test_an_event_without_a_kind_is_refused() -> None:
    with pytest.raises(ValueError):
        task_events.kind_of(events_pb2.TaskEvent(task_id="task_1"))
