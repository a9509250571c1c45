"""``krx demo``: the whole chain, offline, on embedded defaults.

The KIS simulator (in this process, on a loopback port), then the real DAGs run with ``airflow dags test``
(subprocesses: ``pipeline`` never imports Airflow) on an embedded SQLite metadata database under
``<KRX_VAR_DIR>/airflow``, in order: ``ingest_bars`` → ``validate_and_featurize`` → ``cluster_regimes`` →
``train_agent`` (and its gate) → the BentoML model server (``krx serve``) → ``trade`` over one
accelerated simulated session → ``eod_report``; then one summary read back from the stores (market store,
MLflow, the simulator's ledger, the Airflow XComs).

Trading a session is 420 one-minute runs of the ``trade`` DAG. An ``airflow dags test`` costs ~10 s of
start-up, so the first and the last minute run through Airflow and the minutes between call
:func:`pipeline.trading.engine.run_trading` in this process — the code the DAG's task calls, with the
same settings (the DAG's switch Variable is Airflow's alone; the kill switch in the store is honoured by
the engine either way). The simulator's clock is set to each minute in turn (0.5 s past it, slowed down
so that an Airflow start-up does not carry an order past the fill-at-the-open grace).

Everything a run makes is kept and reused by the next one: the migrated databases, the bars (upserts), the
registered models (a version is trained only while the spec has no champion, or with ``retrain``), the
simulator's ledger (the next run trades the next session).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import sqlalchemy as sa
from rich.console import Console
from rich.table import Table

from pipeline.config import Settings, get_settings, mask_url
from pipeline.market import KST, InstrumentKind, krx_sessions

log = logging.getLogger(__name__)

T = TypeVar("T")

#: The repository (the DAGs folder sits beside the installed ``pipeline`` package).
ROOT = Path(__file__).resolve().parents[1]
#: Daily ingest runs at 16:40 KST, after the futures close (15:45).
INGEST_TIME = dt.time(16, 40)
#: The end-of-day report runs at 16:00 KST.
EOD_TIME = dt.time(16, 0)
#: Simulated seconds per real second while a session is traded: an ``airflow dags test`` start-up (~10 s)
#: moves the simulator's clock ~1 s, inside the 5 s in which a market order fills at the minute's open.
TRADE_CLOCK_SPEED = 0.1
#: Folds of the demo's minute spec: validate and test on two sessions each, train on at least six.
MINUTE_FOLDS = {"n_folds": 1, "val_size": 840, "test_size": 840, "embargo": 30, "min_train_size": 2520}
#: Folds of the daily futures spec (regimes only) that fit a year and a half of daily bars.
DAILY_FOLDS = {"n_folds": 1, "val_size": 60, "test_size": 60, "embargo": 5, "min_train_size": 120}
#: Recorded on the version when no trained version passed the gate and the demo promotes one anyway.
FORCED_REASON = (
    "krx demo: no version passed the promotion gate within the demo's training budget; promoted only so "
    "that the demo can serve and trade it (simulator, never a real account)"
)


class DemoFailed(RuntimeError):
    """A stage of the demo failed; ``stage`` names it, the message says why (and where the log is)."""

    def __init__(self, stage: str, detail: str) -> None:
        super().__init__(f"{stage}: {detail}")
        self.stage = stage
        self.detail = detail


@dataclass(frozen=True)
class DemoBudget:
    """How much the demo ingests, trains and trades."""

    history_days: int = 1100
    """Calendar days of daily bars (~3 years)."""
    minute_sessions: int = 20
    """Past sessions of 1-minute bars backfilled for the intraday model."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """Agent seeds of the training (one trial each)."""
    train_seconds: float = 40.0
    """Training wall-clock seconds per seed."""
    session_minutes: int | None = None
    """Minutes of the session traded, up to the close (None: the whole session)."""
    spec: str = "kospi200f-1m"
    """The model spec trained, served and traded."""
    retrain: bool = False
    """Train a new version even when the spec already has a champion."""


#: ``krx demo --quick``: the smallest budgets that still run every stage (the end-to-end test's).
QUICK_BUDGET = DemoBudget(
    history_days=400, minute_sessions=12, seeds=(0, 1, 2), train_seconds=4.0, session_minutes=60
)


def last_closed_session(now: dt.datetime) -> dt.date:
    """The newest KRX session whose data is complete at ``now`` (its ingest time has passed)."""
    local = now.astimezone(KST)
    sessions = krx_sessions(local.date() - dt.timedelta(days=15), local.date())
    days = [d.date() for d in sessions]
    if days and days[-1] == local.date() and local.time() < INGEST_TIME:
        days.pop()
    return days[-1]


def next_session(day: dt.date) -> dt.date:
    """The first KRX session after ``day``."""
    return next(d.date() for d in krx_sessions(day + dt.timedelta(days=1), day + dt.timedelta(days=20)))


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def chatter_to_file(path: Path) -> Iterator[Path]:
    """Send every library's logging (and Python warnings) to ``path`` only, for the duration: the console
    keeps the demo's own lines. Restores the handlers afterwards."""
    path.parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    saved = [(h, h.level) for h in root.handlers]
    level = root.level
    for handler in root.handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
            handler.setLevel(logging.CRITICAL + 1)
    file_handler = logging.FileHandler(path, encoding="utf-8")
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(file_handler)
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            yield path
    finally:
        logging.captureWarnings(False)
        root.removeHandler(file_handler)
        file_handler.close()
        for handler, lvl in saved:
            handler.setLevel(lvl)
        root.setLevel(level)


@contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """Set ``values`` in ``os.environ`` (and re-read the settings) for the duration."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    get_settings.cache_clear()
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        get_settings.cache_clear()


@dataclass
class Demo:
    """One run of the chain: its settings, where things go, and what each stage returned."""

    console: Console
    settings: Settings
    budget: DemoBudget
    seed: int | None = None
    results: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    sim_url: str = ""
    server_url: str = ""

    # --- places --------------------------------------------------------------------------------------
    @property
    def var(self) -> Path:
        return self.settings.var_dir.resolve()

    @property
    def airflow_home(self) -> Path:
        return self.var / "airflow"

    @property
    def log_path(self) -> Path:
        return self.var / "logs" / "demo.log"

    @property
    def serve_log(self) -> Path:
        return self.var / "logs" / "demo-serve.log"

    # --- stage bookkeeping ---------------------------------------------------------------------------
    def stage(self, number: int, total: int, name: str, what: str, fn: Callable[[], T]) -> T:
        """Run one stage: a progress line with its wall time; any failure becomes :class:`DemoFailed`."""
        started = time.perf_counter()
        self.console.print(f"[bold][{number}/{total}][/] {name}: {what} …", highlight=False)
        try:
            out = fn()
        except DemoFailed:
            raise
        except Exception as exc:  # every failure is reported with the stage's name
            log.exception("demo stage %s failed", name)
            raise DemoFailed(name, f"{type(exc).__name__}: {exc}") from exc
        took = time.perf_counter() - started
        self.timings[name] = took
        note = self.results.get(f"{name}:note", "")
        self.console.print(f"      [green]ok[/] {took:.0f} s{'  ' + note if note else ''}", highlight=False)
        return out

    # --- Airflow -------------------------------------------------------------------------------------
    def airflow_env(self) -> dict[str, str]:
        bin_dir = str(Path(sys.executable).parent)
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
        env.update(
            {
                "AIRFLOW_HOME": str(self.airflow_home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__PARALLELISM": "2",
                "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
                "MLFLOW_DISABLE_TELEMETRY": "true",
                "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
                **self.env,
            }
        )
        return env

    def airflow(self, name: str, *args: str, timeout: float = 900) -> None:
        """``airflow <args>`` with its output appended to the demo log; fails naming ``name``."""
        command = [str(Path(sys.executable).with_name("airflow")), *args]
        with self.log_path.open("a", encoding="utf-8") as out:
            out.write(f"\n===== {' '.join(command)}\n")
            out.flush()
            try:
                rc = subprocess.run(
                    command,
                    env=self.airflow_env(),
                    cwd=ROOT,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    timeout=timeout,
                    check=False,
                ).returncode
            except subprocess.TimeoutExpired as exc:
                raise DemoFailed(
                    name, f"`airflow {args[0]} …` ran past {timeout:.0f} s; see {self.log_path}"
                ) from exc
        if rc != 0:
            raise DemoFailed(name, f"`airflow {' '.join(args[:3])}` exited {rc}; see {self.log_path}")

    def dags_test(self, dag_id: str, when: str, conf: Mapping[str, Any] | None = None, **kw: Any) -> int:
        """``airflow dags test`` of ``dag_id``; returns the id of the run it made (to read its XComs)."""
        args = ["dags", "test", dag_id, when]
        if conf is not None:
            args += ["-c", json.dumps(conf)]
        self.airflow(dag_id, *args, **kw)
        with self._airflow_db() as conn:
            run = conn.execute(
                sa.text("SELECT id, state FROM dag_run WHERE dag_id = :d ORDER BY id DESC LIMIT 1"),
                {"d": dag_id},
            ).one()
        if run.state != "success":
            raise DemoFailed(dag_id, f"the run ended {run.state}; see {self.log_path}")
        return int(run.id)

    @contextmanager
    def _airflow_db(self) -> Iterator[sa.Connection]:
        engine = sa.create_engine(f"sqlite:///{self.airflow_home / 'airflow.db'}")
        try:
            with engine.connect() as conn:
                yield conn
        finally:
            engine.dispose()

    def xcom(self, run_id: int, task_id: str) -> list[Any]:
        """The return values of ``task_id`` in the Airflow run ``run_id`` (one per mapped instance)."""
        with self._airflow_db() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT value FROM xcom WHERE dag_run_id = :r AND task_id = :t AND key = 'return_value' "
                    "ORDER BY map_index"
                ),
                {"r": run_id, "t": task_id},
            ).all()
        return [json.loads(r.value) if isinstance(r.value, str) else r.value for r in rows]

    def task_states(self, run_id: int) -> dict[str, str]:
        with self._airflow_db() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT ti.task_id, ti.state FROM task_instance ti JOIN dag_run r "
                    "ON r.dag_id = ti.dag_id AND r.run_id = ti.run_id WHERE r.id = :r"
                ),
                {"r": run_id},
            ).all()
        return {r.task_id: str(r.state) for r in rows}


# --- the stages ------------------------------------------------------------------------------------------
def _prepare(demo: Demo) -> None:
    """The market store migrated; the Airflow metadata DB migrated once (a stamp marks it) with its pools."""
    from pipeline.store import get_engine
    from pipeline.store.migrate import upgrade

    demo.results["store_revision"] = upgrade(get_engine(demo.settings.resolved_database_url))
    demo.airflow_home.mkdir(parents=True, exist_ok=True)
    stamp = demo.airflow_home / ".krx-demo-migrated"
    if stamp.is_file() and (demo.airflow_home / "airflow.db").is_file():
        demo.results["prepare:note"] = f"reusing {demo.airflow_home / 'airflow.db'}"
        return
    demo.airflow("airflow db migrate", "db", "migrate")
    demo.airflow("airflow pools", "pools", "set", "kis_api", "4", "KIS broker calls")
    demo.airflow("airflow pools", "pools", "set", "train_slots", "2", "A3C training seeds")
    stamp.write_text("migrated by krx demo\n")
    demo.results["prepare:note"] = f"migrated {demo.airflow_home / 'airflow.db'}"


def _ingest(demo: Demo, day: dt.date) -> None:
    run = demo.dags_test("ingest_bars", day.isoformat())
    daily, minutes = demo.xcom(run, "daily_bars"), demo.xcom(run, "minute_bars")
    if not daily or not minutes:
        raise DemoFailed("ingest_bars", f"no summary from its tasks (states {demo.task_states(run)})")
    demo.results["ingest"] = {"daily": daily[0], "minutes": minutes[0]}
    d, m = daily[0], minutes[0]
    demo.results["ingest_bars:note"] = (
        f"{d['fetched']:,} daily + {m['fetched']:,} 1-minute bars fetched, "
        f"{d['quarantined'] + m['quarantined']:,} quarantined"
    )


def _validate(demo: Demo, day: dt.date) -> None:
    # `airflow dags test` cannot carry the ingest's asset events: its windows go in the run's conf.
    ingest = demo.results.get("ingest") or {}
    windows = [s["window"] for s in (ingest.get("daily"), ingest.get("minutes")) if s and s.get("window")]
    run = demo.dags_test("validate_and_featurize", day.isoformat(), {"windows": windows} if windows else None)
    (summary,) = demo.xcom(run, "validate_then_featurize")
    demo.results["quality"] = summary
    rows = sum(w["rows_in"] for w in summary["windows"])
    bad = sum(w["quarantined"] for w in summary["windows"])
    demo.results["validate_and_featurize:note"] = f"{rows:,} rows checked, {bad:,} quarantined"


def _regimes(demo: Demo, day: dt.date) -> None:
    specs = [demo.budget.spec, "kospi200f-1d"] if demo.budget.spec != "kospi200f-1d" else [demo.budget.spec]
    run = demo.dags_test("cluster_regimes", day.isoformat(), {"specs": specs})
    fitted = [s for s in demo.xcom(run, "fit_regimes") if s]
    demo.results["regimes"] = fitted
    if not any(s["spec"] == demo.budget.spec and s["status"] == "fitted" for s in fitted):
        raise DemoFailed("cluster_regimes", f"no regimes fitted for {demo.budget.spec}; see {demo.log_path}")
    demo.results["cluster_regimes:note"] = ", ".join(f"{s['spec']}: {s['k']} regimes" for s in fitted)


def _client(demo: Demo) -> Any:
    from pipeline.registry.tracking import configure_mlflow

    return configure_mlflow(demo.settings)


def _model_name(demo: Demo) -> str:
    from pipeline.registry.specs import MODEL_PREFIX

    return f"{MODEL_PREFIX}{demo.budget.spec}"


def _champion(client: Any, name: str) -> str | None:
    from pipeline.registry.promotion import alias_version

    with suppress(Exception):  # no registered model yet
        return alias_version(client, name, "champion")
    return None


def _train(demo: Demo, day: dt.date) -> None:
    client = _client(demo)
    name = _model_name(demo)
    champion = _champion(client, name)
    if champion is not None and not demo.budget.retrain:
        demo.results["training"] = {"reused": True, "version": champion}
        demo.results["train_agent:note"] = f"reusing {name} v{champion} (the champion; --retrain trains anew)"
        return
    b = demo.budget
    conf = {
        "specs": [b.spec],
        "seeds": list(b.seeds),
        "max_seconds": b.train_seconds,
        "total_steps": 10_000_000,  # the wall-clock budget decides
        "mode": "sync",
        "n_workers": 2,
    }
    run = demo.dags_test("train_agent", day.isoformat(), conf, timeout=1800)
    (gated,) = demo.xcom(run, "gate")
    (report,) = demo.xcom(run, "report")
    demo.results["training"] = {
        "reused": False,
        "gate": gated,
        "report": report,
        "version": report["version"],
    }
    demo.results["train_agent:note"] = f"{name} v{report['version']}: {gated['summary']}"


def _promote(demo: Demo) -> None:
    """The gate decided; without a champion the newest version is promoted with a recorded override."""
    from pipeline.registry.promotion import promote

    client = _client(demo)
    name = _model_name(demo)
    champion = _champion(client, name)
    if champion is not None:
        mv = client.get_model_version(name, champion)
        forced = mv.tags.get("promotion.forced") == "true"
        demo.results["promotion"] = {
            "version": champion,
            "forced": forced,
            "reason": mv.tags.get("promotion.reason"),
        }
        how = "forced earlier: " + str(mv.tags.get("promotion.reason")) if forced else "passed the gate"
        demo.results["gate:note"] = f"champion {name} v{champion} ({how})"
        return
    version = str(demo.results["training"]["version"])
    promote(client, name, version, force=True, reason=FORCED_REASON, user="krx demo")
    demo.results["promotion"] = {"version": version, "forced": True, "reason": FORCED_REASON}
    demo.results["gate:note"] = (
        f"[yellow]no version passed the gate: v{version} promoted with a recorded override[/] "
        f"(tags promotion.forced=true, promotion.reason on the version)"
    )


def _serve(demo: Demo, stack: list[Callable[[], None]]) -> None:
    port = free_port()
    demo.server_url = f"http://127.0.0.1:{port}"
    krx = Path(sys.executable).with_name("krx")
    env = {**demo.airflow_env(), "BENTOML_HOME": str(demo.var / "bentoml"), "BENTOML_DO_NOT_TRACK": "true"}
    with demo.serve_log.open("wb") as out:
        process = subprocess.Popen(
            [str(krx), "serve", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def stop() -> None:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)

    stack.append(stop)
    deadline = time.monotonic() + 240
    while True:
        if process.poll() is not None:
            raise DemoFailed("serve", f"krx serve exited {process.returncode}; see {demo.serve_log}")
        with suppress(httpx.TransportError):
            if httpx.get(f"{demo.server_url}/readyz", timeout=5).status_code == 200:
                break
        if time.monotonic() > deadline:
            raise DemoFailed("serve", f"/readyz not ready after 240 s; see {demo.serve_log}")
        time.sleep(0.5)
    demo.results["serve:note"] = f"{demo.server_url} ready (log {demo.serve_log})"


def _trade_day(demo: Demo, ingested: dt.date) -> dt.date:
    """The session to trade: the one after the ingested day, or after the newest one already traded."""
    from pipeline.store import get_engine
    from pipeline.store.schema import decisions

    with get_engine(demo.settings.resolved_database_url).connect() as conn:
        last = conn.execute(
            sa.select(sa.func.max(decisions.c.bar_ts)).where(
                decisions.c.account == demo.settings.trading_account
            )
        ).scalar()
    after = ingested
    if last is not None:
        traded = (last if last.tzinfo else last.replace(tzinfo=dt.UTC)).astimezone(KST).date()
        after = max(after, traded)
    return next_session(after)


def _set_clock(demo: Demo, when: dt.datetime, speed: float = TRADE_CLOCK_SPEED) -> None:
    httpx.post(
        f"{demo.sim_url}/sim/admin/clock", json={"now": when.isoformat(), "speed": speed}, timeout=10
    ).raise_for_status()


def _trade(demo: Demo, day: dt.date) -> None:
    from pipeline.config import Settings
    from pipeline.registry.specs import resolve_spec
    from pipeline.trading import clock
    from pipeline.trading.brokers import make_broker
    from pipeline.trading.decider import HttpDecider
    from pipeline.trading.engine import run_trading, store_engine

    settings = Settings()  # the demo's environment: the simulator, the model server, mode sim
    spec = resolve_spec(demo.budget.spec, settings)
    bounds = clock.session_bounds(day, InstrumentKind(spec.kind))
    if bounds is None:
        raise DemoFailed("trade", f"{day} is not a session of {spec.kind}")
    open_, close = bounds
    minutes = [open_ + dt.timedelta(minutes=i) for i in range(int((close - open_).total_seconds() // 60))]
    if demo.budget.session_minutes is not None:
        minutes = minutes[-demo.budget.session_minutes :]
    via_airflow = {minutes[0], minutes[-1]}
    outcomes: dict[str, int] = {}
    broker, decider = make_broker(settings), HttpDecider(settings)
    engine = store_engine(settings)
    try:
        for i, minute in enumerate(minutes):
            _set_clock(demo, minute + dt.timedelta(seconds=0.5))
            if minute in via_airflow:
                run = demo.dags_test("trade", minute.isoformat(), timeout=300)
                for summary in demo.xcom(run, "trade"):
                    for d in summary.get("decisions", []):
                        outcomes[d["outcome"]] = outcomes.get(d["outcome"], 0) + 1
            else:
                result = run_trading(settings, broker=broker, decider=decider, engine=engine)
                for d in result.decisions:
                    outcomes[d.outcome] = outcomes.get(d.outcome, 0) + 1
            if i % 60 == 0 or i == len(minutes) - 1:
                log.info("demo trade: minute %s done (%d/%d)", minute, i + 1, len(minutes))
        # After the close: the last orders' fills are tracked by one more read of the broker.
        _set_clock(demo, close + dt.timedelta(minutes=1), speed=1.0)
    finally:
        broker.close()
        decider.close()
    demo.results["trade"] = {
        "day": day.isoformat(),
        "minutes": len(minutes),
        "first": minutes[0].isoformat(),
        "last": minutes[-1].isoformat(),
        "via_airflow": len(via_airflow),
        "outcomes": outcomes,
    }
    demo.results["trade:note"] = (
        f"{day}: {len(minutes)} minutes {minutes[0]:%H:%M}-{minutes[-1]:%H:%M} "
        f"({len(via_airflow)} through `airflow dags test trade`, the rest run_trading in process)"
    )


def _eod(demo: Demo, day: dt.date) -> None:
    _set_clock(demo, dt.datetime.combine(day, EOD_TIME, KST), speed=1.0)
    run = demo.dags_test("eod_report", day.isoformat())
    (summary,) = demo.xcom(run, "report")
    demo.results["eod"] = summary
    pnl = summary.get("daily_pnl")
    demo.results["eod_report:note"] = (
        f"PnL {pnl:,.0f} KRW, {summary['orders']} orders, {summary['fills']} fills" if pnl is not None else ""
    )


def demo_environment(settings: Settings, budget: DemoBudget, api_key: str) -> dict[str, str]:
    """Settings (``KRX_*``) every process of the demo shares: the simulator as the broker (never a real
    account), the demo's budgets and folds, the model server."""
    from pipeline.kis.config import SIM_APP_KEY, SIM_APP_SECRET

    var = settings.var_dir.resolve()
    specs = {name: dict(v) for name, v in settings.model_specs.items()}
    for name, folds in (
        (budget.spec, MINUTE_FOLDS if budget.spec.endswith("-1m") else DAILY_FOLDS),
        ("kospi200f-1d", DAILY_FOLDS),
    ):
        specs[name] = {**folds, **specs.get(name, {})}
    return {
        "KRX_VAR_DIR": str(var),
        "KRX_KIS_ENV": "sim",
        "KRX_KIS_APP_KEY": SIM_APP_KEY,
        "KRX_KIS_APP_SECRET": SIM_APP_SECRET,
        "KRX_KIS_TOKEN_CACHE": str(var / "demo" / "kis_token.json"),
        "KRX_KIS_RATE_LIMIT_SIM": "5000",
        "KRX_KIS_TOKEN_MIN_INTERVAL_S": "0",
        "KRX_INGEST_HISTORY_DAYS": str(budget.history_days),
        "KRX_INGEST_MINUTE_SESSIONS": str(budget.minute_sessions),
        "KRX_MODEL_SPECS": json.dumps(specs),
        "KRX_SERVING_SPECS": budget.spec,
        "KRX_SERVING_API_KEY": api_key,
        "KRX_SERVING_POLL_S": "2",
        "KRX_TRADING_MODE": "sim",
        "KRX_TRADING_SPECS": budget.spec,
        # the previous session's minutes too: the first minutes of the day have a full window to decide on
        "KRX_TRADING_MINUTE_SESSIONS": "2",
    }


