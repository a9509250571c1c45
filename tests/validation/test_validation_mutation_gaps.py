"""Gaps the mutation run of pipeline/validation/ found: exact thresholds, every named quarantine reason,
timestamp coercion edge cases, the source column, the log line and the calendar fallbacks."""

from __future__ import annotations

import datetime as dt
import logging
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest

from pipeline.market import TZ_NAME, InstrumentKind, SessionHours, price_limit, session_hours
from pipeline.validation import STORE_COLUMNS, BarsValidationReport, session_bounds, validate_bars
from pipeline.validation.bars import coerce_ts, kinds_of, typed_bars
from pipeline.validation.suite import LIMIT_EPS, expectation_label

STOCK_LIMIT = price_limit(InstrumentKind.STOCK)


def _kst(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz=TZ_NAME).tz_convert("UTC")


def _days(closes: list[float], days: list[str], symbol: str = "005930") -> pd.DataFrame:
    ts = pd.DatetimeIndex([_kst(d) for d in days])
    return pd.DataFrame(
        {"symbol": symbol, "interval": "1d", "ts": ts, "open": closes, "high": closes, "low": closes}
    ).assign(close=closes, volume=100)


THREE = ["2024-01-02", "2024-01-03", "2024-01-04"]


def _reasons(report: BarsValidationReport) -> list[list[str]]:
    return [r.split("; ") for r in report.quarantined["reason"]]


def _minutes(t: dt.time) -> float:
    return t.hour * 60.0 + t.minute


# --- thresholds -----------------------------------------------------------------------------------------


def test_a_move_just_inside_the_limit_epsilon_passes_and_just_outside_fails() -> None:
    inside = 10_000 * (1 + STOCK_LIMIT * (1 + LIMIT_EPS / 2))
    outside = 10_000 * (1 + STOCK_LIMIT * (1 + 3 * LIMIT_EPS / 2))
    assert validate_bars(_days([10_000, inside, inside], THREE)).quarantined.empty
    report = validate_bars(_days([10_000, outside, outside], THREE))
    assert report.quarantined["ts"].tolist() == [_kst(THREE[1])]
    assert _reasons(report) == [["expect_column_values_to_be_between(max_move_over_limit)"]]


def test_a_scalar_price_limit_applies_to_every_symbol_at_its_exact_value() -> None:
    at_limit = _days([10_000, 11_000, 11_000], THREE)  # +10 % exactly
    assert validate_bars(at_limit, price_limit=0.1).quarantined.empty
    over = validate_bars(_days([10_000, 11_010, 11_010], THREE), price_limit=0.1)
    assert over.quarantined["ts"].tolist() == [_kst(THREE[1])]


def test_a_close_exactly_at_the_limit_stays_a_reference_for_the_next_day() -> None:
    # Day 2 closes exactly at +30 %, a legal move: day 3 is measured against it and breaks the limit.
    day3 = 13_000 * (1 + STOCK_LIMIT) + 100
    report = validate_bars(_days([10_000, 13_000, day3], THREE))
    assert report.quarantined["ts"].tolist() == [_kst(THREE[2])]


def test_a_low_alone_breaking_the_limit_is_quarantined() -> None:
    bars = _days([10_000, 10_000, 10_000], THREE)
    bars.loc[1, "low"] = 10_000 * (1 - STOCK_LIMIT) - 100
    report = validate_bars(bars)
    assert report.quarantined["ts"].tolist() == [_kst(THREE[1])]


def test_no_reference_across_a_missing_session_but_one_on_the_next_session() -> None:
    # 2024-01-03 is absent from the batch: its previous close is unknown, so the +50 % is not judged.
    gap = validate_bars(_days([10_000, 15_000], ["2024-01-02", "2024-01-04"]))
    assert gap.quarantined.empty
    assert gap.missing_sessions == {"005930": [dt.date(2024, 1, 3)]}
    # Across a weekend the sessions are adjacent: Friday's close is Monday's reference.
    weekend = validate_bars(_days([10_000, 15_000], ["2024-01-05", "2024-01-08"]))
    assert weekend.quarantined["ts"].tolist() == [_kst("2024-01-08")]


