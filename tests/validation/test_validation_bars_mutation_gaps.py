"""validate_bars and its pandas helpers without Great Expectations (gaps found by mutation testing,
``tools/mutation.py``): typing and timestamp coercion, the session and price-limit checks the suite reads,
the missing sessions, the quarantine reasons, the good rows and the log line.

A GX run costs ~0.45 s CPU per call once its context is built (5 s for the first), the derived checks
~0.06 s; so ``validate_bars`` runs here against a recording stand-in for ``run_suite`` (the suite itself is
exercised by tests/validation/test_validation_bars.py and test_validation_mutation_gaps.py)."""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from pipeline.market import TZ_NAME, InstrumentKind, SessionHours
from pipeline.validation import bars as bars_module
from pipeline.validation.bars import (
    STORE_COLUMNS,
    BarsValidationReport,
    _accepted,
    _calendar,
    _derived,
    _good_rows,
    _in_session,
    _limit_moves,
    _limits,
    _log_report,
    _max_move_over_limit,
    _reasons,
    _to_float,
    coerce_ts,
    kinds_of,
    missing_sessions,
    typed_bars,
    validate_bars,
)
from pipeline.validation.suite import SuiteRun
from tests.logs import ModuleRecords, module_records

UTC = "datetime64[ns, UTC]"
STOCK, FUTURES = InstrumentKind.STOCK, InstrumentKind.FUTURES

LOGGER = "pipeline.validation.bars"


def _kst(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz=TZ_NAME).tz_convert("UTC")


def _days(*days: str) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(list(days))


def _bars(rows: list[tuple[Any, ...]], **extra: Any) -> pd.DataFrame:
    """Typed bars from (symbol, interval, KST time, close[, high, low]) rows; open = close, volume 100."""
    out = []
    for row in rows:
        symbol, interval, when, close, *hl = row
        high, low = hl if hl else (close, close)
        out.append(
            {
                "symbol": symbol,
                "interval": interval,
                "ts": _kst(when) if when is not None else None,
                "open": close,
                "high": high,
                "low": low,
                "close": close,
                "volume": 100,
            }
        )
    return typed_bars(pd.DataFrame(out).assign(**extra))


# --- numbers, text and timestamps ---------------------------------------------------------------------


def test_numbers_are_coerced_to_finite_floats_keeping_the_index() -> None:
    raw = pd.Series(["71000", 7.5, "abc", "1e400", None, "-1e400", [1], 3], index=[9, 8, 7, 6, 5, 4, 3, 2])
    out = _to_float(raw)
    assert out.dtype == np.float64 and out.index.tolist() == [9, 8, 7, 6, 5, 4, 3, 2]
    assert out.tolist()[:2] == [71000.0, 7.5] and out.tolist()[-1] == 3.0
    assert out.isna().tolist() == [False, False, True, True, True, True, True, False]


def test_aware_datetime_columns_convert_to_utc_nanoseconds() -> None:
    local = pd.Series(pd.DatetimeIndex(["2024-03-13 09:00", "2024-03-13 15:30"]).tz_localize(TZ_NAME))
    out = coerce_ts(local.astype("datetime64[s, Asia/Seoul]"))
    assert str(out.dtype) == UTC
    assert out.tolist() == [
        pd.Timestamp("2024-03-13 00:00", tz="UTC"),
        pd.Timestamp("2024-03-13 06:30", tz="UTC"),
    ]


def test_naive_datetime_columns_become_all_missing_on_the_same_index() -> None:
    naive = pd.Series(pd.DatetimeIndex(["2024-03-13 09:00", "2024-03-14 09:00"]), index=[5, 6])
    out = coerce_ts(naive)
    assert str(out.dtype) == UTC and out.index.tolist() == [5, 6] and out.isna().all()


def test_text_timestamps_need_an_iso_form_and_an_offset() -> None:
    text = pd.Series(
        [
            " 2024-03-13T09:00:00+09:00 ",  # padded, with an offset
            "2024-03-13T00:00:00Z",
            "2024-03-13 09:00",  # no offset: refused, not guessed
            "13 Mar 2024 09:00:00 +09:00",  # an offset, but not ISO 8601
            "not a date",
            None,
        ],
        index=[10, 11, 12, 13, 14, 15],
    )
    out = coerce_ts(text)
    utc = pd.Timestamp("2024-03-13 00:00", tz="UTC")
    assert str(out.dtype) == UTC and out.index.tolist() == [10, 11, 12, 13, 14, 15]
    assert out[10] == utc and out[11] == utc
    assert out.isna().tolist() == [False, False, True, True, True, True]


def test_iso_stamps_of_different_shapes_in_one_column_all_parse() -> None:
    # Brokers and CSV files mix "T" and a space, with and without seconds or fractions, Z and offsets.
    text = pd.Series(
        [
            "2024-03-13T09:00:00+09:00",
            "2024-03-13 09:00+09:00",
            "2024-03-13T00:00:00.000Z",
            "2024-03-13 09:00:00 +0900",
        ]
    )
    assert coerce_ts(text).tolist() == [pd.Timestamp("2024-03-13 00:00", tz="UTC")] * 4
    assert coerce_ts(pd.Series(["13 Mar 2024 09:00:00 +09:00"])).isna().all()  # not ISO 8601: refused


