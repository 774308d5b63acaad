from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import bindparam, column, func, insert, select, table, text, update
from sqlalchemy.exc import IntegrityError

from pixelrelay.db import BUSY_TIMEOUT_MS, Database, DirectSql, PreparedRead, quick
from pixelrelay.errors import ApiError, E
from tests.conftest import BOTH
from tests.utils.databases import open_database


def _write_rows(db: Database, rows: int) -> None:
    with db.engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS blob (id INTEGER PRIMARY KEY, data TEXT)")
        conn.execute(text("INSERT INTO blob (data) VALUES (:data)"), [{"data": "x" * 1000}] * rows)


def test_commits_leave_the_wal_to_the_background_checkpointer(tmp_path: Path) -> None:
    path = tmp_path / "wal.db"
    db = Database(f"sqlite:///{path}")
    try:
        _write_rows(db, 6000)  # ~6 MB: past SQLite's own autocheckpoint (1000 pages)
        assert path.stat().st_size < 64 * 1024, "a commit checkpointed on the caller's thread"
        deadline = time.monotonic() + 5
        while path.stat().st_size < 1024 * 1024 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert path.stat().st_size >= 1024 * 1024, "the WAL was never checkpointed"
    finally:
        db.close()
    assert db._checkpointer is not None and not db._checkpointer.is_alive()


def test_prepared_reads_take_no_write_lock(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'locks.db'}")
    try:
        _write_rows(db, 1)
        count = PreparedRead(db.engine, select(func.count()).select_from(table("blob")))
        with db.engine.begin() as writer:  # holds SQLite's write lock (BEGIN IMMEDIATE)
            writer.execute(text("INSERT INTO blob (data) VALUES ('held')"))
            # Sees the committed row only (a locking read would wait out the busy timeout
            # and fail with "database is locked").
            assert count.one() == {"count": 1}
    finally:
        db.close()


@quick
def _quick_call() -> str:
    return threading.current_thread().name


def _scan() -> str:
    return threading.current_thread().name


