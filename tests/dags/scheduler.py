"""Airflow's real components for DAG tests: an api-server, a scheduler (LocalExecutor) and a dag-processor
on a temporary AIRFLOW_HOME with SQLite, started and stopped by process group; queries of its metadata DB,
REST calls, and waits with a deadline that print the runs, task states and logs when they time out."""

from __future__ import annotations

import datetime as dt
import os
import secrets
import signal
import socket
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.dags.conftest import ROOT, airflow_env

#: The scheduler and its workers ignore SIGTERM for ~55 s: wait this long, then SIGKILL the group.
GRACE_S = 5.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scheduler_env(home: Path, var: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Settings of an Airflow whose components talk over loopback ports of their own, with a REST API that
    needs no login; ``extra`` (KRX settings, pause-at-creation …) is added last."""
    api_port = free_port()
    return airflow_env(
        home,
        var,
        {
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            # Each test unpauses the DAGs it runs: an unpaused DAG it does not watch would take executor
            # slots (a cron DAG with catchup off starts a run for its latest cron time at once).
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(api_port),
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
            # The api-server's first answers are slow on a busy machine: the default 5 s is too short.
            "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "30",
            # Ports of their own: other Airflows on this machine keep the defaults.
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
            # Parse each DAG file once: re-parsing every 30 s takes CPU from the tasks on a 2-core machine.
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600",
            "AIRFLOW__CORE__AUTH_MANAGER": (
                "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
            ),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",  # REST calls need no login
            # One secret for the api-server that checks task tokens and the scheduler that issues them.
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(16),
            **(extra or {}),
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
    """api-server, scheduler and dag-processor, each in its own process group, started together (no run
    starts before a REST call unpauses a DAG, and tasks only need the api-server then); yields once the
    api-server answers; all stopped on exit."""
    procs = [_start(name, env, logs) for name in ("api-server", "scheduler", "dag-processor")]
    try:
        deadline = time.monotonic() + 120
        while not _api_healthy(env):
            assert procs[0].poll() is None and time.monotonic() < deadline, (
                logs / "api-server.log"
            ).read_text()[-3000:]
            time.sleep(1)
        yield
    finally:
        _stop(procs)


def api(env: dict[str, str], method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """One call of the public REST API (``/api/v2/<path>``); fails the test unless it succeeds."""
    url = f"http://127.0.0.1:{env['AIRFLOW__API__PORT']}/api/v2/{path}"
    answer = httpx.request(method, url, json=body, timeout=30)
    assert answer.is_success, f"{method} {path}: {answer.status_code} {answer.text}"
    return dict(answer.json())


def wait_parsed(logs: Path, home: Path, *dag_ids: str) -> None:
    """Wait until the dag-processor has stored ``dag_ids`` (and their next cron time, if any)."""
    names = ", ".join(f"'{d}'" for d in dag_ids)
    stored = f"SELECT dag_id FROM dag WHERE dag_id IN ({names})"
    wait_for(f"{names} parsed", lambda: len(query(home, stored)) == len(dag_ids), logs, home, 90)


def unpause(env: dict[str, str], *dag_ids: str) -> None:
    """Unpause ``dag_ids`` (as a user does in the UI)."""
    for dag_id in dag_ids:
        api(env, "PATCH", f"dags/{dag_id}", {"is_paused": False})


def skip_missed_cron_run(env: dict[str, str], home: Path, dag_id: str) -> str:
    """Record the run a paused cron DAG (catchup off) would start the moment it is unpaused — the one of
    its latest cron time — as done, so unpausing it starts nothing; returns that run's id. The scheduler
    creates no scheduled run for a logical date that already has a run."""
    (due,) = query(home, f"SELECT next_dagrun FROM dag WHERE dag_id = '{dag_id}'")[0]
    logical = dt.datetime.fromisoformat(due).replace(tzinfo=dt.UTC).isoformat()
    run = api(env, "POST", f"dags/{dag_id}/dagRuns", {"logical_date": logical, "note": "done before"})
    api(env, "PATCH", f"dags/{dag_id}/dagRuns/{run['dag_run_id']}", {"state": "success"})
    return str(run["dag_run_id"])


def create_pool(env: dict[str, str], name: str, slots: int, description: str) -> None:
    api(env, "POST", "pools", {"name": name, "slots": slots, "description": description})


def post_asset_event(env: dict[str, str], home: Path, name: str, extra: dict[str, Any]) -> None:
    """An event of Asset ``name`` posted through the REST API, as a user or another system would."""
    (asset_id,) = query(home, f"SELECT id FROM asset WHERE name = '{name}'")[0]
    api(env, "POST", "assets/events", {"asset_id": asset_id, "extra": extra})


def query(home: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(home / "airflow.db", timeout=10) as conn:
        return conn.execute(sql).fetchall()


def wait_for(what: str, done: Callable[[], bool], logs: Path, home: Path, deadline_s: float = 150) -> None:
    """Poll ``done`` every 2 s until it holds; past ``deadline_s`` fail with :func:`diagnostics`."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if done():
            return
        time.sleep(2)
    pytest.fail(f"timed out waiting for {what}\n{diagnostics(logs, home)}")


def diagnostics(logs: Path, home: Path) -> str:
    """Runs, task instances, the components' log tails and the tails of the failed (else the latest) task
    logs — what a failing scheduler test prints."""
    runs = query(home, "SELECT dag_id, run_id, run_type, state FROM dag_run")
    tasks = query(home, "SELECT dag_id, task_id, map_index, state, try_number, pool FROM task_instance")
    tails = [f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(logs.glob("*.log"))]
    task_logs = sorted((home / "logs").rglob("*.log"), key=lambda p: p.stat().st_mtime)
    failed = [p for p in task_logs if _failed(p)]
    tails += [f"--- {p}\n{p.read_text(errors='replace')[-4000:]}" for p in (failed or task_logs)[-4:]]
    return f"runs: {runs}\ntasks: {tasks}\n" + "\n".join(tails)


def _failed(log: Path) -> bool:
    text = log.read_text(errors="replace")
    return '"level":"error"' in text or "Traceback" in text
