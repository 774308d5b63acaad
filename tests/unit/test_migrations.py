"""Each service's migrations build exactly the schema its models describe, on SQLite and
PostgreSQL, side by side in one database; a service can tell when its schema is behind."""

from __future__ import annotations

from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import MetaData, inspect, text
from sqlmodel import SQLModel

from pixelrelay.db import Database
from pixelrelay.schema import Schema
from pixelrelay_billing.migrate import SCHEMA as BILLING
from pixelrelay_gateway.migrate import SCHEMA as GATEWAY

SCHEMAS = [BILLING, GATEWAY]


def differences(db: Database, schema: Schema) -> list[Any]:
    def own(obj: Any, name: str | None, type_: str, *_: Any) -> bool:
        table = name if type_ == "table" else getattr(getattr(obj, "table", None), "name", None)
        return table is None or table in schema.tables

    models = MetaData()
    for name in schema.tables:
        SQLModel.metadata.tables[name].to_metadata(models)
    with db.engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "include_object": own}
        )
        return list(compare_metadata(context, models))


def test_both_schemas_upgrade_from_empty_to_their_models(empty_database: Database) -> None:
    for schema in SCHEMAS:
        assert schema.pending(empty_database.url) != []
        schema.upgrade(empty_database.url)
        schema.upgrade(empty_database.url)  # a second run is a no-op
        assert schema.pending(empty_database.url) == []
    with empty_database.engine.connect() as connection:
        names = set(inspect(connection).get_table_names())
    for schema in SCHEMAS:
        assert schema.tables | {schema.version_table} <= names
        assert differences(empty_database, schema) == []


def test_pending_lists_what_a_database_still_needs(empty_database: Database) -> None:
    every = BILLING.pending(empty_database.url)
    assert every[0] == "0001" and len(every) >= 3
    BILLING.upgrade(empty_database.url, revision="0001")
    assert BILLING.pending(empty_database.url) == every[1:]
    assert GATEWAY.pending(empty_database.url)[:2] == ["0001", "0002"]  # its own version table


@pytest.mark.parametrize("schema", [GATEWAY], ids=["gateway"])
def test_tables_made_before_migrations_are_adopted(
    empty_database: Database, schema: Schema
) -> None:
    """The gateway made its tables with create_all before it had migrations (they were
    what 0001 makes): an upgrade stamps them, then applies the rest, instead of failing on
    'table exists'."""
    schema.upgrade(empty_database.url, revision="0001")
    with empty_database.engine.begin() as conn:
        conn.execute(text(f"DROP TABLE {schema.version_table}"))
    schema.upgrade(empty_database.url)
    assert schema.pending(empty_database.url) == []
    assert differences(empty_database, schema) == []
