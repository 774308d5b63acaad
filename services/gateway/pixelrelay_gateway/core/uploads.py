"""Uploads: taking one in (``Uploader``, PublicApi's create_upload), and the records of
what each account keeps in object storage, for its quota.

An upload is named by its content, so uploading the same bytes again refreshes one record
(and the object's lifetime) instead of counting twice. Records of expired
uploads are purged with the task records (retention.py); the objects themselves are
deleted by storage.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import BigInteger, Column, Index, delete, func
from sqlalchemy import select as core_select
from sqlalchemy.engine import Engine
from sqlmodel import Field, SQLModel

from pixelrelay import objects
from pixelrelay.db import Database, upsert
from pixelrelay.errors import ApiError, E
from pixelrelay.ids import content_id
from pixelrelay.storage_client import StorageClient
from pixelrelay.v1 import public_api_pb2
from pixelrelay_gateway.core.store import now_ms
from pixelrelay_gateway.inputs.references import ReferenceLoader

log = logging.getLogger(__name__)


class UploadRecord(SQLModel, table=True):
    __tablename__ = "upload"
    __table_args__ = (Index("upload_by_owner", "account_id", "expires_at_ms"),)

    id: str = Field(primary_key=True)
    account_id: str
    key: str
    bytes: int = Field(sa_column=Column(BigInteger, nullable=False))
    created_at_ms: int = Field(sa_column=Column(BigInteger, nullable=False))
    # When storage deletes the object (UPLOAD_TTL_DAYS after it was last written).
    expires_at_ms: int = Field(sa_column=Column(BigInteger, nullable=False))


_UPLOADS = UploadRecord.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Quota:
    """Per account, over its uploads not yet expired; 0 = no limit."""

    count: int
    bytes: int


NO_QUOTA = Quota(count=0, bytes=0)


@dataclass(frozen=True)
class Usage:
    count: int
    bytes: int
    # When the oldest live upload expires (ms; 0 if none): when a slot frees up.
    next_expiry_ms: int


class UploadStore:
    def __init__(self, engine: Engine):
        self.engine = engine

    def usage(self, account_id: str, *, now_ms: int, excluding: str = "") -> Usage:
        """The account's live uploads, apart from ``excluding`` (the one being replaced)."""
        live = (_UPLOADS.c.account_id == account_id) & (_UPLOADS.c.expires_at_ms > now_ms)
        query = core_select(
            func.count(),
            func.coalesce(func.sum(_UPLOADS.c.bytes), 0),
            func.coalesce(func.min(_UPLOADS.c.expires_at_ms), 0),
        ).where(live & (_UPLOADS.c.id != excluding))
        with self.engine.connect() as conn:
            count, size, first = conn.execute(query).one()
        return Usage(int(count), int(size), int(first))

    def admit(self, record: UploadRecord, quota: Quota, *, now_ms: int) -> Usage:
        """Refuse ``record`` if it would take the account over ``quota``; the usage without
        it otherwise. Concurrent uploads of one account may each pass before either is
        recorded: the quota can be exceeded by the uploads in flight at once."""
        usage = self.usage(record.account_id, now_ms=now_ms, excluding=record.id)
        if quota.count and usage.count + 1 > quota.count:
            wait_s = max(1, (usage.next_expiry_ms - now_ms) // 1000)
            raise ApiError(
                E.UPLOAD_COUNT_QUOTA,
                f"the account keeps at most {quota.count} uploads; the oldest is deleted "
                f"in {wait_s} s",
                retry_after=wait_s,
            )
        if quota.bytes and usage.bytes + record.bytes > quota.bytes:
            raise ApiError(
                E.UPLOAD_STORAGE_QUOTA,
                f"the account's uploads may take at most {quota.bytes} bytes; "
                f"{usage.bytes} are in use and this one has {record.bytes}",
                param="file",
            )
        return usage

    def record(self, record: UploadRecord) -> None:
        """Insert, or refresh the record of the same upload made again."""
        values = record.model_dump()
        refreshed = {k: values[k] for k in ("created_at_ms", "expires_at_ms", "bytes", "key")}
        insert = upsert(self.engine.dialect, _UPLOADS).values(values)
        with self.engine.begin() as conn:
            conn.execute(insert.on_conflict_do_update(index_elements=["id"], set_=refreshed))

    def delete_account(self, account_id: str) -> int:
        with self.engine.begin() as conn:
            gone = conn.execute(delete(_UPLOADS).where(_UPLOADS.c.account_id == account_id))
            return int(gone.rowcount)

    def purge(self, *, now_ms: int) -> int:
        """Forget uploads storage has deleted."""
        with self.engine.begin() as conn:
            return int(
                conn.execute(delete(_UPLOADS).where(_UPLOADS.c.expires_at_ms <= now_ms)).rowcount
            )


class Uploader:
    def __init__(
        self,
        *,
        references: ReferenceLoader,
        storage: StorageClient,
        db: Database,
        uploads: UploadStore,
        quota: Quota,
    ):
        self.references = references
        self.storage = storage
        self.db = db
        self.uploads = uploads
        self.quota = quota

    async def upload(
        self, account_id: str, request: public_api_pb2.CreateUploadRequest
    ) -> public_api_pb2.Upload:
        """The image checked as references are, within the account's quota, stored."""
        image = await self.references.checked(
            request.data, request.content_type, "file", account_id
        )
        # Named by its content: a retried upload (lost answer) is the same upload, stored
        # once, so uploads need no Idempotency-Key.
        upload_id = content_id("upl", account_id, image.data)
        key = objects.upload_key(account_id, upload_id, image.format)
        record = UploadRecord(
            id=upload_id,
            account_id=account_id,
            key=key,
            bytes=len(image.data),
            created_at_ms=now_ms(),
            expires_at_ms=0,  # storage says when, below
        )
        await self.db.run(self.uploads.admit, record, self.quota, now_ms=now_ms())
        stored = await self.storage.put_object(key, image.data, image.content_type)
        record.expires_at_ms = stored.kept_until * 1000
        await self.db.run(self.uploads.record, record)
        log.info("upload stored", extra={"upload_id": upload_id, "bytes": len(image.data)})
        return public_api_pb2.Upload(
            id=upload_id,
            url=stored.url,
            format=image.format,
            width=image.width,
            height=image.height,
            bytes=len(image.data),
            expires_at=stored.expires_at,
        )