def run_chain(console: Console, budget: DemoBudget, *, seed: int | None = None) -> Demo:
    """The whole chain (see the module's docstring); raises :class:`DemoFailed` naming the failed stage.
    Returns the demo with every stage's results (the summary is printed by :func:`print_summary`)."""
    from pipeline.kis.simulator.server import SimServer
    from pipeline.kis.simulator.simconfig import SimConfig

    base = get_settings()
    api_key = secrets.token_urlsafe(24)
    overrides = demo_environment(base, budget, api_key)
    (base.var_dir / "demo").mkdir(parents=True, exist_ok=True)
    stack: list[Callable[[], None]] = []
    with environment(overrides):
        settings = get_settings()
        demo = Demo(console, settings, budget, seed=seed)
        demo.log_path.parent.mkdir(parents=True, exist_ok=True)
        console.print(
            f"log of every library and of Airflow: {demo.log_path}", soft_wrap=True, highlight=False
        )
        ingested = last_closed_session(dt.datetime.now(dt.UTC))
        with chatter_to_file(demo.log_path):
            total = 10
            demo.stage(
                1, total, "prepare", "market store and Airflow metadata DB (SQLite)", lambda: _prepare(demo)
            )

            def start_sim() -> None:
                cfg = SimConfig.from_settings(
                    settings,
                    seed=seed if seed is not None else settings.sim_seed,
                    clock_start=dt.datetime.combine(ingested, INGEST_TIME, KST),
                    rate_limit=5000.0,
                    token_interval_s=0.0,
                    open_grace_s=5.0,
                )
                sim = SimServer(cfg).start()
                stack.append(sim.stop)
                demo.sim_url = sim.base_url
                demo.env = {"KRX_KIS_BASE_URL": sim.base_url}
                os.environ["KRX_KIS_BASE_URL"] = sim.base_url
                demo.results["simulator"] = {"url": sim.base_url, "db": str(cfg.db_path), "seed": cfg.seed}
                demo.results["simulator:note"] = (
                    f"{sim.base_url}, clock {ingested} 16:40 KST, ledger {cfg.db_path}"
                )

            try:
                demo.stage(2, total, "simulator", "the KIS simulator (in process)", start_sim)
                demo.stage(
                    3,
                    total,
                    "ingest_bars",
                    f"airflow dags test ingest_bars {ingested}",
                    lambda: _ingest(demo, ingested),
                )
                demo.stage(
                    4,
                    total,
                    "validate_and_featurize",
                    "airflow dags test validate_and_featurize",
                    lambda: _validate(demo, ingested),
                )
                demo.stage(
                    5,
                    total,
                    "cluster_regimes",
                    "airflow dags test cluster_regimes",
                    lambda: _regimes(demo, ingested),
                )
                demo.stage(
                    6,
                    total,
                    "train_agent",
                    f"airflow dags test train_agent ({len(budget.seeds)} seeds x {budget.train_seconds:g} s)",
                    lambda: _train(demo, ingested),
                )
                demo.stage(7, total, "gate", "the gate's verdict and the champion", lambda: _promote(demo))
                demo.stage(
                    8, total, "serve", "krx serve (BentoML) until /readyz", lambda: _serve(demo, stack)
                )
                demo.env["KRX_TRADING_SERVER_URL"] = demo.server_url
                os.environ["KRX_TRADING_SERVER_URL"] = demo.server_url
                trade_day = _trade_day(demo, ingested)
                demo.stage(
                    9,
                    total,
                    "trade",
                    f"one accelerated simulated session ({trade_day})",
                    lambda: _trade(demo, trade_day),
                )
                demo.stage(
                    10,
                    total,
                    "eod_report",
                    f"airflow dags test eod_report {trade_day}",
                    lambda: _eod(demo, trade_day),
                )
                demo.results["served_version"] = _served_version(demo)
            finally:
                for stop in reversed(stack):
                    with suppress(Exception):
                        stop()
                os.environ.pop("KRX_KIS_BASE_URL", None)
                os.environ.pop("KRX_TRADING_SERVER_URL", None)
        demo.results["ingested_day"] = ingested.isoformat()
    return demo


