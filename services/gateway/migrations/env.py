"""Alembic environment: the gateway's tables only."""

from gateway.migrate import SCHEMA
from pixelrelay.schema import run_migrations

run_migrations(SCHEMA.tables)
