"""The data DAGs under the real scheduler (LocalExecutor on SQLite), not `airflow dags test`: ingest runs
store bars from the simulator and their `bars` asset events start `validate_and_featurize`, which
validates them and stores features — and a `bars` event whose extra is no window (posted through the REST
API, as a hand-made or old-format event would be) is skipped instead of failing validation.

Unpaused, `ingest_bars` (catchup off) also gets a scheduled run for its latest cron time, as in
production: the simulator's clock starts at that time, so that run finds the session's bars too."""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from pipeline.market import KST, krx_sessions
from tests.dags.conftest import ROOT, airflow_env, kis_env, run_airflow, running_simulator

pytestmark = [pytest.mark.slow, pytest.mark.integration]

#: The ingest schedule: 16:40 KST on weekdays.
INGEST_TIME = dt.time(16, 40)
DEADLINE_S = 150
#: The scheduler and its workers ignore SIGTERM for ~55 s: wait this long, then SIGKILL the group.
GRACE_S = 5.0
UNPAUSED = (
    "SELECT dag_id FROM dag WHERE is_paused = 0 AND dag_id IN ('ingest_bars', 'validate_and_featurize')"
)
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _scheduler_env(home: Path, var: Path, base_url: str) -> dict[str, str]:
    api_port = _free_port()
    return airflow_env(
        home,
        var,
        {
            **kis_env(base_url),
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(api_port),
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
            # The api-server's first answers are slow on a busy machine: the default 5 s is too short.
            "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "30",
            # Ports of their own: other Airflows on this machine keep the defaults.
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(_free_port()),
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
            "AIRFLOW__CORE__AUTH_MANAGER": (
                "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
            ),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",  # the REST call below needs no login
        },
    )


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM each component's process group, then SIGKILL whatever is left after ``GRACE_S``."""
    for p in procs:
        with _gone():
            os.killpg(p.pid, signal.SIGTERM)
    deadline = time.monotonic() + GRACE_S
    for p in procs:
        with _gone(subprocess.TimeoutExpired):
            p.wait(timeout=max(deadline - time.monotonic(), 0.1))
    for p in procs:  # children of a component may outlive it in its group
        with _gone():
            os.killpg(p.pid, signal.SIGKILL)
        p.wait(timeout=30)


@contextmanager
def _gone(*more: type[BaseException]) -> Iterator[None]:
    try:
        yield
    except (ProcessLookupError, *more):
        pass


def _start(name: str, env: dict[str, str], logs: Path) -> subprocess.Popen[bytes]:
    with (logs / f"{name}.log").open("wb") as out:
        return subprocess.Popen(
            ["airflow", name], env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True
        )


def _api_healthy(env: dict[str, str]) -> bool:
    try:
        return httpx.get(env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] + "health", timeout=5).is_success
    except httpx.HTTPError:
        return False


@contextmanager
def airflow_running(env: dict[str, str], logs: Path) -> Iterator[None]:
    """api-server, then (once it answers: tasks report to it) scheduler and dag-processor, each in its
    own process group; all stopped on exit."""
    procs = [_start("api-server", env, logs)]
    try:
        deadline = time.monotonic() + 90
        while not _api_healthy(env):
            assert procs[0].poll() is None and time.monotonic() < deadline, (
                logs / "api-server.log"
            ).read_text()[-3000:]
            time.sleep(1)
        procs += [_start(name, env, logs) for name in ("scheduler", "dag-processor")]
        yield
    finally:
        _stop(procs)


def _query(home: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(home / "airflow.db", timeout=10) as conn:
        return conn.execute(sql).fetchall()


def _wait(what: str, done: Callable[[], bool], logs: Path, home: Path) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        if done():
            return
        time.sleep(2)
    pytest.fail(f"timed out waiting for {what}\n{_diagnostics(logs, home)}")


def _diagnostics(logs: Path, home: Path) -> str:
    runs = _query(home, "SELECT dag_id, run_type, state FROM dag_run")
    tasks = _query(home, "SELECT dag_id, task_id, state, try_number FROM task_instance")
    tails = [f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(logs.glob("*.log"))]
    task_logs = sorted((home / "logs").rglob("*.log"), key=lambda p: p.stat().st_mtime)[-3:]
    tails += [f"--- {p}\n{p.read_text(errors='replace')[-3000:]}" for p in task_logs]
    return f"runs: {runs}\ntasks: {tasks}\n" + "\n".join(tails)


def _ingest_settled(home: Path) -> bool:
    """The manual ingest run exists and no ingest run is still queued or running."""
    states = _query(home, "SELECT run_type, state FROM dag_run WHERE dag_id = 'ingest_bars'")
    manual = any(t == "manual" for t, _ in states)
    return manual and all(s in ("success", "failed") for _, s in states)


def _post_bad_event(env: dict[str, str], home: Path) -> None:
    (asset_id,) = _query(home, "SELECT id FROM asset WHERE name = 'bars'")[0]
    url = f"http://127.0.0.1:{env['AIRFLOW__API__PORT']}/api/v2/assets/events"
    posted = httpx.post(url, json={"asset_id": asset_id, "extra": BAD_EXTRA}, timeout=30)
    assert posted.is_success, posted.text


def test_a_triggered_ingest_starts_validation_through_its_asset_events(tmp_path: Path) -> None:
    home, var, logs = tmp_path / "airflow", tmp_path / "var", tmp_path / "logs"
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
        env = _scheduler_env(home, var, base_url)
        for args in (["db", "migrate"], ["pools", "set", "kis_api", "4", "KIS broker calls"]):
            done = run_airflow(args, env)
            assert done.returncode == 0, done.stderr[-3000:]
        with airflow_running(env, logs):
            _wait("both DAGs parsed and unpaused", lambda: len(_query(home, UNPAUSED)) == 2, logs, home)
            _post_bad_event(env, home)
            trigger = run_airflow(["dags", "trigger", "ingest_bars", "-l", logical.isoformat()], env)
            assert trigger.returncode == 0, trigger.stderr[-3000:]
            _wait("the ingest runs", lambda: _ingest_settled(home), logs, home)
            # A `bars` event that lands while a validation run is being created may wait for the next
            # event (Airflow queues one run per DAG at a time): wait for the triggered daily window only.
            _wait("their validation", lambda: len(_query(home, VALIDATED)) == 2, logs, home)
            runs = _query(home, "SELECT dag_id, run_type, state FROM dag_run ORDER BY id")
            summaries = _query(home, "SELECT value FROM xcom WHERE dag_id = 'validate_and_featurize'")
    ingests = [r for r in runs if r[0] == "ingest_bars"]
    assert ("ingest_bars", "manual", "success") in ingests, _diagnostics(logs, home)
    assert all(r[2] == "success" for r in ingests), _diagnostics(logs, home)
    validations = [r for r in runs if r[0] == "validate_and_featurize" and r[2] in ("success", "failed")]
    assert validations and all(r[1:] == ("asset_triggered", "success") for r in validations), runs
    assert any("start is not an ISO date" in str(v) for (v,) in summaries), summaries  # reported, skipped
    with engine.connect() as conn:
        features = conn.execute(sa.text("SELECT count(*) FROM features")).scalar_one()
    engine.dispose()
    assert features > 0
