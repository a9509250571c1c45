"""KRX calendar helpers: session dates (exchange_calendars XKRX), trading hours per instrument kind."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.universe import QUARTER_MONTHS, contract, krx_sessions, xkrx_calendar

__all__ = ["DEFAULT_SESSION_HOURS", "futures_expiry_dates", "krx_sessions", "session_bounds"]

KST = "Asia/Seoul"

#: Regular hours (local, KST) when no exchange schedule applies: stocks 09:00-15:30, KOSPI200 futures
#: 08:45-15:45 (KRX trading rules; DESIGN.md "KIS facts").
DEFAULT_SESSION_HOURS: dict[str, tuple[str, str]] = {
    "stock": ("09:00", "15:30"),
    "future": ("08:45", "15:45"),
}
# Futures open 15 minutes before and close 15 minutes after stocks; on the last trading day (2nd Thursday of
# Mar/Jun/Sep/Dec) they close at 15:20, ten minutes before the stock close.
_FUTURE_SHIFT_MIN = 15.0
_EXPIRY_EARLY_MIN = 10.0
_EXPIRY_MONTHS = QUARTER_MONTHS


def futures_expiry_dates(sessions: pd.DatetimeIndex) -> pd.DatetimeIndex:
    """Last trading days of KOSPI200 futures within ``sessions`` (see :func:`pipeline.universe.contract`)."""
    if sessions.empty:
        return pd.DatetimeIndex([])
    quarters = [
        p for p in pd.period_range(sessions.min(), sessions.max(), freq="M") if p.month in _EXPIRY_MONTHS
    ]
    days = pd.DatetimeIndex([pd.Timestamp(contract(p.year, p.month).last_trading_day) for p in quarters])
    return days[days.isin(sessions)]


def _minutes(text: str) -> float:
    hours, minutes = text.split(":")
    return float(int(hours) * 60 + int(minutes))


def session_bounds(
    days: pd.Series, kinds: pd.Series, session_hours: dict[str, tuple[str, str]] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the open and close of its session in minutes after local midnight.

    ``days`` are naive local dates, ``kinds`` the instrument kind per row. Kinds named in ``session_hours``
    use those fixed hours; stocks and futures otherwise follow the XKRX schedule (late opens such as the
    first session of a year, the 15:00 close before August 2016), futures shifted to 08:45-15:45 and 15:20 on
    their last trading day. Days outside the schedule fall back to the regular hours.
    """
    override = session_hours or {}
    hours = {**DEFAULT_SESSION_HOURS, **override}
    kind = kinds.astype(str).to_numpy()
    opens = np.array([_minutes(hours.get(k, hours["stock"])[0]) for k in kind], dtype=float)
    closes = np.array([_minutes(hours.get(k, hours["stock"])[1]) for k in kind], dtype=float)
    is_future = kind == "future"
    scheduled = np.isin(kind, [k for k in ("stock", "future") if k not in override])
    if scheduled.any():
        sched_open, sched_close = _schedule_minutes(days)
        use = scheduled & ~np.isnan(sched_open)
        shift = np.where(is_future, _FUTURE_SHIFT_MIN, 0.0)
        opens = np.where(use, sched_open - shift, opens)
        closes = np.where(use, sched_close + shift, closes)
    if "future" not in override and is_future.any():
        future_days = days[is_future].dropna()
        expiry_days = futures_expiry_dates(krx_sessions(future_days.min(), future_days.max()))
        on_expiry = is_future & days.isin(expiry_days).to_numpy()
        closes = np.where(on_expiry, closes - _FUTURE_SHIFT_MIN - _EXPIRY_EARLY_MIN, closes)
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
    open_min = (sched["open"].dt.tz_convert(KST).dt.tz_localize(None) - day_index) / pd.Timedelta(minutes=1)
    close_min = (sched["close"].dt.tz_convert(KST).dt.tz_localize(None) - day_index) / pd.Timedelta(minutes=1)
    where = pd.DatetimeIndex(days.to_numpy())
    return (
        open_min.reindex(where).to_numpy(dtype=float),
        close_min.reindex(where).to_numpy(dtype=float),
    )
