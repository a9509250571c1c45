"""Baselines where the first tests could not tell right from wrong: their signals against moving averages and
returns computed by hand, a signal of exactly zero, the warm-up bars, and the random baseline's seeds and
independence across envs (issue 14)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from pipeline.backtest.policies import Momentum, Policy, RandomPolicy, SMACrossover, make_baseline
from pipeline.rl.env import EnvConfig
from pipeline.rl.instruments import kospi200_futures_spec, stock_spec
from pipeline.rl.market import MarketArrays

MakeMarket = Callable[..., MarketArrays]
FUTURES = EnvConfig(instrument=kospi200_futures_spec(), levels=(-1.0, 0.0, 1.0), window=1)
SHORT, FLAT, LONG = 0, 1, 2  # FUTURES' actions
STOCK5 = EnvConfig(instrument=stock_spec(tick_size=1.0), levels=(0.0, 0.25, 0.5, 0.75, 1.0), window=1)


def _actions(policy: SMACrossover | Momentum, market: MarketArrays) -> np.ndarray:
    policy.reset(market, 1)
    return policy.act(np.zeros((len(market.close), 1)), np.arange(len(market.close)))


def _by_sign(signal: list[float]) -> np.ndarray:
    return np.array([LONG if s > 0 else SHORT if s < 0 else FLAT for s in signal])


def test_signal_baselines_follow_moving_averages_and_returns_computed_by_hand(
    make_market: MakeMarket,
) -> None:
    c = 100 * np.exp(np.cumsum(np.random.default_rng(12).normal(0, 0.02, 300)))
    market = make_market(c)
    # SMA(10) − SMA(50) of the closes up to t; flat while fewer than 50 closes exist (bars 0–48).
    sma = [0.0 if t < 49 else c[t - 9 : t + 1].mean() - c[t - 49 : t + 1].mean() for t in range(300)]
    # 20-bar return close[t] / close[t − 20] − 1; flat for the first 20 bars.
    mom = [0.0 if t < 20 else c[t] / c[t - 20] - 1.0 for t in range(300)]
    assert _actions(SMACrossover(FUTURES), market).tolist() == _by_sign(sma).tolist()
    assert _actions(Momentum(FUTURES), market).tolist() == _by_sign(mom).tolist()
    assert {SHORT, FLAT, LONG} <= set(_by_sign(sma)) and {SHORT, FLAT, LONG} <= set(_by_sign(mom))


def test_a_signal_of_exactly_zero_stays_flat(make_market: MakeMarket) -> None:
    still = make_market(np.full(80, 100.0))  # SMA(10) = SMA(50), 20-bar return 0: no view either way
    assert set(_actions(SMACrossover(FUTURES), still).tolist()) == {FLAT}
    assert set(_actions(Momentum(FUTURES), still).tolist()) == {FLAT}


def test_a_baseline_used_before_reset_has_nothing_to_act_on() -> None:
    with pytest.raises(IndexError):
        SMACrossover(FUTURES).act(np.zeros((1, 1)), np.array([0]))  # no bar is known yet
    none = RandomPolicy(STOCK5).act(np.zeros((0, 1)), np.zeros(0, np.int64))  # no env yet
    assert none.shape == (0,) and none.dtype.kind == "i"


def test_the_random_baselines_seed_defaults_to_0_and_is_passed_through(make_market: MakeMarket) -> None:
    market = make_market(np.linspace(100, 110, 10))

    def run(policy: Policy) -> list[list[int]]:
        policy.reset(market, 16)
        return [policy.act(np.zeros((16, 1)), np.full(16, t)).tolist() for t in range(40)]

    seed0 = run(RandomPolicy(STOCK5, seed=0))
    assert run(RandomPolicy(STOCK5)) == seed0
    assert run(make_baseline("random", STOCK5)) == seed0
    seed7 = run(make_baseline("random", STOCK5, seed=7))
    assert seed7 == run(RandomPolicy(STOCK5, seed=7)) and seed7 != seed0


def test_each_env_redraws_its_random_action_on_its_own(make_market: MakeMarket) -> None:
    n = 400
    policy = RandomPolicy(STOCK5, seed=3)
    policy.reset(make_market(np.linspace(100, 110, 10)), n)
    first = policy.act(np.zeros((n, 1)), np.zeros(n, np.int64))
    second = policy.act(np.zeros((n, 1)), np.ones(n, np.int64))
    assert set(first.tolist()) == {0, 1, 2, 3, 4}
    changed = first != second
    # Each env redraws with probability 0.1 and then lands on another of the 5 actions 4 times in 5: ~8 %.
    assert 0.03 < changed.mean() < 0.15
    assert len(set(second[changed].tolist())) > 1  # the envs that moved did not all move to one action
