"""Billing's schema (pixelrelay/schema.py): python -m pixelrelay_billing.migrate upgrade|current|revision."""

from __future__ import annotations

from pathlib import Path

import pixelrelay_billing.models  # noqa: F401 - registers the tables
from pixelrelay.schema import Schema

SCHEMA = Schema(
    name="billing",
    migrations=Path(__file__).with_name("migrations"),
    version_table="billing_alembic_version",
    tables=frozenset(
        {
            "account",
            "apikey",
            "hold",
            "ledgerentry",
            "rate_bucket",
            "login",
            "login_token",
            "invite",
            "sign_in_failures",
        }
    ),
    default_url="sqlite:///var/billing.db",
)

if __name__ == "__main__":
    SCHEMA.main()
