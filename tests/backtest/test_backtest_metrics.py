"""Backtest metrics, the backtest loop and the baselines, on hand-built paths."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.backtest.engine import run_backtest
from pipeline.backtest.metrics import METRIC_NAMES, compute_metrics, holding_periods, sharpe_ci
from pipeline.backtest.plot import plot_backtests
from pipeline.backtest.policies import (
    BASELINES,
    BuyAndHold,
    Momentum,
    RandomPolicy,
    SMACrossover,
    make_baseline,
)
from pipeline.rl.env import EnvConfig
from pipeline.rl.instruments import kospi200_futures_spec, stock_spec

STOCK = EnvConfig(instrument=stock_spec(tick_size=1.0), window=1, episode_length=None, initial_cash=1e6)


def test_metrics_of_a_hand_built_equity_path(make_result) -> None:
    res = make_result(
        equity=[100.0, 110.0, 99.0, 108.9, 108.9],
        position=[0, 1, 1, 1, 0],
        traded_notional=[0, 100.0, 0, 0, 108.9],
        fee=[0, 0.5, 0, 0, 0.5],
    )
    m = compute_metrics(res, periods_per_year=4)  # 4 bars = one year, so annual = total
    rets = np.array([0.1, -0.1, 0.1, 0.0])
    assert set(m) == set(METRIC_NAMES)
    assert m["total_return"] == pytest.approx(0.089)
    assert m["annual_return"] == pytest.approx(0.089)
    assert m["max_drawdown"] == pytest.approx(0.1)
    assert m["calmar"] == pytest.approx(0.89)
    assert m["sharpe"] == pytest.approx(rets.mean() / rets.std(ddof=1) * 2)
    assert m["sortino"] == pytest.approx(rets.mean() / math.sqrt(0.01 / 4) * 2)
    assert m["hit_rate"] == pytest.approx(2 / 3)  # held over bars 1-3: up, down, up
    assert m["avg_holding_period"] == 3
    assert m["n_trades"] == 2
    assert m["turnover"] == pytest.approx(208.9 / np.mean([100, 110, 99, 108.9, 108.9]))
    assert m["costs_paid"] == pytest.approx(1.0) and m["costs_pct"] == pytest.approx(0.01)


def test_costs_paid_count_slippage_as_well_as_fees(make_result) -> None:
    res = make_result(
        equity=[100.0, 110.0, 99.0, 108.9, 108.9],
        position=[0, 1, 1, 1, 0],
        traded_notional=[0, 100.0, 0, 0, 108.9],
        fee=[0, 0.5, 0, 0, 0.5],
    )
    res.frame["slippage"] = [0, 0.25, 0, 0, 0.35]  # one tick away from each open, on both trades
    m = compute_metrics(res, periods_per_year=4)
    assert m["costs_paid"] == pytest.approx(1.0 + 0.6)
    assert m["costs_pct"] == pytest.approx(1.6 / 100)


def test_a_backtests_costs_are_its_fees_plus_its_slippage(make_market) -> None:
    closes = [1000.0, 1010.0, 1030.0, 1020.0, 1050.0]
    res = run_backtest(BuyAndHold(STOCK), make_market(closes), STOCK, start=0)
    shares, fill = 998, 1000.0 + 1.0  # one buy at bar 1's open plus one 1-KRW tick (as above)
    assert res.frame["position"].iloc[-1] == shares
    m = compute_metrics(res)
    fee, slippage = shares * fill * 0.00015, shares * 1.0
    assert res.frame["slippage"].sum() == pytest.approx(slippage)
    assert m["costs_paid"] == pytest.approx(fee + slippage)
    assert m["costs_pct"] == pytest.approx((fee + slippage) / 1e6)


def test_sharpe_interval_follows_lo_2002_and_is_zero_for_a_flat_strategy() -> None:
    assert sharpe_ci(np.zeros(50), 252) == (0.0, 0.0, 0.0)
    r = np.random.default_rng(0).normal(0.001, 0.01, 400)
    sr = r.mean() / r.std(ddof=1)
    se = math.sqrt((1 + sr**2 / 2) / 400)
    got = sharpe_ci(r, 252)
    assert got == pytest.approx(
        (sr * math.sqrt(252), (sr - 1.96 * se) * math.sqrt(252), (sr + 1.96 * se) * math.sqrt(252))
    )


def test_holding_periods_split_on_sign_changes() -> None:
    assert holding_periods(np.array([0, 1, 1, -1, -1, -1, 0, 2])).tolist() == [2, 3, 1]


def test_buy_and_hold_backtest_pays_one_buy_and_tracks_the_price(make_market) -> None:
    closes = [1000.0, 1010.0, 1030.0, 1020.0, 1050.0]
    res = run_backtest(BuyAndHold(STOCK), make_market(closes), STOCK, start=0)
    f = res.frame
    assert len(f) == 5 and f.index[0] == make_market(closes).index[0]
    fill = 1000.0 + 1.0  # bar 1 opens at bar 0's close, plus one tick
    # Sized at bar 0's close (999 shares), then cut to what cash buys at the fill.
    shares = min(math.floor(1e6 / (1000 * 1.00015)), math.floor(1e6 / (fill * 1.00015)))
    assert shares == 998
    cash = 1e6 - shares * fill * 1.00015
    np.testing.assert_allclose(f["equity"].iloc[1:], cash + shares * np.array(closes[1:]), rtol=1e-12)
    assert (f["traded_notional"] > 0).sum() == 1
    assert f["action"].iloc[0] == -1 and (f["action"].iloc[1:] == 1).all()


def test_signal_baselines_use_only_past_closes(make_market) -> None:
    rng = np.random.default_rng(3)
    closes = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, 200)))
    altered = closes.copy()
    altered[121:] *= 0.5
    t = np.arange(200)
    for policy in (SMACrossover(STOCK), Momentum(STOCK)):
        policy.reset(make_market(closes), 1)
        before = policy.act(np.zeros((200, 1)), t)
        policy.reset(make_market(altered), 1)
        after = policy.act(np.zeros((200, 1)), t)
        np.testing.assert_array_equal(before[:121], after[:121])


def test_momentum_goes_short_with_futures_and_flat_with_stocks(make_market) -> None:
    falling = make_market(np.linspace(400, 300, 60))
    futures = EnvConfig(instrument=kospi200_futures_spec(), levels=(-1.0, 0.0, 1.0), window=1)
    for config, expected in ((futures, 0), (STOCK, 0)):
        policy = Momentum(config)
        policy.reset(falling, 1)
        assert policy.act(np.zeros((1, 1)), np.array([50]))[0] == expected
    assert Momentum(futures).short_a == 0 and Momentum(STOCK).short_a == Momentum(STOCK).flat_a


def test_random_baseline_is_reproducible_and_holds_for_a_while(make_market) -> None:
    market = make_market(np.linspace(100, 110, 300))
    runs = [run_backtest(RandomPolicy(STOCK, seed=5), market, STOCK).frame["action"] for _ in range(2)]
    np.testing.assert_array_equal(runs[0], runs[1])
    changes = (np.diff(runs[0].to_numpy()[1:]) != 0).sum()
    assert 5 < changes < 60  # about one redraw in ten bars, half of which pick the same action


def test_every_named_baseline_exists() -> None:
    assert {make_baseline(name, STOCK).name for name in BASELINES} == set(BASELINES)
    with pytest.raises(ValueError, match="unknown baseline"):
        make_baseline("oracle", STOCK)


def test_backtest_figure_is_written_as_png(make_market, tmp_path) -> None:
    market = make_market(np.linspace(100, 120, 80))
    results = [run_backtest(make_baseline(n, STOCK), market, STOCK) for n in BASELINES]
    path = plot_backtests(results, tmp_path / "fig" / "bt.png", "test")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
