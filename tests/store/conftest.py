"""Store fixtures: databases that exist but were never migrated, on each backend."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.conftest import PG_BASE_URL


@pytest.fixture
def fresh_pg_url() -> Iterator[str]:
    """URL of an empty PostgreSQL schema of its own (no tables, no alembic_version); dropped afterwards."""
    schema = f"f_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_BASE_URL)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    try:
        yield f"{PG_BASE_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def fresh_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty, never migrated store on each backend in turn."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'fresh.db'}"
    return str(request.getfixturevalue("fresh_pg_url"))
