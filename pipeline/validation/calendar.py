"""Session bounds of each bar: the XKRX schedule and the per-kind hours of :mod:`pipeline.market`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import numpy as np
import pandas as pd

from pipeline.market import (
    FUTURES_SHIFT,
    TZ_NAME,
    InstrumentKind,
    SessionHours,
    is_expiry_day,
    krx_sessions,
    session_hours,
    xkrx_calendar,
)

__all__ = ["futures_expiry_dates", "krx_sessions", "session_bounds"]


def _minutes(t: dt.time) -> float:
    return float(t.hour * 60 + t.minute)


_FUTURES_HOURS = session_hours(InstrumentKind.FUTURES)
_SHIFT_MIN = FUTURES_SHIFT / dt.timedelta(minutes=1)
#: Minutes between the futures close on a last trading day and on other days (negative: earlier).
_EXPIRY_CLOSE_MIN = _minutes(_FUTURES_HOURS.close_on(expiry_day=True)) - _minutes(_FUTURES_HOURS.close)


def futures_expiry_dates(sessions: pd.DatetimeIndex) -> pd.DatetimeIndex:
    """Last trading days of KOSPI200 futures within ``sessions`` (see :func:`pipeline.market.contract`)."""
    return pd.DatetimeIndex([d for d in sessions if is_expiry_day(d.date())])


def session_bounds(
    days: pd.Series,
    kinds: pd.Series,
    fixed_hours: Mapping[InstrumentKind, SessionHours] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the open and close of its session in minutes after local midnight.

    ``days`` are naive local dates, ``kinds`` the :class:`~pipeline.market.InstrumentKind` per row (a value
    that is not a kind raises ``ValueError``). Kinds in ``fixed_hours`` use those hours on every day; the
    others follow the XKRX schedule (late opens such as the first session of a year, the 15:00 close before
    August 2016), futures shifted by ``FUTURES_SHIFT`` and closing early on their last trading day. Days
    outside the schedule fall back to :func:`pipeline.market.session_hours`.
    """
    fixed = {InstrumentKind(k): v for k, v in (fixed_hours or {}).items()}
    known = {k: InstrumentKind(k) for k in pd.unique(kinds)}
    kind = [known[k] for k in kinds]
    hours = [fixed.get(k) or session_hours(k) for k in kind]
    opens = np.array([_minutes(h.open) for h in hours], dtype=float)
    closes = np.array([_minutes(h.close) for h in hours], dtype=float)
    is_futures = np.array([k is InstrumentKind.FUTURES for k in kind], dtype=bool)
    scheduled = np.array([k not in fixed for k in kind], dtype=bool)
    if scheduled.any():
        sched_open, sched_close = _schedule_minutes(days)
        use = scheduled & ~np.isnan(sched_open)
        shift = np.where(is_futures, _SHIFT_MIN, 0.0)
        opens = np.where(use, sched_open - shift, opens)
        closes = np.where(use, sched_close + shift, closes)
    expiring = is_futures & scheduled
    futures_days = days[expiring].dropna()
    if not futures_days.empty:  # futures rows with no readable day have no session to extend
        expiry_days = futures_expiry_dates(krx_sessions(futures_days.min(), futures_days.max()))
        on_expiry = expiring & days.isin(expiry_days).to_numpy()
        closes = np.where(on_expiry, closes + _EXPIRY_CLOSE_MIN, closes)
    return opens, closes


def _schedule_minutes(days: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """XKRX open and close of each day in minutes after local midnight; NaN where it is not a session."""
    nan = np.full(len(days), np.nan)
    valid = days.dropna()
    if valid.empty:
        return nan, nan.copy()
    cal = xkrx_calendar()
    sched = cal.schedule.loc[max(valid.min(), cal.first_session) : min(valid.max(), cal.last_session)]
    if sched.empty:
        return nan, nan.copy()
    day_index = pd.DatetimeIndex(sched.index)
    open_min = (sched["open"].dt.tz_convert(TZ_NAME).dt.tz_localize(None) - day_index) / pd.Timedelta(
        minutes=1
    )
    close_min = (sched["close"].dt.tz_convert(TZ_NAME).dt.tz_localize(None) - day_index) / pd.Timedelta(
        minutes=1
    )
    where = pd.DatetimeIndex(days.to_numpy())
    return (
        open_min.reindex(where).to_numpy(dtype=float),
        close_min.reindex(where).to_numpy(dtype=float),
    )
