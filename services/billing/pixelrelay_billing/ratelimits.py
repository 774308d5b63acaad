"""Per-key request limits, one token bucket per key in billing's database, so a limit of
R requests a minute is R across every gateway replica, not R per replica.

A key allowed R a minute may burst R requests, then gets one every 60/R seconds. The
gateway asks for every request of a limited key (batched with the others that arrive
together: one call, one transaction); a key without a limit never comes here.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import bindparam, select, update
from sqlalchemy.engine import Connection, Engine

from pixelrelay.db import quick, upsert
from pixelrelay_billing.models import RateBucket

UNITS = 60_000  # one request; a limit of R per minute refills R units per millisecond


@dataclass(frozen=True)
class Take:
    key_id: str
    per_minute: int


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after_s: int = 0


class RateBuckets:
    def __init__(self, engine: Engine, clock_ms: Callable[[], int] | None = None):
        self.engine = engine
        self._now_ms = clock_ms or (lambda: int(time.time() * 1000))

    @quick
    def take_many(self, takes: list[Take]) -> list[Verdict]:
        """One request from each take's key, in order, in one transaction."""
        if not takes:
            return []
        now = self._now_ms()
        with self.engine.begin() as conn:
            state = self._locked(conn, takes, now)
            verdicts = [self._take(state, t, now) for t in takes]
            table = RateBucket.__table__  # type: ignore[attr-defined]
            conn.execute(
                update(table)
                .where(table.c.key_id == bindparam("key"))
                .values(
                    units=bindparam("units"),
                    updated_ms=bindparam("at"),
                    per_minute=bindparam("rate"),
                ),
                [
                    {"key": key, "units": units, "at": at, "rate": rate}
                    for key, (units, at, rate) in state.items()
                ],
            )
        return verdicts

    def _locked(self, conn: Connection, takes: list[Take], now: int) -> dict[str, list[int]]:
        """The buckets of ``takes``' keys, locked for this transaction; a key seen for the
        first time starts full."""
        first = {t.key_id: t.per_minute for t in takes}
        conn.execute(
            upsert(conn.dialect, RateBucket)
            .values(
                [
                    {"key_id": k, "per_minute": r, "units": r * UNITS, "updated_ms": now}
                    for k, r in sorted(first.items())  # one lock order: no deadlocks
                ]
            )
            .on_conflict_do_nothing(index_elements=["key_id"])
        )
        rows = conn.execute(
            select(
                RateBucket.key_id, RateBucket.units, RateBucket.updated_ms, RateBucket.per_minute
            )  # type: ignore[call-overload]
            .where(RateBucket.key_id.in_(sorted(first)))  # type: ignore[attr-defined]
            .order_by(RateBucket.key_id)
            .with_for_update()
        )
        return {key: [units, at, rate] for key, units, at, rate in rows}

    @staticmethod
    def _take(state: dict[str, list[int]], take: Take, now: int) -> Verdict:
        units, at, rate = state[take.key_id]
        limit = take.per_minute
        capacity = limit * UNITS
        if rate != limit:  # the key's limit changed: keep what it had, within the new one
            units = min(units, capacity)
        units = min(capacity, units + max(0, now - at) * limit)
        at = max(at, now)  # another replica's clock ahead of ours never refills twice
        if units >= UNITS:
            state[take.key_id] = [units - UNITS, at, limit]
            return Verdict(True)
        state[take.key_id] = [units, at, limit]
        wait_ms = (UNITS - units) / limit
        return Verdict(False, max(1, math.ceil(wait_ms / 1000)))
