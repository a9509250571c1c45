"""Factories for RL tests: hand-built markets with exact prices, and small seeded training configs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from pipeline.regimes.model import RegimeConfig
from pipeline.rl.config import TrainConfig
from pipeline.rl.env import EnvConfig
from pipeline.rl.market import MarketArrays

MarketFactory = Callable[..., MarketArrays]


def hand_market(
    opens: Sequence[float],
    closes: Sequence[float],
    regimes: Sequence[int] | None = None,
    n_regimes: int = 0,
    n_features: int = 1,
    start: str = "2026-01-05",
) -> MarketArrays:
    """Bars with exactly these prices on weekdays from ``start`` (2026: stock sell tax 0.20 %);
    feature f at bar t is t + f / 10 (so windows are easy to read)."""
    t = len(closes)
    features = np.arange(t, dtype=np.float32)[:, None] + np.arange(n_features, dtype=np.float32)[None] / 10
    days = pd.bdate_range(start, periods=t, name="ts")
    return MarketArrays.from_arrays(
        np.asarray(opens), np.asarray(closes), features, regimes, n_regimes, index=days
    )


@pytest.fixture
def make_market() -> MarketFactory:
    """``make_market(opens, closes, regimes=None, n_regimes=0, n_features=1, start="2026-01-05")``."""
    return hand_market


@pytest.fixture
def small_train_config() -> Callable[..., TrainConfig]:
    """A config that trains in seconds on 2 cores (override any field by keyword)."""

    def build(**overrides: object) -> TrainConfig:
        base = TrainConfig(
            mode="sync",
            n_workers=2,
            n_envs=8,
            n_steps=20,
            total_steps=30_000,
            progress=False,
            env=EnvConfig(window=4, episode_length=128),
            regimes=RegimeConfig(k_min=2, k_max=3),
        )
        return replace(base, **overrides)  # validated like any config

    return build
