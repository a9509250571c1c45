"""The ``eod_report`` DAG: 16:00 KST on weekdays, skipped on holidays, and under ``airflow dags test`` on a
session day a report from the store, with the broker's snapshot when the simulator answers and a warning
when no broker does."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pendulum
import pytest
import sqlalchemy as sa

from tests.dags.conftest import APP_SECRET, airflow_env, kis_env, run_airflow

DAGS = Path(__file__).parents[2] / "dags"
REPORT = Path("reports/trading/2025-09-10/eod-main-2025-09-10.html")


@pytest.fixture(scope="module")
def dag():  # type: ignore[no-untyped-def]
    from airflow.dag_processing.dagbag import BundleDagBag

    bag = BundleDagBag(dag_folder=str(DAGS), bundle_path=DAGS)
    assert not {k: v for k, v in bag.import_errors.items() if "eod_report" in k}
    return bag.dags["eod_report"]


def test_the_dag_imports_with_one_task_never_catching_up_one_run_at_a_time(dag) -> None:  # type: ignore[no-untyped-def]
    assert [t.task_id for t in dag.tasks] == ["report"]
    assert dag.catchup is False and dag.max_active_runs == 1
    assert "trading" in dag.tags and dag.doc_md and "eod_report" in dag.doc_md
    assert all(t.retries >= 2 for t in dag.tasks)


def test_it_runs_at_1600_kst_on_weekdays_only(dag) -> None:  # type: ignore[no-untyped-def]
    from airflow.timetables.base import TimeRestriction
    from airflow.timetables.trigger import CronTriggerTimetable

    from pipeline.market import TZ_NAME

    declared = dag.timetable
    assert str(declared.timezone) == TZ_NAME
    timetable = CronTriggerTimetable(declared.expression, timezone=declared.timezone)  # as the scheduler
    restriction = TimeRestriction(
        earliest=pendulum.datetime(2025, 6, 13, 8, 0, tz="UTC"), latest=None, catchup=True
    )  # Friday 17:00 KST: after that day's run
    info = timetable.next_dagrun_info(last_automated_data_interval=None, restriction=restriction)
    runs = []
    for _ in range(10):
        assert info is not None
        runs.append(info.run_after.in_timezone(TZ_NAME))
        info = timetable.next_dagrun_info(
            last_automated_data_interval=info.data_interval, restriction=restriction
        )
    assert {(r.hour, r.minute) for r in runs} == {(16, 0)}
    assert {r.isoweekday() for r in runs} == {1, 2, 3, 4, 5}  # two whole weeks, no weekend
    assert [r.date() for r in runs][:2] == [pendulum.date(2025, 6, 16), pendulum.date(2025, 6, 17)]


def _seeded_store(var: Path) -> sa.Engine:
    from pipeline.store.db import create_store_engine
    from pipeline.store.migrate import upgrade
    from tests.trading.test_eod import seed_day

    engine = create_store_engine(f"sqlite:///{var / 'market.db'}")
    upgrade(engine)
    seed_day(engine)
    return engine


@pytest.mark.slow
@pytest.mark.integration
def test_a_holiday_run_is_skipped_and_writes_nothing(airflow_home: Path, tmp_path: Path) -> None:
    var = tmp_path / "var"
    _seeded_store(var)
    run = run_airflow(["dags", "test", "eod_report", "2025-10-03"], airflow_env(airflow_home, var))
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-3000:]
    assert "new_state=skipped" in out and "2025-10-03 is not a KRX session" in out
    assert not (var / "reports").exists() and not (var / "mlflow.db").exists()


@pytest.mark.slow
@pytest.mark.integration
def test_without_a_broker_the_session_days_report_comes_from_the_store(
    airflow_home: Path, tmp_path: Path
) -> None:
    var = tmp_path / "var"
    engine = _seeded_store(var)
    env = airflow_env(airflow_home, var, {"KRX_KIS_BASE_URL": "http://127.0.0.1:9"})  # nothing listens
    run = run_airflow(["dags", "test", "eod_report", "2025-09-10"], env)
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    page = (var / REPORT).read_text()
    assert "broker unreachable" in page
    assert "+120,000" in page  # the day's PnL from the stored snapshots: 10,120,000 - 10,000,000
    assert REPORT.with_suffix(".png").name in {p.name for p in (var / REPORT).parent.iterdir()}
    with engine.connect() as conn:
        eod_rows = conn.execute(sa.text("SELECT count(*) FROM account_snapshots WHERE source = 'eod'"))
        assert eod_rows.scalar_one() == 0


@pytest.mark.slow
@pytest.mark.integration
def test_with_the_simulator_the_report_records_the_brokers_equity(
    airflow_home: Path, simulator: str, tmp_path: Path
) -> None:
    from pipeline.config import Settings
    from pipeline.market import KST
    from pipeline.trading.brokers import make_broker

    var = tmp_path / "var"
    engine = _seeded_store(var)
    settings_env = kis_env(simulator)
    run = run_airflow(
        ["dags", "test", "eod_report", "2025-09-10"], airflow_env(airflow_home, var, settings_env)
    )
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-4000:]
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT ts, equity FROM account_snapshots WHERE source = 'eod'")).all()
    settings = Settings(
        var_dir=var,
        kis_base_url=simulator,
        kis_app_key=settings_env["KRX_KIS_APP_KEY"],
        kis_app_secret=settings_env["KRX_KIS_APP_SECRET"],
        kis_account_no=settings_env["KRX_KIS_ACCOUNT_NO"],
    )
    broker = make_broker(settings)
    try:
        equity, clock = broker.account().equity, broker.now()
    finally:
        broker.close()
    assert len(rows) == 1 and rows[0].equity == pytest.approx(equity)
    stamp = pd_ts(rows[0].ts)
    assert stamp.date() == dt.date(2025, 9, 10) and stamp <= clock.astimezone(KST)  # the simulator's clock
    page = (var / REPORT).read_text()
    assert f"{equity:,.0f}" in page and "broker unreachable" not in page
    for secret in (APP_SECRET, settings_env["KRX_KIS_ACCOUNT_NO"]):
        assert secret not in page and secret not in out


def pd_ts(value: object) -> dt.datetime:
    """A stored SQLite timestamp (naive UTC text) as a KST datetime."""
    import pandas as pd

    from pipeline.market import KST

    return pd.Timestamp(value).tz_localize("UTC").tz_convert(KST).to_pydatetime()