def test_a_zero_close_is_not_used_as_reference() -> None:
    bars = _days([10_000, 10_000, 10_000], THREE)
    bars.loc[1, ["open", "low", "close"]] = 0.0  # quarantined itself, and never a reference for day 3
    report = validate_bars(bars)
    assert report.quarantined["ts"].tolist() == [_kst(THREE[1])]
    assert "expect_column_values_to_be_between(close)" in _reasons(report)[0]


def test_volume_up_to_two_to_the_53_is_stored_and_above_quarantined() -> None:
    bars = _days([100.0] * 3, THREE).astype(object)
    bars.at[0, "volume"] = float(2**53)
    bars.at[1, "volume"] = float(2**53 + 2)  # the next float above 2**53
    report = validate_bars(bars)
    assert report.quarantined["ts"].tolist() == [_kst(THREE[1])]
    assert _reasons(report) == [["expect_column_values_to_be_between(volume)"]]
    assert report.good["volume"].tolist() == [2**53, 100]


def test_zero_volume_is_a_valid_bar() -> None:
    bars = _days([100.0] * 3, THREE)
    bars["volume"] = [0, 1, 2]
    report = validate_bars(bars)
    assert report.quarantined.empty and report.good["volume"].tolist() == [0, 1, 2]


@pytest.mark.parametrize("col", ["open", "low", "close"])
def test_each_price_must_be_strictly_positive(col: str) -> None:
    bars = _days([100.0] * 3, THREE)
    bars.loc[1, col] = 0.0
    if col != "low":
        bars.loc[1, "low"] = 0.0  # keeps low <= open/close, so only the positivity checks fail
    report = validate_bars(bars)
    assert report.quarantined["ts"].tolist() == [_kst(THREE[1])]
    assert f"expect_column_values_to_be_between({col})" in _reasons(report)[0]


def test_failure_rate_and_log_line_report_the_run(caplog: pytest.LogCaptureFixture) -> None:
    bars = _days([100.0] * 3, THREE).astype(object)
    bars.at[2, "close"] = "n/a"  # the pair checks skip the missing value: one reason only
    caplog.set_level(logging.INFO, logger="pipeline.validation")
    report = validate_bars(bars, max_failure_rate=0.5, run_name="gap-run")
    assert report.failure_rate == pytest.approx(1 / 3) and report.passed
    assert (
        "validated 3 bars (gap-run): 2 good, 1 quarantined (33.33%, threshold 50.00%) -> passed; "
        "data docs: None" in caplog.text
    )
    caplog.clear()
    failing = validate_bars(bars, max_failure_rate=0.2)
    assert not failing.passed
    assert "(33.33%, threshold 20.00%) -> FAILED" in caplog.text
    assert "validated 3 bars (bars-" in caplog.text  # a default run name
    assert failing.failed_expectations == ["expect_column_values_to_not_be_null(close)"]
    counts = {r["name"]: r["unexpected_count"] for r in failing.expectation_results}
    assert counts["expect_column_values_to_not_be_null(close)"] == 1
    assert counts["expect_column_values_to_not_be_null(open)"] == 0


# --- named reasons ----------------------------------------------------------------------------------------


def test_invalid_symbol_and_unknown_interval_are_quarantined_by_name() -> None:
    bars = _days([100.0] * 3, THREE)
    bars.loc[0, "symbol"] = "bad symbol!"
    bars.loc[2, "interval"] = "7x"
    report = validate_bars(bars)
    assert report.quarantined["ts"].tolist() == [_kst(THREE[0]), _kst(THREE[2])]
    reasons = _reasons(report)
    assert "expect_column_values_to_be_in_set(symbol_valid)" in reasons[0]
    assert "expect_column_values_to_be_in_set(interval_known)" in reasons[1]
    assert "interval_known" not in report.quarantined["reason"].iloc[0]
    assert report.good["ts"].tolist() == [_kst(THREE[1])]  # the good row loses nothing


def test_a_row_failing_two_checks_names_both() -> None:
    bars = _days([100.0] * 3, THREE).astype(object)
    bars.at[1, "close"] = "abc"
    bars.at[1, "volume"] = -5
    report = validate_bars(bars)
    assert report.quarantined["reason"].tolist() == [
        "expect_column_values_to_not_be_null(close); expect_column_values_to_be_between(volume)"
    ]


