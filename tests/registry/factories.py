"""Registry test data: a tiny sync-mode spec, seeded bars, walk-forward rows built by hand for the gate."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from pipeline.config import get_settings
from pipeline.registry.specs import ModelSpec, resolve_spec
from pipeline.rl.synthetic import regime_switching_bars

#: DAG-run-style params that make any spec train in about a second in sync mode on 2 cores.
TINY_PARAMS: dict[str, Any] = {
    "mode": "sync",
    "n_workers": 1,
    "total_steps": 600,
    "seeds": [0, 1],
    "n_folds": 1,
    "val_size": 60,
    "test_size": 60,
    "min_train_size": 200,
    "feature_set": "basic",
    "hyperparameters": {
        "n_envs": 4,
        "n_steps": 10,
        "env.window": 4,
        "env.episode_length": 64,
        "regimes.k_max": 2,
    },
}


def tiny_spec(name: str = "kospi200f-1d", **overrides: Any) -> ModelSpec:
    """Spec ``name`` with the tiny training budget (and ``overrides``) applied as DAG params."""
    return resolve_spec(name, get_settings(), {**TINY_PARAMS, **overrides})


@lru_cache(maxsize=4)
def market_bars(n: int = 500, seed: int = 2) -> pd.DataFrame:
    """Daily bars with a planted regime drift, indexed by tz-aware KST timestamps (as the store gives)."""
    bars = regime_switching_bars(n, seed=seed)[["open", "high", "low", "close", "volume"]]
    bars.index = bars.index.tz_localize("Asia/Seoul").rename("ts")
    return bars


def wf_rows(
    agent: dict[str, float],
    hold: dict[str, float] | None = None,
    seeds: tuple[int, ...] = (0, 1, 2),
    folds: int = 2,
    n_bars: int = 252,
    jitter: float = 0.05,
) -> pd.DataFrame:
    """Walk-forward rows on ``val`` (and ``test``): the agent's metrics per seed with a small spread
    (``jitter`` on Sharpe), buy-and-hold's once per fold."""
    base = {"total_return": 0.1, "volatility": 0.15, "sharpe": 1.0, "max_drawdown": 0.1, "turnover": 5.0}
    base |= {"costs_paid": 1000.0}
    hold_metrics = {**base, "sharpe": 0.5, "max_drawdown": 0.2, "turnover": 1.0, **(hold or {})}
    rows = []
    for fold in range(folds):
        for split in ("val", "test"):
            for i, seed in enumerate(seeds):
                spread = {"sharpe": agent.get("sharpe", base["sharpe"]) + jitter * (i - 1)}
                rows.append({**_keys(fold, split, "agent", seed, n_bars), **base, **agent, **spread})
            rows.append({**_keys(fold, split, "buy_and_hold", seeds[0], n_bars), **hold_metrics})
    return pd.DataFrame(rows)


def _keys(fold: int, split: str, strategy: str, seed: int, n_bars: int) -> dict[str, Any]:
    return {"fold": fold, "split": split, "strategy": strategy, "seed": seed, "n_bars": n_bars}


def finite(values: dict[str, float]) -> bool:
    """Every value is a finite number."""
    return all(np.isfinite(v) for v in values.values())