def test_text_and_timestamp_objects_mixed_in_one_column() -> None:
    mixed = pd.Series(
        [
            "2024-03-13T09:00:00+09:00",
            pd.Timestamp("2024-03-13 10:00", tz=TZ_NAME),
            "2024-03-13 11:00",  # text without an offset
            dt.datetime(2024, 3, 13, 12, 0),  # a naive object
            None,
        ],
        index=[3, 1, 4, 1, 5],
        dtype=object,
    )
    out = coerce_ts(mixed)
    assert str(out.dtype) == UTC and out.index.tolist() == [3, 1, 4, 1, 5]
    assert out.iloc[0] == pd.Timestamp("2024-03-13 00:00", tz="UTC")
    assert out.iloc[1] == pd.Timestamp("2024-03-13 01:00", tz="UTC")
    assert out.isna().tolist() == [False, False, True, True, True]


def test_timestamp_objects_of_one_zone_mixed_zones_naive_and_unparsable() -> None:
    same = pd.Series([pd.Timestamp("2024-03-13 09:00", tz=TZ_NAME)] * 2, index=[7, 8], dtype=object)
    out = coerce_ts(same)
    assert str(out.dtype) == UTC and out.index.tolist() == [7, 8]
    assert out.tolist() == [pd.Timestamp("2024-03-13 00:00", tz="UTC")] * 2
    kst9 = dt.timezone(dt.timedelta(hours=9))
    mixed = pd.Series(
        [
            dt.datetime(2024, 3, 13, 9, 0, tzinfo=kst9),
            pd.Timestamp("2024-03-13 01:00", tz="UTC"),
            dt.datetime(2024, 3, 13, 9, 0),  # naive: refused
            object(),  # not a time at all
            12,  # a bare number has no zone
        ],
        dtype=object,
    )
    out = coerce_ts(mixed)
    assert str(out.dtype) == UTC
    assert out.tolist()[:2] == [
        pd.Timestamp("2024-03-13 00:00", tz="UTC"),
        pd.Timestamp("2024-03-13 01:00", tz="UTC"),
    ]
    assert out.isna().tolist() == [False, False, True, True, True]
    only_objects = coerce_ts(pd.Series([object(), dt.datetime(2024, 3, 13)], dtype=object))
    assert str(only_objects.dtype) == UTC and only_objects.isna().all()


def test_typed_bars_strips_text_coerces_numbers_and_adds_missing_columns() -> None:
    raw = pd.DataFrame(
        {
            "symbol": [" 005930 ", "", "  ", None],
            "interval": ["1d ", "1m", None, ""],
            "ts": ["2024-03-13T00:00:00+09:00", None, "x", "2024-03-13T09:00:00+09:00"],
            "close": ["71000", "abc", 5, None],
            "volume": [10, "20", None, "x"],
            "extra": 1,
        },
        index=[40, 41, 42, 43],
    )
    typed = typed_bars(raw)
    assert list(typed.columns) == [
        "symbol",
        "interval",
        "ts",
        "open",
        "high",
        "low",
        "close",
        "volume",
        "turnover",
    ]
    assert typed.index.tolist() == [0, 1, 2, 3]
    assert typed["symbol"].iloc[0] == "005930" and typed["symbol"].iloc[1:].isna().all()
    assert typed["interval"].tolist()[:2] == ["1d", "1m"] and typed["interval"].iloc[2:].isna().all()
    assert typed["ts"].iloc[0] == pd.Timestamp("2024-03-12 15:00", tz="UTC")
    assert typed["ts"].isna().tolist() == [False, True, True, False]
    assert typed["close"].tolist()[0] == 71000.0 and typed["close"].tolist()[2] == 5.0
    assert typed["close"].isna().tolist() == [False, True, False, True]
    assert typed["volume"].isna().tolist() == [False, False, True, True] and typed["volume"].iloc[1] == 20.0
    for col in ("open", "high", "low", "turnover"):
        assert typed[col].isna().all() and typed[col].dtype == np.float64
    with_source = typed_bars(raw.assign(source=[" kis ", "", None, "replay"]))
    assert with_source["source"].iloc[0] == "kis" and with_source["source"].iloc[3] == "replay"
    assert with_source["source"].iloc[1:3].isna().all()


def test_a_frame_with_no_columns_types_to_empty_columns() -> None:
    typed = typed_bars(pd.DataFrame(index=[3, 4]))
    assert len(typed) == 2 and typed.isna().all().all()
    assert typed.index.tolist() == [0, 1] and str(typed["ts"].dtype) == UTC


# --- kinds, limits, sessions --------------------------------------------------------------------------


