"""Migrations create the whole schema on both backends, are idempotent, and report their status."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pipeline.store.db import create_store_engine
from pipeline.store.migrate import head_revision, status, upgrade
from pipeline.store.schema import metadata

TABLES = {
    "instruments",
    "bars",
    "bars_quarantine",
    "features",
    "regimes",
    "orders",
    "fills",
    "positions",
    "account_snapshots",
    "futures_rolls",
}


def test_schema_names_every_table_the_pipeline_needs() -> None:
    assert set(metadata.tables) == TABLES


def test_upgrade_creates_every_table_and_is_idempotent(store: Engine) -> None:
    assert set(sa.inspect(store).get_table_names()) >= TABLES
    assert upgrade(store) == head_revision()  # second run: nothing to do, no error
    st = status(store)
    assert st.up_to_date
    assert set(st.row_counts) == TABLES
    assert all(v == 0 for v in st.row_counts.values())


def test_status_reports_a_store_that_was_never_migrated(tmp_path) -> None:  # type: ignore[no-untyped-def]
    engine = create_store_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    st = status(engine)
    assert st.current is None and not st.up_to_date
    assert st.row_counts == {}


def test_downgrade_to_base_removes_the_schema(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from alembic import command

    from pipeline.store.migrate import alembic_config

    engine = create_store_engine(f"sqlite:///{tmp_path / 'd.db'}")
    upgrade(engine)
    cfg = alembic_config(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "base")
    assert not TABLES & set(sa.inspect(engine).get_table_names())


@pytest.mark.postgres
def test_postgres_without_timescaledb_gets_brin_indexes_on_ts(pg_url: str) -> None:
    engine = create_store_engine(pg_url)
    with engine.connect() as conn:
        ts_available = conn.exec_driver_sql(
            "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"
        ).first()
        indexes = conn.exec_driver_sql(
            "SELECT tablename, indexdef FROM pg_indexes WHERE schemaname = current_schema()"
        ).all()
    engine.dispose()
    brin = {t for t, d in indexes if "USING brin" in d}
    if ts_available:
        pytest.fail("this test expects a server without timescaledb (the compose stack covers that path)")
    assert brin == {"bars", "features"}
    assert status(create_store_engine(pg_url)).timescale_enabled is False


def test_models_and_migrations_agree(store: Engine) -> None:
    """Autogenerate finds nothing to do: every schema change ships with its migration."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from pipeline.store.schema import include_in_autogenerate

    with store.connect() as conn:
        ctx = MigrationContext.configure(
            conn, opts={"compare_type": True, "include_object": include_in_autogenerate}
        )
        assert compare_metadata(ctx, metadata) == []
