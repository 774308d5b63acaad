"""Databases for tests: a SQLite file, or a schema of its own on the configured PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlmodel import SQLModel

from pixelrelay.db import Database

POSTGRES_URL = os.environ.get("PIXELRELAY_TEST_POSTGRES_URL", "")


@contextmanager
def postgres_database() -> Iterator[Database]:
    """A schema of its own per test, dropped afterwards."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = Database(POSTGRES_URL)
    with admin.engine.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    sep = "&" if "?" in POSTGRES_URL else "?"
    db = Database(f"{POSTGRES_URL}{sep}options=-csearch_path%3D{schema}")
    try:
        yield db
    finally:
        db.close()
        with admin.engine.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.close()


@contextmanager
def open_database(kind: str, directory: Path, *, tables: bool) -> Iterator[Database]:
    """``kind`` "sqlite" or "postgres" (skipped unless PIXELRELAY_TEST_POSTGRES_URL is set);
    ``tables``: with every table created, or empty (for migration tests)."""
    if kind == "postgres":
        if not POSTGRES_URL:
            pytest.skip("PIXELRELAY_TEST_POSTGRES_URL is not set")
        with postgres_database() as db:
            if tables:
                SQLModel.metadata.create_all(db.engine)
            yield db
        return
    db = Database(f"sqlite:///{directory / 'test.db'}")
    if tables:
        db.create_all()
    try:
        yield db
    finally:
        db.close()
