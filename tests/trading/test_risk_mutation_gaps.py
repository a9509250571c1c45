"""Risk limits at their edges: an order exactly at a limit passes, the way out of a position is never
blocked, staleness is counted on the KST calendar whatever the machine's time zone, and every refusal and
configuration error names what broke (gaps found by mutation testing, ``tools/mutation.py``)."""

from __future__ import annotations

import datetime as dt

import pytest

from pipeline.config import get_settings
from pipeline.trading.risk import (
    RiskContext,
    RiskLimits,
    RiskLimitsError,
    bar_age,
    bar_end,
    check_daily_loss,
    check_order,
    is_stale,
    load_limits,
)
from tests.trading.conftest import MACHINE_ZONES
from tests.trading.test_risk import NOW, kst, limits, order, rules

# --- exactly at a limit -----------------------------------------------------------------------


def test_an_order_exactly_at_max_order_notional_passes_and_one_share_more_is_refused() -> None:
    lim = limits(max_order_notional=5_000_000)
    assert rules(lim, order(100)) == []  # 100 x 50,000 = the cap
    assert rules(lim, order(101)) == ["max_order_notional"]


def test_gross_exposure_exactly_at_the_cap_passes_and_one_share_more_is_refused() -> None:
    lim = limits(max_gross_exposure=10_000_000)
    held = {"000660": (100, 50_000.0, 1.0)}  # 5,000,000 KRW
    assert rules(lim, order(100), positions=held) == []  # 10,000,000 KRW after the order
    assert rules(lim, order(101), positions=held) == ["max_gross_exposure"]


def test_a_price_exactly_on_either_edge_of_the_daily_limit_band_passes() -> None:
    lim = limits(check_price_band=True)
    band = (35_000.0, 65_000.0)
    assert rules(lim, order(1, price=35_000.0), price_band=band) == []
    assert rules(lim, order(1, price=65_000.0), price_band=band) == []
    assert rules(lim, order(1, price=34_999.0), price_band=band) == ["price_band"]


def test_a_loss_exactly_at_the_daily_loss_limit_engages_the_kill_switch_with_the_numbers() -> None:
    lim = RiskLimits(daily_loss_limit=5_000_000)
    breach = check_daily_loss(lim, 100_000_000, 95_000_000)
    assert breach is not None and breach.rule == "daily_loss_limit"
    assert str(breach) == (
        "loss today 5,000,000 KRW (equity 100,000,000 KRW -> 95,000,000 KRW) "
        ">= daily_loss_limit 5,000,000 KRW"
    )
    assert check_daily_loss(lim, 100_000_000, 95_000_001) is None


# --- order quantity and price -----------------------------------------------------------------


@pytest.mark.parametrize("quantity", [0, -3])
def test_an_order_of_no_shares_is_refused_with_its_quantity(quantity: int) -> None:
    [rejection] = check_order(limits(), order(quantity), RiskContext(now=NOW))
    assert (rejection.rule, rejection.reason) == ("quantity", f"order quantity {quantity} is not positive")


def test_a_market_order_is_valued_at_its_reference_price_and_a_limit_order_without_a_price_too() -> None:
    lim = limits(max_order_notional=1_000_000)  # 20 x 50,000 = the cap
    assert rules(lim, order(20, limit_price=60_000.0)) == []  # market: the limit price is not what it pays
    assert rules(lim, order(20, order_type="limit")) == []
    assert rules(lim, order(21, order_type="limit")) == ["max_order_notional"]


# --- the position limit of a symbol -----------------------------------------------------------


def test_the_futures_series_override_does_not_apply_to_a_stock() -> None:
    lim = limits(max_position=10, max_position_by_symbol={"KOSPI200F": 1})
    assert rules(lim, order(5)) == []  # 005930 keeps max_position 10
    [rejection] = check_order(lim, order(11), RiskContext(now=NOW))
    assert rejection.reason.endswith("|11| > max_position 10")


# --- de-risking -------------------------------------------------------------------------------


def test_closing_the_last_share_is_never_blocked_by_a_gross_exposure_cap_lowered_since() -> None:
    lim = limits(max_gross_exposure=1_000_000)
    held = {"005930": (1, 50_000.0, 1.0), "000660": (100, 50_000.0, 1.0)}  # 5,050,000 KRW > the cap
    assert rules(lim, order(1, side="sell", position_before=1), positions=held) == []
    # the same order opening a short is judged like any other
    assert rules(lim, order(2, side="sell", position_before=1), positions=held) == ["max_gross_exposure"]


def test_a_short_is_reduced_and_closed_past_the_limits_but_never_grown_or_flipped_long() -> None:
    lim = limits(max_position=0, max_gross_exposure=1_000_000)  # both already broken
    held = {"005930": (-30, 50_000.0, 1.0), "000660": (100, 50_000.0, 1.0)}  # 6,500,000 KRW
    assert rules(lim, order(10, position_before=-30), positions=held) == []
    assert rules(lim, order(30, position_before=-30), positions=held) == []  # flat, 000660 still above
    grown = order(1, side="sell", position_before=-30)
    assert rules(lim, grown, positions=held) == ["max_position", "max_gross_exposure"]
    flipped = check_order(lim, order(31, position_before=-30), RiskContext(now=NOW, positions=held))
    assert [r.rule for r in flipped] == ["max_position", "max_gross_exposure"]
    assert flipped[0].reason == "position after the order +1 005930: |1| > max_position 0"