async def test_only_quick_sqlite_calls_run_on_the_event_loop(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        loop_thread = threading.current_thread().name
        assert await db.run(_quick_call) == loop_thread
        assert (await db.run(_scan)).startswith("db")  # a scan waits in the pool, not here
    finally:
        db.close()


def _write_one(db: Database) -> None:
    with db.engine.begin() as conn:
        conn.execute(text("INSERT INTO locked (data) VALUES ('x')"))


@pytest.mark.parametrize("kind", BOTH)
async def test_a_lock_held_elsewhere_is_a_fast_503(tmp_path: Path, kind: str) -> None:
    """Another transaction holding the table: the call fails in about 2 s with 90002 (on
    PostgreSQL it once waited for as long as the lock was held)."""
    with open_database(kind, tmp_path, tables=False) as db:
        with db.engine.begin() as conn:
            conn.execute(text("CREATE TABLE locked (data TEXT)"))
        other = Database(db.url)
        try:
            with other.engine.connect() as holder:
                holder.begin()
                if kind == "postgres":
                    holder.execute(text("LOCK TABLE locked IN EXCLUSIVE MODE"))
                else:
                    holder.execute(text("INSERT INTO locked (data) VALUES ('held')"))
                started = time.monotonic()
                with pytest.raises(ApiError) as caught:
                    await db.run(_write_one, db)
                waited = time.monotonic() - started
                holder.rollback()
            await db.run(_write_one, db)  # and works again once the lock is gone
        finally:
            other.close()
    assert caught.value.kind is E.UNAVAILABLE
    assert 1.5 < waited < 5


@quick
def _quick_write(db: Database, threads: list[str]) -> None:
    with db.engine.begin() as conn:
        conn.execute(text("INSERT INTO blob (data) VALUES ('quick')"))
        threads.append(threading.current_thread().name)


@quick
def _quick_read(db: Database, threads: list[str]) -> int:
    with db.engine.begin() as conn:
        threads.append(threading.current_thread().name)
        return int(conn.execute(text("PRAGMA busy_timeout")).scalar_one())


def _pool_busy_timeout(db: Database) -> int:
    with db.engine.begin() as conn:
        return int(conn.execute(text("PRAGMA busy_timeout")).scalar_one())


async def _longest_gap(stop: asyncio.Event) -> float:
    """The longest the event loop went without running this task (a 10 ms ticker)."""
    longest, last = 0.0, time.monotonic()
    while not stop.is_set():
        await asyncio.sleep(0.01)
        now = time.monotonic()
        longest, last = max(longest, now - last), now
    return longest


async def test_a_quick_call_never_waits_for_a_lock_on_the_event_loop(tmp_path: Path) -> None:
    """Another process holding SQLite's write lock: the inline attempt fails at once and
    the call waits in the pool; the loop goes on (it once stalled for the 2 s busy
    timeout, and then failed, since the holder could not run to let go)."""
    path = tmp_path / "held.db"
    db = Database(f"sqlite:///{path}")
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        _write_rows(db, 1)
        holder.execute("BEGIN IMMEDIATE")
        loop = asyncio.get_running_loop()
        loop.call_later(0.8, holder.rollback)
        stop = asyncio.Event()
        ticking = asyncio.create_task(_longest_gap(stop))
        threads: list[str] = []
        started = time.monotonic()
        await db.run(_quick_write, db, threads)
        waited = time.monotonic() - started
        stop.set()
        assert await ticking < 0.5
        assert waited >= 0.7  # it did wait for the holder, in the pool
        assert [t[:2] for t in threads] == ["db"]
        with db.engine.begin() as conn:
            assert conn.execute(text("SELECT count(*) FROM blob")).scalar_one() == 2

        # Nothing held: quick calls run inline again, without lock waits there, while
        # calls in the pool (on the same pooled connections) keep the busy timeout.
        threads.clear()
        assert await db.run(_quick_read, db, threads) == 0
        assert threads == [threading.current_thread().name]
        assert await db.run(_pool_busy_timeout, db) == BUSY_TIMEOUT_MS
    finally:
        holder.close()
        db.close()


async def test_a_quick_call_that_committed_is_not_run_twice(tmp_path: Path) -> None:
    """The lock taken between two of its transactions: a rerun would repeat the first,
    so the call fails at once with 90002 instead."""
    path = tmp_path / "twice.db"
    db = Database(f"sqlite:///{path}")
    holder = sqlite3.connect(path, isolation_level=None)
    runs: list[int] = []

    @quick
    def two_transactions() -> None:
        runs.append(1)
        with db.engine.begin() as conn:
            conn.execute(text("INSERT INTO blob (data) VALUES ('first')"))
        holder.execute("BEGIN IMMEDIATE")  # another writer, just between the two
        with db.engine.begin() as conn:
            conn.execute(text("INSERT INTO blob (data) VALUES ('second')"))

    try:
        with db.engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE blob (id INTEGER PRIMARY KEY, data TEXT)")
        started = time.monotonic()
        with pytest.raises(ApiError) as caught:
            await db.run(two_transactions)
        assert time.monotonic() - started < 1.0
        holder.rollback()
        assert caught.value.kind is E.UNAVAILABLE
        assert runs == [1]
        with db.engine.begin() as conn:
            assert conn.execute(text("SELECT count(*) FROM blob")).scalar_one() == 1
    finally:
        holder.close()
        db.close()


async def test_direct_sql_waits_for_a_lock_in_the_pool_never_inline(tmp_path: Path) -> None:
    """DirectSql keeps engine.begin()'s rules: BEGIN IMMEDIATE, no lock wait on the event
    loop (the call runs again in the pool, which waits), the commit counted."""
    path = tmp_path / "direct.db"
    db = Database(f"sqlite:///{path}")
    holder = sqlite3.connect(path, isolation_level=None)
    direct = DirectSql(db.engine)
    add = insert(table("blob", column("data")))
    threads: list[str] = []

    @quick
    def write() -> int:
        threads.append(threading.current_thread().name)
        with direct.begin() as conn:
            return conn.execute(add, [{"data": "a"}, {"data": "b"}]).rowcount

    try:
        _write_rows(db, 1)
        holder.execute("BEGIN IMMEDIATE")
        asyncio.get_running_loop().call_later(0.5, holder.rollback)
        started = time.monotonic()
        assert await db.run(write) == 2
        assert time.monotonic() - started >= 0.4  # it waited for the holder, in the pool
        assert threads[0] == threading.current_thread().name and threads[1].startswith("db")
        with db.engine.begin() as conn:
            assert conn.execute(text("SELECT count(*) FROM blob")).scalar_one() == 3
        assert await db.run(write) == 2 and len(threads) == 3  # nothing held: inline
    finally:
        holder.close()
        db.close()


@pytest.mark.parametrize("kind", BOTH)
def test_direct_sql_answers_as_a_connection_does(tmp_path: Path, kind: str) -> None:
    """The same statements through DirectSql and through engine.begin(): same rows, same
    counts, IN lists of any length, a rolled-back transaction on any error."""
    with open_database(kind, tmp_path, tables=False) as db:
        with db.engine.begin() as conn:
            conn.execute(text("CREATE TABLE once (id INTEGER PRIMARY KEY, data TEXT)"))
        once = table("once", column("id"), column("data"))
        direct = DirectSql(db.engine)
        with direct.begin() as conn:
            assert conn.execute(insert(once), {"id": 1, "data": "first"}).rowcount == 1
        by_ids = select(once.c.id, once.c.data).where(
            once.c.id.in_(bindparam("ids", expanding=True))
        )
        rename = update(once).where(once.c.id == bindparam("i")).values(data=bindparam("d"))
        with pytest.raises(ApiError), direct.begin() as conn:
            conn.execute(insert(once), [{"id": 2, "data": "b"}, {"id": 3, "data": "c"}])
            raise ApiError(E.HOLD_CONFLICT)  # a refusal after writes: nothing stays
        with pytest.raises(IntegrityError) as caught, direct.begin() as conn:
            conn.execute(insert(once), [{"id": 2, "data": "kept?"}, {"id": 1, "data": "a secret"}])
        assert "secret" not in str(caught.value)
        with direct.begin() as conn:  # the connection is usable again
            conn.execute(insert(once), [{"id": 4, "data": "d"}, {"id": 5, "data": "e"}])
            assert conn.execute(rename, {"i": 5, "d": "E"}).rowcount == 1
            assert conn.execute(rename, {"i": 9, "d": "-"}).rowcount == 0
        for ids in ([1], [1, 4, 5], [2, 3]):
            with direct.begin() as conn:
                got = conn.execute(by_ids, {"ids": ids}).mappings()
            with db.engine.begin() as conn:
                want = [dict(r) for r in conn.execute(by_ids, {"ids": ids}).mappings()]
            assert sorted(got, key=lambda r: r["id"]) == sorted(want, key=lambda r: r["id"])
        with direct.begin() as conn:
            assert conn.execute(by_ids, {"ids": [4]}).first().data == "d"  # type: ignore[union-attr]
            assert conn.execute(by_ids, {"ids": [7]}).mappings().first() is None
