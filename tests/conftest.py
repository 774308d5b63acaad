"""Shared fixtures: databases (SQLite always, PostgreSQL when configured)."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlmodel import SQLModel

from pixelrelay.db import Database

POSTGRES_URL = os.environ.get("PIXELRELAY_TEST_POSTGRES_URL", "")


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


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """Every database-backed test runs on SQLite and, if configured, on PostgreSQL."""
    if request.param == "postgres":
        if not POSTGRES_URL:
            pytest.skip("PIXELRELAY_TEST_POSTGRES_URL is not set")
        with contextlib.contextmanager(postgres_database)() as db:
            SQLModel.metadata.create_all(db.engine)
            yield db
    else:
        db = Database(f"sqlite:///{tmp_path / 'test.db'}")
        db.create_all()
        yield db
        db.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """Like ``database``, but with no tables: for migration tests."""
    if request.param == "postgres":
        if not POSTGRES_URL:
            pytest.skip("PIXELRELAY_TEST_POSTGRES_URL is not set")
        with contextlib.contextmanager(postgres_database)() as db:
            yield db
    else:
        db = Database(f"sqlite:///{tmp_path / 'empty.db'}")
        yield db
        db.close()