def test_kinds_from_the_mapping_else_classified_and_unknown_kinds_refused() -> None:
    symbols = pd.Series(["F", "101V06", None, "005930", "F"])
    assert kinds_of(symbols, {"F": "futures"}).tolist() == [FUTURES, FUTURES, STOCK, STOCK, FUTURES]
    assert kinds_of(symbols, None).tolist() == [STOCK, FUTURES, STOCK, STOCK, STOCK]
    with pytest.raises(ValueError, match="bond"):
        kinds_of(symbols, {"F": "bond"})


def test_limits_by_kind_per_symbol_or_one_for_all() -> None:
    symbols = pd.Series(["A", "B", "C"], index=[4, 5, 6])
    kinds = pd.Series([STOCK, FUTURES, STOCK], index=[4, 5, 6])
    by_kind = _limits(symbols, kinds, None)
    assert by_kind.tolist() == [0.3, 0.2, 0.3] and by_kind.index.tolist() == [4, 5, 6]
    per_symbol = _limits(symbols, kinds, {"A": 0.1, "B": 0.08})
    assert per_symbol.tolist()[:2] == [0.1, 0.08] and np.isnan(per_symbol[6])  # C: not checked
    assert per_symbol.dtype == np.float64 and per_symbol.index.tolist() == [4, 5, 6]
    scalar = _limits(symbols, kinds, 0.15)
    assert scalar.tolist() == [0.15] * 3 and scalar.index.tolist() == [4, 5, 6] and scalar.dtype == np.float64


SESSIONS = _days("2024-03-12", "2024-03-13", "2024-03-14", "2024-03-15")


