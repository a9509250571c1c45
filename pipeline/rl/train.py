"""Training entry point: bars (one symbol or many) → regimes → features → A3C → a :class:`TradingAgent`."""

from __future__ import annotations

import math
import random
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from pipeline.regimes.model import RegimeModel
from pipeline.rl.a3c import Metrics, SharedAdam
from pipeline.rl.agent import TradingAgent, prepare_market
from pipeline.rl.config import TrainConfig
from pipeline.rl.env import VecTradingEnv
from pipeline.rl.instruments import InstrumentSpec
from pipeline.rl.market import FeatureNormaliser, MarketArrays
from pipeline.rl.network import LSTMActorCritic
from pipeline.rl.runner import run_async, run_sync
from pipeline.rl.universe import BarsInput, fit_pooled_regimes, prepare_universe, split_universe


@dataclass
class TrainResult:
    """What a training run produced."""

    agent: TradingAgent
    """Model weights, config, regime model and feature normalisation (``agent.save(dir)`` persists them)."""
    history: pd.DataFrame
    """One row per worker update: ``global_step``, ``rank``, ``losses/*``, ``charts/*``, ``time``."""
    steps: int
    """Env steps taken, summed over workers and envs."""
    seconds: float
    """Wall-clock seconds of the A3C loop."""
    symbols: tuple[str, ...] = ()
    """Symbols the agent was trained on, in segment order (empty: one symbol's bars were given)."""


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy's legacy global RNG and torch (workers derive their own streams from it)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


#: Called in the training process with each worker update's metrics (``time`` included), as they arrive.
MetricsCallback = Callable[[Metrics], None]


class _Progress:
    """Collects metrics; shows steps/s and the mean of recent episode returns (log equity) in a bar, and
    hands each update's metrics to ``on_metrics`` (e.g. to log curves while training runs)."""

    def __init__(self, total: int | None, enabled: bool, on_metrics: MetricsCallback | None = None) -> None:
        self.on_metrics = on_metrics
        self.rows: list[Metrics] = []
        self.returns: deque[float] = deque(maxlen=50)
        self.t0, self.steps = time.time(), 0
        self.bar = tqdm(total=total, disable=not enabled, unit="step", desc="A3C", leave=False)

    def __call__(self, metrics: Metrics) -> None:
        metrics["time"] = time.time() - self.t0
        self.rows.append(metrics)
        if not math.isnan(metrics["charts/episode_return"]):
            self.returns.append(metrics["charts/episode_return"])
        step = max(self.steps, int(metrics["global_step"]))
        self.bar.update(step - self.steps)
        self.steps = step
        rate = step / max(metrics["time"], 1e-9)
        ret = float(np.mean(self.returns)) if self.returns else math.nan
        self.bar.set_postfix(steps_per_s=f"{rate:,.0f}", ep_return=f"{ret:+.4f}", refresh=False)
        if self.on_metrics is not None:
            self.on_metrics(dict(metrics))  # a copy: the callback cannot alter the history

    def close(self) -> pd.DataFrame:
        self.bar.close()
        return pd.DataFrame(self.rows)


def train_on_market(
    config: TrainConfig,
    market: MarketArrays,
    bounds: tuple[int, int] | None = None,
    on_metrics: MetricsCallback | None = None,
) -> tuple[LSTMActorCritic, pd.DataFrame, int, float]:
    """A3C on prepared arrays → (global model, metrics history, env steps, seconds); ``on_metrics`` sees
    every update's metrics as it arrives (it does not change what is trained)."""
    torch.manual_seed(config.seed)  # the global model's initial weights
    probe = VecTradingEnv(market, config.env, n_envs=1, bounds=bounds)
    model = LSTMActorCritic(probe.obs_dim, probe.n_actions, config.hidden_size)
    optimizer = SharedAdam(model.parameters(), lr=config.learning_rate, eps=config.adam_eps)
    progress = _Progress(config.total_steps, config.progress, on_metrics)
    run = run_sync if config.mode == "sync" else run_async
    t0 = time.time()
    try:
        steps = run(config, market, model, optimizer, progress, bounds)
    finally:
        history = progress.close()
    return model, history, steps, time.time() - t0


def train(
    config: TrainConfig,
    train_data: BarsInput,
    instruments: Mapping[str, InstrumentSpec] | None = None,
    on_metrics: MetricsCallback | None = None,
) -> TrainResult:
    """Fit regimes and feature scaling on ``train_data`` only, then train the A3C agent on it.

    ``train_data``: one symbol's OHLCV bars (any capitalisation of open/high/low/close/volume),
    time-ordered; or many symbols' — ``{symbol: bars}`` or a long frame with a ``symbol`` column — for one
    agent over all of them: features per symbol, regimes and feature scaling fitted on all symbols' rows
    pooled, episodes drawn across symbols (never crossing one). ``instruments`` (many symbols only): what
    each symbol trades as; unnamed symbols trade as ``config.env.instrument``. ``on_metrics``: called with
    each worker update's metrics while training runs (MLflow curves); the result is the same without it.
    """
    # ---- seeding: everything random below derives from config.seed (regimes from config.regimes.seed) ----
    seed_everything(config.seed)
    raw, regime_model = _training_market(config, train_data, instruments)
    normaliser = FeatureNormaliser.fit(raw.features)  # [T, F] rows of every symbol
    market = raw.with_features(normaliser.transform(raw.features))
    model, history, steps, seconds = train_on_market(config, market, on_metrics=on_metrics)
    agent = TradingAgent(config, model, normaliser, regime_model)
    return TrainResult(agent=agent, history=history, steps=steps, seconds=seconds, symbols=raw.symbols)


def _training_market(
    config: TrainConfig, train_data: BarsInput, instruments: Mapping[str, InstrumentSpec] | None
) -> tuple[MarketArrays, RegimeModel | None]:
    """Unscaled arrays of the training bars (one segment per symbol) and the regime model fitted on them."""
    universe = split_universe(train_data)
    fit_regimes = config.regimes.enabled
    if universe is None:
        assert isinstance(train_data, pd.DataFrame)
        if instruments:
            raise ValueError("instruments need many symbols; one symbol trades as config.env.instrument")
        regime_model = RegimeModel(config.regimes).fit(train_data) if fit_regimes else None
        return prepare_market(train_data, config.feature_set, regime_model), regime_model
    regime_model = fit_pooled_regimes(config.regimes, universe.values()) if fit_regimes else None
    default = config.env.instrument if instruments else None
    market = prepare_universe(universe, config.feature_set, regime_model, None, instruments, default)
    return market, regime_model