def _served_version(demo: Demo) -> str | None:
    """The model version the session's decisions were made with (recorded on every decision)."""
    from pipeline.store import get_engine
    from pipeline.store.schema import decisions

    day = demo.results["trade"]["day"]
    with get_engine(demo.settings.resolved_database_url).connect() as conn:
        rows = conn.execute(
            sa.select(decisions.c.model_version, decisions.c.bar_ts).where(
                decisions.c.spec == demo.budget.spec
            )
        ).all()
    versions = {r.model_version for r in rows if r.model_version and _kst_day(r.bar_ts).isoformat() == day}
    return ", ".join(sorted(versions)) or None


def _kst_day(ts: dt.datetime) -> dt.date:
    return (ts if ts.tzinfo else ts.replace(tzinfo=dt.UTC)).astimezone(KST).date()


# --- the summary -------------------------------------------------------------------------------------------
def print_summary(demo: Demo) -> None:
    """One summary of the whole chain, read back from the stores."""
    console = demo.console
    console.rule("krx demo: summary")
    _summary_data(demo)
    _summary_regimes(demo)
    _summary_training(demo)
    _summary_trading(demo)
    _summary_where(demo)


def _summary_data(demo: Demo) -> None:
    from pipeline.store import get_engine
    from pipeline.store.schema import bars, bars_quarantine

    ingest = demo.results["ingest"]
    table = Table(
        "bars", "fetched", "inserted", "updated", "unchanged", "quarantined", "symbols", title="ingest_bars"
    )
    for label, key in (("daily", "daily"), ("1-minute", "minutes")):
        r = ingest[key]
        counts = (r["fetched"], r["inserted"], r["updated"], r["unchanged"], r["quarantined"])
        table.add_row(label, *(f"{c:,}" for c in counts), str(len(r["symbols"])))
    engine = get_engine(demo.settings.resolved_database_url)
    with engine.connect() as conn:
        stored: dict[str, int] = dict(
            conn.execute(sa.select(bars.c.interval, sa.func.count()).group_by(bars.c.interval)).all()
        )
        quarantined = conn.execute(sa.select(sa.func.count()).select_from(bars_quarantine)).scalar() or 0
    demo.console.print(table)
    quality = Table(
        "interval",
        "window",
        "rows",
        "quarantined",
        "features",
        "missing sessions",
        title="validate_and_featurize",
    )
    for w in demo.results["quality"]["windows"]:
        gaps = sum(len(v) for v in w["missing_sessions"].values())
        quality.add_row(
            w["interval"],
            f"{w['start']}..{w['end']}",
            f"{w['rows_in']:,}",
            f"{w['quarantined']:,}",
            f"{w['features_written']:,}",
            str(gaps),
        )
    demo.console.print(quality)
    demo.console.print(
        "store: "
        + ", ".join(f"{n:,} {i} bars" for i, n in sorted(stored.items()))
        + f", {quarantined:,} in quarantine  ({mask_url(demo.settings.resolved_database_url)})",
        soft_wrap=True,
        highlight=False,
    )


