"""The gateway's side of retention, on SQLite and PostgreSQL: tasks whose images are past
their lifetime read as expired, old task records and expired upload records are purged,
and upload quotas count only what storage still keeps."""

from __future__ import annotations

import pytest

from pixelrelay.db import Database
from pixelrelay.errors import ApiError, E
from pixelrelay.retention import DAY_SECONDS
from pixelrelay.v1 import common_pb2, events_pb2
from pixelrelay_gateway.core.idempotency import IdempotencyStore
from pixelrelay_gateway.core.retention import Records, purge_records
from pixelrelay_gateway.core.store import TaskRecord, TaskStore, message_to_json, task_from_row
from pixelrelay_gateway.core.uploads import Quota, UploadRecord, UploadStore

SPEC = common_pb2.ImageSpec(model="gpt-image-2", size="1:1", resolution="1k", n=1)
NOW_MS = 1_800_000_000_000


def task(task_id: str, created_at_ms: int) -> TaskRecord:
    return TaskRecord(
        id=task_id,
        account_id="acct_a",
        key_id="key_a",
        model="gpt-image-2",
        created_at_ms=created_at_ms,
        spec_json=message_to_json(SPEC),
    )


def completed_row(database: Database, expires_at: int, kept_until: int = 0) -> dict[str, object]:
    store = TaskStore(database.engine)
    store.insert_many([task("task_1", NOW_MS)])
    done = events_pb2.TaskCompleted(
        images=[
            common_pb2.StoredImage(
                index=0,
                key="tasks/task_1/0.png",
                url="https://u",
                expires_at=expires_at,
                kept_until=kept_until,
            )
        ]
    )
    store.mark_completed("task_1", done, at_ms=NOW_MS)
    store.mark_settled("task_1", events_pb2.TaskSettled(captured=True, charged=3), at_ms=NOW_MS)
    row = store._by_id.one(t_id="task_1")
    assert row is not None
    return dict(row)


def test_a_task_lists_its_images_until_they_are_deleted_then_says_when(
    database: Database,
) -> None:
    row = completed_row(database, expires_at=2_000, kept_until=3_000)
    kept = task_from_row(row, now=2_999)
    assert (len(kept.images), kept.expired_at) == (1, 0)
    gone = task_from_row(row, now=3_000)
    assert (len(gone.images), gone.expired_at) == (0, 3_000)
    assert gone.status == "completed" and gone.credits_charged == 3


def test_images_stored_before_storage_said_when_expire_with_their_url(
    database: Database,
) -> None:
    row = completed_row(database, expires_at=2_000)  # no kept_until
    assert task_from_row(row, now=2_000).expired_at == 2_000


def test_task_records_past_retention_are_purged_in_batches(database: Database) -> None:
    store = TaskStore(database.engine)
    store.insert_many([task(f"task_{i}", NOW_MS - i * 1000) for i in range(7)])
    # Created more than 2.5 s before now: task_3 … task_6.
    assert store.purge(created_before_ms=NOW_MS - 2500, batch=2) == 4
    for i in range(7):
        if i < 3:
            assert store.get(f"task_{i}").id == f"task_{i}"
        else:
            with pytest.raises(ApiError) as caught:
                store.get(f"task_{i}")
            assert caught.value.kind is E.TASK_NOT_FOUND
    assert store.purge(created_before_ms=NOW_MS - 2500, batch=2) == 0


def upload(upload_id: str, size: int, expires_at_ms: int, account: str = "acct_a") -> UploadRecord:
    return UploadRecord(
        id=upload_id,
        account_id=account,
        key=f"uploads/{account}/{upload_id}.png",
        bytes=size,
        created_at_ms=NOW_MS,
        expires_at_ms=expires_at_ms,
    )


def test_upload_quotas_count_what_is_kept_and_name_the_limit(database: Database) -> None:
    uploads = UploadStore(database.engine)
    quota = Quota(count=2, bytes=1000)
    for record in (
        upload("upl_1", 300, NOW_MS + 5_000),
        upload("upl_2", 300, NOW_MS + 9_000),
        upload("upl_old", 900, NOW_MS - 1),  # deleted by storage already: not counted
        upload("upl_other", 900, NOW_MS + 5_000, account="acct_b"),
    ):
        uploads.record(record)

    with pytest.raises(ApiError) as caught:
        uploads.admit(upload("upl_3", 10, 0), quota, now_ms=NOW_MS)
    assert caught.value.kind is E.UPLOAD_COUNT_QUOTA
    assert caught.value.retry_after == 5  # when upl_1 is deleted
    # The same upload again replaces itself: admitted, and recorded once.
    assert uploads.admit(upload("upl_1", 300, 0), quota, now_ms=NOW_MS).count == 1
    uploads.record(upload("upl_1", 300, NOW_MS + 20_000))
    assert uploads.usage("acct_a", now_ms=NOW_MS).count == 2

    roomy = Quota(count=10, bytes=1000)
    with pytest.raises(ApiError) as caught:
        uploads.admit(upload("upl_3", 401, 0), roomy, now_ms=NOW_MS)
    assert caught.value.kind is E.UPLOAD_STORAGE_QUOTA and caught.value.param == "file"
    assert "at most 1000 bytes; 600 are in use" in str(caught.value)
    uploads.admit(upload("upl_3", 400, 0), roomy, now_ms=NOW_MS)
    uploads.admit(upload("upl_3", 10**9, 0), Quota(count=0, bytes=0), now_ms=NOW_MS)  # no quota


async def test_one_purge_removes_old_tasks_and_expired_uploads_only(database: Database) -> None:
    records = Records(
        tasks=TaskStore(database.engine),
        uploads=UploadStore(database.engine),
        idempotency=IdempotencyStore(database.engine),
    )
    day_ms = DAY_SECONDS * 1000
    records.tasks.insert_many(
        [task("task_new", NOW_MS - day_ms), task("task_old", NOW_MS - 3 * day_ms)]
    )
    records.uploads.record(upload("upl_live", 1, NOW_MS + 1))
    records.uploads.record(upload("upl_gone", 1, NOW_MS))
    purged = await purge_records(records, database, task_retention_days=2, now=NOW_MS / 1000)
    assert purged == {"task": 1, "upload": 1, "idempotency_key": 0}
    assert records.tasks.get("task_new").id == "task_new"
    assert records.uploads.usage("acct_a", now_ms=NOW_MS).count == 1
