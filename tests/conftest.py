"""Shared fixtures: databases (SQLite always, PostgreSQL when configured)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pixelrelay.db import Database
from tests.utils.databases import open_database

BOTH = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BOTH)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """Every database-backed test runs on SQLite and, if configured, on PostgreSQL."""
    with open_database(request.param, tmp_path, tables=True) as db:
        yield db


@pytest.fixture(params=BOTH)
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """Like ``database``, but with no tables: for migration tests."""
    with open_database(request.param, tmp_path, tables=False) as db:
        yield db
