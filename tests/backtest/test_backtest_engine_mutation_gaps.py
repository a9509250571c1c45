"""The backtest loop on hand-built bars with a scripted policy: every column of the result computed by hand
(decide at the close of t, fill at the open of t+1 with slippage and fees), the window it runs over, and
what the policy is shown."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from pipeline.backtest.engine import run_backtest
from pipeline.rl.env import EnvConfig
from pipeline.rl.instruments import kospi200_futures_spec, stock_spec
from pipeline.rl.market import MarketArrays

#: Whole shares, 1 % buy fee, 2 % sell fee, no tax, one tick (1 KRW) of slippage, two units per share.
COSTLY = stock_spec(tick_size=1.0, buy_fee=0.01, sell_fee=0.02, sell_tax=0.0, multiplier=2.0)


class Scripted:
    """Plays ``script[t]`` at bar t and records what it was given."""

    name = "scripted"

    def __init__(self, script: dict[int, int]) -> None:
        self.script = script
        self.resets: list[tuple[MarketArrays, int]] = []
        self.seen: list[tuple[np.ndarray, np.ndarray]] = []

    def reset(self, market: MarketArrays, n_envs: int) -> None:
        self.resets.append((market, n_envs))

    def act(self, obs: np.ndarray, t: np.ndarray) -> np.ndarray:
        self.seen.append((obs.copy(), t.copy()))
        return np.array([self.script.get(int(t[0]), 0)])


def market_of(opens: list[float], closes: list[float], dated: bool = True) -> MarketArrays:
    """One feature per bar equal to the bar's row number, so an observation tells which bars it shows."""
    n = len(closes)
    features = np.arange(n, dtype=np.float32)[:, None]
    index = pd.bdate_range("2024-01-01", periods=n) if dated else None
    return MarketArrays.from_arrays(np.array(opens), np.array(closes), features, index=index)


def test_every_column_of_a_buy_hold_sell_path_by_hand() -> None:
    config = EnvConfig(instrument=COSTLY, window=1, episode_length=None, initial_cash=2000.0)
    market = market_of(opens=[100, 105, 115, 125], closes=[100, 110, 120, 100])
    res = run_backtest(Scripted({0: 1, 1: 1, 2: 0}), market, config, start=0)
    f = res.frame
    # t=0: buy floor(2000 / (100 * 2 * 1.01)) = 9 shares, filled at t=1's open 105 + 1 tick = 106:
    # notional 9 * 106 * 2 = 1908, fee 19.08, cash 72.92; marked at 110: 72.92 + 1980 = 2052.92.
    # t=1: the same action again holds. t=2: sell 9 at 125 - 1 = 124: notional 2232, fee 44.64.
    equity = [2000.0, 2052.92, 72.92 + 2160.0, 72.92 + 2232.0 - 44.64]
    assert f["t"].tolist() == [0, 1, 2, 3]
    assert f["equity"].to_numpy() == pytest.approx(equity)
    assert f["position"].tolist() == [0.0, 9.0, 9.0, 0.0]
    assert f["fee"].to_numpy() == pytest.approx([0.0, 19.08, 0.0, 44.64])
    assert f["slippage"].to_numpy() == pytest.approx([0.0, 18.0, 0.0, 18.0])  # 9 shares * 1 tick * 2
    assert f["traded_notional"].to_numpy() == pytest.approx([0.0, 1908.0, 0.0, 2232.0])
    assert f["action"].tolist() == [-1, 1, 1, 0]  # the first row is the initial state: no action yet
    assert f["exposure"].to_numpy() == pytest.approx([0.0, 1980.0 / equity[1], 2160.0 / equity[2], 0.0])
    log_returns = [0.0] + [math.log(b / a) for a, b in itertools.pairwise(equity)]
    assert f["log_return"].to_numpy() == pytest.approx(log_returns)
    assert f["close"].tolist() == [100.0, 110.0, 120.0, 100.0]
    assert f.index.equals(pd.bdate_range("2024-01-01", periods=4))
    assert res.name == "scripted" and res.initial_cash == 2000.0


def test_bars_without_dates_give_a_frame_indexed_by_row() -> None:
    config = EnvConfig(instrument=COSTLY, window=1, episode_length=None, initial_cash=2000.0)
    market = market_of(opens=[100, 105, 115], closes=[100, 110, 120], dated=False)
    res = run_backtest(Scripted({}), market, config, start=0)
    assert res.frame.index.tolist() == [0, 1, 2]
    assert res.frame["equity"].tolist() == [2000.0, 2000.0, 2000.0]


def test_the_policy_sees_this_market_one_env_and_the_bar_it_decides_at() -> None:
    config = EnvConfig(instrument=COSTLY, window=2, episode_length=None, initial_cash=2000.0)
    market = market_of(opens=[100] * 5, closes=[100] * 5)
    policy = Scripted({})
    run_backtest(policy, market, config, start=1)
    assert len(policy.resets) == 1 and policy.resets[0][0] is market and policy.resets[0][1] == 1
    assert [int(t[0]) for _, t in policy.seen] == [1, 2, 3]  # decisions at 1..3, the last mark at 4
    for obs, t in policy.seen:  # the feature window: rows t-1, t (the feature is the row number)
        assert obs.shape[0] == 1 and obs[0, :2].tolist() == [t[0] - 1, t[0]]


def test_without_start_it_runs_the_whole_market_from_the_first_full_window() -> None:
    # episode_length=2 would cut a training episode short at a random start; a backtest never is.
    config = EnvConfig(instrument=COSTLY, window=3, episode_length=2, initial_cash=2000.0)
    market = market_of(opens=[100] * 8, closes=[100] * 8)
    res = run_backtest(Scripted({}), market, config)
    assert res.frame["t"].tolist() == [2, 3, 4, 5, 6, 7]


def test_end_is_the_last_bar_marked() -> None:
    config = EnvConfig(instrument=COSTLY, window=1, episode_length=None, initial_cash=2000.0)
    market = market_of(opens=[100] * 8, closes=[100] * 8)
    res = run_backtest(Scripted({}), market, config, start=2, end=5)
    assert res.frame["t"].tolist() == [2, 3, 4, 5]


def test_a_wiped_out_account_ends_the_backtest_with_its_equity_floored_in_the_ratios() -> None:
    # Futures without costs, margin 100 %: short 10 contracts at 100, the close jumps to 250.
    inst = kospi200_futures_spec(
        multiplier=1.0, margin_rate=1.0, buy_fee=0.0, sell_fee=0.0, slippage_ticks=0.0
    )
    config = EnvConfig(
        instrument=inst, levels=(-10.0, 0.0), window=1, episode_length=None, initial_cash=1000.0
    )
    market = market_of(opens=[100, 100, 250, 260], closes=[100, 250, 260, 270])
    f = run_backtest(Scripted({0: 0}), market, config, start=0).frame
    # Equity 1000 + 10 * 100 - 10 * 250 = -500: bankrupt, nothing follows (bars 2 and 3 are never reached).
    assert f["t"].tolist() == [0, 1]
    assert f["equity"].tolist() == [1000.0, -500.0]
    # Ratios to equity use max(equity, 1e-12): a finite log return and a huge exposure.
    assert f["log_return"].iloc[1] == pytest.approx(math.log(1e-12) - math.log(1000.0))
    assert f["exposure"].iloc[1] == pytest.approx(-10 * 250 / 1e-12)
