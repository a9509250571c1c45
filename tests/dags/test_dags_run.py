"""`airflow dags test` of the data DAGs against the KIS simulator over HTTP and an SQLite metadata DB."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.dags.conftest import APP_SECRET, airflow_env, kis_env, run_airflow

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def test_ingest_then_validate_and_featurize(airflow_home: Path, simulator: str, tmp_path: Path) -> None:
    var = tmp_path / "var"
    env = airflow_env(airflow_home, var, kis_env(simulator))
    from pipeline.store.db import create_store_engine
    from pipeline.store.migrate import upgrade

    engine = create_store_engine(f"sqlite:///{var / 'market.db'}")
    upgrade(engine)

    ingest = run_airflow(["dags", "test", "ingest_bars", "2025-09-10"], env)
    assert ingest.returncode == 0, (ingest.stdout + ingest.stderr)[-4000:]
    with engine.connect() as conn:
        counts = dict(conn.execute(sa.text("SELECT interval, count(*) FROM bars GROUP BY interval")).all())
        symbols = {s for (s,) in conn.execute(sa.text("SELECT DISTINCT symbol FROM bars"))}
    assert counts["1d"] > 200 and counts["1m"] == 390  # one stock's full 09:00-15:30 session
    assert {"005930", "000660", "KOSPI", "KOSPI200F", "101W09"} <= symbols
    assert APP_SECRET not in ingest.stdout + ingest.stderr

    validate = run_airflow(["dags", "test", "validate_and_featurize", "2025-09-10"], env)
    assert validate.returncode == 0, (validate.stdout + validate.stderr)[-4000:]
    with engine.connect() as conn:
        features = conn.execute(sa.text("SELECT count(*) FROM features")).scalar_one()
    assert features > 0
    assert list((var / "data_docs").rglob("index.html")), "Data Docs were not written"

    again = run_airflow(["dags", "test", "ingest_bars", "2025-09-10"], env)
    assert again.returncode == 0
    with engine.connect() as conn:
        after = dict(conn.execute(sa.text("SELECT interval, count(*) FROM bars GROUP BY interval")).all())
    assert after == counts  # a rerun of the same day duplicates nothing


def test_a_holiday_run_is_skipped(airflow_home: Path, simulator: str, tmp_path: Path) -> None:
    env = airflow_env(airflow_home, tmp_path / "var", {"KRX_KIS_BASE_URL": simulator})
    run = run_airflow(["dags", "test", "ingest_bars", "2025-10-03"], env)  # National Foundation Day
    assert run.returncode == 0, run.stderr[-3000:]
    assert not (tmp_path / "var" / "market.db").exists()  # nothing was fetched or written