def _summary_regimes(demo: Demo) -> None:
    table = Table(
        "spec",
        "status",
        "regimes (k)",
        "criterion",
        "bars labelled",
        "training window",
        "MLflow run",
        title="cluster_regimes",
    )
    for s in demo.results["regimes"]:
        window = (
            f"{str(s.get('train_start'))[:10]}..{str(s.get('train_end'))[:10]}"
            if s.get("train_start")
            else ""
        )
        table.add_row(
            s["spec"],
            s["status"],
            str(s.get("k", "")),
            str(s.get("criterion", "")),
            f"{s.get('labels', 0):,}",
            window,
            str(s.get("run_id", ""))[:12],
        )
    demo.console.print(table)


def _summary_training(demo: Demo) -> None:
    client = _client(demo)
    name = _model_name(demo)
    training = demo.results["training"]
    version = str(demo.results["promotion"]["version"])
    versions = client.search_model_versions(f"name = '{name}'")
    table = Table(
        "version",
        "gate",
        "aliases",
        "training run",
        "seeds",
        "promotion",
        title=f"registered versions of {name}",
    )
    for found in sorted(versions, key=lambda v: int(v.version)):
        mv = client.get_model_version(name, found.version)  # a search leaves the aliases out
        parent = mv.tags.get("krx.training_run", "")
        seeds = ""
        if parent:
            run = client.get_run(parent)
            children = client.search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{parent}'")
            seeds = str(len(children))
        promo = ""
        if mv.tags.get("promotion.reason"):
            promo = ("[yellow]forced[/]: " if mv.tags.get("promotion.forced") == "true" else "") + mv.tags[
                "promotion.reason"
            ]
        table.add_row(
            f"v{mv.version}",
            mv.tags.get("gate.decision", ""),
            ", ".join(sorted(mv.aliases)),
            parent[:12],
            seeds,
            promo,
        )
    demo.console.print(table)
    mv = client.get_model_version(name, version)
    parent = mv.tags.get("krx.training_run")
    if not parent:
        return
    metrics = client.get_run(parent).data.metrics
    who = ["agent", *sorted({k.split("/")[1] for k in metrics if k.startswith("baseline/")})]
    table = Table(
        "strategy",
        "Sharpe",
        "total return",
        "max drawdown",
        "turnover",
        "trades",
        title=f"v{version} out of sample (test window, mean over seeds) vs the baselines",
    )
    for w in who:
        prefix = "eval/test" if w == "agent" else f"baseline/{w}/test"

        def m(key: str, fmt: str, prefix: str = prefix) -> str:
            value = metrics.get(f"{prefix}/{key}")
            return format(value, fmt) if value is not None else "-"

        table.add_row(
            w,
            m("sharpe", ".2f"),
            m("total_return", ".2%"),
            m("max_drawdown", ".2%"),
            m("turnover", ".1f"),
            m("n_trades", ".0f"),
        )
    demo.console.print(table)
    rules = Table(
        "rule",
        "passed",
        "value",
        "threshold",
        "detail",
        title=f"the gate on v{version}: {mv.tags.get('gate.decision', '?')}",
    )
    for key in sorted(k for k in mv.tags if k.startswith("gate.") and k.endswith(".passed")):
        rule = key[len("gate.") : -len(".passed")]
        ok = mv.tags[key] == "true"
        rules.add_row(
            rule,
            "[green]yes[/]" if ok else "[red]no[/]",
            mv.tags.get(f"gate.{rule}.value", ""),
            mv.tags.get(f"gate.{rule}.threshold", ""),
            mv.tags.get(f"gate.{rule}.detail", ""),
        )
    demo.console.print(rules)
    promotion = demo.results["promotion"]
    if promotion["forced"]:
        demo.console.print(
            f"[yellow]nothing passed the gate[/]: v{version} is the champion by a recorded override "
            f"(reason: {promotion['reason']})",
            soft_wrap=True,
            highlight=False,
        )
    if training.get("reused"):
        demo.console.print(f"training reused: {name} v{version} was already the champion", highlight=False)


