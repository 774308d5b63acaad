"""Alembic environment: billing's tables only."""

from billing.migrate import SCHEMA
from pixelrelay.schema import run_migrations

run_migrations(SCHEMA.tables)