def test_in_session_daily_bars_at_midnight_of_a_session_and_intraday_inside_the_hours() -> None:
    typed = _bars(
        [
            ("A", "1d", "2024-03-13 00:00", 1.0),  # daily at 00:00 of a session
            ("A", "1D", "2024-03-14 00:00", 1.0),  # upper case interval: still daily
            ("A", "1d", "2024-03-13 09:00", 1.0),  # daily not at midnight
            ("A", "1d", "2024-03-16 00:00", 1.0),  # Saturday
            ("A", "1m", "2024-03-13 08:59", 1.0),
            ("A", "1m", "2024-03-13 09:00", 1.0),  # the open
            ("A", "1m", "2024-03-13 15:30", 1.0),  # the close
            ("A", "1m", "2024-03-13 15:31", 1.0),
            ("A", "1m", "2024-03-13 00:00", 1.0),  # midnight is no minute bar's start
            ("A", "1m", "2024-03-16 10:00", 1.0),  # inside the hours of a day without a session
            ("A", None, "2024-03-13 10:00", 1.0),  # unknown interval: judged as intraday
            ("A", "1d", None, 1.0),  # no timestamp: unknown
        ]
    )
    out = _in_session(typed, SESSIONS, pd.Series([STOCK] * len(typed)), None)
    assert out[:-1].tolist() == [1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    assert np.isnan(out[-1])


def test_in_session_uses_each_rows_kind_and_the_fixed_hours() -> None:
    typed = _bars([("F", "1m", "2024-03-13 08:45", 1.0), ("A", "1m", "2024-03-13 08:45", 1.0)])
    kinds = pd.Series([FUTURES, STOCK], index=[7, 8])  # as _derived passes them: offset by the context
    assert _in_session(typed, SESSIONS, kinds, None).tolist() == [1.0, 0.0]
    hours = {STOCK: SessionHours(dt.time(8, 30), dt.time(16, 0))}
    assert _in_session(typed, SESSIONS, kinds, hours).tolist() == [1.0, 1.0]


# --- the price-limit check -----------------------------------------------------------------------------


def _moves(
    typed: pd.DataFrame, limit: float | list[float] = 0.3, sessions: pd.DatetimeIndex = SESSIONS
) -> list[float]:
    limits = pd.Series(limit if isinstance(limit, list) else [limit] * len(typed), index=typed.index)
    return _max_move_over_limit(typed, sessions, limits).tolist()


def test_the_move_is_the_largest_of_high_low_and_close_against_the_previous_close() -> None:
    typed = _bars(
        [
            ("A", "1d", "2024-03-12 00:00", 100.0),
            ("A", "1d", "2024-03-13 00:00", 110.0, 120.0, 95.0),  # high +20 %
            ("A", "1d", "2024-03-14 00:00", 100.0, 110.0, 77.0),  # low -30 % of 110
            ("A", "1d", "2024-03-15 00:00", 88.0, 100.0, 88.0),  # close -12 % of 100
        ]
    )
    moves = _moves(typed)
    assert np.isnan(moves[0])  # the first day has no reference
    assert moves[1:] == pytest.approx([0.2 / 0.3, 0.3 / 0.3, 0.12 / 0.3])


def test_the_reference_is_the_last_close_of_the_previous_session_by_time() -> None:
    typed = _bars(
        [
            ("A", "1m", "2024-03-12 15:00", 200.0),  # the day's last bar, listed first
            ("A", "1m", "2024-03-12 09:00", 100.0),
            ("A", "1m", "2024-03-13 09:00", 220.0),
            ("A", "1m", "2024-03-13 09:01", 180.0),
        ]
    )
    moves = _moves(typed)
    assert np.isnan(moves[0]) and np.isnan(moves[1])
    assert moves[2:] == pytest.approx([0.1 / 0.3, 0.1 / 0.3])  # both against 200, not 100 nor 220


def test_each_symbol_and_interval_has_its_own_reference_and_limit() -> None:
    typed = _bars(
        [
            ("A", "1d", "2024-03-12 00:00", 100.0),
            ("B", "1d", "2024-03-12 00:00", 1000.0),
            ("A", "1m", "2024-03-12 15:00", 50.0),
            ("A", "1d", "2024-03-13 00:00", 105.0),
            ("B", "1d", "2024-03-13 00:00", 1050.0),
            ("A", "1m", "2024-03-13 09:00", 55.0),
        ]
    )
    moves = _moves(typed, [0.3, 0.1, 0.3, 0.3, 0.1, 0.3])
    assert np.isnan(moves[:3]).all()
    assert moves[3:] == pytest.approx([0.05 / 0.3, 0.05 / 0.1, 0.1 / 0.3])


def test_no_reference_across_a_session_missing_from_the_batch() -> None:
    typed = _bars([("A", "1d", "2024-03-12 00:00", 100.0), ("A", "1d", "2024-03-14 00:00", 150.0)])
    assert np.isnan(_moves(typed)).all()
    # Across a day that is no session (a weekend, or a caller's calendar without it) the days are adjacent.
    assert _moves(typed, sessions=_days("2024-03-12", "2024-03-14"))[1] == pytest.approx(0.5 / 0.3)


def test_rows_without_a_timestamp_or_a_price_or_a_positive_close_are_not_judged_nor_references() -> None:
    typed = _bars(
        [
            ("A", "1d", "2024-03-12 00:00", 100.0),
            ("A", "1d", None, 500.0),  # no timestamp
            ("A", "1d", "2024-03-13 00:00", 0.0),  # a zero close is no reference
            ("A", "1d", "2024-03-14 00:00", 120.0),
            ("B", "1d", "2024-03-12 00:00", 100.0),
            ("B", "1d", "2024-03-13 00:00", 125.0, np.nan, 125.0),  # no high: not judged
        ]
    )
    moves = _moves(typed)
    assert moves[2] == pytest.approx(1 / 0.3)
    assert np.isnan([moves[0], moves[1], moves[3], moves[4], moves[5]]).all()
    nothing = _bars([("A", "1d", None, 1.0), ("A", "1d", None, 2.0)])
    assert np.isnan(_moves(nothing)).all() and len(_moves(nothing)) == 2


def test_a_breaching_close_is_no_reference_but_one_exactly_at_the_limit_is() -> None:
    none = pd.DataFrame(columns=STORE_COLUMNS)
    spike = _bars(
        [
            ("A", "1d", "2024-03-12 00:00", 100.0),
            ("A", "1d", "2024-03-13 00:00", 200.0),  # +100 %: a bad print
            ("A", "1d", "2024-03-14 00:00", 105.0),  # measured against nothing, not against 200
        ]
    )
    limit = pd.Series([0.3] * 3)
    moves = _limit_moves(spike, typed_bars(none), SESSIONS, limit)
    assert moves[1] == pytest.approx(1 / 0.3) and np.isnan(moves[0]) and np.isnan(moves[2])
    at_limit = _bars(
        [
            ("A", "1d", "2024-03-12 00:00", 100.0),
            ("A", "1d", "2024-03-13 00:00", 130.0),  # exactly +30 %: legal, so the next reference
            ("A", "1d", "2024-03-14 00:00", 100.0),
        ]
    )
    moves = _limit_moves(at_limit, typed_bars(none), SESSIONS, limit)
    assert moves[1:].tolist() == pytest.approx([1.0, (1 - 100 / 130) / 0.3])
    half_over = _bars(
        [
            ("A", "1d", "2024-03-12 00:00", 100.0),
            ("A", "1d", "2024-03-13 00:00", 145.0),  # +45 %: 1.5 times the limit, a bad print too
            ("A", "1d", "2024-03-14 00:00", 150.0),
        ]
    )
    moves = _limit_moves(half_over, typed_bars(none), SESSIONS, limit)
    assert moves[1] == pytest.approx(1.5) and np.isnan(moves[2])
    # A zero close on the first day has no reference to breach, yet is no reference for the next day.
    zero_first = _bars([("A", "1d", "2024-03-12 00:00", 0.0), ("A", "1d", "2024-03-13 00:00", 100.0)])
    assert np.isnan(_limit_moves(zero_first, typed_bars(none), SESSIONS, limit.iloc[:2])).all()


def test_bars_missing_their_symbol_or_interval_are_still_judged_against_each_other() -> None:
    # Quarantined for the missing key anyway; the limit check still names their move.
    typed = _bars(
        [
            ("A", None, "2024-03-12 00:00", 100.0),
            ("A", None, "2024-03-13 00:00", 150.0),
            (None, "1d", "2024-03-12 00:00", 100.0),
            (None, "1d", "2024-03-13 00:00", 110.0),
        ]
    )
    moves = _moves(typed)
    assert np.isnan(moves[0]) and np.isnan(moves[2])
    assert [moves[1], moves[3]] == pytest.approx([0.5 / 0.3, 0.1 / 0.3])


def test_a_close_below_one_is_a_reference_like_any_positive_close() -> None:
    typed = _bars([("X", "1d", "2024-03-12 00:00", 0.5), ("X", "1d", "2024-03-13 00:00", 0.6)])
    assert _moves(typed)[1] == pytest.approx(0.2 / 0.3)


def test_context_bars_are_references_only_and_their_sessions_come_from_the_krx_calendar() -> None:
    context = _bars([("A", "1d", "2024-03-11 00:00", 90.0), ("A", "1d", "2024-03-12 00:00", 100.0)])
    batch = _bars([("A", "1d", "2024-03-13 00:00", 125.0), ("A", "1d", "2024-03-14 00:00", 100.0)])
    limit = pd.Series([0.3] * 4)
    moves = _limit_moves(batch, context, _days("2024-03-13", "2024-03-14"), limit)
    assert moves.tolist() == pytest.approx([0.25 / 0.3, 0.2 / 0.3])
    # No batch calendar at all (every batch ts unreadable): the context's span up to its last bar.
    # A caller's calendar without 2024-03-13: the batch's days stay adjacent, only the context's days
    # before the calendar come from KRX.
    gap = _bars([("A", "1d", "2024-03-12 00:00", 100.0), ("A", "1d", "2024-03-14 00:00", 125.0)])
    moves = _limit_moves(gap, context.iloc[:1], _days("2024-03-12", "2024-03-14"), limit.iloc[:3])
    assert moves.tolist() == pytest.approx([(100 / 90 - 1) / 0.3, 0.25 / 0.3])
    unread = _bars([("A", "1d", "2024-03-13 00:00", 125.0)])
    assert _limit_moves(unread, context, pd.DatetimeIndex([]), limit.iloc[:3]).tolist() == pytest.approx(
        [0.25 / 0.3]
    )


def test_derived_checks_of_a_batch_with_context() -> None:
    context = _bars([("101V06", "1m", "2024-03-12 15:40", 300.0)])
    batch = _bars(
        [
            ("101V06", "1m", "2024-03-13 08:45", 330.0),  # futures open 08:45; +10 % of 300
            ("005930", "1d", "2024-03-13 00:00", 100.0),
            ("bad symbol!", "7d", "2024-03-13 00:00", 100.0),
        ],
        volume=[2.5, 3.0, np.nan],
    )
    kw: dict[str, Any] = {"kinds": None, "fixed_hours": None, "price_limit": None}
    out = _derived(batch, context, _days("2024-03-13"), **kw)
    assert list(out.columns) == [
        *batch.columns,
        "ts_in_session",
        "max_move_over_limit",
        "volume_fraction",
        "symbol_valid",
        "interval_known",
    ]
    assert out["ts_in_session"].tolist() == [1.0, 1.0, 1.0]
    assert out["max_move_over_limit"].iloc[0] == pytest.approx(0.1 / 0.2)  # futures: 20 % limit
    assert out["volume_fraction"].tolist()[:2] == [0.5, 0.0] and np.isnan(out["volume_fraction"].iloc[2])
    assert out["symbol_valid"].tolist() == [1.0, 1.0, 0.0]
    assert out["interval_known"].tolist() == [1.0, 1.0, 0.0]
    pd.testing.assert_frame_equal(out[list(batch.columns)], batch)  # the batch itself is unchanged
    stock = _derived(
        batch, context, _days("2024-03-13"), kinds={"101V06": "stock"}, fixed_hours=None, price_limit=0.5
    )
    assert stock["ts_in_session"].tolist() == [0.0, 1.0, 1.0]  # stock hours: 08:45 is before the open
    assert stock["max_move_over_limit"].iloc[0] == pytest.approx(0.1 / 0.5)
    hours = {STOCK: SessionHours(dt.time(8, 0), dt.time(9, 0))}
    fixed = _derived(
        batch, context, _days("2024-03-13"), kinds={"101V06": "stock"}, fixed_hours=hours, price_limit=None
    )
    assert fixed["ts_in_session"].tolist()[0] == 1.0


def test_accepted_is_one_for_valid_zero_for_refused_and_missing_for_no_value() -> None:
    seen: list[str] = []

    def rule(value: str) -> str:
        seen.append(value)
        if value.startswith("bad"):
            raise ValueError(value)
        return value

    out = _accepted(pd.Series(["ok", "bad", None, "ok", 5], index=[3, 4, 5, 6, 7]), rule)
    assert out.index.tolist() == [3, 4, 5, 6, 7] and out.dtype == np.float64
    assert out.tolist()[:2] == [1.0, 0.0] and np.isnan(out[5]) and out.tolist()[3:] == [1.0, 1.0]
    assert sorted(seen) == ["5", "bad", "ok"]  # each distinct value judged once, as text


# --- calendar and missing sessions ---------------------------------------------------------------------


def test_a_given_calendar_is_read_as_korean_dates_sorted_and_unique() -> None:
    aware = pd.DatetimeIndex(["2024-03-13 15:00", "2024-03-12 15:00", "2024-03-12 16:00"], tz="UTC")
    assert _calendar(pd.DataFrame(), aware).tolist() == [
        pd.Timestamp("2024-03-13"),
        pd.Timestamp("2024-03-14"),
    ]
    naive = pd.DatetimeIndex(["2024-03-14 09:00", "2024-03-13", "2024-03-14"])
    assert _calendar(pd.DataFrame(), naive).tolist() == [
        pd.Timestamp("2024-03-13"),
        pd.Timestamp("2024-03-14"),
    ]
    assert _calendar(pd.DataFrame(), naive).tz is None


def test_the_default_calendar_is_the_krx_sessions_the_batch_spans() -> None:
    typed = _bars(
        [("A", "1d", "2024-03-14 00:00", 1.0), ("A", "1d", None, 1.0), ("A", "1d", "2024-03-08 00:00", 1.0)]
    )
    assert _calendar(typed, None).tolist() == list(
        _days("2024-03-08", "2024-03-11", "2024-03-12", "2024-03-13", "2024-03-14")
    )
    assert _calendar(_bars([("A", "1d", None, 1.0)]), None).tolist() == []


def test_missing_sessions_between_each_symbols_first_and_last_bar() -> None:
    typed = _bars(
        [
            ("A", "1m", "2024-03-11 09:00", 1.0),  # quarantined: its day still bounds the span
            ("A", "1m", "2024-03-12 10:00", 1.0),
            ("A", "1m", "2024-03-14 15:00", 1.0),
            ("A", "1m", "2024-03-15 09:00", 1.0),  # quarantined
            ("B", "1d", "2024-03-12 00:00", 1.0),
            ("B", "1d", "2024-03-13 00:00", 1.0),
            ("C", "1d", "2024-03-13 00:00", 1.0),  # quarantined: its only session is missing
            (None, "1d", "2024-03-08 00:00", 1.0),  # no symbol: ignored
            ("A", "1d", None, 1.0),  # no ts: ignored
        ]
    )
    good = typed.iloc[[1, 2, 4, 5]]
    calendar = _days("2024-03-08", "2024-03-11", "2024-03-12", "2024-03-13", "2024-03-14", "2024-03-15")
    out = missing_sessions(good, typed, calendar, explicit=False)
    d = dt.date
    assert out == {"A": [d(2024, 3, 11), d(2024, 3, 13), d(2024, 3, 15)], "C": [d(2024, 3, 13)]}
    explicit = missing_sessions(good, typed, calendar, explicit=True)
    assert explicit["B"] == [d(2024, 3, 8), d(2024, 3, 11), d(2024, 3, 14), d(2024, 3, 15)]
    assert explicit["A"] == [d(2024, 3, 8), d(2024, 3, 11), d(2024, 3, 13), d(2024, 3, 15)]


# --- reasons, good rows, log --------------------------------------------------------------------------


def test_reasons_join_every_label_of_a_row_in_suite_order() -> None:
    out = _reasons({"expect_a(x)": [0, 2], "expect_b(y)": [2]}, 4)
    assert out.tolist() == ["expect_a(x)", "", "expect_a(x); expect_b(y)", ""] and out.dtype == object
    assert _reasons({}, 2).tolist() == ["", ""]


def test_good_rows_are_typed_for_the_store() -> None:
    typed = typed_bars(
        pd.DataFrame(
            {
                "symbol": ["A", "B", "C"],
                "interval": "1d",
                "ts": [_kst("2024-03-13")] * 3,
                "open": 1.0,
                "high": 1.0,
                "low": 1.0,
                "close": 1.0,
                "volume": [5.0, 6.0, 7.0],
                "source": ["kis", None, "csv"],
            }
        )
    )
    keep = np.array([True, True, False])
    good = _good_rows(typed, keep, None)
    assert list(good.columns) == STORE_COLUMNS and good.index.tolist() == [0, 1]
    assert good["volume"].dtype == np.int64 and good["volume"].tolist() == [5, 6]
    assert good["source"].tolist() == ["kis", "unknown"]
    assert good["symbol"].tolist() == ["A", "B"] and good["interval"].tolist() == ["1d", "1d"]
    for col in ("source", "symbol", "interval"):
        assert good[col].dtype == object, col
    assert _good_rows(typed, keep, "replay")["source"].tolist() == ["replay", "replay"]
    no_source = typed.drop(columns="source")
    assert _good_rows(no_source, keep, None)["source"].tolist() == ["unknown", "unknown"]
    assert _good_rows(no_source, keep, "replay")["source"].tolist() == ["replay", "replay"]
    shifted = _good_rows(typed, np.array([False, True, True]), None)
    assert shifted.index.tolist() == [0, 1] and shifted["symbol"].tolist() == ["B", "C"]


@pytest.fixture
def records() -> Iterator[ModuleRecords]:
    with module_records(LOGGER) as handler:
        yield handler


def _report(**kw: Any) -> BarsValidationReport:
    base: dict[str, Any] = {
        "good": pd.DataFrame(index=range(3)),
        "quarantined": pd.DataFrame(index=range(1)),
        "rows_in": 4,
        "failure_rate": 0.25,
        "passed": False,
    }
    return BarsValidationReport(**(base | kw))


def test_the_log_line_of_a_run(records: ModuleRecords) -> None:
    _log_report(_report(data_docs_path=Path("/x/index.html")), "run-1", 0.2)
    _log_report(_report(passed=True, failure_rate=0.0125), "run-2", 0.05)
    assert records.lines == [
        (
            logging.INFO,
            "validated 4 bars (run-1): 3 good, 1 quarantined (25.00%, threshold 20.00%) -> FAILED; "
            "data docs: /x/index.html",
        ),
        (
            logging.INFO,
            "validated 4 bars (run-2): 3 good, 1 quarantined (1.25%, threshold 5.00%) -> passed; "
            "data docs: None",
        ),
    ]


def test_failed_expectations_name_the_unsuccessful_ones_in_order() -> None:
    results = [
        {"name": "expect_a(x)", "success": False},
        {"name": "expect_b(y)", "success": True},
        {"name": "expect_c(z)", "success": False},
    ]
    assert _report(expectation_results=results).failed_expectations == ["expect_a(x)", "expect_c(z)"]
    assert _report().failed_expectations == [] and _report().missing_sessions == {}


# --- validate_bars against a recording suite ---------------------------------------------------------


@dataclass
class _Suite:
    """Stands in for ``run_suite``: records what it was given and flags the rows it was told to."""

    flagged: dict[str, list[int]] = field(default_factory=dict)
    calls: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, typed: pd.DataFrame, *, docs_dir: Path | None, run_name: str) -> SuiteRun:
        self.calls.append({"typed": typed, "docs_dir": docs_dir, "run_name": run_name})
        names = ["expect_a(close)", "expect_b(volume)", *self.flagged]
        results = [
            {"name": n, "success": n not in self.flagged, "unexpected_count": len(self.flagged.get(n, []))}
            for n in dict.fromkeys(names)
        ]
        docs = None if docs_dir is None else docs_dir / "index.html"
        return SuiteRun(results=results, flagged=dict(self.flagged), data_docs_path=docs)


