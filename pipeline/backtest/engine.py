"""Deterministic backtest: one policy, one env, a fixed window of bars, every step recorded."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.backtest.policies import Policy
from pipeline.rl.env import EnvConfig, VecTradingEnv
from pipeline.rl.market import MarketArrays


@dataclass
class BacktestResult:
    """A policy's path through one window of bars."""

    name: str
    """Policy name (``agent``, ``buy_and_hold``, …)."""
    frame: pd.DataFrame
    """One row per bar from the start bar (initial state) to the last bar: ``equity``, ``position`` (units),
    ``exposure`` (notional / equity), ``fee``, ``slippage``, ``traded_notional``, ``log_return``, ``close``
    and ``action`` (the action decided at the previous bar that filled at this bar's open)."""
    initial_cash: float
    """Equity at the start."""


def run_backtest(
    policy: Policy,
    market: MarketArrays,
    config: EnvConfig,
    start: int | None = None,
    end: int | None = None,
) -> BacktestResult:
    """Run ``policy`` from bar ``start`` (first decision) to bar ``end`` (last mark); the env is not random.

    Defaults: from the first bar with a full feature window to the last bar of ``market``.
    """
    env = VecTradingEnv(market, config, n_envs=1, auto_reset=False)
    obs = env.reset(start=env.lo if start is None else start, end=end)
    policy.reset(market, 1)
    first = int(env.t[0])
    rows: list[tuple[int, float, float, float, float, float, int]] = [
        (first, config.initial_cash, 0.0, 0.0, 0.0, 0.0, -1)
    ]
    while True:
        action = policy.act(obs, env.t.copy())
        obs, _, terminated, truncated, info = env.step(action)
        rows.append(
            (
                int(info["t"][0]),
                float(info["equity"][0]),
                float(info["position"][0]),
                float(info["fee"][0]),
                float(info["slippage"][0]),
                float(info["traded_notional"][0]),
                int(action[0]),
            )
        )
        if terminated[0] or truncated[0]:
            break
    return _to_result(policy.name, rows, market, config)


def _to_result(
    name: str,
    rows: list[tuple[int, float, float, float, float, float, int]],
    market: MarketArrays,
    config: EnvConfig,
) -> BacktestResult:
    frame = pd.DataFrame(
        rows, columns=["t", "equity", "position", "fee", "slippage", "traded_notional", "action"]
    )
    t = frame["t"].to_numpy()
    notional = frame["position"].to_numpy() * market.close[t] * config.instrument.multiplier
    frame["exposure"] = notional / np.maximum(frame["equity"].to_numpy(), 1e-12)
    frame["log_return"] = np.log(np.maximum(frame["equity"], 1e-12)).diff().fillna(0.0)
    frame["close"] = market.close[t]
    if market.index is not None:
        frame.index = market.index[t]
    return BacktestResult(name=name, frame=frame, initial_cash=config.initial_cash)
