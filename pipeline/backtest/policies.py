"""Baseline policies on the same env and costs as the agent: buy-and-hold, SMA crossover, momentum, random."""

from __future__ import annotations

from typing import Protocol

import numpy as np
import pandas as pd

from pipeline.rl.env import EnvConfig
from pipeline.rl.market import MarketArrays


class Policy(Protocol):
    """Anything that picks one discrete action per env from the observation at bar ``t``."""

    name: str

    def reset(self, market: MarketArrays, n_envs: int) -> None:
        """Called once before an episode on ``market``."""
        ...

    def act(self, obs: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Actions [B] for observations [B, D] at bars ``t`` [B]; may use bars ≤ t only."""
        ...


def _level_actions(config: EnvConfig) -> tuple[int, int, int]:
    """Indices of the most long, flat and most short (flat again when short is impossible) actions."""
    levels = config.levels
    long_a, flat_a = config.action_for(max(levels)), config.action_for(0.0)
    short_a = config.action_for(min(levels)) if config.instrument.allow_short and min(levels) < 0 else flat_a
    return long_a, flat_a, short_a


class _SignalPolicy:
    """Long where a causal signal is positive, else short (or flat); the signal at t uses close ≤ t."""

    name = "signal"

    def __init__(self, config: EnvConfig) -> None:
        self.long_a, self.flat_a, self.short_a = _level_actions(config)
        self.actions = np.zeros(0, np.int64)

    def signal(self, close: pd.Series) -> pd.Series:
        raise NotImplementedError

    def reset(self, market: MarketArrays, n_envs: int) -> None:
        sig = self.signal(pd.Series(market.close)).fillna(0.0).to_numpy()
        self.actions = np.where(sig > 0, self.long_a, np.where(sig < 0, self.short_a, self.flat_a))

    def act(self, obs: np.ndarray, t: np.ndarray) -> np.ndarray:
        return self.actions[t]


class BuyAndHold(_SignalPolicy):
    """Always the most long level."""

    name = "buy_and_hold"

    def signal(self, close: pd.Series) -> pd.Series:
        return pd.Series(1.0, index=close.index)


class SMACrossover(_SignalPolicy):
    """Long while SMA(fast) > SMA(slow), else short/flat."""

    name = "sma_crossover"

    def __init__(self, config: EnvConfig, fast: int = 10, slow: int = 50) -> None:
        super().__init__(config)
        self.fast, self.slow = fast, slow

    def signal(self, close: pd.Series) -> pd.Series:
        return close.rolling(self.fast).mean() - close.rolling(self.slow).mean()


class Momentum(_SignalPolicy):
    """Long while the ``lookback``-bar return is positive, else short/flat (time-series momentum)."""

    name = "momentum"

    def __init__(self, config: EnvConfig, lookback: int = 20) -> None:
        super().__init__(config)
        self.lookback = lookback

    def signal(self, close: pd.Series) -> pd.Series:
        return close.pct_change(self.lookback)


class RandomPolicy:
    """A uniformly random action, redrawn with probability ``switch_prob`` per bar (seeded).

    Redrawing every bar would mostly measure costs; holding a while gives a fair "no skill" reference.
    """

    name = "random"

    def __init__(self, config: EnvConfig, seed: int = 0, switch_prob: float = 0.1) -> None:
        self.n_actions, self.seed, self.switch_prob = len(config.levels), seed, switch_prob
        self.rng = np.random.default_rng(seed)
        self.current = np.zeros(0, np.int64)

    def reset(self, market: MarketArrays, n_envs: int) -> None:
        self.rng = np.random.default_rng(self.seed)
        self.current = self.rng.integers(self.n_actions, size=n_envs)

    def act(self, obs: np.ndarray, t: np.ndarray) -> np.ndarray:
        redraw = self.rng.random(len(self.current)) < self.switch_prob
        self.current = np.where(
            redraw, self.rng.integers(self.n_actions, size=len(self.current)), self.current
        )
        return self.current.copy()


BASELINES = ("buy_and_hold", "sma_crossover", "momentum", "random")


def make_baseline(name: str, config: EnvConfig, seed: int = 0) -> Policy:
    """The baseline called ``name`` (one of :data:`BASELINES`) for env ``config``."""
    if name == "buy_and_hold":
        return BuyAndHold(config)
    if name == "sma_crossover":
        return SMACrossover(config)
    if name == "momentum":
        return Momentum(config)
    if name == "random":
        return RandomPolicy(config, seed=seed)
    raise ValueError(f"unknown baseline {name!r}; known: {BASELINES}")
