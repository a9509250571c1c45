"""Benchmark: steps/s of the vectorised NumPy trading env (B=1024) vs a straightforward pandas-``iloc`` env.

Usage: python tests/benchmarks/bench_env.py [--quick] [--envs B] [--seconds S]
Both envs use the same bars, features, window and stock costs (sell tax by date); the pandas env is
checked to produce the same equity path as the NumPy env before it is timed. Ends with one JSON line:
numpy_steps_per_s, pandas_steps_per_s, ratio (targets: ratio >= 100, numpy >= 1,000,000 steps/s batched).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pipeline.features import basic_features
from pipeline.market import sell_tax_rate
from pipeline.rl.env import EnvConfig, VecTradingEnv
from pipeline.rl.instruments import stock_spec
from pipeline.rl.market import MarketArrays
from pipeline.rl.synthetic import regime_switching_bars

WINDOW = 8


class PandasTradingEnv:
    """The same trading rules written the obvious way: one env, a DataFrame, ``iloc`` per bar."""

    def __init__(self, frame: pd.DataFrame, feature_cols: list[str], config: EnvConfig) -> None:
        self.df, self.cols, self.cfg = frame, feature_cols, config
        self.inst = config.instrument

    def reset(self, start: int) -> np.ndarray:
        self.t, self.cash, self.pos, self.entry = start, self.cfg.initial_cash, 0.0, 0.0
        self.equity, self.prev = self.cfg.initial_cash, -1
        return self.obs()

    def obs(self) -> np.ndarray:
        window = self.df.iloc[self.t - WINDOW + 1 : self.t + 1][self.cols].to_numpy(np.float32).ravel()
        close = self.df["close"].iloc[self.t]
        return np.concatenate(
            [window, [self.pos * close / self.equity, self.pos * (close - self.entry) / self.equity]]
        )

    def step(self, action: int) -> tuple[np.ndarray, float, bool]:
        inst, close = self.inst, self.df["close"].iloc[self.t]
        level = self.cfg.levels[action]
        target = (
            self.pos
            if action == self.prev
            else math.floor(level * self.equity / (close * (1 + inst.buy_fee)))
        )
        nxt = self.df.iloc[self.t + 1]
        dq = target - self.pos
        fill = nxt["open"] + np.sign(dq) * inst.slippage_ticks * inst.tick_size
        if dq > 0:
            dq = min(dq, max(math.floor(self.cash / (fill * (1 + inst.buy_fee))), 0))
        tax = sell_tax_rate(inst.kind, nxt["day"]) if inst.sell_tax is None else inst.sell_tax  # by fill date
        fee = abs(dq) * fill * (inst.buy_fee if dq > 0 else inst.sell_fee + tax)
        if self.pos + dq == 0:
            self.entry = 0.0
        elif self.pos == 0:
            self.entry = fill
        self.cash -= dq * fill + fee
        self.pos += dq
        self.t += 1
        equity = self.cash + self.pos * nxt["close"]
        reward = math.log(equity / self.equity)
        self.equity, self.prev = equity, action
        return self.obs(), reward, self.t >= len(self.df) - 1


def build(n_bars: int) -> tuple[MarketArrays, pd.DataFrame, list[str], EnvConfig]:
    bars = regime_switching_bars(n_bars, seed=0)
    feats = basic_features(bars)
    market = MarketArrays.from_frames(bars, feats)
    frame = pd.concat([bars[["open", "close"]], feats], axis=1).dropna()
    frame = frame.assign(day=frame.index.date).reset_index(drop=True)
    config = EnvConfig(
        instrument=stock_spec(tick_size=10.0), levels=(0.0, 1.0), window=WINDOW, episode_length=256
    )
    return market, frame, list(feats.columns), config


def check_same_path(market: MarketArrays, frame: pd.DataFrame, cols: list[str], config: EnvConfig) -> float:
    """Largest relative equity difference between the two envs over 300 random actions."""
    actions = np.random.default_rng(1).integers(0, 2, 300)
    vec, ref = VecTradingEnv(market, config, auto_reset=False), PandasTradingEnv(frame, cols, config)
    vec.reset(start=50)
    ref.reset(50)
    worst = 0.0
    for a in actions:
        _, _, _, _, info = vec.step(np.array([a]))
        ref.step(int(a))
        worst = max(worst, abs(info["equity"][0] / ref.equity - 1.0))
    return worst


def time_numpy(market: MarketArrays, config: EnvConfig, n_envs: int, seconds: float) -> float:
    env = VecTradingEnv(market, config, n_envs=n_envs, seed=0)
    env.reset()
    actions = np.random.default_rng(0).integers(0, 2, size=(256, n_envs))
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for row in actions:
            env.step(row)
        steps += len(actions)
    return steps * n_envs / (time.perf_counter() - t0)


def time_pandas(frame: pd.DataFrame, cols: list[str], config: EnvConfig, seconds: float) -> float:
    env = PandasTradingEnv(frame, cols, config)
    rng = np.random.default_rng(0)
    env.reset(WINDOW)
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        _, _, done = env.step(int(rng.integers(0, 2)))
        steps += 1
        if done:
            env.reset(WINDOW)
    return steps / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short timings (< 10 s)")
    parser.add_argument("--envs", type=int, default=1024, help="batched envs B")
    parser.add_argument("--seconds", type=float, default=None, help="timing per env kind")
    args = parser.parse_args()
    seconds = args.seconds or (2.0 if args.quick else 10.0)
    market, frame, cols, config = build(5000)
    print(f"bars={len(market)} features={market.n_features} window={WINDOW} B={args.envs}", flush=True)
    drift = check_same_path(market, frame, cols, config)
    print(f"pandas env reproduces the numpy env's equity path: max rel diff {drift:.2e}", flush=True)
    if drift > 1e-9:
        raise SystemExit("the reference env disagrees with the numpy env")
    numpy_rate = time_numpy(market, config, args.envs, seconds)
    print(f"numpy  B={args.envs}: {numpy_rate:,.0f} steps/s", flush=True)
    pandas_rate = time_pandas(frame, cols, config, seconds)
    print(f"pandas B=1: {pandas_rate:,.0f} steps/s", flush=True)
    figures = {
        "numpy_steps_per_s": round(numpy_rate),
        "pandas_steps_per_s": round(pandas_rate, 1),
        "ratio": round(numpy_rate / pandas_rate, 1),
        "n_envs": args.envs,
        "quick": args.quick,
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
