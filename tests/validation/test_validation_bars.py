"""validate_bars: malformed broker rows are quarantined with their reason, never a crash; the threshold."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest

from pipeline.market import TZ_NAME
from pipeline.store.validation import check_bars
from pipeline.validation import BarsValidationReport, validate_bars

KST = TZ_NAME
Mutation = Callable[[pd.DataFrame], None]


def _at(col: str, value: Any, row: int = 10) -> Mutation:
    def mutate(frame: pd.DataFrame) -> None:
        frame.at[row, col] = value

    return mutate


def _kst(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz=KST).tz_convert("UTC")


def _assert_invariant(report: BarsValidationReport) -> None:
    assert report.rows_in == len(report.good) + len(report.quarantined)


def _spike(frame: pd.DataFrame) -> None:
    frame.at[10, "close"] = frame.at[9, "close"] * 1.35
    frame.at[10, "high"] = frame.at[10, "close"] + 100


def _duplicate_ts(frame: pd.DataFrame) -> None:
    frame.at[11, "ts"] = frame.at[10, "ts"]


MALFORMED = {
    "string-price": (_at("close", "abc"), {10}, "expect_column_values_to_not_be_null(close)"),
    "empty-field": (_at("open", ""), {10}, "expect_column_values_to_not_be_null(open)"),
    "none-volume": (_at("volume", None), {10}, "expect_column_values_to_not_be_null(volume)"),
    "zero-price": (_at("high", 0), {10}, "expect_column_values_to_be_between(high)"),
    "infinite-price": (_at("low", "1e400"), {10}, "expect_column_values_to_not_be_null(low)"),
    "garbage-ts": (_at("ts", "not a date"), {10}, "expect_column_values_to_not_be_null(ts)"),
    "naive-ts": (_at("ts", "2024-01-16"), {10}, "expect_column_values_to_not_be_null(ts)"),
    "empty-symbol": (_at("symbol", " "), {10}, "expect_column_values_to_not_be_null(symbol)"),
    "duplicated-ts": (_duplicate_ts, {10, 11}, "expect_compound_columns_to_be_unique(symbol, interval, ts)"),
    "low-above-high": (
        _at("low", 10**6),
        {10},
        "expect_column_pair_values_a_to_be_greater_than_b(high, low)",
    ),
    "negative-volume": (_at("volume", -5), {10}, "expect_column_values_to_be_between(volume)"),
    "fractional-volume": (_at("volume", 1.5), {10}, "expect_column_values_to_be_between(volume_fraction)"),
    "limit-breach": (_spike, {10}, "expect_column_values_to_be_between(max_move_over_limit)"),
    "holiday": (_at("ts", _kst("2024-02-09")), {10}, "expect_column_values_to_be_in_set(ts_in_session)"),
    "daily-bar-at-09h": (
        _at("ts", _kst("2024-01-16 09:00")),
        {10},
        "expect_column_values_to_be_in_set(ts_in_session)",
    ),
}


@pytest.mark.parametrize("case", MALFORMED.values(), ids=MALFORMED.keys())
def test_each_malformed_broker_row_is_quarantined_with_its_reason(
    krx_bars: Callable[..., pd.DataFrame], case: tuple[Mutation, set[int], str]
) -> None:
    mutate, rows, reason = case
    bars = krx_bars().astype(object)  # broker payloads arrive as loosely typed objects
    mutate(bars)
    report = validate_bars(bars)
    _assert_invariant(report)
    assert set(report.quarantined.index) == rows
    assert all(reason in r.split("; ") for r in report.quarantined["reason"])
    # The quarantine keeps what the broker sent, not the coerced value.
    pd.testing.assert_frame_equal(report.quarantined.drop(columns="reason"), bars.loc[sorted(rows)])
    assert reason in [r["name"] for r in report.expectation_results if not r["success"]]


def test_clean_bars_pass_typed_for_the_store(krx_bars: Callable[..., pd.DataFrame]) -> None:
    bars = krx_bars()
    as_strings = bars.assign(**{c: bars[c].astype(str) for c in ["open", "high", "low", "close", "volume"]})
    report = validate_bars(as_strings)  # KIS sends numbers as strings: "71000" is a fine price
    assert report.passed and report.quarantined.empty and report.failure_rate == 0.0
    assert report.missing_sessions == {}
    assert all(r["success"] for r in report.expectation_results)
    assert report.good["volume"].dtype == np.int64 and report.good["close"].dtype == np.float64
    assert check_bars(report.good).rejected.empty
    pd.testing.assert_series_equal(report.good["close"], bars["close"].astype(float))


def test_the_run_fails_only_above_the_failure_threshold(krx_bars: Callable[..., pd.DataFrame]) -> None:
    bars = krx_bars(n=50).astype(object)
    bars.at[3, "close"] = "n/a"  # 1 of 100 rows
    assert validate_bars(bars, max_failure_rate=0.05).passed
    strict = validate_bars(bars, max_failure_rate=0.005)
    assert not strict.passed and strict.failure_rate == pytest.approx(0.01)
    assert len(strict.good) == 99  # failing the run does not throw the good rows away


def test_a_run_exactly_at_the_failure_threshold_passes_and_just_above_it_fails(
    krx_bars: Callable[..., pd.DataFrame],
) -> None:
    bars = krx_bars(n=20).astype(object)  # 40 rows
    bars.at[3, "close"] = "n/a"
    bars.at[25, "close"] = "n/a"  # 2 of 40 rows: exactly the default threshold of 5 %
    report = validate_bars(bars)
    assert report.failure_rate == 0.05 and report.passed
    assert not validate_bars(bars, max_failure_rate=0.0499).passed
    bars.at[30, "close"] = "n/a"  # one row more: 7.5 %
    assert not validate_bars(bars).passed
    clean = krx_bars(n=20)
    assert validate_bars(clean, max_failure_rate=0.0).passed  # nothing failed: at a zero threshold too


def _three_days(closes: list[float], symbol: str = "005930") -> pd.DataFrame:
    ts = pd.DatetimeIndex([_kst(d) for d in ("2024-01-02", "2024-01-03", "2024-01-04")])
    return pd.DataFrame(
        {"symbol": symbol, "interval": "1d", "ts": ts, "open": closes, "high": closes, "low": closes}
    ).assign(close=closes, volume=100)


def test_moves_up_to_the_price_limit_pass_and_beyond_it_are_quarantined() -> None:
    assert validate_bars(_three_days([10_000, 12_990, 9_100])).quarantined.empty  # +29.9%, -29.9%
    breach = validate_bars(_three_days([10_000, 13_010, 13_000]))  # +30.1%, then a normal day
    assert breach.quarantined["ts"].tolist() == [_kst("2024-01-03")]
    futures = validate_bars(_three_days([300, 330, 331], "101V3000"), price_limit={"101V3000": 0.08})
    assert len(futures.quarantined) == 1
    assert validate_bars(_three_days([300, 330, 331]), price_limit={"101V3000": 0.08}).quarantined.empty


def _minute_bars(stamps: list[str], symbol: str) -> pd.DataFrame:
    ts = pd.DatetimeIndex([_kst(s) for s in stamps])
    return pd.DataFrame(
        {"symbol": symbol, "interval": "1m", "ts": ts, "open": 100.0, "high": 100.0, "low": 100.0}
    ).assign(close=100.0, volume=10)


def test_intraday_bars_must_start_inside_the_session_of_their_instrument() -> None:
    stock = _minute_bars(
        ["2024-03-13 08:59", "2024-03-13 09:00", "2024-03-13 15:30", "2024-03-13 15:31"], "A"
    )
    report = validate_bars(stock)
    assert report.quarantined["ts"].tolist() == [_kst("2024-03-13 08:59"), _kst("2024-03-13 15:31")]
    # KOSPI200 futures trade 08:45-15:45, but stop at 15:20 on the last trading day (2024-03-14).
    fut = _minute_bars(["2024-03-13 08:45", "2024-03-13 15:25", "2024-03-14 15:20", "2024-03-14 15:25"], "F")
    report = validate_bars(fut, kinds={"F": "futures"})
    assert report.quarantined["ts"].tolist() == [_kst("2024-03-14 15:25")]
    # The first session of a year opens an hour late (exchange_calendars XKRX schedule).
    late = validate_bars(_minute_bars(["2024-01-02 09:30", "2024-01-02 10:00"], "A"))
    assert late.quarantined["ts"].tolist() == [_kst("2024-01-02 09:30")]


def test_a_futures_contract_gets_futures_hours_without_being_told_its_kind() -> None:
    report = validate_bars(_minute_bars(["2024-03-13 08:45", "2024-03-13 15:45"], "101V06"))
    assert report.quarantined.empty


def test_an_unknown_instrument_kind_is_refused_instead_of_given_stock_hours() -> None:
    bars = _minute_bars(["2024-03-13 08:45"], "F")
    for kind in ("future", "bond"):  # the old spelling and a made-up kind
        with pytest.raises(ValueError, match=kind):
            validate_bars(bars, kinds={"F": kind})


def test_look_back_context_feeds_the_price_limit_but_is_not_validated(
    krx_bars: Callable[..., pd.DataFrame],
) -> None:
    bars = krx_bars(symbols=("005930",), n=10)
    bars.loc[9, ["high", "close"]] = bars.loc[8, "close"] * 1.5  # +50% on the last day
    bars.loc[3, "high"] = 1.0  # a broken look-back bar: high below low
    report = validate_bars(bars.iloc[9:], context=bars.iloc[:9])
    assert report.rows_in == 1 and len(report.quarantined) == 1
    assert "max_move_over_limit" in report.quarantined["reason"].iloc[0]
    assert validate_bars(bars.iloc[9:]).quarantined.empty  # without context there is no reference


def test_missing_sessions_are_reported_not_quarantined(krx_bars: Callable[..., pd.DataFrame]) -> None:
    bars = krx_bars(n=20)
    gap_day = bars.loc[5, "ts"]
    report = validate_bars(bars.drop(index=5))
    assert report.quarantined.empty
    assert report.missing_sessions == {"005930": [gap_day.tz_convert(KST).date()]}
    calendar = pd.date_range("2024-01-02", "2024-02-05", freq="B")  # a caller's calendar: weekdays
    explicit = validate_bars(bars, sessions=calendar)
    assert explicit.missing_sessions["000660"][-1] == dt.date(2024, 2, 5)


def test_data_docs_are_written_for_each_run(
    krx_bars: Callable[..., pd.DataFrame], tmp_path: pd.DataFrame, caplog: pytest.LogCaptureFixture
) -> None:
    bars = krx_bars().astype(object)
    bars.at[4, "close"] = ""
    caplog.set_level("INFO", logger="pipeline.validation")
    report = validate_bars(bars, data_docs_dir=tmp_path / "docs", run_name="ingest-2024-02-05")
    assert report.data_docs_path == (tmp_path / "docs" / "index.html").resolve()
    assert report.data_docs_path.is_file()
    pages = list((tmp_path / "docs" / "validations" / "bars" / "ingest-2024-02-05").rglob("*.html"))
    assert len(pages) == 1
    assert "values must never be null" in pages[0].read_text()
    assert str(report.data_docs_path) in caplog.text


def test_frames_missing_columns_or_rows_never_crash() -> None:
    empty = validate_bars(pd.DataFrame())
    assert empty.rows_in == 0 and empty.passed
    no_close = validate_bars(pd.DataFrame({"symbol": ["A", "B"], "ts": ["x", None], "weird": [[1], {}]}))
    _assert_invariant(no_close)
    assert len(no_close.quarantined) == 2 and not no_close.passed
    assert "expect_column_values_to_not_be_null(close)" in no_close.quarantined["reason"].iloc[0]


BAD_VALUES: list[Any] = [None, "", "abc", 0, -1, np.nan, "1e400", [1], {"a": 1}, "2024-13-45", 1e30, True]


@pytest.mark.slow
def test_random_corruption_keeps_the_invariant_and_good_rows_are_storable(
    krx_bars: Callable[..., pd.DataFrame],
) -> None:
    rng = np.random.default_rng(0)
    for seed in range(12):
        bars = krx_bars(n=30, seed=seed).astype(object)
        for _ in range(rng.integers(1, 15)):
            row, col = rng.integers(len(bars)), rng.choice(bars.columns)
            bars.at[row, col] = BAD_VALUES[rng.integers(len(BAD_VALUES))]
        if seed % 3 == 0:
            bars = pd.concat([bars, bars.iloc[:5]])  # duplicated keys and a non-unique index
        report = validate_bars(bars)
        _assert_invariant(report)
        assert report.quarantined["reason"].str.startswith("expect_").all()
        assert check_bars(report.good).rejected.empty
