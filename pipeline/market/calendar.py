"""The KRX session calendar: XKRX sessions from exchange-calendars, KST days."""

from __future__ import annotations

import datetime as dt
import warnings
from functools import lru_cache
from typing import Any

import pandas as pd

from pipeline.market.kinds import TZ_NAME

#: Span of the XKRX calendar we load (its holiday rules project future years); weekdays outside it.
CALENDAR_START, CALENDAR_END = "2000-01-01", "2030-12-31"


@lru_cache(maxsize=1)
def xkrx_calendar() -> Any:
    """The exchange-calendars XKRX calendar over ``CALENDAR_START``..``CALENDAR_END`` (loaded once)."""
    import exchange_calendars as xcals

    with warnings.catch_warnings():  # its pandas-3 deprecation warnings are not ours to fix
        warnings.simplefilter("ignore")
        return xcals.get_calendar("XKRX", start=CALENDAR_START, end=CALENDAR_END)


def krx_sessions(start: dt.date | str | pd.Timestamp, end: dt.date | str | pd.Timestamp) -> pd.DatetimeIndex:
    """XKRX trading sessions (naive dates) in [start, end] from exchange-calendars; tz-aware bounds are
    read as their Korean date.

    Outside ``CALENDAR_START``..``CALENDAR_END`` weekdays are assumed."""
    cal = xkrx_calendar()
    lo, hi = _kst_day(start), _kst_day(end)
    first, last = cal.first_session, cal.last_session
    inside = cal.sessions_in_range(max(lo, first), min(hi, last)) if lo <= last and hi >= first else []
    parts = [pd.DatetimeIndex(inside)]
    if lo < first:
        parts.append(pd.bdate_range(lo, min(hi, first - pd.Timedelta(days=1))))
    if hi > last:
        parts.append(pd.bdate_range(max(lo, last + pd.Timedelta(days=1)), hi))
    return pd.DatetimeIndex(sorted(set().union(*parts))).tz_localize(None)


def _kst_day(value: object) -> pd.Timestamp:
    ts = pd.Timestamp(value)  # type: ignore[arg-type]
    if ts.tzinfo is not None:
        ts = ts.tz_convert(TZ_NAME).tz_localize(None)
    return ts.normalize()


def is_session(day: dt.date) -> bool:
    """Is ``day`` a KRX trading session?"""
    return len(krx_sessions(day, day)) == 1
