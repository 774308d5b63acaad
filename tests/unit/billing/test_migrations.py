"""The migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import MetaData, inspect
from sqlmodel import SQLModel

import billing.models  # noqa: F401
from billing.migrate import VERSION_TABLE, upgrade
from pixelrelay.db import Database

BILLING_TABLES = {"account", "apikey", "hold", "ledgerentry"}


def _only_billing(obj: Any, name: str | None, type_: str, *_: Any) -> bool:
    table = name if type_ == "table" else getattr(getattr(obj, "table", None), "name", None)
    return table is None or table in BILLING_TABLES


def test_upgrade_from_empty_matches_the_models(empty_database: Database) -> None:
    upgrade(empty_database.url)
    upgrade(empty_database.url)  # a second run is a no-op
    models = MetaData()
    for name in BILLING_TABLES:
        SQLModel.metadata.tables[name].to_metadata(models)
    with empty_database.engine.connect() as connection:
        assert BILLING_TABLES | {VERSION_TABLE} <= set(inspect(connection).get_table_names())
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "include_object": _only_billing}
        )
        assert compare_metadata(context, models) == []
