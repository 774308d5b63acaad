"""Alembic environment: billing's tables only."""

from pixelrelay.schema import run_migrations
from pixelrelay_billing.migrate import SCHEMA

run_migrations(SCHEMA.tables)