@pytest.fixture
def suite(monkeypatch: pytest.MonkeyPatch) -> _Suite:
    fake = _Suite()
    monkeypatch.setattr(bars_module, "run_suite", fake)
    return fake


def _raw(n: int = 4) -> pd.DataFrame:
    """``n`` daily bars of one stock on consecutive KRX sessions from 2024-03-11, as a broker sends them."""
    days = pd.bdate_range("2024-03-11", periods=n)
    return pd.DataFrame(
        {
            "symbol": "005930",
            "interval": "1d",
            "ts": [f"{d:%Y-%m-%d}T00:00:00+09:00" for d in days],
            "open": "100",
            "high": "101",
            "low": "99",
            "close": ["100"] * n,
            "volume": "10",
        },
        index=[100 + i for i in range(n)],
    )


def test_flagged_rows_are_quarantined_as_sent_with_their_reasons(
    suite: _Suite, records: ModuleRecords
) -> None:
    suite.flagged = {"expect_a(close)": [1], "expect_b(volume)": [1, 2]}
    raw = _raw()
    report = validate_bars(raw, run_name="ingest-1", max_failure_rate=0.5)
    assert report.rows_in == 4 and report.failure_rate == 0.5 and report.passed
    pd.testing.assert_frame_equal(report.quarantined.drop(columns="reason"), raw.iloc[[1, 2]])
    assert report.quarantined["reason"].tolist() == ["expect_a(close); expect_b(volume)", "expect_b(volume)"]
    assert report.good["ts"].tolist() == [_kst("2024-03-11"), _kst("2024-03-14")]
    assert report.good.index.tolist() == [0, 1] and list(report.good.columns) == STORE_COLUMNS
    assert (
        report.good["close"].tolist() == [100.0, 100.0] and report.good["source"].tolist() == ["unknown"] * 2
    )
    assert report.failed_expectations == ["expect_a(close)", "expect_b(volume)"]
    assert report.expectation_results[0] == {
        "name": "expect_a(close)",
        "success": False,
        "unexpected_count": 1,
    }
    assert report.missing_sessions == {"005930": [dt.date(2024, 3, 12), dt.date(2024, 3, 13)]}
    assert report.data_docs_path is None
    assert records.lines == [
        (
            logging.INFO,
            "validated 4 bars (ingest-1): 2 good, 2 quarantined (50.00%, threshold 50.00%) -> passed; "
            "data docs: None",
        )
    ]
    (call,) = suite.calls
    assert call["run_name"] == "ingest-1" and call["docs_dir"] is None
    checked = call["typed"]
    assert checked.index.tolist() == [0, 1, 2, 3] and checked["ts_in_session"].tolist() == [1.0] * 4
    assert checked["close"].tolist() == [100.0] * 4 and checked["symbol_valid"].tolist() == [1.0] * 4


