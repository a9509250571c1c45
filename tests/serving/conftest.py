"""One started model server for every serving test: a tiny futures agent registered (v1) in a throwaway
MLflow store, ``krx serve`` started before any champion exists (its /readyz answer is kept), then v1 made
champion; tests that move the alias put it back."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pipeline.config import Settings
from pipeline.registry.register import register_agent
from pipeline.registry.tracking import Tracker
from pipeline.rl.train import train
from pipeline.serving_support import required_bars
from tests.registry.factories import market_bars, tiny_spec
from tests.serving.server import API_KEY, MAX_BARS, Server, make_champion, start_server, wait_for, wait_live


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The started service; ``server.readyz_before_champion`` is its /readyz answer before v1 was
    champion."""
    var = tmp_path_factory.mktemp("serving") / "var"
    settings = Settings(var_dir=var)
    tracker = Tracker(settings)
    spec = tiny_spec("kospi200f-1d")
    bars = market_bars()
    agent = train(spec.train_config(0), bars.iloc[:300]).agent
    version = register_agent(agent, spec, tracker)
    env = {
        "KRX_SERVING_SPECS": spec.name,
        "KRX_SERVING_POLL_S": "0.2",
        "KRX_SERVING_API_KEY": API_KEY,
        "KRX_SERVING_MAX_BARS": str(MAX_BARS),
    }
    url, process = start_server(var, env, var.parent / "server.log")
    srv = Server(
        url, process, var.parent / "server.log", settings, tracker, spec, agent, bars, required_bars(agent)
    )
    try:
        wait_live(srv)
        srv.readyz_before_champion = srv.get("/readyz")
        make_champion(srv, version)
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def served(server: Server) -> Iterator[Server]:
    """The server, its champion put back to what it was when the test started."""
    before = server.champion()
    yield server
    if server.champion() != before:
        server.set_champion(before)
        wait_for(lambda: server.answering_version() == before, f"v{before} answering again")
