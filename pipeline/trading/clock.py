"""The trading job's session clock: when each kind trades today, whether a moment is in session, and which
bar has closed by then. Pure functions of the KRX calendar (no I/O); every moment is tz-aware KST.

Session times come from the XKRX schedule of :mod:`pipeline.market` (so the later open of a year's first
session and the other special days it knows are honoured), stocks, ETFs and indices on the stock session,
KOSPI200 futures shifted by ``FUTURES_SHIFT`` (08:45-15:45 on a regular day) and closing early on a
contract's last trading day (15:20), as the validation of stored bars does. A session is the half-open
interval [open, close): at the close no order is taken any more.

Bar stamps follow the KIS client (:func:`pipeline.kis.charts.to_bar`): a minute bar is stamped with its
start, ``[t, t + 1 min)``; a daily bar with midnight KST of its trading day.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import pandas as pd

from pipeline.market import (
    FUTURES_SHIFT,
    KST,
    InstrumentKind,
    is_expiry_day,
    krx_sessions,
    session_hours,
    xkrx_calendar,
)

Interval = Literal["1m", "1d"]
KindLike = InstrumentKind | str

MINUTE = dt.timedelta(minutes=1)
_FUTURES = session_hours(InstrumentKind.FUTURES)
#: How much earlier futures close on a contract's last trading day than on other days (15:45 -> 15:20).
_EXPIRY_EARLIER = dt.datetime.combine(dt.date.min, _FUTURES.close) - dt.datetime.combine(
    dt.date.min, _FUTURES.close_on(expiry_day=True)
)
#: Sessions looked back over to find the previous one (the longest KRX break is about a week).
_LOOKBACK = dt.timedelta(days=20)


@dataclass(frozen=True)
class SessionStatus:
    """Whether a kind (or any of several) is in session at a moment, and why (for logs and skip reasons)."""

    open: bool
    reason: str


def _kind(kind: KindLike) -> InstrumentKind:
    return InstrumentKind(kind)


def _market(kind: InstrumentKind) -> str:
    """Which session a kind follows, as written in reasons: ETFs and indices trade on the stock session."""
    return "futures" if kind is InstrumentKind.FUTURES else "stock"


def _kst(now: dt.datetime) -> dt.datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"the trading clock needs a tz-aware moment, got naive {now.isoformat()}")
    return now.astimezone(KST)


def session_bounds(day: dt.date, kind: KindLike) -> tuple[dt.datetime, dt.datetime] | None:
    """(open, close) of ``kind``'s session on ``day`` as aware KST datetimes; None when ``day`` is not a
    KRX session (a weekend or a holiday).

    Stocks, ETFs and indices: the XKRX open and close (09:00-15:30 on a regular day, 10:00 on a year's
    first session). Futures: 15 minutes earlier and later (08:45-15:45), closing at 15:20 on a contract's
    last trading day. Days outside the loaded calendar fall back to the regular hours on weekdays."""
    return _bounds(day, _kind(kind))


@lru_cache(maxsize=4096)
def _bounds(day: dt.date, kind: InstrumentKind) -> tuple[dt.datetime, dt.datetime] | None:
    if len(krx_sessions(day, day)) != 1:
        return None
    cal = xkrx_calendar()
    stamp = pd.Timestamp(day)
    if cal.first_session <= stamp <= cal.last_session:
        # The schedule holds the stock session; the futures session is defined relative to it.
        row = cal.schedule.loc[stamp]
        stock_open = row["open"].tz_convert(KST).to_pydatetime().replace(tzinfo=KST)
        stock_close = row["close"].tz_convert(KST).to_pydatetime().replace(tzinfo=KST)
    else:
        hours = session_hours(InstrumentKind.STOCK)
        stock_open = dt.datetime.combine(day, hours.open, KST)
        stock_close = dt.datetime.combine(day, hours.close, KST)
    if kind is not InstrumentKind.FUTURES:
        return stock_open, stock_close
    close = stock_close + FUTURES_SHIFT
    if is_expiry_day(day):
        close -= _EXPIRY_EARLIER
    return stock_open - FUTURES_SHIFT, close


def session_status(now: dt.datetime, kind: KindLike) -> SessionStatus:
    """Is ``kind`` in session at ``now`` (aware)? The reason names the day and the time that decided it,
    e.g. ``"holiday (2025-10-03 is not a KRX session)"`` or ``"before the futures session opens at 08:45
    (2025-10-02)"``."""
    local = _kst(now)
    day, k = local.date(), _kind(kind)
    bounds = _bounds(day, k)
    market = _market(k)
    if bounds is None:
        if day.weekday() >= 5:
            return SessionStatus(False, f"weekend ({day} is a {day:%A}, not a KRX session)")
        return SessionStatus(False, f"holiday ({day} is not a KRX session)")
    open_, close = bounds
    expiry = " (expiry day)" if k is InstrumentKind.FUTURES and is_expiry_day(day) else ""
    if local < open_:
        return SessionStatus(False, f"before the {market} session opens at {open_:%H:%M} ({day})")
    if local >= close:
        return SessionStatus(False, f"after the {market} session closed at {close:%H:%M}{expiry} ({day})")
    return SessionStatus(True, f"{market} session open {open_:%H:%M}-{close:%H:%M}{expiry} ({day})")


