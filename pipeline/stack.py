"""The local stack behind ``make up``: the KIS simulator, the MLflow UI, the model server and Airflow
(api-server, scheduler, dag-processor, triggerer) as background processes on the embedded stores, each
with a pid file and a log under ``<var_dir>/stack``; started idempotently, stopped by process group.

``pipeline`` never imports Airflow or BentoML: both run as subprocesses (``airflow …``, ``krx serve``)."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from pipeline.config import Settings

#: The repository (``dags/``, ``serving/``, ``.env``): children run here.
ROOT = Path(__file__).resolve().parents[1]
#: The SimpleAuthManager user ``up`` creates; its password is generated once and kept in AIRFLOW_HOME.
ADMIN = "admin"
#: The DAGs' pool for broker calls (the DAG tests create the same one).
KIS_POOL = ("kis_api", "4", "KIS broker calls")
#: Seconds a component may take to answer on its port (Airflow's api-server and BentoML are slow to start
#: on a small machine).
START_TIMEOUT_S = 240.0
#: The scheduler and its workers ignore SIGTERM for about a minute: SIGKILL what is left after this.
GRACE_S = 10.0
#: Every component in start order (``status`` shows them so).
NAMES = (
    "simulator",
    "mlflow-ui",
    "model-server",
    "airflow-api-server",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
)
#: Stopped first to last: the scheduler before the services its tasks call.
STOP_ORDER = (
    "airflow-scheduler",
    "airflow-triggerer",
    "airflow-dag-processor",
    "airflow-api-server",
    "model-server",
    "mlflow-ui",
    "simulator",
)


class StackError(RuntimeError):
    """The stack cannot start as asked (a port taken, a component that died); the message says why."""


@dataclass(frozen=True)
class Ports:
    """Loopback ports of the components that answer HTTP."""

    airflow: int = 8080
    mlflow: int = 5000
    serve: int = 3000
    sim: int = 8900


@dataclass(frozen=True)
class Component:
    """One background process: its command, environment, and the port and URL it answers on (if any)."""

    name: str
    command: list[str]
    env: dict[str, str] = field(repr=False)
    port: int | None = None
    url: str | None = None


@dataclass(frozen=True)
class Status:
    """What ``krx stack status`` shows of one component."""

    name: str
    pid: int | None
    alive: bool
    answering: bool | None
    url: str | None
    log: Path


@dataclass(frozen=True)
class Credentials:
    """The Airflow UI login and the file that keeps the password."""

    username: str
    password: str
    file: Path


class Stack:
    """The components of one ``var_dir``: ``up`` starts what is not running, ``down`` stops what is."""

    def __init__(self, settings: Settings, ports: Ports | None = None, host: str = "127.0.0.1") -> None:
        self.settings, self.ports, self.host = settings, ports or Ports(), host
        self.var_dir = settings.var_dir.resolve()
        self.dir = self.var_dir / "stack"
        self.airflow_home = self.var_dir / "airflow"

    # --- state --------------------------------------------------------------------------------
    def pid_file(self, name: str) -> Path:
        return self.dir / f"{name}.pid"

    def log_file(self, name: str) -> Path:
        return self.dir / f"{name}.log"

    def running(self, name: str) -> dict[str, Any] | None:
        """The pid record of ``name`` if that process is still the one started (not a reused pid)."""
        record = _read_json(self.pid_file(name))
        return record if record and _alive(record) else None

    def credentials(self, create: bool = True) -> Credentials | None:
        """The admin login of the Airflow UI (None before the first ``up``); ``create``: generate the
        password on first use, in the file where SimpleAuthManager keeps it (mode 0600)."""
        path = self.airflow_home / "simple_auth_manager_passwords.json.generated"
        passwords = _read_json(path) or {}
        if ADMIN not in passwords:
            if not create:
                return None
            passwords[ADMIN] = secrets.token_urlsafe(12)
            _write_private(path, json.dumps(passwords) + "\n")
        return Credentials(ADMIN, str(passwords[ADMIN]), path)

    # --- components ---------------------------------------------------------------------------
    def components(self, unpause_all: bool = True) -> list[Component]:
        """Every component in start order: the simulator first (the DAGs read from it), Airflow last."""
        base = self._base_env()
        krx = _krx()
        h, p = self.host, self.ports
        services = [
            Component(name, [*krx, *args, "--host", h, "--port", str(port)], base, port, self._url(port))
            for name, args, port in (
                ("simulator", ["sim"], p.sim),
                ("mlflow-ui", ["mlflow", "ui"], p.mlflow),
                ("model-server", ["serve"], p.serve),
            )
        ]
        env = self.airflow_env(unpause_all)
        airflow = [str(Path(sys.executable).with_name("airflow"))]
        api = Component("airflow-api-server", [*airflow, "api-server"], env, p.airflow, self._url(p.airflow))
        rest = [
            Component(f"airflow-{c}", [*airflow, c], env) for c in ("scheduler", "dag-processor", "triggerer")
        ]
        return [*services, api, *rest]

    def _url(self, port: int) -> str:
        return f"http://{self.host}:{port}"

    def _base_env(self) -> dict[str, str]:
        """This process's environment without Airflow settings, on this ``var_dir``, with the DAGs' broker
        the stack's simulator and their model server the stack's."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        bin_dir = str(Path(sys.executable).parent)
        env.update(
            {
                "PATH": f"{bin_dir}:{env.get('PATH', '')}",
                "KRX_VAR_DIR": str(self.var_dir),
                "KRX_KIS_ENV": "sim",
                "KRX_KIS_BASE_URL": self._url(self.ports.sim),
                "KRX_TRADING_MODE": "sim",
                "KRX_SERVING_HOST": self.host,
                "KRX_SERVING_PORT": str(self.ports.serve),
                "MLFLOW_DISABLE_TELEMETRY": env.get("MLFLOW_DISABLE_TELEMETRY", "true"),
                # One MLflow UI worker: the default four take a minute to start on two cores.
                "MLFLOW_WORKERS": env.get("MLFLOW_WORKERS", "1"),
            }
        )
        return env

    def airflow_env(self, unpause_all: bool = True) -> dict[str, str]:
        """Airflow on SQLite under ``<var_dir>/airflow`` with LocalExecutor, a parallelism for small machines
        and SimpleAuthManager; secrets and internal ports are in its ``airflow.cfg`` (see ``prepare``)."""
        api = self._url(self.ports.airflow)
        return {
            **self._base_env(),
            "AIRFLOW_HOME": str(self.airflow_home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": str(max(2, min(4, (os.cpu_count() or 2) // 2))),
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": str(not unpause_all),
            "AIRFLOW__CORE__AUTH_MANAGER": (
                "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
            ),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
            "AIRFLOW__API__HOST": self.host,
            "AIRFLOW__API__PORT": str(self.ports.airflow),
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api}/execution/",
            # The api-server's first answers are slow on a busy machine: the default 5 s is too short.
            "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "30",
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
            # Re-parsing every DAG file every 30 s takes CPU from the tasks on a 2-core machine.
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "120",
        }

    # --- up -----------------------------------------------------------------------------------
    def up(
        self, unpause: Sequence[str] | None = None, say: Callable[[str], None] = lambda _: None
    ) -> list[Component]:
        """Start every component that is not running; wait until each answers on its port; unpause
        ``unpause`` (None: every DAG is created unpaused). Returns the components started now.

        Raises StackError, before starting anything, when a port is taken by another process."""
        wanted = self.components(unpause_all=unpause is None)
        missing = [c for c in wanted if self.running(c.name) is None]
        for c in wanted:
            if c not in missing:
                say(f"{c.name}: already running (pid {self._pid(c.name)})")
        taken = [c for c in missing if c.port is not None and port_answers(self.host, c.port)]
        if taken:
            names = ", ".join(f"{c.port} ({c.name})" for c in taken)
            raise StackError(f"port in use by another process: {names}; free it or choose another port")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.migrate_store(say)
        if any(c.name.startswith("airflow-") for c in missing):
            self.prepare_airflow(say)
        for c in missing:
            self._start(c)
            say(f"{c.name}: started (pid {self._pid(c.name)}), log {self.log_file(c.name)}")
        for c in missing:
            self._wait_ready(c, say)
        if unpause:
            self.unpause(unpause, say)
        return missing

    def migrate_store(self, say: Callable[[str], None]) -> None:
        """Create or migrate the market store the DAGs write (idempotent, serialised with other upgrades)."""
        from pipeline.store.db import create_store_engine
        from pipeline.store.migrate import upgrade

        engine = create_store_engine(self.settings.resolved_database_url)
        try:
            say(f"market store at revision {upgrade(engine)}")
        finally:
            engine.dispose()

    def prepare_airflow(self, say: Callable[[str], None]) -> None:
        """Write ``airflow.cfg`` once (shared secrets, free ports for the log servers), migrate the
        metadata DB, create the ``kis_api`` pool and the admin password."""
        self.airflow_home.mkdir(parents=True, exist_ok=True)
        cfg = self.airflow_home / "airflow.cfg"
        if not cfg.exists():
            _write_private(cfg, _airflow_cfg())
        self.credentials()
        env = self.airflow_env()
        say("airflow: migrating the metadata database")
        for args in (["db", "migrate"], ["pools", "set", *KIS_POOL]):
            log = self.log_file("airflow-setup")
            with log.open("ab") as out:
                code = subprocess.call(
                    [str(Path(sys.executable).with_name("airflow")), *args],
                    env=env,
                    cwd=ROOT,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
            if code != 0:
                raise StackError(f"`airflow {' '.join(args)}` failed ({code}):\n{_tail(log)}")

    def _start(self, c: Component) -> None:
        log = self.log_file(c.name)
        with log.open("ab") as out:
            proc = subprocess.Popen(
                c.command,
                env=c.env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        record = {
            "pid": proc.pid,
            "create_time": psutil.Process(proc.pid).create_time(),
            "port": c.port,
            "url": c.url,
            "log": str(log),
            "command": c.command,
        }
        self.pid_file(c.name).write_text(json.dumps(record) + "\n")

    def _wait_ready(self, c: Component, say: Callable[[str], None]) -> None:
        """Wait until ``c`` answers on its port (components without one: that they did not die)."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self.running(c.name) is None:
                raise StackError(
                    f"{c.name} exited during start-up; log {self.log_file(c.name)}:\n"
                    f"{_tail(self.log_file(c.name))}"
                )
            if c.port is None or port_answers(self.host, c.port):
                break
            if time.monotonic() > deadline:
                raise StackError(
                    f"{c.name} does not answer on port {c.port} after {START_TIMEOUT_S:.0f} s; "
                    f"log {self.log_file(c.name)}"
                )
            time.sleep(0.5)
        if c.url:
            say(f"{c.name}: ready at {c.url}")

    # --- Airflow REST -------------------------------------------------------------------------
    def airflow_api(
        self, method: str, path: str, body: dict[str, Any] | None = None, patience_s: float = 60
    ) -> httpx.Response:
        """One call of Airflow's public REST API (``/api/v2/<path>``) as the admin user.

        The API server shares its SQLite metadata database with the scheduler and answers 500 while
        the file is locked, so a 5xx is asked again for up to ``patience_s``; the last answer is
        returned whatever it is."""
        creds = self.credentials(create=False)
        if creds is None:
            raise StackError(f"no Airflow admin password under {self.airflow_home}: run `krx stack up`")
        base = self._url(self.ports.airflow)
        login = {"username": creds.username, "password": creds.password}
        deadline = time.monotonic() + patience_s
        while True:
            token = httpx.post(f"{base}/auth/token", json=login, timeout=30)
            if token.is_success:
                headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
                answer = httpx.request(
                    method, f"{base}/api/v2/{path}", json=body, headers=headers, timeout=30
                )
                if not answer.is_server_error:
                    return answer
            elif not token.is_server_error:
                token.raise_for_status()
            if time.monotonic() > deadline:
                return answer if token.is_success else token
            time.sleep(2)

    def unpause(self, dag_ids: Iterable[str], say: Callable[[str], None], timeout_s: float = 180) -> None:
        """Unpause ``dag_ids`` once the dag-processor has stored them (as a user does in the UI)."""
        deadline = time.monotonic() + timeout_s
        for dag_id in dag_ids:
            while (
                answer := self.airflow_api("PATCH", f"dags/{dag_id}", {"is_paused": False})
            ).status_code == 404:
                if time.monotonic() > deadline:
                    raise StackError(
                        f"DAG {dag_id!r} was not parsed within {timeout_s:.0f} s; "
                        f"log {self.log_file('airflow-dag-processor')}"
                    )
                time.sleep(2)
            if answer.is_server_error:
                raise StackError(
                    f"unpausing {dag_id!r}: Airflow answered {answer.status_code}; "
                    f"log {self.log_file('airflow-api-server')}"
                )
            answer.raise_for_status()
            say(f"airflow: {dag_id} unpaused")

    # --- status and down ----------------------------------------------------------------------
    def status(self) -> list[Status]:
        """Each component: pid, alive, port answering, URL and log, from its pid file."""
        out = []
        for name in NAMES:
            record = _read_json(self.pid_file(name)) or {}
            alive = bool(record) and _alive(record)
            port = record.get("port")
            answering = port_answers(self.host, int(port)) if alive and port else None
            pid = int(record["pid"]) if record else None
            out.append(Status(name, pid, alive, answering, record.get("url"), self.log_file(name)))
        return out

    def down(self, grace_s: float = GRACE_S, say: Callable[[str], None] = lambda _: None) -> list[str]:
        """SIGTERM each running component's process group and descendants, SIGKILL what is left after
        ``grace_s``; remove the pid files. Returns the names stopped."""
        victims: dict[str, tuple[int, list[psutil.Process]]] = {}
        for name in STOP_ORDER:
            record = self.running(name)
            if record is not None:
                pid = int(record["pid"])
                victims[name] = (pid, _family(pid))
                _signal_group(pid, victims[name][1], signal.SIGTERM)
            self.pid_file(name).unlink(missing_ok=True)
        procs = [p for _, family in victims.values() for p in family]
        _gone, left = psutil.wait_procs(procs, timeout=grace_s)
        for pid, family in victims.values():
            _signal_group(pid, [p for p in family if p in left], signal.SIGKILL)
        psutil.wait_procs(left, timeout=30)
        for name in victims:
            say(f"{name}: stopped")
        return list(victims)

    def _pid(self, name: str) -> int | None:
        record = _read_json(self.pid_file(name))
        return int(record["pid"]) if record else None


def port_answers(host: str, port: int) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _krx() -> list[str]:
    krx = Path(sys.executable).with_name("krx")
    return [str(krx)] if krx.exists() else [sys.executable, "-m", "pipeline.cli"]


def _airflow_cfg() -> str:
    """Settings every component must share (task tokens signed by the scheduler are checked by the
    api-server) and the log servers' ports, chosen free once so that another Airflow keeps 8793/8794."""
    fernet = base64.urlsafe_b64encode(os.urandom(32)).decode()
    return (
        "# Written by `krx stack up`; the other settings are AIRFLOW__* variables (pipeline/stack.py).\n"
        f"[core]\nfernet_key = {fernet}\n"
        f"[api]\nsecret_key = {secrets.token_urlsafe(24)}\n"
        f"[api_auth]\njwt_secret = {secrets.token_urlsafe(64)}\n"  # >= 64 bytes for HS512
        f"[logging]\nworker_log_server_port = {free_port()}\ntrigger_log_server_port = {free_port()}\n"
    )


def _alive(record: dict[str, Any]) -> bool:
    """The recorded process still runs (same pid and start time: not a reused pid, not a zombie)."""
    try:
        proc = psutil.Process(int(record["pid"]))
        return abs(proc.create_time() - float(record["create_time"])) < 0.5 and (
            proc.status() != psutil.STATUS_ZOMBIE
        )
    except (psutil.Error, KeyError, ValueError):
        return False


def _family(pid: int) -> list[psutil.Process]:
    """The process and its descendants (LocalExecutor workers, BentoML workers, uvicorn)."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def _signal_group(pgid: int, procs: list[psutil.Process], sig: signal.Signals) -> None:
    """``sig`` to the process group ``pgid`` (each component leads its own) and to ``procs`` that left it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.send_signal(sig)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` readable by this user only (passwords, secrets)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def _tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""
