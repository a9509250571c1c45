"""Shared fixtures: isolated settings, migrated SQLite and PostgreSQL stores, bar factories."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

PG_BASE_URL = os.environ.get("KRX_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test gets its own var/ folder and no KRX_* settings from the developer's shell or .env."""
    from pipeline.config import get_settings
    from pipeline.store.db import dispose_engines

    for key in list(os.environ):
        if key.startswith("KRX_") and key != "KRX_TEST_PG_URL":
            monkeypatch.delenv(key)
    # mlflow.set_tracking_uri / set_registry_uri (configure_mlflow) also write these to os.environ: a value
    # an earlier test left there must not point this test's processes at that test's store.
    for key in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        monkeypatch.delenv(key, raising=False)
    var = tmp_path / "var"
    monkeypatch.setenv("KRX_VAR_DIR", str(var))
    monkeypatch.chdir(tmp_path)  # a stray .env in the checkout must not leak in
    get_settings.cache_clear()
    yield var
    get_settings.cache_clear()
    dispose_engines()


def _pg_schema_url(schema: str) -> str:
    return f"{PG_BASE_URL}?options=-csearch_path%3D{schema}"


@pytest.fixture
def pg_url() -> Iterator[str]:
    """URL of a fresh, migrated PostgreSQL schema of its own; dropped afterwards."""
    from pipeline.store.db import create_store_engine
    from pipeline.store.migrate import upgrade

    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_BASE_URL)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    url = _pg_schema_url(schema)
    engine = create_store_engine(url)
    upgrade(engine)
    engine.dispose()
    try:
        yield url
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """URL of a fresh, migrated SQLite store in the test's temp folder."""
    from pipeline.store.db import create_store_engine
    from pipeline.store.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'store.db'}"
    engine = create_store_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest) -> str:
    """A migrated store on each backend in turn."""
    return str(request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url"))


@pytest.fixture
def store(store_url: str) -> Iterator[Engine]:
    from pipeline.store.db import create_store_engine

    engine = create_store_engine(store_url)
    yield engine
    engine.dispose()


@pytest.fixture
def make_bars() -> Callable[..., pd.DataFrame]:
    """Factory of valid bar frames (see ``tests.factories.bars_frame``)."""
    from tests.factories import bars_frame

    return bars_frame


@pytest.fixture(scope="session")
def spx_bars() -> pd.DataFrame:
    """S&P 500 daily OHLCV 1999-2018 (real data shipped by ``arch``) as store-shaped bars."""
    from tests.factories import sp500_bars

    return sp500_bars().copy()
