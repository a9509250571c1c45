"""The data DAGs under the real scheduler (LocalExecutor on SQLite), not `airflow dags test`: ingest runs
store bars from the simulator and their `bars` asset events start `validate_and_featurize`, which
validates them and stores features — and a `bars` event whose extra is no window (posted through the REST
API, as a hand-made or old-format event would be) is skipped instead of failing validation.

Unpaused, `ingest_bars` (catchup off) also gets a scheduled run for its latest cron time, as in
production: the simulator's clock starts at that time, so that run finds the session's bars too."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import sqlalchemy as sa

from pipeline.market import KST, krx_sessions
from tests.dags.conftest import kis_env, running_simulator
from tests.dags.scheduler import (
    airflow_running,
    api,
    create_pool,
    diagnostics,
    post_asset_event,
    query,
    scheduler_env,
    unpause,
    wait_for,
    wait_parsed,
)

pytestmark = [pytest.mark.slow, pytest.mark.integration]

#: The ingest schedule: 16:40 KST on weekdays.
INGEST_TIME = dt.time(16, 40)
DEADLINE_S = 150
DAGS = ("ingest_bars", "validate_and_featurize")
#: The extra of a `bars` event that is not a window (what sank every validation run before).
BAD_EXTRA = {"start": "NaT", "end": "NaT"}
#: Finished validate_and_featurize runs that consumed the manual run's daily `bars` event or the bad one.
VALIDATED = """
SELECT DISTINCT CASE WHEN e.source_run_id LIKE 'manual%' THEN 'manual' ELSE 'bad' END
FROM dagrun_asset_event d
JOIN asset_event e ON e.id = d.event_id
JOIN dag_run r ON r.id = d.dag_run_id
WHERE r.dag_id = 'validate_and_featurize' AND r.state IN ('success', 'failed')
  AND ((e.source_run_id LIKE 'manual%' AND e.source_task_id = 'daily_bars') OR e.extra LIKE '%NaT%')
"""


def latest_cron_time(now: dt.datetime) -> dt.datetime:
    """The ingest schedule's latest fire time at or before ``now`` (what an unpaused DAG runs first)."""
    local = now.astimezone(KST)
    fire = dt.datetime.combine(local.date(), INGEST_TIME, KST)
    fire -= dt.timedelta(days=1) if fire > local else dt.timedelta(0)
    while fire.weekday() >= 5:
        fire -= dt.timedelta(days=1)
    return fire


def _ingest_settled(home: Path) -> bool:
    """The manual ingest run exists and no ingest run is still queued or running."""
    states = query(home, "SELECT run_type, state FROM dag_run WHERE dag_id = 'ingest_bars'")
    manual = any(t == "manual" for t, _ in states)
    return manual and all(s in ("success", "failed") for _, s in states)


def test_a_triggered_ingest_starts_validation_through_its_asset_events(
    fresh_airflow_home: Path, tmp_path: Path
) -> None:
    home, var, logs = fresh_airflow_home, tmp_path / "var", tmp_path / "logs"
    logs.mkdir()
    scheduled = latest_cron_time(dt.datetime.now(dt.UTC))
    session = krx_sessions(scheduled.date() - dt.timedelta(days=15), scheduled.date())[-1].date()
    # One minute after the scheduled time: a run of its own even when the session is the scheduled one.
    logical = dt.datetime.combine(session, INGEST_TIME, KST) + dt.timedelta(minutes=1)
    from pipeline.store.db import create_store_engine
    from pipeline.store.migrate import upgrade

    engine = create_store_engine(f"sqlite:///{var / 'market.db'}")
    upgrade(engine)
    with running_simulator(tmp_path / "sim.db", scheduled) as base_url:
        env = scheduler_env(home, var, kis_env(base_url))
        with airflow_running(env, logs):
            # The lifecycle DAGs stay paused: their runs would compete for the executor's two slots.
            wait_parsed(logs, home, *DAGS)
            create_pool(env, "kis_api", 4, "KIS broker calls")
            unpause(env, *DAGS)
            post_asset_event(env, home, "bars", BAD_EXTRA)
            api(env, "POST", "dags/ingest_bars/dagRuns", {"logical_date": logical.isoformat()})
            wait_for("the ingest runs", lambda: _ingest_settled(home), logs, home, DEADLINE_S)
            # A `bars` event that lands while a validation run is being created may wait for the next
            # event (Airflow queues one run per DAG at a time): wait for the triggered daily window only.
            wait_for("their validation", lambda: len(query(home, VALIDATED)) == 2, logs, home, DEADLINE_S)
            runs = query(home, "SELECT dag_id, run_type, state FROM dag_run ORDER BY id")
            summaries = query(home, "SELECT value FROM xcom WHERE dag_id = 'validate_and_featurize'")
    ingests = [r for r in runs if r[0] == "ingest_bars"]
    assert ("ingest_bars", "manual", "success") in ingests, diagnostics(logs, home)
    assert all(r[2] == "success" for r in ingests), diagnostics(logs, home)
    validations = [r for r in runs if r[0] == "validate_and_featurize" and r[2] in ("success", "failed")]
    assert validations and all(r[1:] == ("asset_triggered", "success") for r in validations), runs
    assert any("start is not an ISO date" in str(v) for (v,) in summaries), summaries  # reported, skipped
    with engine.connect() as conn:
        features = conn.execute(sa.text("SELECT count(*) FROM features")).scalar_one()
    engine.dispose()
    assert features > 0
