"""Trading fixtures: one model server per test session with a tiny champion for the 1-minute futures spec,
and per test a fresh simulator (clock on the test day, market orders fill at the open of the minute they
reach the book) plus a migrated store."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from pydantic import SecretStr

from pipeline.config import Settings
from pipeline.kis.simulator import marketgen as mg
from pipeline.kis.simulator.server import SimServer
from pipeline.kis.simulator.simconfig import SimConfig
from pipeline.market import InstrumentKind, krx_sessions
from pipeline.registry.register import register_agent
from pipeline.registry.tracking import Tracker
from pipeline.rl.train import train
from pipeline.store.db import create_store_engine
from tests.registry.factories import tiny_spec
from tests.serving.server import API_KEY, Server, make_champion, start_server, wait_live
from tests.trading.harness import DAY, Session, kst

SPEC = "kospi200f-1m"


def sim_minute_bars(days: int = 3) -> pd.DataFrame:
    """The simulator's own 1-minute futures bars of the sessions before the test day (seed 7, as
    SimConfig's default): the tiny champion learns on the market it will trade."""
    sessions = [d.date() for d in krx_sessions(DAY - dt.timedelta(days=10), DAY - dt.timedelta(days=1))]
    frames = [mg.minute_frame(mg.FUTURES_SERIES, InstrumentKind.FUTURES, 7, d) for d in sessions[-days:]]
    return pd.concat(frames).set_index("ts")[["open", "high", "low", "close", "volume"]]


@pytest.fixture(scope="session")
def trading_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``krx serve`` with a tiny agent registered and made champion of the 1-minute futures spec."""
    var = tmp_path_factory.mktemp("trading-serving") / "var"
    settings = Settings(var_dir=var)
    tracker = Tracker(settings)
    spec = tiny_spec(SPEC)
    bars = sim_minute_bars()
    agent = train(spec.train_config(0), bars).agent
    version = register_agent(agent, spec, tracker)
    env = {"KRX_SERVING_SPECS": spec.name, "KRX_SERVING_POLL_S": "0.2", "KRX_SERVING_API_KEY": API_KEY}
    url, process = start_server(var, env, var.parent / "server.log")
    srv = Server(url, process, var.parent / "server.log", settings, tracker, spec, agent, bars, 0)
    try:
        wait_live(srv)
        make_champion(srv, version)
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[SimServer]:
    cfg = SimConfig(
        db_path=tmp_path / "sim.db",
        clock_start=kst(DAY, 8, 40),
        rate_limit=5000.0,
        token_interval_s=0.0,
        open_grace_s=5.0,
    )
    with SimServer(cfg) as server:
        yield server


def trading_settings(sim: SimServer, server: Server, var: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "var_dir": var,
        "database_url": f"sqlite:///{var / 'market.db'}",
        "kis_env": "sim",
        "kis_base_url": sim.base_url,
        "kis_rate_limit_sim": 5000.0,
        "kis_token_min_interval_s": 0.0,
        "kis_backoff_max_s": 0.05,
        "kis_timeout_s": 5.0,
        "trading_server_url": server.url,
        "serving_api_key": SecretStr(API_KEY),
        "trading_specs": [SPEC],
        "trading_flatten_before_close_min": None,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def session(
    sim: SimServer, trading_server: Server, isolated_settings: Path, sqlite_url: str
) -> Iterator[Session]:
    settings = trading_settings(sim, trading_server, isolated_settings, database_url=sqlite_url)
    engine = create_store_engine(sqlite_url)
    s = Session(sim, settings, engine)
    try:
        yield s
    finally:
        s.close()
        engine.dispose()


def minutes(
    day: dt.date, start: tuple[int, int], end: tuple[int, int], second: float = 0.5
) -> list[dt.datetime]:
    """Every minute in [start, end) of ``day`` at ``second`` past the minute."""
    t, stop = kst(day, *start, second), kst(day, *end, second)
    out = []
    while t < stop:
        out.append(t)
        t += dt.timedelta(minutes=1)
    return out


#: UTC (servers), UTC+14 (KST's midnight is already the next day there) and UTC-10 (KST's morning is still
#: the previous day there): POSIX spellings, so no tz database is needed.
MACHINE_ZONES = ["UTC0", "LINT-14", "HST10"]


@pytest.fixture
def machine_tz(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The process runs in the POSIX time zone ``request.param`` (``TZ`` + ``tzset``), restored after."""
    monkeypatch.setenv("TZ", request.param)
    time.tzset()
    yield request.param
    monkeypatch.undo()
    time.tzset()