@pytest.mark.parametrize(
    ("pair", "col", "value"),
    [
        ("high, open", "open", 101.0),
        ("high, close", "close", 101.0),
        ("open, low", "open", 99.0),
        ("close, low", "close", 99.0),
    ],
)
def test_each_ohlc_pair_check_quarantines_with_its_name(pair: str, col: str, value: float) -> None:
    bars = _days([100.0] * 3, THREE)
    bars.loc[1, col] = value
    report = validate_bars(bars)
    assert report.quarantined["ts"].tolist() == [_kst(THREE[1])]
    assert f"expect_column_pair_values_a_to_be_greater_than_b({pair})" in _reasons(report)[0]


def test_missing_key_columns_are_named_and_duplicates_with_a_missing_key_are_not() -> None:
    bars = _days([100.0] * 3, THREE).astype(object)
    bars.at[0, "interval"] = None
    bars.at[1, "interval"] = None
    bars.at[1, "ts"] = bars.at[0, "ts"]
    report = validate_bars(bars)
    assert set(report.quarantined.index) == {0, 1}
    assert all("expect_compound_columns_to_be_unique" not in r for r in report.quarantined["reason"])
    assert all("expect_column_values_to_not_be_null(interval)" in r for r in _reasons(report))


# --- timestamps and numbers -------------------------------------------------------------------------------


def test_naive_datetime_columns_are_rejected_not_guessed() -> None:
    bars = _days([100.0] * 3, THREE)
    bars["ts"] = bars["ts"].dt.tz_convert(TZ_NAME).dt.tz_localize(None)  # naive datetime64
    report = validate_bars(bars)
    assert len(report.quarantined) == 3 and report.good.empty
    assert all("expect_column_values_to_not_be_null(ts)" in r for r in _reasons(report))


def test_timestamp_objects_in_mixed_zones_are_converted_and_naive_ones_refused() -> None:
    stamps = pd.Series(
        [
            pd.Timestamp("2024-01-02 09:00", tz=TZ_NAME),
            pd.Timestamp("2024-01-02 00:00", tz="UTC"),
            dt.datetime(2024, 1, 2, 9, 0),  # naive
            None,
            " 2024-01-02T09:00:00+09:00 ",  # padded text with an offset
            "2024-01-02T09:00:00",  # text without an offset
            dt.datetime(2024, 1, 2, 9, 0, tzinfo=dt.timezone(dt.timedelta(hours=9))),
        ],
        dtype=object,
    )
    out = coerce_ts(stamps)
    utc = pd.Timestamp("2024-01-02 00:00", tz="UTC")
    assert str(out.dtype) == "datetime64[ns, UTC]"
    assert out.tolist()[:2] == [utc, utc]
    assert out.isna().tolist() == [False, False, True, True, False, True, False]
    assert out[4] == utc and out[6] == utc


def test_aware_timestamp_objects_of_one_zone_convert_to_utc() -> None:
    stamps = pd.Series([pd.Timestamp("2024-01-02 09:00", tz=TZ_NAME)] * 2, dtype=object)
    out = coerce_ts(stamps)
    assert str(out.dtype) == "datetime64[ns, UTC]"
    assert out.tolist() == [pd.Timestamp("2024-01-02 00:00", tz="UTC")] * 2
    aware = coerce_ts(pd.Series(pd.DatetimeIndex(["2024-01-02 09:00"]).tz_localize(TZ_NAME)))
    assert str(aware.dtype) == "datetime64[ns, UTC]" and aware[0] == pd.Timestamp("2024-01-02", tz="UTC")


def test_unparsable_objects_and_lists_become_missing_not_errors() -> None:
    raw = pd.DataFrame(
        {
            "symbol": [" 005930 ", ""],
            "ts": [object(), pd.Timestamp("2024-01-02 09:00", tz=TZ_NAME)],
            "close": [[1], "7"],
            "volume": [{"a": 1}, "1e400"],
        }
    )
    typed = typed_bars(raw)
    assert typed["symbol"].tolist()[0] == "005930" and pd.isna(typed["symbol"][1])
    assert typed["ts"].isna().tolist() == [True, False]
    assert np.isnan(typed["close"][0]) and typed["close"][1] == 7.0
    assert typed["volume"].isna().all()
    assert typed["interval"].isna().all() and "source" not in typed.columns


