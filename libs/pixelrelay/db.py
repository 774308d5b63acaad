"""Database access shared by billing and the task store (SQLModel over SQLAlchemy).

SQLite (the default) runs in WAL mode and every transaction starts with
``BEGIN IMMEDIATE``, so a read-then-write can never be overtaken by another writer;
single-statement reads marked ``READ_ONLY`` skip it, and WAL checkpoints run in a
background thread.
PostgreSQL is chosen by ``DATABASE_URL``. Calls run in a small thread pool so the
service's event loop never blocks on the database.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlmodel import SQLModel, create_engine

from pixelrelay.errors import ApiError, E

# An execution option for single-statement reads: on SQLite they run without BEGIN (in
# autocommit, so no write lock is taken and nothing waits on one). PostgreSQL ignores it.
READ_ONLY = "pixelrelay_read_only"

CHECKPOINT_EVERY = 1.0  # seconds

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")


def create_db_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 2})
        _sqlite_begin_immediate(engine)
        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg2://" + url.removeprefix("postgresql://")
    return create_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)


def _sqlite_begin_immediate(engine: Engine) -> None:
    # pysqlite's own transaction handling is turned off so we can emit BEGIN IMMEDIATE
    # (the recipe from SQLAlchemy's SQLite dialect documentation).
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        # Short: calls run on the event loop, so a lock held elsewhere must fail fast (503).
        cur.execute("PRAGMA busy_timeout=2000")
        # Checkpoints (which fsync) run in Database's background thread, never inside a
        # commit on the event loop, where one would stall every request for milliseconds.
        cur.execute("PRAGMA wal_autocheckpoint=0")
        cur.close()

    @event.listens_for(engine, "begin")
    def on_begin(conn: Any) -> None:
        if not conn.get_execution_options().get(READ_ONLY):
            conn.exec_driver_sql("BEGIN IMMEDIATE")


class Database:
    """An engine, and how its blocking calls are run.

    PostgreSQL calls go to a thread pool (they wait on the network). SQLite calls run
    inline: a local transaction takes a fraction of a millisecond, less than handing it to
    a thread and getting the GIL back (measured: 1.5x the requests/s, docs/benchmarks.md);
    each SQLite file has one writing process, and the busy timeout bounds any lock wait.
    """

    def __init__(self, url: str, *, workers: int = 8):
        self.url = url
        self.engine = create_db_engine(url)
        self.inline = url.startswith("sqlite")
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="db")
        self._stop = threading.Event()
        self._checkpointer: threading.Thread | None = None
        if self.inline and ":memory:" not in url:
            self._checkpointer = threading.Thread(
                target=self._checkpoint_wal, name="wal-checkpoint", daemon=True
            )
            self._checkpointer.start()

    def _checkpoint_wal(self) -> None:
        """Copy the WAL into the database file every second (PASSIVE: writers and readers
        go on meanwhile; the fsync happens here, off the event loop)."""
        while not self._stop.wait(CHECKPOINT_EVERY):
            try:
                with self.engine.connect().execution_options(**{READ_ONLY: True}) as conn:
                    conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
            except Exception:
                log.warning("WAL checkpoint failed", exc_info=True)

    def create_all(self) -> None:
        SQLModel.metadata.create_all(self.engine)

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn`` in the pool; a lost database becomes 90002, never a 500."""
        try:
            if self.inline:
                return fn(*args, **kwargs)
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))
        except DBAPIError as exc:
            if exc.connection_invalidated or _is_outage(exc):
                raise ApiError(E.UNAVAILABLE, "the database is unavailable") from exc
            raise

    def close(self) -> None:
        self._stop.set()
        if self._checkpointer is not None:
            self._checkpointer.join()
        self._pool.shutdown(wait=True)
        self.engine.dispose()


def _is_outage(exc: DBAPIError) -> bool:
    text = str(exc.orig).lower()
    return any(
        s in text
        for s in (
            "could not connect",
            "connection refused",
            "server closed",
            "database is locked",
            "terminating connection",
        )
    )
