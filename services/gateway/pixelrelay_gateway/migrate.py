"""The gateway's schema, task records, idempotency keys and upload records (pixelrelay/schema.py):
python -m pixelrelay_gateway.migrate upgrade|current|revision."""

from __future__ import annotations

from pathlib import Path

import pixelrelay_gateway.core.idempotency  # noqa: F401 - registers the tables
import pixelrelay_gateway.core.store  # noqa: F401
import pixelrelay_gateway.core.uploads  # noqa: F401
from pixelrelay.schema import Schema

SCHEMA = Schema(
    name="gateway",
    migrations=Path(__file__).with_name("migrations"),
    version_table="gateway_alembic_version",
    tables=frozenset({"task", "idempotency_key", "upload"}),
    default_url="sqlite:///var/gateway.db",
    adopt_tables=frozenset({"task", "idempotency_key"}),  # what create_all once made
)

if __name__ == "__main__":
    SCHEMA.main()
