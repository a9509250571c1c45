"""``krx stack up|status|down`` (``make up``): the stack starts as background processes that outlive the
command, Airflow's real scheduler runs an ingest triggered through the REST API (with the printed admin
login) and the validation its asset event starts, a second ``up`` starts no duplicates, a taken port is
refused before anything starts, and ``down`` stops every process and frees every port."""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import sqlalchemy as sa

from pipeline.config import Settings
from pipeline.market import KST, krx_sessions
from pipeline.stack import NAMES, Ports, Stack, free_port, port_answers
from tests.dags.scheduler import diagnostics
from tests.dags.test_dags_scheduler import INGEST_TIME, latest_cron_time

ROOT = Path(__file__).parents[1]
KRX = Path(sys.executable).with_name("krx")
DEADLINE_S = 240
#: A small universe and history, as in the DAG tests.
SMALL = {
    "KRX_INGEST_HISTORY_DAYS": "120",
    "KRX_STOCK_SYMBOLS": "005930,000660",
    "KRX_INTRADAY_SYMBOLS": "005930",
    "KRX_INGEST_MINUTE_SESSIONS": "0",
}


def stack_env(var: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment without Airflow or KRX settings, on ``var``, wide enough for the status table."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "KRX_"))}
    return {**env, "KRX_VAR_DIR": str(var), "COLUMNS": "200", **(extra or {})}


def krx_stack(env: dict[str, str], *args: str, timeout: float = 420) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(KRX), "stack", *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def port_args(ports: Ports) -> list[str]:
    return [
        *("--airflow-port", str(ports.airflow), "--mlflow-port", str(ports.mlflow)),
        *("--serve-port", str(ports.serve), "--sim-port", str(ports.sim)),
    ]


def free_ports() -> Ports:
    return Ports(free_port(), free_port(), free_port(), free_port())


@pytest.mark.integration
def test_a_port_taken_by_another_process_is_named_and_nothing_starts(tmp_path: Path) -> None:
    var, ports = tmp_path / "var", free_ports()
    with socket.socket() as other:
        other.bind(("127.0.0.1", ports.sim))
        other.listen()
        up = krx_stack(stack_env(var), "up", *port_args(ports), timeout=120)
    assert up.returncode == 1
    assert f"port in use by another process: {ports.sim} (simulator)" in up.stdout
    assert not list((var / "stack").glob("*.pid"))
    assert not (var / "airflow" / "airflow.db").exists()


def _gone(record: dict[str, Any]) -> bool:
    """The recorded process no longer runs (exited, reaped or a zombie, or its pid reused)."""
    try:
        proc = psutil.Process(int(record["pid"]))
        return proc.status() == psutil.STATUS_ZOMBIE or proc.create_time() != record["create_time"]
    except psutil.NoSuchProcess:
        return True


def _left_behind(var: Path) -> list[str]:
    """Live processes started with ``KRX_VAR_DIR=var`` (components, their workers, Airflow tasks)."""
    left = []
    for proc in psutil.process_iter(["status", "cmdline"]):
        try:
            if proc.info["status"] != psutil.STATUS_ZOMBIE and proc.environ().get("KRX_VAR_DIR") == str(var):
                left.append(" ".join(proc.info["cmdline"] or []))
        except psutil.Error:
            continue
    return left


def _runs(stack: Stack, dag_id: str) -> list[dict[str, Any]]:
    answer = stack.airflow_api("GET", f"dags/{dag_id}/dagRuns")
    answer.raise_for_status()
    return list(answer.json()["dag_runs"])


def _wait(what: str, stack: Stack, check: Any, deadline: float) -> None:
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}\n{diagnostics(stack.dir, stack.airflow_home)}")
        time.sleep(3)


