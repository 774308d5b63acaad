from __future__ import annotations

import time

import pytest

from pixelrelay.db import Database
from pixelrelay.errors import ApiError, E
from pixelrelay.v1 import common_pb2, events_pb2
from pixelrelay_gateway.core.events import retry_delay
from pixelrelay_gateway.core.store import TaskRecord, TaskStore, message_to_json

SPEC = common_pb2.ImageSpec(
    model="gpt-image-2", size="1:1", resolution="1k", width=1024, height=1024, n=1
)


def record(task_id: str, account_id: str = "acct_a") -> TaskRecord:
    return TaskRecord(
        id=task_id,
        account_id=account_id,
        key_id="key_a",
        model="gpt-image-2",
        created_at_ms=1_700_000_000_123,
        spec_json=message_to_json(SPEC),
        credits_reserved=7,
        price_id="basic-1k",
    )


def test_a_polled_task_reads_back_as_written_and_only_for_its_owner(database: Database) -> None:
    store = TaskStore(database.engine)
    store.insert_many([record("t1"), record("t2", "acct_b")])
    task = store.get("t1", "acct_a")
    assert (task.id, task.status, task.created_at, task.credits_reserved) == (
        "t1",
        "processing",
        1_700_000_000,
        7,
    )
    assert task.spec == SPEC
    paid = common_pb2.Attempt(
        channel="sim",
        outcome="ok",
        usage=common_pb2.Usage(input_tokens=3, output_tokens=272),
        cost_micros=10_895,
        priced=True,
    )
    done = events_pb2.TaskCompleted(
        images=[common_pb2.StoredImage(index=0, key="k", url="https://x", width=1024)],
        attempts=[common_pb2.Attempt(channel="a", outcome="upstream_unavailable"), paid],
    )
    assert store.mark_completed("t1", done, at_ms=1_700_000_001_000)
    task = store.get("t1", "acct_a")
    assert (task.status, task.credits_settled, task.images[0].url) == (
        "completed",
        False,
        "https://x",
    )
    settled = events_pb2.TaskSettled(captured=True, charged=7, price_id="basic-1k")
    assert not store.mark_settled("t1", settled, at_ms=1_700_000_001_010)
    task = store.get("t1", "acct_a")
    assert (task.status, task.credits_charged, task.credits_settled) == ("completed", 7, True)
    assert list(task.attempts) == list(done.attempts)  # an attempt's usage nests, and comes back
    (costs,) = store.costs(0, 2_000_000_000_000)
    assert (costs.account_id, costs.credits_charged, costs.attempts[1]) == ("acct_a", 7, paid)
    for task_id, owner in (("t2", "acct_a"), ("nope", "acct_a")):
        with pytest.raises(ApiError) as caught:
            store.get(task_id, owner)
        assert caught.value.kind is E.TASK_NOT_FOUND


def test_event_retries_back_off_to_a_ceiling() -> None:
    assert [retry_delay(n) for n in (1, 2, 3, 4, 7, 50)] == [0.5, 1.0, 2.0, 4.0, 30.0, 30.0]


def test_settled_and_finished_arrive_in_either_order_and_apply_once(database: Database) -> None:
    """completed and billing's settled event may come in either order; a release billing
    made because the hold expired fails a task still processing (and only then)."""
    store = TaskStore(database.engine)
    store.insert_many([record(f"t{i}") for i in range(4)])
    charged = events_pb2.TaskSettled(captured=True, charged=7)
    assert not store.mark_settled("t0", charged, at_ms=1)  # settled first: still processing
    assert store.get("t0").status == "processing"
    assert store.mark_completed("t0", events_pb2.TaskCompleted(), at_ms=2)
    again = events_pb2.TaskSettled(captured=True, charged=99)  # redelivered: changes nothing
    store.mark_settled("t0", again, at_ms=3)
    assert (store.get("t0").credits_charged, store.get("t0").credits_settled) == (7, True)

    expired = events_pb2.TaskSettled(refunded=7, reason="task_expired")
    assert store.mark_settled("t1", expired, at_ms=4)  # no other event will fail it
    assert (store.get("t1").status, store.get("t1").error.type) == ("failed", "task_expired")
    assert not store.mark_completed("t1", events_pb2.TaskCompleted(), at_ms=5)  # too late

    released = events_pb2.TaskSettled(refunded=7, reason="upstream_failed")
    assert not store.mark_settled("t2", released, at_ms=6)  # its failed event fails it
    assert store.get("t2").status == "processing"
    assert store.mark_failed("t2", events_pb2.TaskFailed(type="upstream_failed"), at_ms=7)
    assert not store.mark_failed("t2", events_pb2.TaskFailed(type="upstream_failed"), at_ms=8)

    store.mark_completed("t3", events_pb2.TaskCompleted(), at_ms=9)  # images after expiry
    assert not store.mark_settled("t3", expired, at_ms=10)  # stays completed, not charged
    assert (store.get("t3").status, store.get("t3").credits_charged) == ("completed", 0)


def test_images_lost_before_their_time_make_the_task_answer_as_expired(
    database: Database,
) -> None:
    """The object audit's two reads and one write (core/object_audit.py)."""
    store = TaskStore(database.engine)
    store.insert_many([record("t1"), record("t2"), record("t3")])
    now_ms = int(time.time() * 1000)
    later = now_ms // 1000 + 7 * 86400  # the images' lifetime ends in a week
    for task_id in ("t1", "t2"):
        image = common_pb2.StoredImage(index=0, key=f"tasks/{task_id}/0.png", url="https://x")
        image.kept_until = later
        done = events_pb2.TaskCompleted(images=[image])
        assert store.mark_completed(task_id, done, at_ms=1_700_000_001_000)
    live, after = store.live_results(after_id="", limit=1, now_ms=now_ms)
    assert (live, after) == ([("t1", ["tasks/t1/0.png"])], "t1")
    live, after = store.live_results(after_id=after, limit=5, now_ms=now_ms)
    assert (live, after) == ([("t2", ["tasks/t2/0.png"])], "")  # t3 is still processing

    store.mark_images_lost("t1", now_ms)
    task = store.get("t1", "acct_a")
    assert (task.expired_at, list(task.images)) == (now_ms // 1000, [])
    assert store.get("t2", "acct_a").images[0].url == "https://x"
    assert store.live_results(after_id="", limit=5, now_ms=now_ms + 1)[0] == [
        ("t2", ["tasks/t2/0.png"])
    ]
