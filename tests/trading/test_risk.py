"""Risk limits: each rule refuses an order over its limit and lets the one within it through."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from pipeline.config import get_settings
from pipeline.market import FUTURES_MULTIPLIER, KST
from pipeline.trading.risk import (
    RiskContext,
    RiskLimits,
    RiskLimitsError,
    bar_end,
    check_daily_loss,
    check_order,
    is_stale,
    load_limits,
)
from pipeline.trading.types import ProposedOrder

NOW = dt.datetime(2026, 3, 10, 10, 0, tzinfo=KST)
#: No limit at all: a test turns on the one rule it is about.
NONE = RiskLimits(
    max_position=None,
    max_order_quantity=None,
    max_order_notional=None,
    max_gross_exposure=None,
    max_orders_per_day=None,
    daily_loss_limit=None,
    check_price_band=False,
)


def order(quantity: int, side: str = "buy", **kw: Any) -> ProposedOrder:
    values: dict[str, Any] = {
        "account": "main",
        "spec": "stocks-1d",
        "symbol": "005930",
        "kind": "stock",
        "side": side,
        "quantity": quantity,
        "price": 50_000.0,
        "multiplier": 1.0,
        "position_before": 0,
        "decision_ts": NOW,
    }
    values.update(kw)
    return ProposedOrder(**values)


def limits(**kw: Any) -> RiskLimits:
    return NONE.model_copy(update=kw)


def rules(lim: RiskLimits, o: ProposedOrder, **ctx: Any) -> list[str]:
    return [r.rule for r in check_order(lim, o, RiskContext(now=NOW, **ctx))]


def kst(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=KST)


# --- position ---------------------------------------------------------------------------------


def test_position_after_the_order_above_max_position_is_refused_and_within_it_passes() -> None:
    lim = limits(max_position=5)
    [rejection] = check_order(lim, order(3, position_before=3), RiskContext(now=NOW))
    assert rejection.rule == "max_position"
    assert "+6" in rejection.reason and "max_position 5" in rejection.reason
    assert rules(lim, order(2, position_before=3)) == []
    assert rules(lim, order(6, side="sell", kind="futures", symbol="101W06")) == [
        "max_position"
    ]  # short side


def test_a_per_symbol_override_replaces_max_position_for_that_symbol_only() -> None:
    lim = limits(max_position=5, max_position_by_symbol={"005930": 10, "000660": 2})
    assert rules(lim, order(8)) == []
    assert rules(lim, order(11)) == ["max_position"]
    assert rules(lim, order(8, symbol="035420")) == ["max_position"]
    [rejection] = check_order(lim, order(3, symbol="000660"), RiskContext(now=NOW))
    assert "max_position_by_symbol[000660] 2" in rejection.reason
    assert rules(lim, order(2, symbol="000660")) == []


def test_a_futures_contract_finds_the_override_of_the_continuous_series() -> None:
    lim = limits(max_position=10, max_position_by_symbol={"KOSPI200F": 1})
    futures = {"kind": "futures", "symbol": "101W06", "multiplier": FUTURES_MULTIPLIER, "price": 350.0}
    assert rules(lim, order(2, **futures)) == ["max_position"]
    assert rules(lim, order(1, **futures)) == []


# --- order size -------------------------------------------------------------------------------


def test_order_quantity_above_max_order_quantity_is_refused_with_both_numbers() -> None:
    lim = limits(max_order_quantity=50)
    [rejection] = check_order(lim, order(60), RiskContext(now=NOW))
    assert (rejection.rule, rejection.reason) == (
        "max_order_quantity",
        "order quantity 60 > max_order_quantity 50",
    )
    assert rules(lim, order(50)) == []


def test_order_notional_counts_the_futures_multiplier() -> None:
    lim = limits(max_order_notional=100_000_000)
    futures = {"kind": "futures", "symbol": "101W06", "multiplier": FUTURES_MULTIPLIER, "price": 350.0}
    [rejection] = check_order(lim, order(2, **futures), RiskContext(now=NOW))  # 2 x 350 x 250,000
    assert rejection.rule == "max_order_notional" and "175,000,000 KRW" in rejection.reason
    assert rules(lim, order(1, **futures)) == []  # 87,500,000


def test_a_limit_order_is_valued_at_its_limit_price() -> None:
    lim = limits(max_order_notional=1_000_000)
    assert rules(lim, order(20, order_type="limit", limit_price=60_000.0)) == ["max_order_notional"]
    assert rules(lim, order(20, order_type="limit", limit_price=40_000.0)) == []


# --- gross exposure ---------------------------------------------------------------------------


def test_gross_exposure_after_the_order_above_the_cap_is_refused() -> None:
    lim = limits(max_gross_exposure=10_000_000)
    held = {"000660": (100, 50_000.0, 1.0), "005930": (0, 50_000.0, 1.0)}  # 5,000,000 KRW held
    [rejection] = check_order(lim, order(120), RiskContext(now=NOW, positions=held))
    assert rejection.rule == "max_gross_exposure" and "11,000,000 KRW" in rejection.reason
    assert rules(lim, order(90), positions=held) == []


def test_a_short_futures_position_adds_to_gross_exposure() -> None:
    lim = limits(max_gross_exposure=200_000_000)
    held = {"101W06": (-2, 350.0, FUTURES_MULTIPLIER)}  # 175,000,000 KRW
    assert rules(lim, order(600), positions=held) == ["max_gross_exposure"]  # + 30,000,000
    assert rules(lim, order(400), positions=held) == []  # + 20,000,000


# --- orders per day ---------------------------------------------------------------------------


def test_the_order_past_max_orders_per_day_is_refused() -> None:
    lim = limits(max_orders_per_day=200)
    [rejection] = check_order(lim, order(1), RiskContext(now=NOW, orders_today=200))
    assert rejection.rule == "max_orders_per_day" and "200" in rejection.reason
    assert rules(lim, order(1), orders_today=199) == []


# --- price band -------------------------------------------------------------------------------


def test_a_price_outside_the_daily_limit_band_is_refused() -> None:
    lim = limits(check_price_band=True)
    band = (35_000.0, 65_000.0)
    [rejection] = check_order(lim, order(1, price=66_000.0), RiskContext(now=NOW, price_band=band))
    assert rejection.rule == "price_band" and "35,000.00..65,000.00" in rejection.reason
    assert rules(lim, order(1, price=64_000.0), price_band=band) == []
    assert rules(lim, order(1, order_type="limit", limit_price=34_000.0), price_band=band) == ["price_band"]
    assert rules(limits(check_price_band=False), order(1, price=66_000.0), price_band=band) == []


# --- de-risking -------------------------------------------------------------------------------


def test_an_order_that_only_reduces_a_position_is_never_blocked_by_position_or_exposure_limits() -> None:
    lim = limits(max_position=5, max_gross_exposure=1_000_000, check_price_band=True)
    held = {"005930": (30, 50_000.0, 1.0)}  # 1,500,000 KRW: both limits already exceeded
    assert rules(lim, order(10, side="sell", position_before=30), positions=held) == []
    assert rules(lim, order(30, side="sell", position_before=30), positions=held) == []
    # adding to it, or flipping through zero to a short above the limit, is still refused
    assert rules(lim, order(1, position_before=30), positions=held) == ["max_position", "max_gross_exposure"]
    assert rules(lim, order(36, side="sell", position_before=30), positions=held) == ["max_position"]
    assert rules(lim, order(33, side="sell", position_before=30), positions=held) == []  # a short of 3 fits
    # the price band still applies to a reducing order
    band = (60_000.0, 70_000.0)
    assert rules(lim, order(10, side="sell", position_before=30), price_band=band) == ["price_band"]


def test_every_broken_rule_is_reported_at_once() -> None:
    lim = RiskLimits(
        max_position=5, max_order_quantity=50, max_order_notional=1_000_000, max_orders_per_day=3
    )
    assert rules(lim, order(60), orders_today=3) == [
        "max_order_quantity",
        "max_order_notional",
        "max_position",
        "max_orders_per_day",
    ]


# --- stale data -------------------------------------------------------------------------------


def test_a_minute_bar_older_than_two_intervals_is_stale() -> None:
    lim = RiskLimits()
    ended = bar_end(kst(2026, 3, 10, 10, 0), "1m")  # the 10:00 bar ends at 10:01
    stale = is_stale(ended, "1m", kst(2026, 3, 10, 10, 3, 30), lim)
    assert stale is not None and stale.rule == "stale_data" and "2.5 intervals" in stale.reason
    assert is_stale(ended, "1m", kst(2026, 3, 10, 10, 2, 30), lim) is None
    assert is_stale(None, "1m", NOW, lim) is not None


def test_a_daily_bar_is_aged_in_sessions_not_calendar_days() -> None:
    lim = RiskLimits(stale_after_intervals=1)
    friday = bar_end(kst(2026, 3, 6), "1d")  # bars are stamped 00:00 KST of their session
    assert is_stale(friday, "1d", kst(2026, 3, 9, 9, 0), lim) is None  # Monday: the weekend does not count
    stale = is_stale(friday, "1d", kst(2026, 3, 10, 9, 0), lim)  # Tuesday: Monday's bar is missing
    assert stale is not None and "2.0 sessions" in stale.reason
    assert is_stale(friday, "1d", kst(2026, 3, 7, 12, 0), lim) is None  # Saturday


def test_a_holiday_week_does_not_make_the_last_daily_bar_stale() -> None:
    lim = RiskLimits()  # stale after 2 sessions
    before_seollal = bar_end(kst(2026, 2, 13), "1d")  # Friday; 16-18 Feb 2026 are Seollal holidays
    assert is_stale(before_seollal, "1d", kst(2026, 2, 19, 9, 5), lim) is None  # 6 days later, 1 session
    assert is_stale(before_seollal, "1d", kst(2026, 2, 20, 9, 5), lim) is None
    assert is_stale(before_seollal, "1d", kst(2026, 2, 23, 9, 5), lim) is not None  # 3 sessions behind


# --- daily loss -------------------------------------------------------------------------------


def test_a_loss_reaching_the_daily_loss_limit_is_a_breach() -> None:
    lim = RiskLimits(daily_loss_limit=5_000_000)
    breach = check_daily_loss(lim, 100_000_000, 94_000_000)
    assert breach is not None and breach.rule == "daily_loss_limit"
    assert "6,000,000 KRW" in breach.reason and "5,000,000 KRW" in breach.reason
    assert check_daily_loss(lim, 100_000_000, 96_000_000) is None
    assert check_daily_loss(lim, 100_000_000, 130_000_000) is None  # a gain
    assert check_daily_loss(lim, None, 1.0) is None  # no snapshot yet today
    assert check_daily_loss(lim.model_copy(update={"daily_loss_limit": None}), 100.0, 1.0) is None


# --- limits as data ---------------------------------------------------------------------------


def test_limits_come_from_the_krx_trading_risk_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "KRX_TRADING_RISK", '{"max_order_quantity": 3, "max_position_by_symbol": {"005930": 7}}'
    )
    get_settings.cache_clear()
    lim = load_limits(get_settings())
    assert lim.max_order_quantity == 3 and lim.position_limit("005930") == (
        7,
        "max_position_by_symbol[005930]",
    )
    assert lim.max_orders_per_day == RiskLimits().max_orders_per_day  # the rest keeps the defaults
    assert rules(lim, order(4)) == ["max_order_quantity"]


@pytest.mark.parametrize(
    ("risk_json", "named"),
    [('{"max_order_qty": 3}', "max_order_qty"), ('{"max_position": "many"}', "max_position")],
)
def test_a_bad_field_in_krx_trading_risk_is_named(
    monkeypatch: pytest.MonkeyPatch, risk_json: str, named: str
) -> None:
    monkeypatch.setenv("KRX_TRADING_RISK", risk_json)
    get_settings.cache_clear()
    with pytest.raises(RiskLimitsError, match=f"KRX_TRADING_RISK: {named}:"):
        load_limits(get_settings())


def test_hard_caps_missing_names_the_caps_not_configured_explicitly(monkeypatch: pytest.MonkeyPatch) -> None:
    assert RiskLimits().hard_caps_missing() == [
        "max_position",
        "max_order_notional",
        "max_gross_exposure",
        "daily_loss_limit",
    ]  # defaults do not count
    monkeypatch.setenv("KRX_TRADING_RISK", '{"max_position": 2, "daily_loss_limit": 1000000}')
    get_settings.cache_clear()
    settings = get_settings()
    lim = load_limits(settings)
    assert lim.hard_caps_missing(set(settings.trading_risk)) == ["max_order_notional", "max_gross_exposure"]
    full = {"max_position": 2, "max_order_notional": 1e8, "max_gross_exposure": 1e9, "daily_loss_limit": 1e6}
    assert RiskLimits(**full).hard_caps_missing() == []
    assert RiskLimits(**{**full, "max_position": None}).hard_caps_missing() == [
        "max_position"
    ]  # null: no cap