@pytest.mark.parametrize("before", [30, -30])
def test_an_order_of_no_shares_reduces_nothing_so_every_broken_rule_is_reported(before: int) -> None:
    lim = limits(max_position=5)  # lowered below the position held
    assert rules(lim, order(0, position_before=before)) == ["quantity", "max_position"]


# --- bar ends and staleness -------------------------------------------------------------------


def test_a_daily_bar_ends_at_the_next_midnight_kst_and_a_minute_bar_after_its_minutes() -> None:
    assert bar_end(kst(2026, 3, 6), "1d") == kst(2026, 3, 7)
    assert bar_end(kst(2026, 3, 10, 10, 0), "5m") == kst(2026, 3, 10, 10, 5)


@pytest.mark.parametrize("interval", ["1h", "0m", "m"])
def test_an_interval_staleness_cannot_measure_is_refused_by_name(interval: str) -> None:
    with pytest.raises(ValueError) as exc:
        bar_end(kst(2026, 3, 10, 10, 0), interval)
    assert str(exc.value) == (
        f"interval {interval!r}: staleness is measured for '1d' and minute intervals ('1m')"
    )


@pytest.mark.parametrize("interval", ["1m", "1d"])
def test_staleness_refuses_a_naive_time_on_either_side(interval: str) -> None:
    aware, naive = kst(2026, 3, 10, 10, 0), dt.datetime(2026, 3, 10, 10, 0)
    for ended, now in ((naive, aware), (aware, naive)):
        with pytest.raises(ValueError) as exc:
            bar_age(ended, interval, now)
        assert str(exc.value) == "staleness needs timezone-aware times"


@pytest.mark.parametrize("machine_tz", MACHINE_ZONES, indirect=True)
def test_daily_bars_are_aged_on_the_kst_calendar_whatever_the_machine_time_zone(machine_tz: str) -> None:
    lim = RiskLimits(stale_after_intervals=1)
    monday, friday = bar_end(kst(2026, 3, 9), "1d"), bar_end(kst(2026, 3, 6), "1d")
    # Wednesday: Tuesday's bar is missing; Tuesday before the open: Monday's bar is due (today counts)
    for ended, now in ((monday, kst(2026, 3, 11, 10, 0)), (friday, kst(2026, 3, 10, 8, 30))):
        stale = is_stale(ended, "1d", now, lim)
        assert stale is not None and " is 2.0 sessions old > stale_after_intervals 1" in stale.reason
    assert is_stale(monday, "1d", kst(2026, 3, 10, 10, 0), lim) is None  # Tuesday: 1 session


def test_with_under_one_interval_allowed_only_the_days_own_bar_is_fresh() -> None:
    lim = RiskLimits(stale_after_intervals=0.5)
    tuesday_evening = kst(2026, 3, 10, 18, 0)
    assert is_stale(bar_end(kst(2026, 3, 10), "1d"), "1d", tuesday_evening, lim) is None
    assert is_stale(bar_end(kst(2026, 3, 9), "1d"), "1d", tuesday_evening, lim) is not None


@pytest.mark.parametrize("machine_tz", MACHINE_ZONES, indirect=True)
def test_a_stale_refusal_says_when_the_bar_ended_in_kst(machine_tz: str) -> None:
    ended = bar_end(kst(2026, 3, 10, 10, 0), "1m")
    stale = is_stale(ended, "1m", kst(2026, 3, 10, 10, 3, 30), RiskLimits())
    assert stale is not None and stale.rule == "stale_data"
    assert (
        stale.reason
        == "latest 1m bar (ended 2026-03-10 10:01 KST) is 2.5 intervals old > stale_after_intervals 2"
    )


def test_no_bar_at_all_is_stale_data_naming_the_interval() -> None:
    stale = is_stale(None, "5m", NOW, RiskLimits())
    assert stale is not None and (stale.rule, stale.reason) == ("stale_data", "no 5m bar in the store")


# --- limits as data ---------------------------------------------------------------------------


def test_every_bad_field_of_krx_trading_risk_is_named_with_its_value_and_the_known_fields(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(
        "KRX_TRADING_RISK", '{"max_position": "many", "max_position_by_symbol": {"005930": -1}}'
    )
    get_settings.cache_clear()
    with pytest.raises(RiskLimitsError) as exc:
        load_limits(get_settings())
    problems, known = str(exc.value).split(". Known fields: ")
    first, second = problems.removeprefix("KRX_TRADING_RISK: ").split("; ")
    assert first.startswith("max_position: ") and first.endswith("(got 'many')")
    assert second.startswith("max_position_by_symbol.005930: ") and second.endswith("(got -1)")
    assert known.split(", ") == list(RiskLimits.model_fields)


def test_hard_caps_count_only_the_fields_the_operator_named() -> None:
    full = RiskLimits(max_position=2, max_order_notional=1e8, max_gross_exposure=1e9, daily_loss_limit=1e6)
    assert full.hard_caps_missing(set()) == list(RiskLimits.HARD_CAPS)
    assert full.hard_caps_missing({"max_position", "daily_loss_limit"}) == [
        "max_order_notional",
        "max_gross_exposure",
    ]
    assert RiskLimits().hard_caps_missing(set(RiskLimits.HARD_CAPS)) == ["max_position"]  # named, but null
