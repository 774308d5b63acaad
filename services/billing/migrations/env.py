"""Alembic environment: billing's tables only, on the engine pixelrelay.db builds."""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlmodel import SQLModel

import billing.models  # noqa: F401 - registers the tables
from pixelrelay.db import create_db_engine

BILLING_TABLES = {"account", "apikey", "hold", "ledgerentry"}


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    if type_ == "table":
        return name in BILLING_TABLES
    table = getattr(obj, "table", None)
    return table is None or table.name in BILLING_TABLES


def run() -> None:
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


run()
