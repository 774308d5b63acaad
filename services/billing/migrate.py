"""Billing's schema migrations (alembic). Billing upgrades its database at start.

python -m billing.migrate upgrade            # to the newest schema (DATABASE_URL)
python -m billing.migrate revision -m "…"    # write a new migration from the models
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS = Path(__file__).with_name("migrations")
# Billing and the gateway may share one PostgreSQL database: separate version tables.
VERSION_TABLE = "billing_alembic_version"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.set_main_option("version_table", VERSION_TABLE)
    return config


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m billing.migrate")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("upgrade")
    new = sub.add_parser("revision")
    new.add_argument("-m", "--message", required=True)
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL", "sqlite:///var/billing.db")
    if args.command == "upgrade":
        upgrade(url)
    else:
        command.revision(alembic_config(url), message=args.message, autogenerate=True)


if __name__ == "__main__":
    main()