def test_a_batch_whose_every_ts_object_is_naive_is_quarantined_not_a_crash() -> None:
    bars = _days([100.0] * 2, THREE[:2]).astype(object)
    bars["ts"] = [12, dt.datetime(2024, 1, 2, 9, 0)]  # an integer and a naive datetime: no zone
    report = validate_bars(bars)
    assert len(report.quarantined) == 2


def test_futures_rows_all_without_a_timestamp_are_quarantined_not_a_crash() -> None:
    bars = pd.DataFrame(
        {
            "symbol": ["101V06", "005930"],
            "interval": "1m",
            "ts": ["garbage", pd.Timestamp("2024-03-13 10:00", tz=TZ_NAME)],
        }
    ).assign(open=1.0, high=1.0, low=1.0, close=1.0, volume=1)
    report = validate_bars(bars)
    assert report.quarantined["symbol"].tolist() == ["101V06"]


def test_fractional_volume_is_refused_and_whole_volume_strings_kept() -> None:
    bars = _days([100.0] * 3, THREE).astype(object)
    bars.at[0, "volume"] = "250"
    bars.at[1, "volume"] = 250.25
    report = validate_bars(bars)
    assert report.quarantined["ts"].tolist() == [_kst(THREE[1])]
    assert _reasons(report) == [["expect_column_values_to_be_between(volume_fraction)"]]
    assert report.good["volume"].tolist() == [250, 100]


def test_padded_symbols_are_stored_stripped() -> None:
    bars = _days([100.0] * 3, THREE)
    bars["symbol"] = " 005930 "
    bars["interval"] = " 1d"
    report = validate_bars(bars)
    assert report.quarantined.empty
    assert set(report.good["symbol"]) == {"005930"} and set(report.good["interval"]) == {"1d"}


# --- source column ----------------------------------------------------------------------------------------


def test_source_column_is_kept_missing_ones_become_unknown_and_the_argument_overrides() -> None:
    bars = _days([100.0] * 3, THREE).assign(source=["kis", None, " "])
    report = validate_bars(bars)
    assert list(report.good.columns) == STORE_COLUMNS
    assert report.good["source"].tolist() == ["kis", "unknown", "unknown"]
    assert report.good["source"].dtype == object
    assert validate_bars(bars, source="replay").good["source"].tolist() == ["replay"] * 3
    no_column = validate_bars(bars.drop(columns="source"))
    assert no_column.good["source"].tolist() == ["unknown"] * 3
    assert report.good["symbol"].dtype == object and report.good["interval"].dtype == object


# --- sessions and calendar --------------------------------------------------------------------------------


def test_first_and_last_bars_quarantined_still_bound_the_missing_sessions() -> None:
    bars = _days([100.0] * 3, THREE).astype(object)
    bars.at[0, "close"] = "n/a"
    bars.at[2, "close"] = "n/a"
    report = validate_bars(bars, max_failure_rate=1.0)
    assert report.missing_sessions == {"005930": [dt.date(2024, 1, 2), dt.date(2024, 1, 4)]}


def test_an_explicit_calendar_given_in_local_time_with_hours_is_normalised() -> None:
    bars = _days([100.0] * 3, THREE)
    sessions = pd.DatetimeIndex(
        [pd.Timestamp(d + " 09:00", tz=TZ_NAME) for d in [*THREE, "2024-01-05", "2024-01-02"]]
    )
    report = validate_bars(bars, sessions=sessions)
    assert report.quarantined.empty
    assert report.missing_sessions == {"005930": [dt.date(2024, 1, 5)]}
    # A caller's calendar without the day: the bar is quarantined as outside the sessions.
    narrow = validate_bars(bars, sessions=pd.DatetimeIndex(["2024-01-02", "2024-01-04"]))
    assert narrow.quarantined["ts"].tolist() == [_kst(THREE[1])]
    assert _reasons(narrow) == [["expect_column_values_to_be_in_set(ts_in_session)"]]


