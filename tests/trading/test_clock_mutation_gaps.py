"""The trading clock at its edges, beyond test_clock.py: the first and last minute of each session, the
exact reasons the trade DAG logs when it skips (weekend day names, expiry day, several kinds at once),
special days from the XKRX schedule (the CSAT late open, the 15:00 close before 2016-08-01) and the regular
hours past the calendar's end (gaps found by mutation testing, ``tools/mutation.py``).

Expected hours are KRX's published ones (``../shared/DESIGN.md``, ``pipeline/market/hours.py``'s sources):
stocks 09:00-15:30, KOSPI200 futures 08:45-15:45 and 15:20 on the 2nd Thursday of a contract month, the
year's first session an hour late, the CSAT (수능) day an hour late at both ends, the stock close at 15:00
until the extension of 2016-08-01."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

import pipeline.trading.clock as clock
from pipeline.market import KST
from pipeline.trading.clock import (
    bar_end,
    last_closed_bar,
    minutes_to_close,
    previous_session,
    session_bounds,
    session_status,
    should_run,
)

REGULAR = dt.date(2025, 10, 2)  # a Thursday
EXPIRY = dt.date(2025, 9, 11)  # 2nd Thursday of September 2025
CSAT = dt.date(2019, 11, 14)  # the 2020 college entrance exam: KRX opened at 10:00, closed at 16:30
BEFORE_EXTENSION = dt.date(2016, 7, 29)  # a Friday, the last session closing at 15:00
CALENDAR_FIRST = dt.date(2000, 1, 4)  # the first session the XKRX calendar holds (closed at 15:00)
PAST_CALENDAR = dt.date(2031, 3, 4)  # a Tuesday after the calendar's end (2030-12-31)
PAST_CALENDAR_EXPIRY = dt.date(2031, 3, 13)  # 2nd Thursday of March 2031


def kst(day: dt.date, hour: int, minute: int = 0, second: int = 0, micro: int = 0) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour, minute, second, micro, tzinfo=KST)


# --- special days and the calendar's edges -------------------------------------------------------------


def test_the_csat_day_opens_and_closes_an_hour_late_futures_fifteen_minutes_around_it() -> None:
    assert session_bounds(CSAT, "stock") == (kst(CSAT, 10), kst(CSAT, 16, 30))
    assert session_bounds(CSAT, "futures") == (kst(CSAT, 9, 45), kst(CSAT, 16, 45))
    assert not session_status(kst(CSAT, 9, 59), "stock").open
    assert session_status(kst(CSAT, 16, 0), "stock").open


def test_before_the_2016_extension_stocks_closed_at_1500_from_the_calendars_first_day() -> None:
    for day in (CALENDAR_FIRST, BEFORE_EXTENSION):
        assert session_bounds(day, "stock") == (kst(day, 9), kst(day, 15))
        assert bar_end(kst(day, 0), "1d", "stock") == kst(day, 15)


def test_past_the_calendars_end_weekdays_keep_the_regular_hours_and_the_expiry_close() -> None:
    assert session_bounds(PAST_CALENDAR, "stock") == (kst(PAST_CALENDAR, 9), kst(PAST_CALENDAR, 15, 30))
    assert session_bounds(PAST_CALENDAR, "etf") == (kst(PAST_CALENDAR, 9), kst(PAST_CALENDAR, 15, 30))
    assert session_bounds(PAST_CALENDAR, "futures") == (kst(PAST_CALENDAR, 8, 45), kst(PAST_CALENDAR, 15, 45))
    day = PAST_CALENDAR_EXPIRY
    assert session_bounds(day, "futures") == (kst(day, 8, 45), kst(day, 15, 20))
    assert session_bounds(dt.date(2031, 3, 8), "stock") is None  # a Saturday


# --- the first and last minute of each session ------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "kind", "open_", "close"),
    [
        (REGULAR, "stock", (9, 0), (15, 30)),
        (REGULAR, "futures", (8, 45), (15, 45)),
        (EXPIRY, "futures", (8, 45), (15, 20)),
        (CSAT, "stock", (10, 0), (16, 30)),
    ],
)
def test_the_first_and_last_minute_of_a_session(
    day: dt.date, kind: str, open_: tuple[int, int], close: tuple[int, int]
) -> None:
    first, end = kst(day, *open_), kst(day, *close)
    assert not session_status(first - dt.timedelta(microseconds=1), kind).open
    assert session_status(first, kind).open
    assert session_status(end - dt.timedelta(microseconds=1), kind).open
    assert not session_status(end, kind).open
    length = (end - first) / dt.timedelta(minutes=1)
    assert minutes_to_close(first, kind) == length  # the whole session is ahead at the open
    assert minutes_to_close(first - dt.timedelta(seconds=1), kind) is None
    assert minutes_to_close(end - dt.timedelta(seconds=30), kind) == 0.5
    # the first bar is counted closed exactly at its end, the last one exactly at the close
    assert last_closed_bar(first + dt.timedelta(minutes=1) - dt.timedelta(microseconds=1), "1m", kind) is None
    assert last_closed_bar(first + dt.timedelta(minutes=1), "1m", kind) == first
    assert last_closed_bar(end - dt.timedelta(microseconds=1), "1m", kind) == end - dt.timedelta(minutes=2)
    assert last_closed_bar(end, "1m", kind) == end - dt.timedelta(minutes=1)
    assert bar_end(end - dt.timedelta(minutes=1), "1m", kind) == end
    assert bar_end(kst(day, 0), "1d", kind) == end


# --- the reasons the trade DAG logs -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "name"), [(dt.date(2025, 10, 4), "Saturday"), (dt.date(2025, 10, 5), "Sunday")]
)
def test_a_weekend_day_is_named_in_the_reason(day: dt.date, name: str) -> None:
    for kind in ("stock", "futures"):
        status = session_status(kst(day, 10), kind)
        assert status == clock.SessionStatus(False, f"weekend ({day} is a {name}, not a KRX session)")


def test_a_holiday_on_a_weekday_is_not_called_a_weekend() -> None:
    friday = dt.date(2025, 10, 3)  # National Foundation Day
    for kind in ("stock", "futures"):
        status = session_status(kst(friday, 10), kind)
        assert status == clock.SessionStatus(False, "holiday (2025-10-03 is not a KRX session)")


def test_the_expiry_day_is_named_for_futures_only() -> None:
    assert session_status(kst(EXPIRY, 10), "futures").reason == (
        "futures session open 08:45-15:20 (expiry day) (2025-09-11)"
    )
    assert session_status(kst(EXPIRY, 15, 20), "futures").reason == (
        "after the futures session closed at 15:20 (expiry day) (2025-09-11)"
    )
    assert session_status(kst(EXPIRY, 8, 44), "futures").reason == (
        "before the futures session opens at 08:45 (2025-09-11)"
    )
    assert session_status(kst(EXPIRY, 10), "stock").reason == "stock session open 09:00-15:30 (2025-09-11)"
    assert session_status(kst(EXPIRY, 15, 30), "stock").reason == (
        "after the stock session closed at 15:30 (2025-09-11)"
    )
    assert (
        session_status(kst(REGULAR, 10), "futures").reason == "futures session open 08:45-15:45 (2025-10-02)"
    )


@pytest.mark.parametrize("kind", ["stock", "etf", "index"])
def test_etfs_and_indices_are_reported_on_the_stock_session(kind: str) -> None:
    assert session_status(kst(REGULAR, 10), kind).reason == "stock session open 09:00-15:30 (2025-10-02)"
    assert session_status(kst(REGULAR, 8, 50), kind).reason == (
        "before the stock session opens at 09:00 (2025-10-02)"
    )


def test_should_run_names_every_distinct_closed_session_once_in_the_order_given() -> None:
    early = should_run(kst(REGULAR, 8, 30), ["stock", "etf", "futures", "stock"])
    assert early == clock.SessionStatus(
        False,
        "before the stock session opens at 09:00 (2025-10-02); "
        "before the futures session opens at 08:45 (2025-10-02)",
    )
    assert should_run(kst(REGULAR, 8, 30), ["etf", "index"]).reason == (
        "before the stock session opens at 09:00 (2025-10-02)"
    )
    late = should_run(kst(REGULAR, 15, 50), ["futures", "stock"])
    assert late.reason == (
        "after the futures session closed at 15:45 (2025-10-02); "
        "after the stock session closed at 15:30 (2025-10-02)"
    )


def test_should_run_reports_the_first_open_kind_in_the_order_given() -> None:
    assert should_run(kst(REGULAR, 10), ["futures", "stock"]).reason == (
        "futures session open 08:45-15:45 (2025-10-02)"
    )
    assert should_run(kst(REGULAR, 10), ["stock", "futures"]).reason == (
        "stock session open 09:00-15:30 (2025-10-02)"
    )
    assert should_run(kst(REGULAR, 15, 40), ["stock", "futures"]).reason == (
        "futures session open 08:45-15:45 (2025-10-02)"
    )
    assert should_run(kst(REGULAR, 10), [clock.InstrumentKind.ETF]).open  # kinds as the enum too


def test_unknown_kinds_are_refused_rather_than_given_stock_hours() -> None:
    with pytest.raises(ValueError, match=r"^should_run needs at least one instrument kind$"):
        should_run(kst(REGULAR, 10), [])
    with pytest.raises(ValueError):
        session_bounds(REGULAR, "bond")
    with pytest.raises(ValueError):
        should_run(kst(REGULAR, 10), ["stock", "bond"])


# --- moments and bars -------------------------------------------------------------------------------


class _NoOffset(dt.tzinfo):
    """A time zone that does not know its offset (``utcoffset`` None): as good as naive."""

    def utcoffset(self, d: dt.datetime | None) -> dt.timedelta | None:
        return None

    def dst(self, d: dt.datetime | None) -> dt.timedelta | None:
        return None

    def tzname(self, d: dt.datetime | None) -> str | None:
        return None


def test_a_moment_without_an_offset_is_refused_with_the_moment_named() -> None:
    with pytest.raises(
        ValueError, match=r"^the trading clock needs a tz-aware moment, got naive 2025-10-02T10:00:00$"
    ):
        session_status(dt.datetime(2025, 10, 2, 10), "stock")
    for call in (
        lambda now: session_status(now, "stock"),
        lambda now: minutes_to_close(now, "stock"),
        lambda now: last_closed_bar(now, "1m", "stock"),
        lambda now: bar_end(now, "1m", "stock"),
    ):
        with pytest.raises(ValueError, match="tz-aware"):
            call(dt.datetime(2025, 10, 2, 10, tzinfo=_NoOffset()))


def test_a_utc_moment_late_in_the_evening_is_the_next_korean_day() -> None:
    # 2025-10-01 23:30 UTC is 2025-10-02 08:30 KST: Thursday's futures have not opened yet.
    utc = dt.datetime(2025, 10, 1, 23, 30, tzinfo=dt.UTC)
    assert session_status(utc, "futures").reason == "before the futures session opens at 08:45 (2025-10-02)"
    assert last_closed_bar(utc, "1d", "futures") == kst(dt.date(2025, 10, 1), 0)
    assert bar_end(dt.datetime(2025, 10, 1, 15, tzinfo=dt.UTC), "1d", "stock") == kst(REGULAR, 15, 30)


def test_bar_end_of_an_unknown_interval_or_a_day_without_session_says_so() -> None:
    with pytest.raises(ValueError, match=r"^unknown bar interval '5m' \(expected '1m' or '1d'\)$"):
        bar_end(kst(REGULAR, 10), "5m", "stock")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^unknown bar interval '1h' \(expected '1m' or '1d'\)$"):
        last_closed_bar(kst(REGULAR, 10), "1h", "stock")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^2025-10-04 is not a KRX session: no daily bar ends on it$"):
        bar_end(kst(dt.date(2025, 10, 4), 0), "1d", "futures")


def test_previous_session_without_any_session_in_the_lookback_says_how_far_it_looked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    looked: list[tuple[dt.date, dt.date]] = []

    def no_sessions(start: dt.date, end: dt.date) -> pd.DatetimeIndex:
        looked.append((start, end))
        return pd.DatetimeIndex([])

    monkeypatch.setattr(clock, "krx_sessions", no_sessions)
    with pytest.raises(ValueError, match=r"^no KRX session in the 20 days before 2025-10-02$"):
        previous_session(REGULAR)
    assert looked == [(dt.date(2025, 9, 12), dt.date(2025, 10, 1))]


def test_the_previous_session_reaches_back_over_a_long_break() -> None:
    # Chuseok 2025: Friday 3 October to Thursday 9 October closed, Saturday to Thursday without a session
    assert previous_session(dt.date(2025, 10, 10)) == dt.date(2025, 10, 2)
    assert previous_session(dt.date(2025, 10, 3)) == REGULAR
