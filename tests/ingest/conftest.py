"""Ingest fixtures: a KIS simulator on loopback and bar sources on it that count what they ask the broker."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from pipeline.ingest.sources import KisBarSource
from pipeline.kis import KisClient, KisConfig
from pipeline.kis.endpoints import MINUTE_RETENTION_DAYS
from pipeline.kis.simulator.server import SimServer
from pipeline.kis.simulator.simconfig import AppKeyPair, SimConfig
from pipeline.market import KST

#: The session the simulated broker's clock stands in, after its close (a Wednesday).
SESSION = dt.date(2025, 9, 10)
AFTER_CLOSE = dt.datetime(2025, 9, 10, 16, 40, tzinfo=KST)
APP_KEY, APP_SECRET = "PSingestTEST0123456789abcdefghijklmn", "SECRETingest" + "z" * 168
PAPER_KEY, PAPER_SECRET = "PSingestPAPER0123456789abcdefghijklm", "SECRETpaper" + "p" * 169


class CountingTransport(httpx.HTTPTransport):
    """The client's HTTP transport, recording the path and status of every request it sends."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[str, int]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        self.sent.append((request.url.path, response.status_code))
        return response

    @property
    def chart_calls(self) -> int:
        """Minute- and daily-chart requests sent (tokens and other TRs not counted)."""
        return sum("chartprice" in path for path, _ in self.sent)

    @property
    def rejected(self) -> int:
        """Answers with HTTP 500 (KIS's rate-limit answer, EGW00201, comes so)."""
        return sum(status >= 500 for _, status in self.sent)


@dataclass
class Broker:
    """A running simulator and a counted bar source on it."""

    server: SimServer
    source: KisBarSource
    transport: CountingTransport
    _made: list[KisClient] = field(default_factory=list)

    def set_clock(self, now: dt.datetime) -> None:
        """Move the simulated broker's clock (the admin API)."""
        body: dict[str, Any] = {"now": now.isoformat(), "speed": None}
        httpx.post(f"{self.server.base_url}/sim/admin/clock", json=body).raise_for_status()


@pytest.fixture
def make_broker(tmp_path: Path) -> Iterator[Callable[..., Broker]]:
    """Start a simulator whose clock stands at ``clock`` (default: after the SESSION close) and return a
    counted source on it. ``paper`` uses a paper-trading key; ``rate_limit`` None keeps KIS's own limits
    (20/s real, 2/s paper) and the client's own pacing; ``retention_days`` sets how far back the broker
    serves minute bars, and the source knows it."""
    started: list[tuple[SimServer, KisClient]] = []

    def start(
        clock: dt.datetime = AFTER_CLOSE,
        *,
        paper: bool = False,
        rate_limit: float | None = 1000.0,
        retention_days: int = MINUTE_RETENTION_DAYS,
    ) -> Broker:
        n = len(started)
        sim = SimServer(
            SimConfig(
                db_path=tmp_path / f"sim{n}.db",
                clock_start=clock,
                token_interval_s=0.2,
                app_keys=[
                    AppKeyPair(APP_KEY, APP_SECRET, "real"),
                    AppKeyPair(PAPER_KEY, PAPER_SECRET, "vts"),
                ],
                rate_limit=rate_limit,
                minute_retention_days=retention_days,
            )
        ).start()
        transport = CountingTransport()
        config = KisConfig(
            env="vts" if paper else "sim",
            base_url=sim.base_url,
            app_key=SecretStr(PAPER_KEY if paper else APP_KEY),
            app_secret=SecretStr(PAPER_SECRET if paper else APP_SECRET),
            account_no=SecretStr("73310045"),
            token_cache=tmp_path / f"kis_token{n}.json",
            rate_limit=rate_limit or (2.0 if paper else 20.0),
            timeout_s=10.0,
            token_min_interval_s=0.25,
            backoff_max_s=0.5,
        )
        client = KisClient(config, transport=transport)
        started.append((sim, client))
        source = KisBarSource(client, minute_retention_days=retention_days)
        return Broker(sim, source, transport)

    yield start
    for sim, client in started:
        client.close()
        sim.stop()