def test_fixed_hours_replace_the_schedule_for_their_kind_only() -> None:
    ts = [_kst("2024-03-13 08:30"), _kst("2024-03-13 16:00"), _kst("2024-03-13 16:01")]
    bars = pd.DataFrame(
        {"symbol": "A", "interval": "1m", "ts": ts, "open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0}
    ).assign(volume=1)
    hours = {InstrumentKind.STOCK: SessionHours(dt.time(8, 30), dt.time(16, 0))}
    report = validate_bars(bars, fixed_hours=hours)
    assert report.quarantined["ts"].tolist() == [ts[2]]
    assert len(validate_bars(bars, fixed_hours={InstrumentKind.ETF: hours[InstrumentKind.STOCK]}).good) == 0


def test_midnight_is_the_stamp_of_a_daily_bar_not_of_a_minute_bar() -> None:
    report = validate_bars(_days([100.0] * 3, THREE))
    assert report.quarantined.empty  # 00:00 KST is fine for a daily bar
    minute = _days([100.0] * 3, THREE).assign(interval="1m")
    assert len(validate_bars(minute).quarantined) == 3  # but not for a minute bar (before the open)


def test_kinds_come_from_the_mapping_else_classify_and_missing_symbols_are_stock() -> None:
    symbols = pd.Series(["F", "101V06", None, "005930"])
    kinds = kinds_of(symbols, {"F": "futures"})
    assert kinds.tolist() == [
        InstrumentKind.FUTURES,
        InstrumentKind.FUTURES,
        InstrumentKind.STOCK,
        InstrumentKind.STOCK,
    ]


def test_days_off_the_schedule_fall_back_to_the_kind_hours() -> None:
    stock, futures = session_hours(InstrumentKind.STOCK), session_hours(InstrumentKind.FUTURES)
    days = pd.Series(pd.to_datetime(["2024-02-09", "2024-02-09", None]))  # Seollal: no session
    opens, closes = session_bounds(days, pd.Series(["stock", "futures", "stock"]))
    assert opens.tolist() == [_minutes(stock.open), _minutes(futures.open), _minutes(stock.open)]
    assert closes.tolist() == [_minutes(stock.close), _minutes(futures.close), _minutes(stock.close)]
    far = pd.Series(pd.to_datetime(["2100-03-01", "1990-03-02"]))  # outside the XKRX calendar
    opens, closes = session_bounds(far, pd.Series(["stock", "stock"]))
    assert opens.tolist() == [_minutes(stock.open)] * 2 and closes.tolist() == [_minutes(stock.close)] * 2
    none = pd.Series(pd.to_datetime([None, None]))
    opens, closes = session_bounds(none, pd.Series(["stock", "stock"]))
    assert opens.tolist() == [_minutes(stock.open)] * 2 and closes.tolist() == [_minutes(stock.close)] * 2


def test_fixed_futures_hours_are_not_shifted_nor_cut_on_expiry() -> None:
    hours = SessionHours(dt.time(9, 0), dt.time(15, 0))
    days = pd.Series(pd.to_datetime(["2024-03-14", "2024-03-13"]))  # expiry day, a normal day
    opens, closes = session_bounds(days, pd.Series(["futures", "futures"]), {InstrumentKind.FUTURES: hours})
    assert opens.tolist() == [540.0, 540.0] and closes.tolist() == [900.0, 900.0]


# --- the suite itself -------------------------------------------------------------------------------------


def test_expectation_labels_name_the_type_and_columns() -> None:
    def config(**kwargs: Any) -> SimpleNamespace:
        return SimpleNamespace(type="expect_x", kwargs=kwargs)

    assert expectation_label(config(column="close", mostly=None)) == "expect_x(close)"
    assert expectation_label(config(column_A="high", column_B="low", column=None)) == "expect_x(high, low)"
    assert expectation_label(config(column_list=["symbol", "ts"], column="x")) == "expect_x(symbol, ts)"
    assert expectation_label(config()) == "expect_x()"


def test_data_docs_in_two_folders_are_both_rendered(tmp_path: Any) -> None:
    bars = _days([100.0] * 3, THREE)
    first = validate_bars(bars, data_docs_dir=tmp_path / "a", run_name="run-a")
    second = validate_bars(bars, data_docs_dir=tmp_path / "b", run_name="run-b")
    again = validate_bars(bars, data_docs_dir=tmp_path / "a", run_name="run-c")
    assert first.data_docs_path == again.data_docs_path == (tmp_path / "a" / "index.html").resolve()
    assert second.data_docs_path == (tmp_path / "b" / "index.html").resolve()
    index_a = (tmp_path / "a" / "index.html").read_text()
    assert "run-a" in index_a and "run-c" in index_a and "run-b" not in index_a
    assert "run-b" in (tmp_path / "b" / "index.html").read_text()
    assert "https://code.jquery.com" not in index_a  # the pages load local copies
