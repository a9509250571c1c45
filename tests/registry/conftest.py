"""Fixtures for registry tests: a cached tiny agent and an MLflow tracker on the test's own store."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import pytest

from pipeline.config import get_settings
from pipeline.registry.tracking import Tracker
from pipeline.rl.agent import TradingAgent
from pipeline.rl.train import TrainResult, train
from tests.registry.factories import market_bars, tiny_spec


@lru_cache(maxsize=4)
def _trained(name: str, seed: int) -> TrainResult:
    return train(tiny_spec(name).train_config(seed), market_bars().iloc[:300])


@pytest.fixture
def trained() -> Callable[..., TrainResult]:
    """``trained(spec_name="kospi200f-1d", seed=0)``: a tiny agent (cached across tests: read-only)."""
    return lambda name="kospi200f-1d", seed=0: _trained(name, seed)


@pytest.fixture
def agent(trained: Callable[..., TrainResult]) -> TradingAgent:
    """The tiny futures agent."""
    return trained().agent


@pytest.fixture
def tracker() -> Tracker:
    """A tracker on this test's own SQLite MLflow store under its var/."""
    return Tracker(get_settings())