def test_quarantined_days_are_missing_sessions_and_the_threshold_decides(suite: _Suite) -> None:
    suite.flagged = {"expect_a(close)": [1]}
    report = validate_bars(_raw(), max_failure_rate=0.2)
    assert report.failure_rate == 0.25 and not report.passed
    assert report.missing_sessions == {"005930": [dt.date(2024, 3, 12)]}
    assert validate_bars(_raw(), max_failure_rate=0.25).passed  # exactly at the threshold
    assert not validate_bars(_raw()).passed  # the default: 5 %
    suite.flagged = {"expect_a(close)": [7]}
    assert validate_bars(_raw(20)).failure_rate == 0.05 and validate_bars(_raw(20)).passed
    suite.flagged = {}
    clean = validate_bars(_raw(), max_failure_rate=0.0)
    assert (
        clean.passed
        and clean.failure_rate == 0.0
        and clean.quarantined.empty
        and "reason" in clean.quarantined
    )
    assert len(clean.good) == 4


def test_a_default_run_name_is_stamped_and_docs_and_source_are_passed_on(
    suite: _Suite, tmp_path: Path
) -> None:
    report = validate_bars(_raw(2), data_docs_dir=tmp_path, source="replay")
    (call,) = suite.calls
    assert re.fullmatch(r"bars-\d{8}T\d{12}Z", call["run_name"]), call["run_name"]
    now = dt.datetime.now(dt.UTC)
    stamped = dt.datetime.strptime(call["run_name"], "bars-%Y%m%dT%H%M%S%fZ").replace(tzinfo=dt.UTC)
    assert abs(now - stamped) < dt.timedelta(minutes=5)
    assert call["docs_dir"] == tmp_path and report.data_docs_path == tmp_path / "index.html"
    assert report.good["source"].tolist() == ["replay", "replay"]