@pytest.fixture
def stack_up(tmp_path: Path) -> Iterator[tuple[Stack, dict[str, str], subprocess.CompletedProcess[str]]]:
    """``krx stack up`` on free ports with the simulator's clock at the ingest's latest cron time (what
    unpausing ``ingest_bars`` runs first) and only the two data DAGs unpaused; ``krx stack down`` after."""
    var, ports = tmp_path / "var", free_ports()
    scheduled = latest_cron_time(dt.datetime.now(dt.UTC))
    env = stack_env(var, {**SMALL, "KRX_SIM_CLOCK_START": scheduled.isoformat()})
    stack = Stack(Settings(var_dir=var), ports)
    up = krx_stack(env, "up", *port_args(ports), "--unpause", "ingest_bars,validate_and_featurize")
    try:
        yield stack, env, up
    finally:
        krx_stack(env, "down", "--grace", "5", timeout=120)


@pytest.mark.slow
@pytest.mark.integration
def test_up_runs_the_dags_under_the_scheduler_and_down_stops_every_process(
    stack_up: tuple[Stack, dict[str, str], subprocess.CompletedProcess[str]],
) -> None:
    stack, env, up = stack_up
    assert up.returncode == 0, up.stdout + up.stderr
    records = {name: stack.running(name) for name in NAMES}
    assert all(records.values()), (records, up.stdout)  # alive after `up` returned
    creds = stack.credentials(create=False)
    assert creds is not None and f"user {creds.username} password {creds.password}" in up.stdout
    api = f"http://127.0.0.1:{stack.ports.airflow}/api/v2/dags"
    assert httpx.get(api, timeout=30).status_code == 401  # the printed login is what opens it

    again = krx_stack(env, "up", *port_args(stack.ports), "--unpause", "ingest_bars,validate_and_featurize")
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.count("already running") == len(NAMES)
    assert {name: stack.running(name) for name in NAMES} == records

    scheduled = latest_cron_time(dt.datetime.now(dt.UTC))
    session = krx_sessions(scheduled.date() - dt.timedelta(days=15), scheduled.date())[-1].date()
    logical = dt.datetime.combine(session, INGEST_TIME, KST) + dt.timedelta(minutes=1)
    run = stack.airflow_api("POST", "dags/ingest_bars/dagRuns", {"logical_date": logical.isoformat()})
    assert run.is_success, run.text
    run_id = run.json()["dag_run_id"]
    deadline = time.monotonic() + DEADLINE_S

    def ingested() -> bool:
        state = next(r["state"] for r in _runs(stack, "ingest_bars") if r["dag_run_id"] == run_id)
        assert state != "failed", diagnostics(stack.dir, stack.airflow_home)
        return bool(state == "success")

    def validated() -> bool:
        runs = [r for r in _runs(stack, "validate_and_featurize") if r["state"] in ("success", "failed")]
        assert all(r["state"] == "success" for r in runs), diagnostics(stack.dir, stack.airflow_home)
        return any(r["run_type"] == "asset_triggered" for r in runs)

    _wait("the triggered ingest", stack, ingested, deadline)
    _wait("the asset-triggered validation", stack, validated, deadline)
    engine = sa.create_engine(f"sqlite:///{stack.var_dir / 'market.db'}")
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM features")).scalar_one() > 0
    engine.dispose()

    status = krx_stack(env, "status", timeout=120)
    assert status.returncode == 0, status.stdout + status.stderr
    lines = {line.split()[1]: line for line in status.stdout.splitlines() if line.startswith("│")}
    for name, record in records.items():
        assert record is not None and str(record["pid"]) in lines[name] and " yes " in lines[name]
    assert f"http://127.0.0.1:{stack.ports.airflow}" in lines["airflow-api-server"]
    assert f"http://127.0.0.1:{stack.ports.mlflow}" in lines["mlflow-ui"]

    down = krx_stack(env, "down", "--grace", "5", timeout=120)
    assert down.returncode == 0, down.stdout + down.stderr
    assert all(_gone(r) for r in records.values() if r is not None)
    assert not _left_behind(stack.var_dir)  # nor their workers and tasks
    assert not list(stack.dir.glob("*.pid"))
    ports = (stack.ports.airflow, stack.ports.mlflow, stack.ports.serve, stack.ports.sim)
    assert not any(port_answers("127.0.0.1", p) for p in ports)
    assert krx_stack(env, "status", timeout=120).returncode == 1
