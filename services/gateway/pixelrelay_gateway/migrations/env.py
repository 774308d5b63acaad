"""Alembic environment: the gateway's tables only."""

from pixelrelay.schema import run_migrations
from pixelrelay_gateway.migrate import SCHEMA

run_migrations(SCHEMA.tables)
