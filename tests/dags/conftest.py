"""Fixtures for DAG tests: an isolated Airflow home on SQLite and a KIS simulator on loopback."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from pipeline.market import KST

ROOT = Path(__file__).parents[2]


def airflow_env(home: Path, var: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "KRX_"))}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__PARALLELISM": "2",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "KRX_VAR_DIR": str(var),
            "PATH": f"{Path(sys.executable).parent}:{env.get('PATH', '')}",
            **(extra or {}),
        }
    )
    return env


@pytest.fixture(scope="session")
def migrated_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty Airflow metadata DB (SQLite file) migrated once per test session, to copy: each
    ``airflow db migrate`` costs 5-15 s."""
    home = tmp_path_factory.mktemp("airflow-migrated")
    proc = run_airflow(["db", "migrate"], airflow_env(home, home / "var"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return home / "airflow.db"


@pytest.fixture
def fresh_airflow_home(tmp_path: Path, migrated_db: Path) -> Path:
    """An AIRFLOW_HOME of this test alone, its metadata DB migrated and empty."""
    home = tmp_path / "airflow"
    home.mkdir()
    shutil.copy(migrated_db, home / "airflow.db")
    # Present, so that components started together do not each write one with secrets of their own:
    # the settings come from AIRFLOW__* variables.
    (home / "airflow.cfg").write_text("# Settings: AIRFLOW__* environment variables.\n")
    return home


@pytest.fixture(scope="session")
def airflow_home(tmp_path_factory: pytest.TempPathFactory, migrated_db: Path) -> Path:
    """An Airflow metadata DB (SQLite) shared by the session's `airflow dags test` runs, with the
    ``kis_api`` pool."""
    home = tmp_path_factory.mktemp("airflow")
    shutil.copy(migrated_db, home / "airflow.db")
    proc = run_airflow(["pools", "set", "kis_api", "4", "KIS broker calls"], airflow_env(home, home / "var"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return home


#: The app key and secret the DAG tests' simulator accepts (the secret must never reach a log).
APP_KEY, APP_SECRET = "PSdagtestkey", "dag-secret"


def kis_env(base_url: str) -> dict[str, str]:
    """Settings that point the DAGs at the simulator at ``base_url`` with a small universe."""
    return {
        "KRX_KIS_BASE_URL": base_url,
        "KRX_KIS_APP_KEY": APP_KEY,
        "KRX_KIS_APP_SECRET": APP_SECRET,
        "KRX_KIS_ACCOUNT_NO": "50000000",
        "KRX_INGEST_HISTORY_DAYS": "120",
        "KRX_STOCK_SYMBOLS": "005930,000660",
        "KRX_INTRADAY_SYMBOLS": "005930",
        "KRX_INGEST_MINUTE_SESSIONS": "0",  # one session of minute bars keeps DAG runs short
    }


#: A gate every version passes, so the first one becomes the champion (the rules have their own tests).
LENIENT_GATE = {
    "sharpe_margin_vs_buy_and_hold": -100.0,
    "min_dsr_prob": 0.0,
    "max_drawdown": 1.0,
    "max_drawdown_vs_buy_and_hold": 100.0,
    "max_turnover": 10_000.0,
}


@contextmanager
def running_simulator(db: Path, clock: dt.datetime) -> Iterator[str]:
    """A KIS simulator on loopback whose clock starts at ``clock`` and that knows the tests' app key;
    yields its base URL."""
    from pipeline.kis.simulator.server import SimServer
    from pipeline.kis.simulator.simconfig import DEFAULT_APP_KEYS, AppKeyPair, SimConfig

    keys = [*DEFAULT_APP_KEYS, AppKeyPair(APP_KEY, APP_SECRET, "real")]
    with SimServer(SimConfig(db_path=db, clock_start=clock, app_keys=keys)) as sim:
        yield sim.base_url


@pytest.fixture
def simulator(tmp_path: Path) -> Iterator[str]:
    """A KIS simulator whose clock stands after the 2025-09-10 close; yields its base URL."""
    with running_simulator(tmp_path / "sim.db", dt.datetime(2025, 9, 10, 16, 40, tzinfo=KST)) as url:
        yield url


def run_airflow(args: list[str], env: dict[str, str], timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["airflow", *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )
