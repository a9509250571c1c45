"""Migrations create the whole schema on both backends, are idempotent, and report their status."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pipeline.store import quarantine_bars
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
    "decisions",
    "trading_events",
    "trading_state",
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


def test_the_quarantine_migration_removes_duplicate_copies_and_keys_the_rest(fresh_store_url: str) -> None:
    engine = create_store_engine(fresh_store_url)
    upgrade(engine, revision="0002")
    row = {"symbol": "005930", "interval": "1d", "ts_raw": "2024-01-02", "reason": "close is not positive"}
    raw = {"symbol": "005930", "interval": "1d", "ts": "2024-01-02", "close": "-1"}
    other = {**raw, "close": "-2"}
    insert = sa.text(
        "INSERT INTO bars_quarantine (symbol, interval, ts_raw, raw, reason, source, quarantined_at) "
        "VALUES (:symbol, :interval, :ts_raw, :raw, :reason, :source, CURRENT_TIMESTAMP)"
    )
    with engine.begin() as conn:  # what three retries of one import and one other row left behind
        for payload, source in [(raw, "csv:a.csv")] * 3 + [(other, "csv:a.csv"), (raw, "csv:b.csv")]:
            conn.execute(insert, {**row, "raw": json.dumps(payload), "source": source})
    upgrade(engine)
    with engine.connect() as conn:
        kept = conn.execute(sa.text("SELECT source, row_key FROM bars_quarantine ORDER BY id")).all()
    assert [source for source, _ in kept] == ["csv:a.csv", "csv:a.csv", "csv:b.csv"]
    assert all(key for _, key in kept)
    quarantine_bars(pd.DataFrame([{**raw, "reason": row["reason"]}]), source="csv:a.csv", engine=engine)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM bars_quarantine")).scalar_one() == 3
    engine.dispose()


def _krx_db_upgrade(url: str, var: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "KRX_DATABASE_URL": url, "KRX_VAR_DIR": str(var)}
    exe = Path(sys.executable).with_name("krx")
    return subprocess.Popen(
        [str(exe), "db", "upgrade"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


@pytest.mark.integration
def test_concurrent_upgrades_of_a_fresh_store_all_succeed(fresh_store_url: str, tmp_path: Path) -> None:
    procs = [_krx_db_upgrade(fresh_store_url, tmp_path / "var") for _ in range(3)]
    outcomes = [(p.wait(timeout=120), p.stderr.read() if p.stderr else "") for p in procs]
    assert [rc for rc, _ in outcomes] == [0, 0, 0], [err[-2000:] for _, err in outcomes]
    engine = create_store_engine(fresh_store_url)
    assert status(engine).up_to_date
    engine.dispose()
