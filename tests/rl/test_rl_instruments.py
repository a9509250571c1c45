"""Instrument specs read ``pipeline.market``; the env charges the sell tax in force on each fill's day."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from pipeline.market import (
    FUTURES_FEE_RATE,
    FUTURES_MARGIN_RATE,
    FUTURES_MULTIPLIER,
    FUTURES_TICK,
    STOCK_FEE_RATE,
    InstrumentKind,
)
from pipeline.rl.env import EnvConfig, VecTradingEnv
from pipeline.rl.instruments import (
    InstrumentSpec,
    etf_spec,
    instrument_from_dict,
    instrument_spec,
    kospi200_futures_spec,
    stock_spec,
)


def test_specs_carry_the_market_facts_of_their_kind() -> None:
    futures = kospi200_futures_spec()
    assert futures.kind is InstrumentKind.FUTURES and futures.kind == "futures"
    assert futures.multiplier == FUTURES_MULTIPLIER and futures.margin_rate == FUTURES_MARGIN_RATE
    assert futures.buy_fee == futures.sell_fee == FUTURES_FEE_RATE
    assert futures.ticks(np.array([350.0]))[0] == FUTURES_TICK and futures.allow_short
    for spec in (stock_spec(), etf_spec()):
        assert spec.buy_fee == spec.sell_fee == STOCK_FEE_RATE and spec.multiplier == 1.0
        assert not spec.allow_short and spec.margin_rate == 1.0
    assert instrument_spec("etf") == etf_spec() and instrument_spec("futures") == kospi200_futures_spec()


def test_stock_and_etf_slippage_ticks_follow_their_own_krx_tables() -> None:
    prices = np.array([1_999, 2_000, 4_990, 10_000, 49_950, 50_000, 199_900, 200_000, 600_000])
    assert stock_spec().ticks(prices).tolist() == [1, 5, 5, 10, 50, 100, 100, 500, 1000]
    assert etf_spec().ticks(prices).tolist() == [1, 5, 5, 5, 5, 5, 5, 5, 5]
    assert stock_spec(tick_size=10.0).ticks(prices).tolist() == [10.0] * 9


@pytest.mark.parametrize(
    ("day", "rate"),
    [("2014-06-02", 0.0030), ("2019-06-03", 0.0025), ("2025-03-04", 0.0015), ("2026-01-02", 0.0020)],
)
def test_stock_sell_tax_is_the_one_in_force_on_each_days_date(day: str, rate: float) -> None:
    days = np.array([day], dtype="datetime64[D]")
    assert stock_spec().sell_taxes(days) == pytest.approx([rate])
    assert stock_spec(day=dt.date.fromisoformat(day)).sell_tax == pytest.approx(rate)


def test_etfs_and_futures_pay_no_sell_tax_on_any_date() -> None:
    days = np.array(["2014-06-02", "2026-01-02"], dtype="datetime64[D]")
    for spec in (etf_spec(), kospi200_futures_spec()):
        assert spec.sell_taxes(days).tolist() == [0.0, 0.0]
        assert spec.sell_taxes(None, n=2).tolist() == [0.0, 0.0]


def test_a_stock_market_without_bar_dates_needs_an_explicit_tax() -> None:
    with pytest.raises(ValueError, match="date"):
        stock_spec().sell_taxes(None, n=3)
    assert stock_spec(sell_tax=0.001).sell_taxes(None, n=2).tolist() == [0.001, 0.001]


def test_an_index_is_not_tradable_and_specs_round_trip_through_json_form() -> None:
    with pytest.raises(ValueError, match="not tradable"):
        instrument_spec("index")
    for spec in (stock_spec(), etf_spec(), kospi200_futures_spec(), stock_spec(day=dt.date(2018, 1, 2))):
        data = spec.to_dict()
        assert data["kind"] in {"stock", "etf", "futures"} and type(data["kind"]) is str
        assert instrument_from_dict(data) == spec
    old = {  # agents saved before taxes followed the date
        "kind": "stock",
        "multiplier": 1.0,
        "tick_size": None,
        "buy_fee": 0.00015,
        "sell_fee": 0.00015,
        "sell_tax": 0.002,
        "margin_rate": 1.0,
        "slippage_ticks": 1.0,
    }
    assert instrument_from_dict(old) == InstrumentSpec(sell_tax=0.002)


def _round_trip(make_market, spec: InstrumentSpec, start: str) -> tuple[float, float]:
    """99 units bought at bar 1's open, sold at bar 2's open: (sold notional, the sell's fee + tax)."""
    market = make_market(
        opens=[10_000, 10_000, 10_100, 10_300], closes=[10_000, 10_200, 10_300, 10_400], start=start
    )
    config = EnvConfig(instrument=spec, window=1, episode_length=None, initial_cash=1e6)
    env = VecTradingEnv(market, config, auto_reset=False)
    env.reset(start=0)
    *_, info = env.step(np.array([1]))
    assert info["position"][0] == 99
    *_, info = env.step(np.array([0]))
    return float(info["traded_notional"][0]), float(info["fee"][0])


@pytest.mark.parametrize(("start", "tax"), [("2018-03-05", 0.0030), ("2025-03-03", 0.0015)])
def test_a_stock_backtest_in_an_old_year_charges_that_years_tax(make_market, start: str, tax: float) -> None:
    notional, fee = _round_trip(make_market, stock_spec(), start)
    assert notional == 99 * (10_100 - 10)  # KRX stock tick at 10,100 KRW: 10
    assert fee == pytest.approx(notional * (STOCK_FEE_RATE + tax), rel=1e-12)


def test_an_etf_round_trip_pays_fees_but_no_tax(make_market) -> None:
    notional, fee = _round_trip(make_market, etf_spec(), "2018-03-05")
    assert notional == 99 * (10_100 - 5)  # ETF tick above 2,000 KRW: 5
    assert fee == pytest.approx(notional * STOCK_FEE_RATE, rel=1e-12)


def test_the_tax_follows_the_fill_date_across_a_rate_change(make_market) -> None:
    # Bars on 2025-12-30, 12-31 (no KRX session, but a weekday here), 2026-01-01, 01-02: fills on the last
    # two days pay 2026's 0.20 %, a fill on 2025-12-31 pays 2025's 0.15 %.
    market = make_market(opens=[10_000] * 4, closes=[10_000] * 4, start="2025-12-30")
    env = VecTradingEnv(market, EnvConfig(window=1, episode_length=None, initial_cash=1e6), auto_reset=False)
    np.testing.assert_allclose(env.sell_tax, [0.0015, 0.0015, 0.0020, 0.0020])
    env.reset(start=0)
    env.step(np.array([1]))  # buys at 12-31
    *_, info = env.step(np.array([0]))  # sells at 2026-01-01's open - 1 tick
    assert info["traded_notional"][0] == 99 * 9_990
    assert info["fee"][0] == pytest.approx(99 * 9_990 * (STOCK_FEE_RATE + 0.0020), rel=1e-12)
