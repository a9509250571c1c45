"""KRX market facts defined once: kinds, symbol rules, session hours, taxes by date, ticks, limits."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import numpy as np
import pytest

from pipeline.market import (
    FUTURES_MULTIPLIER,
    InstrumentKind,
    SymbolError,
    classify,
    contract_code,
    is_expiry_day,
    price_limit,
    sell_tax_rate,
    session_hours,
    tick_size,
    tick_sizes,
    validate_symbol,
)

ROOT = Path(__file__).parents[2]


@pytest.mark.parametrize(
    ("symbol", "kind"),
    [
        ("005930", InstrumentKind.STOCK),
        ("091160", InstrumentKind.ETF),
        ("101W09", InstrumentKind.FUTURES),
        ("KOSPI200F", InstrumentKind.FUTURES),
        ("KOSPI200", InstrumentKind.INDEX),
        ("0001", InstrumentKind.INDEX),
    ],
)
def test_every_symbol_has_exactly_one_kind(symbol: str, kind: InstrumentKind) -> None:
    assert classify(symbol) is kind


def test_settings_can_name_more_etfs_futures_series_and_indices() -> None:
    assert classify("360750", etfs=["360750"]) is InstrumentKind.ETF
    assert classify("MYFUT", futures=["MYFUT"]) is InstrumentKind.FUTURES
    assert classify("VKOSPI", indices=["VKOSPI"]) is InstrumentKind.INDEX


def test_kind_spellings_are_the_stored_values_and_unknown_ones_raise() -> None:
    assert InstrumentKind("futures") is InstrumentKind.FUTURES
    with pytest.raises(ValueError):
        InstrumentKind("future")
    with pytest.raises(ValueError):
        session_hours("future")


@pytest.mark.parametrize("symbol", ["005930", "0001A0", "101W09", "KOSPI", "SP500", "BRK.B", "my_csv-1"])
def test_valid_symbols_pass_unchanged(symbol: str) -> None:
    assert validate_symbol(symbol) == symbol


@pytest.mark.parametrize(
    "symbol", ["", "x" * 33, "../etc/passwd", "005 930", "삼성전자", "-lead", None, 5930]
)
def test_invalid_symbols_are_rejected_with_the_rule(symbol: object) -> None:
    with pytest.raises(SymbolError, match="symbol"):
        validate_symbol(symbol)


def test_futures_close_early_on_expiry_day_and_stocks_keep_their_hours() -> None:
    futures = session_hours(InstrumentKind.FUTURES)
    assert (futures.open, futures.close) == (dt.time(8, 45), dt.time(15, 45))
    assert futures.close_on(is_expiry_day(dt.date(2025, 9, 11))) == dt.time(15, 20)
    assert futures.close_on(is_expiry_day(dt.date(2025, 9, 10))) == dt.time(15, 45)
    for kind in ("stock", "etf", "index"):
        hours = session_hours(kind)
        assert (hours.open, hours.close_on(True)) == (dt.time(9, 0), dt.time(15, 30))


@pytest.mark.parametrize(
    ("day", "rate"),
    [
        (dt.date(2018, 12, 28), 0.0030),
        (dt.date(2019, 6, 3), 0.0025),
        (dt.date(2022, 6, 1), 0.0023),
        (dt.date(2023, 3, 2), 0.0020),
        (dt.date(2024, 12, 30), 0.0018),
        (dt.date(2025, 12, 30), 0.0015),
        (dt.date(2026, 1, 2), 0.0020),
    ],
)
def test_the_stock_sell_tax_is_the_one_in_force_that_day(day: dt.date, rate: float) -> None:
    assert sell_tax_rate("stock", day) == pytest.approx(rate)


def test_etfs_and_futures_pay_no_sell_tax() -> None:
    for kind in ("etf", "futures", "index"):
        assert sell_tax_rate(kind, dt.date(2018, 1, 2)) == 0.0


def test_ticks_follow_the_krx_tables() -> None:
    prices = np.array([1_999, 2_000, 4_999, 19_990, 49_950, 199_900, 499_500, 500_000], dtype=float)
    assert tick_sizes(prices).tolist() == [1, 5, 5, 10, 50, 100, 500, 1_000]
    assert tick_sizes(np.array([1_500.0, 9_000.0]), "etf").tolist() == [1, 5]
    assert tick_size(330.0, "futures") == 0.05
    assert 0.05 * FUTURES_MULTIPLIER == 12_500  # one futures tick is KRW 12,500 (spec §6)


def test_price_limits_per_kind() -> None:
    assert price_limit("stock") == 0.30 and price_limit("futures") == 0.20


def test_contract_codes_outside_the_year_table_raise_instead_of_guessing() -> None:
    assert contract_code(2025, 9) == "101W09"
    with pytest.raises(ValueError, match="year letter"):
        contract_code(2014, 9)


#: Facts that must live only in pipeline/market: a copy elsewhere drifts (the first wave had the stock tax
#: at 0.15 % in the simulator and 0.20 % in the backtests, and "future" vs "futures").
_COPIES = {
    "the KST zone name": re.compile(r"Asia/Seoul"),
    "the futures multiplier": re.compile(r"\b250[_,]?000(\.0)?\b(?!\s*\*)"),
    "the futures-code pattern": re.compile(r"101\[A-Z\]"),
    "the 'future' spelling": re.compile(r"[\"']future[\"']"),
}


#: Files allowed one named copy, each with a test that it equals the market package's value.
_ALLOWED = {("dags/krx_assets.py", "the KST zone name")}  # DAG files parse without importing pandas


def test_market_facts_are_defined_only_in_the_market_package() -> None:
    offenders = []
    for path in [
        *(ROOT / "pipeline").rglob("*.py"),
        *(ROOT / "dags").rglob("*.py"),
        *(ROOT / "serving").rglob("*.py"),
    ]:
        if "market" in path.relative_to(ROOT).parts[:2] or "migrations" in path.parts:
            continue
        text = path.read_text()
        rel = str(path.relative_to(ROOT))
        offenders += [
            f"{rel}: {what}"
            for what, rx in _COPIES.items()
            if rx.search(text) and (rel, what) not in _ALLOWED
        ]
    assert offenders == []