def _summary_trading(demo: Demo) -> None:
    from pipeline.store import get_engine
    from pipeline.store.schema import fills, orders

    trade, eod = demo.results["trade"], demo.results["eod"]
    day = dt.date.fromisoformat(trade["day"])
    with get_engine(demo.settings.resolved_database_url).connect() as conn:
        rows = conn.execute(sa.select(orders.c.status, orders.c.created_at)).all()
        fill_rows = conn.execute(sa.select(fills.c.ts)).all()
    by_status: dict[str, int] = {}
    for r in rows:
        if _kst_day(r.created_at) == day:
            by_status[r.status] = by_status.get(r.status, 0) + 1
    n_fills = sum(1 for r in fill_rows if _kst_day(r.ts) == day)
    table = Table("", "", title=f"trading session {day} ({demo.budget.spec}, mode sim)")
    table.add_row(
        "minutes traded", f"{trade['minutes']} ({trade['first'][11:16]}-{trade['last'][11:16]} KST)"
    )
    table.add_row(
        "through Airflow",
        f"{trade['via_airflow']} runs of `airflow dags test trade`; the rest run_trading in process",
    )
    table.add_row("decisions", ", ".join(f"{k} {v}" for k, v in sorted(trade["outcomes"].items())) or "none")
    table.add_row("orders", ", ".join(f"{k} {v}" for k, v in sorted(by_status.items())) or "none")
    table.add_row("fills", str(n_fills))
    pnl = eod.get("daily_pnl")
    table.add_row("PnL (eod_report)", f"{pnl:,.0f} KRW" if pnl is not None else "n/a")
    table.add_row("served version", str(demo.results.get("served_version") or "-"))
    for warning in eod.get("warnings", []):
        table.add_row("[yellow]warning[/]", warning)
    demo.console.print(table)


def _summary_where(demo: Demo) -> None:
    from pipeline.console import print_reports
    from pipeline.reports import find_reports

    print_reports(demo.console, find_reports(demo.var))
    s = demo.settings
    table = Table("what", "where", title="stores and UIs")
    table.add_row("market store", mask_url(s.resolved_database_url))
    table.add_row("MLflow store", mask_url(s.resolved_mlflow_uri))
    table.add_row("MLflow UI", "krx mlflow ui  (then http://127.0.0.1:5000)")
    table.add_row("Airflow metadata", str(demo.airflow_home / "airflow.db"))
    table.add_row("Airflow UI", "make up  (then http://127.0.0.1:8080)")
    table.add_row("simulator ledger", str(demo.results["simulator"]["db"]))
    table.add_row("trading status", "krx trading status")
    table.add_row("demo log", str(demo.log_path))
    table.add_row("model server log", str(demo.serve_log))
    demo.console.print(table)
    took = sum(demo.timings.values())
    demo.console.print(f"[bold green]krx demo finished[/] in {took / 60:.1f} min", highlight=False)
