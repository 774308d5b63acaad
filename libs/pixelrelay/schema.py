"""Schema migrations (alembic), one way for every service that owns tables.

Billing and the gateway each own a set of tables and a migrations directory, and may share
one PostgreSQL database: each keeps its own version table. A service either migrates its
database at start (`MIGRATE_ON_START`, the default, what `make run` does) or, in a
cluster, waits until the migrations Job has brought the schema to the version it was
built for (`pending` is empty) and reports NOT_SERVING meanwhile.

    python -m pixelrelay_billing.migrate upgrade | current | revision -m "…"
    python -m pixelrelay_gateway.migrate upgrade | current | revision -m "…"
"""

from __future__ import annotations

import argparse
import asyncio
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command, context
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlmodel import SQLModel

from pixelrelay.db import create_db_engine
from pixelrelay.startup import keep_trying


@dataclass(frozen=True)
class Schema:
    name: str
    migrations: Path
    version_table: str
    tables: frozenset[str]
    default_url: str
    # The tables a database made before there were migrations has (create_all): found all
    # without a version table, they are adopted at the first revision. Empty: never.
    adopt_tables: frozenset[str] = frozenset()

    def config(self, url: str) -> Config:
        config = Config()
        config.set_main_option("script_location", str(self.migrations))
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
        config.set_main_option("version_table", self.version_table)
        return config

    def upgrade(self, url: str, revision: str = "head") -> None:
        """Bring the database to ``revision``. Tables made before there were migrations
        (the gateway once ran create_all) are adopted: stamped at the first revision,
        then upgraded."""
        config = self.config(url)
        if self._unversioned_tables(url):
            command.stamp(config, self._base_revision(config))
        command.upgrade(config, revision)

    def pending(self, url: str) -> list[str]:
        """Revisions this build has that the database has not applied, oldest first."""
        script = ScriptDirectory.from_config(self.config(url))
        engine = create_db_engine(url)
        try:
            with engine.connect() as conn:
                current = MigrationContext.configure(
                    conn, opts={"version_table": self.version_table}
                ).get_current_heads()
        finally:
            engine.dispose()
        # One line of history (no branches): what lies between the database and the head.
        # A database newer than this build names a revision it does not know: that raises.
        lower = current[0] if current else "base"
        newest_first = script.iterate_revisions("heads", lower)
        return [r.revision for r in reversed(list(newest_first)) if r is not None]

    def _unversioned_tables(self, url: str) -> bool:
        engine = create_db_engine(url)
        try:
            with engine.connect() as conn:
                names = set(inspect(conn).get_table_names())
        finally:
            engine.dispose()
        adoptable = bool(self.adopt_tables) and self.adopt_tables <= names
        return adoptable and self.version_table not in names

    @staticmethod
    def _base_revision(config: Config) -> str:
        bases = ScriptDirectory.from_config(config).get_bases()
        assert len(bases) == 1, bases
        return str(bases[0])

    def main(self) -> None:
        parser = argparse.ArgumentParser(prog=f"python -m {self.name}.migrate")
        sub = parser.add_subparsers(dest="command", required=True)
        sub.add_parser("upgrade", help="migrate DATABASE_URL to the newest schema")
        sub.add_parser("current", help="list the migrations DATABASE_URL still needs")
        new = sub.add_parser("revision", help="write a new migration from the models")
        new.add_argument("-m", "--message", required=True)
        args = parser.parse_args()
        url = os.environ.get("DATABASE_URL", self.default_url)
        if args.command == "upgrade":
            self.upgrade(url)
        elif args.command == "current":
            pending = self.pending(url)
            print("up to date" if not pending else "pending: " + " ".join(pending))  # noqa: T201
        else:
            command.revision(self.config(url), message=args.message, autogenerate=True)


def run_migrations(tables: frozenset[str]) -> None:
    """The body of a migrations directory's env.py: its own ``tables`` only, on the engine
    pixelrelay.db builds (so SQLite and PostgreSQL get the same connection settings)."""

    def include_object(
        obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
    ) -> bool:
        if type_ == "table":
            return name in tables
        table = getattr(obj, "table", None)
        return table is None or table.name in tables

    config = context.config
    engine = create_db_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=SQLModel.metadata,
            include_object=include_object,
            version_table=config.get_main_option("version_table") or "alembic_version",
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


class SchemaBehind(Exception):
    """The database lacks migrations this build needs (the migrations Job has not run)."""


async def prepare(schema: Schema, url: str, *, migrate: bool) -> None:
    """Migrate the database (``migrate``), or check that someone did: SchemaBehind names
    the missing revisions. Runs in a thread: alembic and the drivers block."""
    if migrate:
        await asyncio.to_thread(schema.upgrade, url)
        return
    pending = await asyncio.to_thread(schema.pending, url)
    if pending:
        raise SchemaBehind(
            f"{schema.name} schema lacks migrations {', '.join(pending)}: "
            "run the migrations Job (docs/operations.md, 'Migrations')"
        )


async def prepare_when_ready(
    schema: Schema, url: str, *, migrate: bool, stop: asyncio.Event
) -> None:
    """``prepare``, retried with backoff while a database server is unreachable or behind.
    A SQLite file is this machine's own: a failure there is a misconfiguration, at once."""
    if url.startswith("sqlite"):
        await prepare(schema, url, migrate=migrate)
        return
    await keep_trying(
        f"the {schema.name} database", lambda: prepare(schema, url, migrate=migrate), stop
    )
