"""Idempotency-Key on submits (the IETF httpapi draft's semantics): a client that lost the
answer to a submit sends it again with the same key and gets the same task, charged once.

One row per (account, key): the SHA-256 of the key (the key itself is not kept), the
fingerprint of the request, and the task id the submit chose before it did anything. Then:

    same key, same request, finished     → the task it made, nothing reserved or queued again
    same key, another request            → 422 (20015)
    same key while the first is running  → 409 (20016)
    the first died mid-way (the row is older than ``in_flight`` and not finished)
                                         → the submit runs again *with the same task id*:
                                           billing's hold and the job's message id are keyed
                                           by it, so a hold or job the first made is reused,
                                           never doubled
    a refused submit                     → the row is forgotten: the key may be used again

Rows live ``ttl`` (24 h); older ones are purged.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

from sqlalchemy import BigInteger, Column, delete, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, Session, SQLModel, col, select

from pixelrelay.db import quick
from pixelrelay.errors import ApiError, E
from pixelrelay.v1 import public_api_pb2

log = logging.getLogger(__name__)

MAX_KEY_CHARS = 255
TTL_MS = 24 * 3600 * 1000


class IdempotencyRecord(SQLModel, table=True):
    __tablename__ = "idempotency_key"

    account_id: str = Field(primary_key=True)
    key_sha256: str = Field(primary_key=True)
    fingerprint: str
    task_id: str
    created_at_ms: int = Field(sa_column=Column(BigInteger, nullable=False, index=True))
    done: bool = False


@dataclass(frozen=True)
class Claim:
    task_id: str
    done: bool  # the task exists: answer it, do nothing else
    resumed: bool = False  # taken over from a submit that died mid-way


def key_digest(key: str) -> str:
    if not (0 < len(key) <= MAX_KEY_CHARS and key.isascii() and key.isprintable()):
        raise ApiError(
            E.INVALID_PARAMETER,
            f"Idempotency-Key must be 1-{MAX_KEY_CHARS} printable ASCII characters",
            param="idempotency_key",
        )
    return hashlib.sha256(key.encode()).hexdigest()


def fingerprint(request: public_api_pb2.CreateGenerationRequest) -> str:
    """The request as submitted, without its key: the same JSON body gives the same one."""
    copy = public_api_pb2.CreateGenerationRequest()
    copy.CopyFrom(request)
    copy.ClearField("idempotency_key")
    return hashlib.sha256(copy.SerializeToString(deterministic=True)).hexdigest()


class IdempotencyStore:
    def __init__(self, engine: Engine, *, in_flight_ms: int = 60_000, ttl_ms: int = TTL_MS):
        self.engine = engine
        self.in_flight_ms = in_flight_ms
        self.ttl_ms = ttl_ms

    @quick
    def claim(
        self, *, account_id: str, key_sha256: str, fingerprint: str, task_id: str, now_ms: int
    ) -> Claim:
        """Take the key for ``task_id``, or learn what an earlier use of it decided."""
        with Session(self.engine) as s:
            s.add(
                IdempotencyRecord(
                    account_id=account_id,
                    key_sha256=key_sha256,
                    fingerprint=fingerprint,
                    task_id=task_id,
                    created_at_ms=now_ms,
                )
            )
            try:
                s.commit()
                return Claim(task_id, done=False)
            except IntegrityError:
                s.rollback()
            row = s.exec(
                select(IdempotencyRecord).where(
                    IdempotencyRecord.account_id == account_id,
                    IdempotencyRecord.key_sha256 == key_sha256,
                )
            ).one()
            if now_ms - row.created_at_ms >= self.ttl_ms:  # expired, not yet purged
                s.delete(row)
                s.commit()
                return self.claim(
                    account_id=account_id,
                    key_sha256=key_sha256,
                    fingerprint=fingerprint,
                    task_id=task_id,
                    now_ms=now_ms,
                )
            if row.fingerprint != fingerprint:
                raise ApiError(E.IDEMPOTENCY_KEY_REUSED, param="idempotency_key")
            if row.done:
                return Claim(row.task_id, done=True)
            if now_ms - row.created_at_ms < self.in_flight_ms:
                raise ApiError(E.IDEMPOTENCY_IN_FLIGHT, param="idempotency_key")
            # Its first submit died mid-way: take it over, once (the update is the lock).
            taken = s.execute(
                update(IdempotencyRecord)
                .where(
                    col(IdempotencyRecord.account_id) == account_id,
                    col(IdempotencyRecord.key_sha256) == key_sha256,
                    col(IdempotencyRecord.created_at_ms) == row.created_at_ms,
                )
                .values(created_at_ms=now_ms)
            )
            s.commit()
            if taken.rowcount != 1:  # type: ignore[attr-defined]
                raise ApiError(E.IDEMPOTENCY_IN_FLIGHT, param="idempotency_key")
            return Claim(row.task_id, done=False, resumed=True)

    @quick
    def finish(self, *, account_id: str, key_sha256: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(IdempotencyRecord)
                .where(
                    col(IdempotencyRecord.account_id) == account_id,
                    col(IdempotencyRecord.key_sha256) == key_sha256,
                )
                .values(done=True)
            )

    @quick
    def forget(self, *, account_id: str, key_sha256: str) -> None:
        """A refused submit: the key may be used again."""
        with self.engine.begin() as conn:
            conn.execute(
                delete(IdempotencyRecord).where(
                    col(IdempotencyRecord.account_id) == account_id,
                    col(IdempotencyRecord.key_sha256) == key_sha256,
                    col(IdempotencyRecord.done).is_(False),
                )
            )

    def delete_account(self, account_id: str) -> int:
        with self.engine.begin() as conn:
            gone = conn.execute(
                delete(IdempotencyRecord).where(col(IdempotencyRecord.account_id) == account_id)
            )
            return int(gone.rowcount)

    def purge(self, *, now_ms: int) -> int:
        """Rows past their lifetime (a scan: run it in the pool)."""
        with self.engine.begin() as conn:
            gone = conn.execute(
                delete(IdempotencyRecord).where(
                    col(IdempotencyRecord.created_at_ms) < now_ms - self.ttl_ms
                )
            )
        return int(gone.rowcount)
