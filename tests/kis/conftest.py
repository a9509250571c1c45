"""KIS fixtures: a real simulator on a loopback port per test, and a client factory pointed at it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from pipeline.kis import KisClient, KisConfig
from pipeline.kis.simulator.server import SimServer
from pipeline.kis.simulator.simconfig import SimConfig

#: A Tuesday mid-session: KRX stocks and futures are both trading.
SESSION = datetime(2025, 6, 10, 10, 0)
APP_KEY = "PSkeyTEST0123456789abcdefghijklmnopq"  # 36 characters, like a real key
APP_SECRET = "SECRETtest" + "x" * 170
ACCOUNT = "73310045"


@pytest.fixture
def sim_config(tmp_path: Path) -> SimConfig:
    """Simulator settings: fresh ledger, clock at SESSION (wall speed), short token interval."""
    return SimConfig(db_path=tmp_path / "sim.db", clock_start=SESSION, token_interval_s=0.2)


@pytest.fixture
def sim(sim_config: SimConfig) -> Iterator[SimServer]:
    """A running simulator (uvicorn in a background thread, free port)."""
    with SimServer(sim_config) as server:
        yield server


@pytest.fixture
def make_client(sim: SimServer, tmp_path: Path) -> Iterator[Callable[..., KisClient]]:
    """Build clients for the simulator; keyword arguments override KisConfig fields."""
    made: list[KisClient] = []

    def build(**overrides: Any) -> KisClient:
        values: dict[str, Any] = {
            "env": "sim",
            "base_url": sim.base_url,
            "app_key": SecretStr(APP_KEY),
            "app_secret": SecretStr(APP_SECRET),
            "account_no": SecretStr(ACCOUNT),
            "token_cache": tmp_path / "kis_token.json",
            "rate_limit": 1000.0,
            "timeout_s": 5.0,
            "token_min_interval_s": 0.25,
            "backoff_max_s": 0.2,
            "read_retries": 4,
        }
        values.update(overrides)
        client = KisClient(KisConfig(**values))
        made.append(client)
        return client

    yield build
    for client in made:
        client.close()


@pytest.fixture
def client(make_client: Callable[..., KisClient]) -> KisClient:
    """The default client (real tr_ids, simulator domain)."""
    return make_client()


class SimAdmin:
    """The simulator's admin API, as a demo operator would use it."""

    def __init__(self, server: SimServer) -> None:
        self.server = server

    def faults(self, **knobs: Any) -> None:
        """Replace the fault knobs (no arguments clears every fault)."""
        httpx.post(f"{self.server.base_url}/sim/admin/faults", json=knobs).raise_for_status()

    def clock(self, now: datetime | None = None, speed: float | None = None) -> None:
        """Move and/or speed up the simulator clock."""
        body: dict[str, Any] = {"speed": speed, "now": now.isoformat() if now else None}
        httpx.post(f"{self.server.base_url}/sim/admin/clock", json=body).raise_for_status()

    def auth(self, **limits: float) -> None:
        """Change token interval / TTL / rate limit."""
        httpx.post(f"{self.server.base_url}/sim/admin/auth", json=limits).raise_for_status()

    @property
    def tokens_issued(self) -> int:
        """How many distinct tokens the gateway has issued."""
        return int(httpx.get(f"{self.server.base_url}/sim/health").json()["tokens_issued"])


@pytest.fixture
def admin(sim: SimServer) -> SimAdmin:
    """Admin handle on the running simulator."""
    return SimAdmin(sim)
