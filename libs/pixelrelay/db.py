"""Database access shared by billing and the task store (SQLModel over SQLAlchemy).

SQLite (the default) runs in WAL mode and every transaction starts with
``BEGIN IMMEDIATE``, so a read-then-write can never be overtaken by another writer;
``PreparedRead`` runs a hot single-row select without one, ``DirectSql`` the hot
transactions without SQLAlchemy's per-call machinery, and WAL checkpoints run in a
background thread.
PostgreSQL is chosen by ``DATABASE_URL``. ``Database.run`` decides where a call runs:
PostgreSQL calls in a small thread pool, SQLite calls inline on the event loop when
marked ``@quick`` and in the pool otherwise. An inline call never waits for a lock: if
another connection holds the write lock, it is run again in the pool, which waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ParamSpec, TypeVar

from sqlalchemy import ClauseElement, Select, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.sql.dml import UpdateBase
from sqlmodel import SQLModel, create_engine

from pixelrelay.errors import ApiError, E

CHECKPOINT_EVERY = 1.0  # seconds
MAX_COMPILED = 1024  # DirectSql's statements, each one shape (an IN list's length is one)
BUSY_TIMEOUT_MS = 2000

# Set on the event loop's thread while a @quick call runs inline there (Database.run):
# connections checked out meanwhile do not wait for SQLite's locks, and commits are counted.
_inline = threading.local()

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")


def create_db_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_MS / 1000}
        )
        _sqlite_begin_immediate(engine)
        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg2://" + url.removeprefix("postgresql://")
    engine = create_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)
    _postgres_lock_timeout(engine)
    return engine


def _postgres_lock_timeout(engine: Engine) -> None:
    # Like SQLite's busy timeout: a lock held elsewhere (a stuck migration, an operator's
    # transaction) fails the call in 2 s with 90002 instead of holding a pool thread and
    # the caller until it is released.
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("SET lock_timeout = '2s'")
        cur.close()
        dbapi_conn.commit()


def _sqlite_begin_immediate(engine: Engine) -> None:
    # pysqlite's own transaction handling is turned off so we can emit BEGIN IMMEDIATE
    # (the recipe from SQLAlchemy's SQLite dialect documentation).
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_conn: Any, record: Any) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        # Short: a lock held elsewhere fails the call in 2 s (503), not whenever it ends.
        cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        # Checkpoints (which fsync) run in Database's background thread, never inside a
        # commit on the event loop, where one would stall every request for milliseconds.
        cur.execute("PRAGMA wal_autocheckpoint=0")
        cur.close()
        record.info["busy_timeout"] = BUSY_TIMEOUT_MS

    @event.listens_for(engine, "checkout")
    def on_checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        # On the event loop a lock wait would stall every request: there, no wait at all
        # (Database.run runs the call again in the pool). Set only when it changes.
        timeout = 0 if getattr(_inline, "active", False) else BUSY_TIMEOUT_MS
        if record.info.get("busy_timeout") != timeout:
            dbapi_conn.execute(f"PRAGMA busy_timeout={timeout}")
            record.info["busy_timeout"] = timeout

    @event.listens_for(engine, "begin")
    def on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    @event.listens_for(engine, "commit")
    def on_commit(_conn: Any) -> None:
        if getattr(_inline, "active", False):
            _inline.commits += 1


def upsert(dialect: Dialect, table: Any) -> postgresql.Insert | sqlite.Insert:
    """An INSERT into ``table`` that takes ``on_conflict_do_*`` on either database."""
    insert = postgresql.insert if dialect.name == "postgresql" else sqlite.insert
    return insert(table)


class PreparedRead:
    """A select of at most one row, compiled once and run on the pooled DBAPI connection.

    For the poll path: SQLAlchemy's per-call machinery (connection, transaction, execution
    context, result) costs about 80 us, the query itself under 10 (docs/benchmarks.md).
    No transaction is begun, so on SQLite it takes no lock and waits on none. Values pass
    through the columns' own result processors, as a Core select would give them.
    """

    def __init__(self, engine: Engine, statement: Select[Any]):
        dialect = engine.dialect
        compiled = statement.compile(dialect=dialect)
        self._engine = engine
        self._sql = str(compiled)
        self._order = list(compiled.positiontup or ()) if compiled.positional else None
        columns = list(statement.selected_columns)
        self._names = [c.name for c in columns]
        self._convert = [
            c.type.dialect_impl(dialect).result_processor(dialect, None) for c in columns
        ]
        self._dbapi_error = dialect.loaded_dbapi.Error

    def one(self, **params: Any) -> dict[str, Any] | None:
        args = tuple(params[n] for n in self._order) if self._order is not None else params
        raw = self._engine.raw_connection()
        try:
            cursor = raw.cursor()
            cursor.execute(self._sql, args)
            row = cursor.fetchone()
            cursor.close()
        except self._dbapi_error as exc:
            raw.invalidate(exc)
            raise DBAPIError.instance(
                self._sql, args, exc, self._dbapi_error, connection_invalidated=True
            ) from exc
        finally:
            raw.close()
        if row is None:
            return None
        return {
            name: convert(value) if convert else value
            for name, convert, value in zip(self._names, self._convert, row, strict=True)
        }


class DirectSql:
    """Core statements run straight on the pooled DBAPI connection, each compiled once.

    For the transactions every task makes (reserve, settle, the task record's writes):
    SQLAlchemy's per-call machinery (execution context, result, events) costs ~100 us a
    statement, the statement itself ~10 (docs/benchmarks.md). ``begin()`` is a drop-in for
    ``engine.begin()`` on the few things those paths ask of a connection (``execute`` with
    one set of parameters or many, ``rowcount``, ``first()``, ``mappings()``) and keeps what
    ``engine.begin()`` gives: ``BEGIN IMMEDIATE`` on SQLite, the busy timeout the pool's
    checkout set (none inline), an inline commit counted for ``Database.run``, errors raised
    as SQLAlchemy's (parameters hidden: they may hold a prompt). Statements compile as
    ``Connection.execute`` would compile them: a DML statement for its parameters' keys, an
    ``IN`` list for its length; values pass through the columns' bind and result processors.
    """

    def __init__(self, engine: Engine):
        self.engine = engine
        self._dialect = engine.dialect
        self._sqlite = engine.dialect.name == "sqlite"
        self._dbapi_error = engine.dialect.loaded_dbapi.Error
        # By the statement itself (a ClauseElement hashes by identity, and the key keeps it
        # alive, so an id is never reused for another): statements are module constants.
        self._compiled: dict[tuple[ClauseElement, tuple[str, ...], tuple[int, ...]], _Compiled] = {}

    @contextlib.contextmanager
    def begin(self) -> Iterator[DirectConnection]:
        raw = self.engine.raw_connection()
        conn = DirectConnection(self, raw.cursor())
        try:
            if self._sqlite:
                conn.cursor.execute("BEGIN IMMEDIATE")
            yield conn
            raw.commit()
        except self._dbapi_error as exc:
            lost = self._dialect.is_disconnect(exc, raw.dbapi_connection, conn.cursor)
            if lost:
                raw.invalidate(exc)
            else:
                with contextlib.suppress(self._dbapi_error):
                    raw.rollback()
            raise DBAPIError.instance(
                conn.last_sql,
                None,
                exc,
                self._dbapi_error,
                hide_parameters=True,
                connection_invalidated=lost,
            ) from exc
        except BaseException:
            with contextlib.suppress(self._dbapi_error):
                raw.rollback()
            raise
        finally:
            raw.close()
        if getattr(_inline, "active", False):
            _inline.commits += 1

    def compiled(self, statement: ClauseElement, params: dict[str, Any]) -> _Compiled:
        keys = tuple(params) if isinstance(statement, UpdateBase) else ()
        lengths = tuple(len(v) for v in params.values() if isinstance(v, list | tuple))
        key = (statement, keys, lengths)
        found = self._compiled.get(key)
        if found is None:
            if len(self._compiled) >= MAX_COMPILED:  # statements built per call: bounded
                self._compiled.clear()
            found = self._compiled[key] = _Compiled(self._dialect, statement, params, keys)
        return found


class _Compiled:
    """One statement as sent for one shape of parameters."""

    def __init__(
        self,
        dialect: Dialect,
        statement: ClauseElement,
        params: dict[str, Any],
        keys: tuple[str, ...],
    ):
        lists = {n: v for n, v in params.items() if isinstance(v, list | tuple)}
        shaped = statement.params(lists) if lists else statement
        compiled: Any = shaped.compile(  # an SQLCompiler: binds, positiontup
            dialect=dialect,
            column_keys=list(keys) or None,
            compile_kwargs={"render_postcompile": True},
        )
        self.sql = str(compiled)
        self.order = list(compiled.positiontup or ()) if compiled.positional else None
        binds = compiled.binds
        self.lists = list(lists)
        self.fixed = {
            n: b.effective_value for n, b in binds.items() if not b.required and not b.expanding
        }
        self.convert_in = {
            n: convert
            for n, b in binds.items()
            if (convert := b.type.dialect_impl(dialect).bind_processor(dialect))
        }
        columns = list(getattr(statement, "selected_columns", ()))
        self.names = [c.name for c in columns]
        self.convert_out = [
            c.type.dialect_impl(dialect).result_processor(dialect, None) for c in columns
        ]

    def args(self, params: dict[str, Any]) -> Any:
        values = self.fixed | params
        for name, convert in self.convert_in.items():
            if name in self.lists:
                values[name] = [convert(v) for v in values[name]]
            elif name in values:
                values[name] = convert(values[name])
        for name in self.lists:  # IN (:t_ids_1, :t_ids_2, …)
            for i, value in enumerate(values.pop(name), 1):
                values[f"{name}_{i}"] = value
        return tuple(values[n] for n in self.order) if self.order is not None else values

    def row(self, raw: Sequence[Any]) -> dict[str, Any]:
        return {
            name: convert(value) if convert else value
            for name, convert, value in zip(self.names, self.convert_out, raw, strict=True)
        }


class DirectConnection:
    """What ``DirectSql.begin()`` yields: ``execute`` as ``Connection.execute`` for the
    hot paths."""

    def __init__(self, direct: DirectSql, cursor: Any):
        self._direct = direct
        self.cursor = cursor
        self.last_sql = ""

    def execute(
        self, statement: ClauseElement, params: dict[str, Any] | Sequence[dict[str, Any]]
    ) -> DirectResult:
        many = not isinstance(params, dict)
        rows: list[dict[str, Any]] = [params] if isinstance(params, dict) else list(params)
        compiled = self._direct.compiled(statement, rows[0])
        self.last_sql = compiled.sql
        if many:
            self.cursor.executemany(compiled.sql, [compiled.args(r) for r in rows])
            return DirectResult(int(self.cursor.rowcount), [])
        self.cursor.execute(compiled.sql, compiled.args(rows[0]))
        fetched = self.cursor.fetchall() if compiled.names else []
        return DirectResult(int(self.cursor.rowcount), [compiled.row(r) for r in fetched])


class DirectResult:
    def __init__(self, rowcount: int, rows: list[dict[str, Any]]):
        self.rowcount = rowcount
        self._rows = rows

    def mappings(self) -> DirectRows:
        return DirectRows(self._rows)

    def first(self) -> SimpleNamespace | None:
        return SimpleNamespace(**self._rows[0]) if self._rows else None


class DirectRows(list[dict[str, Any]]):
    def first(self) -> dict[str, Any] | None:
        return self[0] if self else None


def quick(fn: Callable[P, T]) -> Callable[P, T]:
    """Marks a call that touches a few rows by key: on SQLite, ``Database.run`` runs it
    inline on the event loop. Leave unmarked anything that scans (pages, audits, sweeps)."""
    fn._db_quick = True  # type: ignore[attr-defined]
    return fn


class Database:
    """An engine, and how its blocking calls are run.

    PostgreSQL calls go to a thread pool (they wait on the network). SQLite calls marked
    ``@quick`` run inline: a local transaction on a few rows takes a fraction of a
    millisecond, less than handing it to a thread and getting the GIL back (measured: 1.5x
    the requests/s, docs/benchmarks.md). An inline call does not wait for a lock: when
    another connection or process holds the write lock, its ``BEGIN IMMEDIATE`` fails at
    once and the call runs again in the pool, which waits up to the busy timeout. Other
    SQLite calls (a full ledger check, a page of tasks) go to the pool, so they never stall
    the loop.
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
                raw = self.engine.raw_connection()  # no BEGIN: a checkpoint is not a write
                try:
                    raw.cursor().execute("PRAGMA wal_checkpoint(PASSIVE)")
                finally:
                    raw.close()
            except Exception:
                log.warning("WAL checkpoint failed", exc_info=True)

    def create_all(self) -> None:
        SQLModel.metadata.create_all(self.engine)

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn`` inline or in the pool (see the class); a lost database becomes 90002,
        never a 500."""
        try:
            if self.inline and getattr(fn, "_db_quick", False):
                try:
                    return _without_lock_waits(fn, *args, **kwargs)
                except _LockedElsewhere:
                    pass  # nothing was committed: run it again where waiting is harmless
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


class _LockedElsewhere(Exception):
    """An inline call found SQLite's write lock taken before it committed anything."""


def _without_lock_waits(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``fn`` on this thread with a busy timeout of 0 on every connection it checks out.

    A lock held elsewhere fails the first ``BEGIN IMMEDIATE`` that meets it with
    SQLITE_BUSY; statements inside a transaction wait for nothing (it holds the write lock
    from its BEGIN, and WAL readers never block). A failed BEGIN leaves no transaction
    open, and the transactions before it rolled back or committed: if none committed, the
    call changed nothing and ``_LockedElsewhere`` says it may be run again. Past a commit a
    rerun would repeat it, so the error stands (a 503, as a lapsed busy timeout gives).
    """
    _inline.active, _inline.commits = True, 0
    try:
        return fn(*args, **kwargs)
    except OperationalError as exc:
        if _is_busy(exc) and _inline.commits == 0:
            raise _LockedElsewhere from exc
        raise
    finally:
        _inline.active = False


def _is_busy(exc: OperationalError) -> bool:
    code = getattr(exc.orig, "sqlite_errorcode", None)
    return code is not None and code & 0xFF == sqlite3.SQLITE_BUSY


def _is_outage(exc: DBAPIError) -> bool:
    text = str(exc.orig).lower()
    return any(
        s in text
        for s in (
            "could not connect",
            "connection refused",
            "server closed",
            "database is locked",
            "lock timeout",
            "terminating connection",
        )
    )
