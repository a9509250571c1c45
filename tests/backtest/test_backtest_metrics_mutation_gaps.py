"""Backtest metrics where the first hand-built path could not tell right from wrong: years other than one,
short exposure, a wipe-out, one-bar and flat backtests, and the default annualisation (issue 14)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from pipeline.backtest.engine import BacktestResult
from pipeline.backtest.metrics import compute_metrics, holding_periods, max_drawdown, sharpe_ci

MakeResult = Callable[..., BacktestResult]


def test_annual_return_and_calmar_compound_over_two_years(make_result: MakeResult) -> None:
    res = make_result(equity=[100.0, 120.0, 90.0, 108.0, 121.0], position=[0, 1, 1, 1, 1])
    m = compute_metrics(res, periods_per_year=2)  # 4 returns = 2 years
    assert m["total_return"] == pytest.approx(0.21)
    assert m["annual_return"] == pytest.approx(math.sqrt(1.21) - 1.0)  # 10 % a year, not 21 %
    assert m["max_drawdown"] == pytest.approx(0.25)  # 120 -> 90
    assert m["calmar"] == pytest.approx(0.10 / 0.25)
    rets = np.array([0.2, -0.25, 0.2, 121 / 108 - 1])
    assert m["volatility"] == pytest.approx(rets.std(ddof=1) * math.sqrt(2))
    assert m["sharpe"] == pytest.approx(rets.mean() / rets.std(ddof=1) * math.sqrt(2))
    assert m["sortino"] == pytest.approx(rets.mean() / math.sqrt(0.25**2 / 4) * math.sqrt(2))
    assert m["turnover"] == 0.0 and m["n_trades"] == 0.0


def test_the_default_annualisation_is_252_bars_a_year(make_result: MakeResult) -> None:
    equity = 100.0 * np.cumprod([1.0, 1.01, 0.99, 1.02, 1.0, 1.01])
    res = make_result(equity=equity, position=[1] * 6)
    rets = equity[1:] / equity[:-1] - 1
    m = compute_metrics(res)
    assert m["sharpe"] == pytest.approx(rets.mean() / rets.std(ddof=1) * math.sqrt(252))
    assert m["volatility"] == pytest.approx(rets.std(ddof=1) * math.sqrt(252))
    years = 5 / 252
    assert m["annual_return"] == pytest.approx((equity[-1] / equity[0]) ** (1 / years) - 1)


def test_a_wiped_out_account_loses_everything_a_year(make_result: MakeResult) -> None:
    res = make_result(equity=[100.0, 50.0, -5.0], position=[0, 1, 1])
    m = compute_metrics(res, periods_per_year=2)
    assert m["annual_return"] == -1.0  # no fractional power of a negative equity
    assert m["total_return"] == pytest.approx(-1.05)
    assert m["max_drawdown"] == pytest.approx(1.05)


def test_exposure_is_the_mean_absolute_exposure_short_or_long(make_result: MakeResult) -> None:
    res = make_result(equity=[100.0, 101.0, 102.0, 101.0], position=[0, -2, -2, 1])
    res.frame["exposure"] = [0.0, -0.5, -1.0, 0.5]
    m = compute_metrics(res, periods_per_year=3)
    assert m["exposure"] == pytest.approx(0.5)
    assert m["hit_rate"] == pytest.approx(2 / 3)  # held over all three bars: up, up, down
    assert m["avg_holding_period"] == pytest.approx(1.5)  # a short run of 2, a long run of 1


def test_trades_and_turnover_count_only_bars_that_traded(make_result: MakeResult) -> None:
    res = make_result(
        equity=[100.0, 100.0, 100.0, 100.0], position=[0, 1, 1, 0], traded_notional=[0.0, 50.0, 0.0, 30.0]
    )
    m = compute_metrics(res, periods_per_year=6)  # 3 returns = half a year
    assert m["n_trades"] == 2.0
    assert m["turnover"] == pytest.approx(80.0 / 100.0 / 0.5)
    assert m["sharpe"] == 0.0 and math.isnan(m["sortino"]) and math.isnan(m["calmar"])
    assert m["volatility"] == 0.0 and m["max_drawdown"] == 0.0


def test_a_one_bar_backtest_reports_nothing_happened(make_result: MakeResult) -> None:
    m = compute_metrics(make_result(equity=[100.0], position=[0]), periods_per_year=252)
    expected: dict[str, Any] = {
        "total_return": 0.0,
        "annual_return": 0.0,
        "volatility": 0.0,
        "sharpe": 0.0,
        "max_drawdown": 0.0,
        "turnover": 0.0,
        "avg_holding_period": 0.0,
        "n_trades": 0.0,
        "costs_paid": 0.0,
    }
    assert {k: m[k] for k in expected} == expected
    assert math.isnan(m["sortino"]) and math.isnan(m["hit_rate"]) and math.isnan(m["calmar"])


def test_sharpe_needs_two_returns_that_move() -> None:
    assert sharpe_ci(np.array([0.01]), 252) == (0.0, 0.0, 0.0)
    assert sharpe_ci(np.array([0.01, 0.01, 0.01]), 252) == (0.0, 0.0, 0.0)
    r = np.array([0.01, -0.02])
    sr = r.mean() / r.std(ddof=1)
    se = math.sqrt((1 + sr**2 / 2) / 2)
    got = sharpe_ci(r, 4, z=1.0)  # z is the interval's half-width in standard errors
    assert got == pytest.approx((sr * 2, (sr - se) * 2, (sr + se) * 2))
    assert sharpe_ci([1, 3], 1)[0] == pytest.approx(2 / math.sqrt(2))  # plain lists of ints are read too


def test_drawdown_and_holding_periods_of_plain_lists() -> None:
    assert max_drawdown(np.array([])) == 0.0
    assert max_drawdown([10, 8, 12, 6, 7]) == pytest.approx(0.5)  # ints, the later and deeper fall
    assert max_drawdown([1, 2, 3]) == 0.0
    assert holding_periods([0, 0, 0]).tolist() == []
    assert holding_periods([1, 1, 0, 0, -1]).tolist() == [2, 1]
    assert holding_periods([0.5, 2, -0.1]).dtype == np.float64  # fractional positions: runs by sign
    assert holding_periods([0.5, 2, -0.1]).tolist() == [2, 1]


def test_edges_of_each_rule_a_metric_names(make_result: MakeResult) -> None:
    near_zero = compute_metrics(make_result(equity=[100.0, 0.5], position=[0, 1]), periods_per_year=1)
    assert near_zero["annual_return"] == pytest.approx(-0.995)  # still positive equity: a real loss rate
    one_return = compute_metrics(make_result(equity=[100.0, 101.0], position=[0, 1]), periods_per_year=1)
    assert one_return["volatility"] == 0.0  # one return has no spread to measure
    assert math.isnan(one_return["sortino"])  # no losing bar: no downside deviation to divide by
    two = compute_metrics(make_result(equity=[100.0, 101.0, 100.0], position=[0, 1, 1]), periods_per_year=1)
    assert two["volatility"] == pytest.approx(np.std([0.01, 100 / 101 - 1], ddof=1))
    flat_bar = make_result(equity=[1.0, 1.0, 1.1, 1.1], position=[0, 1, 1, 1], traded_notional=[0, 0.4, 0, 0])
    m = compute_metrics(flat_bar, periods_per_year=3)
    assert m["hit_rate"] == pytest.approx(1 / 3)  # held over three bars: unchanged, up, unchanged
    assert m["n_trades"] == 1.0  # a trade worth less than one unit of money is still a trade