def should_run(now: dt.datetime, kinds: Iterable[KindLike]) -> SessionStatus:
    """Open when any of ``kinds`` is in session at ``now`` (futures open earlier and close later than
    stocks); else closed, with the reasons of every distinct session (a holiday gives one reason)."""
    statuses = [session_status(now, k) for k in dict.fromkeys(_kind(k) for k in kinds)]
    if not statuses:
        raise ValueError("should_run needs at least one instrument kind")
    opened = [s for s in statuses if s.open]
    if opened:
        return opened[0]
    return SessionStatus(False, "; ".join(dict.fromkeys(s.reason for s in statuses)))


def minutes_to_close(now: dt.datetime, kind: KindLike) -> float | None:
    """Minutes from ``now`` to the close of ``kind``'s session; None when it is not in session."""
    local = _kst(now)
    bounds = _bounds(local.date(), _kind(kind))
    if bounds is None or not bounds[0] <= local < bounds[1]:
        return None
    return (bounds[1] - local) / MINUTE


def previous_session(day: dt.date) -> dt.date:
    """The last KRX session strictly before ``day``."""
    sessions = krx_sessions(day - _LOOKBACK, day - dt.timedelta(days=1))
    if not len(sessions):
        raise ValueError(f"no KRX session in the {_LOOKBACK.days} days before {day}")
    return sessions[-1].date()


def last_closed_bar(now: dt.datetime, interval: Interval, kind: KindLike) -> dt.datetime | None:
    """The start stamp (aware KST, as the KIS client stamps it) of the newest bar a decision can be made
    on at ``now``; compare it with the last index of fetched bars, whose later rows are still forming.

    ``"1m"``: the minute bar ``[t, t + 1 min)`` of today's session that closed at or before ``now``
    (10:05:00 and 10:05:30 -> the 10:04 bar); after the close, the session's last bar; None on a day
    without a session or before the first bar has closed.

    ``"1d"``: midnight KST of the previous KRX session (on Monday, Friday's bar; over a holiday, the
    session before it). It stays the same all day, also after today's close: today's bar is only acted on
    at the next session's open (decide at the close of bar t, execute at the open of bar t + 1), so a daily
    model sees exactly one new bar per session."""
    local = _kst(now)
    if interval == "1d":
        return dt.datetime.combine(previous_session(local.date()), dt.time(0), KST)
    if interval != "1m":
        raise ValueError(f"unknown bar interval {interval!r} (expected '1m' or '1d')")
    bounds = _bounds(local.date(), _kind(kind))
    if bounds is None:
        return None
    open_, close = bounds
    minute = local.replace(second=0, microsecond=0)
    last = min(minute, close) - MINUTE
    return last if last >= open_ else None


def bar_end(bar_start: dt.datetime, interval: Interval, kind: KindLike) -> dt.datetime:
    """When the bar stamped ``bar_start`` closes: a minute later for ``"1m"``; for ``"1d"`` the close of
    that day's session for ``kind`` (a day that is no session raises ``ValueError``)."""
    local = _kst(bar_start)
    if interval == "1m":
        return local + MINUTE
    if interval != "1d":
        raise ValueError(f"unknown bar interval {interval!r} (expected '1m' or '1d')")
    bounds = _bounds(local.date(), _kind(kind))
    if bounds is None:
        raise ValueError(f"{local.date()} is not a KRX session: no daily bar ends on it")
    return bounds[1]
