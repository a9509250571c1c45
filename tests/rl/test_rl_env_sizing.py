"""A position is sized with what the agent knows when it decides (close[t]), never with the next open it
fills at: on bars where open[t+1] differs from close[t] the two give different sizes."""

from __future__ import annotations

import math

import numpy as np

from pipeline.backtest.engine import run_backtest
from pipeline.backtest.policies import BuyAndHold
from pipeline.rl.env import EnvConfig, VecTradingEnv
from pipeline.rl.instruments import kospi200_futures_spec, stock_spec

FEE = 0.00015  # KRX stock commission (pipeline.market), paid on buys too


def _first_fill(market, config: EnvConfig, action: int) -> dict[str, float]:
    env = VecTradingEnv(market, config, auto_reset=False)
    env.reset(start=0)
    *_, info = env.step(np.array([action]))
    return {k: float(v[0]) for k, v in info.items()}


def test_a_stock_buy_is_sized_at_the_decision_close_not_at_a_lower_next_open(make_market) -> None:
    # Decided at bar 0's close of 10,000; bar 1 gaps down to 8,000 (+ one 10-KRW tick of slippage).
    market = make_market(opens=[10_000, 8_000, 8_000], closes=[10_000, 8_000, 8_000])
    config = EnvConfig(instrument=stock_spec(), levels=(0.0, 0.5), window=1, initial_cash=1e6)
    info = _first_fill(market, config, action=1)
    at_close = math.floor(0.5 * 1e6 / (10_000 * (1 + FEE)))  # 49 shares
    at_open = math.floor(0.5 * 1e6 / (8_010 * (1 + FEE)))  # 62 shares: what the next open would give
    assert at_close != at_open
    assert info["position"] == at_close
    assert info["traded_notional"] == at_close * 8_010  # ... and filled at the next open


def test_a_stock_buy_is_sized_at_the_decision_close_not_at_a_higher_next_open(make_market) -> None:
    market = make_market(opens=[10_000, 11_000, 11_000], closes=[10_000, 11_000, 11_000])
    config = EnvConfig(instrument=stock_spec(), levels=(0.0, 0.5), window=1, initial_cash=1e6)
    info = _first_fill(market, config, action=1)
    assert info["position"] == math.floor(0.5 * 1e6 / (10_000 * (1 + FEE)))  # 49, not 45


def test_futures_contracts_are_capped_by_margin_at_the_decision_close(make_market) -> None:
    # 3e7 of equity posts 15 % initial margin on 2 contracts at 350.00 (2.29); at the next open of 250.00 it
    # would post 3 (3.2): the cap is set by the price known when deciding.
    market = make_market(opens=[350.0, 250.0, 250.0], closes=[350.0, 250.0, 250.0])
    config = EnvConfig(
        instrument=kospi200_futures_spec(), levels=(-3.0, 0.0, 3.0), window=1, initial_cash=3e7
    )
    assert _first_fill(market, config, action=2)["position"] == 2
    assert _first_fill(market, config, action=0)["position"] == -2


def test_a_backtest_sizes_with_the_close_it_decided_on(make_market) -> None:
    market = make_market(opens=[10_000, 9_000, 9_500, 9_600], closes=[10_000, 9_400, 9_500, 9_700])
    config = EnvConfig(instrument=stock_spec(), levels=(0.0, 0.5), window=1, initial_cash=1e6)
    frame = run_backtest(BuyAndHold(config), market, config, start=0).frame
    assert frame["position"].iloc[1] == math.floor(0.5 * 1e6 / (10_000 * (1 + FEE)))