@pytest.fixture
def seoul_machine() -> Iterator[None]:
    """The process's local time zone is Asia/Seoul (as on a host in Korea), restored afterwards."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = TZ_NAME
    time.tzset()
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = before
        time.tzset()


def test_the_default_run_name_is_stamped_in_utc_on_a_machine_in_korea(
    suite: _Suite, seoul_machine: None
) -> None:
    validate_bars(_raw(2))
    stamp = suite.calls[0]["run_name"]
    stamped = dt.datetime.strptime(stamp, "bars-%Y%m%dT%H%M%S%fZ").replace(tzinfo=dt.UTC)
    assert abs(dt.datetime.now(dt.UTC) - stamped) < dt.timedelta(minutes=5), stamp  # not 9 hours ahead


def test_an_explicit_calendar_and_the_instrument_settings_reach_the_checks(suite: _Suite) -> None:
    raw = _raw(2)
    report = validate_bars(raw, sessions=_days("2024-03-08", "2024-03-11", "2024-03-12"))
    assert report.missing_sessions == {"005930": [dt.date(2024, 3, 8)]}
    raw = raw.assign(symbol="F", interval="1m", ts=["2024-03-11T08:45:00+09:00", "2024-03-12T08:45:00+09:00"])
    raw["close"] = ["100", "110"]
    raw["high"] = raw["close"]
    validate_bars(raw, kinds={"F": "futures"}, price_limit=0.5)
    checked = suite.calls[-1]["typed"]
    assert checked["ts_in_session"].tolist() == [1.0, 1.0]
    assert checked["max_move_over_limit"].tolist()[1] == pytest.approx(0.1 / 0.5)
    hours = {STOCK: SessionHours(dt.time(8, 30), dt.time(9, 0))}
    validate_bars(raw, fixed_hours=hours)
    assert suite.calls[-1]["typed"]["ts_in_session"].tolist() == [1.0, 1.0]  # F as a stock, in its hours
    assert suite.calls[-1]["typed"]["max_move_over_limit"].tolist()[1] == pytest.approx(0.1 / 0.3)


def test_context_is_a_reference_only(suite: _Suite) -> None:
    raw = _raw(4)
    raw.loc[103, ["high", "close"]] = "130"
    report = validate_bars(raw.iloc[3:], context=raw.iloc[:3])
    assert report.rows_in == 1 and len(report.good) == 1
    checked = suite.calls[-1]["typed"]
    assert len(checked) == 1 and checked["max_move_over_limit"].tolist() == pytest.approx([0.3 / 0.3])
    assert report.missing_sessions == {}
    validate_bars(raw.iloc[3:])
    assert np.isnan(suite.calls[-1]["typed"]["max_move_over_limit"]).all()  # no context, no reference


def test_an_empty_batch_passes_without_dividing_by_zero(suite: _Suite) -> None:
    report = validate_bars(pd.DataFrame())
    assert report.rows_in == 0 and report.failure_rate == 0.0 and report.passed
    assert report.good.empty and report.quarantined.empty and report.missing_sessions == {}
    assert list(report.good.columns) == STORE_COLUMNS
