"""What we trade and when: the KRX session calendar and KOSPI200 futures contracts, rolls and the
back-adjusted continuous series.

Facts (shared/kis/KIS_API_SPEC.md §6, KRX product page): quarterly contracts (Mar/Jun/Sep/Dec), last
trading day the 2nd Thursday of the contract month (the previous session when that is a holiday),
short codes ``101`` + year letter + 2-digit month (``101W09`` = Sep 2025; the letters are inferred [U]
and configurable here).
"""

from __future__ import annotations

import datetime as dt
import re
import warnings
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import numpy as np
import pandas as pd

AdjustMethod = Literal["difference", "ratio"]

#: Year letters of KOSPI200 futures short codes (I, O and U are skipped) [U]: S=2022, T=2023, V=2024, W=2025.
YEAR_LETTERS: dict[int, str] = dict(zip(range(2015, 2031), "KLMNPQRSTVWXYZAB", strict=True))
QUARTER_MONTHS = (3, 6, 9, 12)
INDEX_SYMBOLS = ("KOSPI", "KOSDAQ", "KOSPI200")
#: KOSPI200 futures short codes: ``101`` + year letter + 2-digit month.
CONTRACT_CODE = re.compile(r"^101[A-Z]\d{2}$")
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
        ts = ts.tz_convert("Asia/Seoul").tz_localize(None)
    return ts.normalize()


def is_contract_code(symbol: str) -> bool:
    """True for a single KOSPI200 futures contract code such as ``101W09``."""
    return CONTRACT_CODE.match(symbol) is not None


def is_session(day: dt.date) -> bool:
    """Is ``day`` a KRX trading session?"""
    return len(krx_sessions(day, day)) == 1


@dataclass(frozen=True)
class FuturesContract:
    """One quarterly KOSPI200 futures contract."""

    year: int
    month: int
    last_trading_day: dt.date

    @property
    def code(self) -> str:
        """KIS short code, e.g. ``101W09``."""
        return f"101{YEAR_LETTERS.get(self.year, '?')}{self.month:02d}"


def second_thursday(year: int, month: int) -> dt.date:
    first = dt.date(year, month, 1)
    return first + dt.timedelta(days=(3 - first.weekday()) % 7 + 7)


@lru_cache(maxsize=512)
def contract(year: int, month: int) -> FuturesContract:
    """The contract expiring in ``year``/``month`` (a quarter month)."""
    if month not in QUARTER_MONTHS:
        raise ValueError(f"KOSPI200 futures expire in Mar/Jun/Sep/Dec, not month {month}")
    thursday = second_thursday(year, month)
    sessions = krx_sessions(thursday - dt.timedelta(days=10), thursday)
    return FuturesContract(year, month, sessions[-1].date())


def last_used_session(c: FuturesContract, roll_days: int) -> dt.date:
    """The last session on which ``c`` is the front contract: ``roll_days`` sessions before expiry."""
    sessions = krx_sessions(c.last_trading_day - dt.timedelta(days=roll_days * 2 + 15), c.last_trading_day)
    return sessions[-1 - roll_days].date()


@lru_cache(maxsize=4096)
def front_contract(day: dt.date, roll_days: int = 3) -> FuturesContract:
    """The contract to hold on ``day`` when rolling ``roll_days`` sessions before expiry."""
    year, month = day.year, ((day.month - 1) // 3 + 1) * 3
    c = contract(year, month)
    while day > last_used_session(c, roll_days):
        year, month = (year + 1, 3) if c.month == 12 else (year, c.month + 3)
        c = contract(year, month)
    return c


def contract_schedule(
    start: dt.date, end: dt.date, roll_days: int = 3
) -> list[tuple[FuturesContract, dt.date, dt.date]]:
    """Consecutive (contract, first day, last day) segments covering [start, end]."""
    out = []
    day = start
    while day <= end:
        c = front_contract(day, roll_days)
        last = min(last_used_session(c, roll_days), end)
        out.append((c, day, last))
        day = last + dt.timedelta(days=1)
    return out


PRICE_COLUMNS = ["open", "high", "low", "close"]


def back_adjust(
    segments: list[tuple[str, pd.DataFrame]], method: AdjustMethod = "ratio"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Stitch per-contract daily bars into one back-adjusted continuous series.

    ``segments``, oldest first: (contract code, its bars with ``ts`` and OHLCV) where each frame ends on the
    contract's last used session and may start with an overlap bar on the previous contract's last day
    (used to measure the roll gap, then dropped). At each roll the older history is shifted
    (``difference``: + new close - old close on the roll day) or scaled (``ratio``: x new / old), so the
    series has no artificial jump and the newest contract's prices are unchanged.
    Returns (continuous bars with a ``contract`` column, roll log oldest first).
    """
    ordered = [(code, bars.sort_values("ts").reset_index(drop=True)) for code, bars in segments]
    pieces: list[pd.DataFrame] = []
    log: list[dict[str, object]] = []
    shift, scale = 0.0, 1.0  # adjustment applied to the segment being processed (newest: none)
    for i in range(len(ordered) - 1, -1, -1):
        code, bars = ordered[i]
        if i > 0:  # drop the overlap bar on the previous contract's last day
            bars = bars[bars["ts"] > ordered[i - 1][1]["ts"].max()]
        adjusted = bars.copy()
        adjusted[PRICE_COLUMNS] = adjusted[PRICE_COLUMNS].to_numpy() * scale + shift
        adjusted["contract"] = code
        pieces.append(adjusted)
        if i == 0:
            break
        prev_code, prev = ordered[i - 1]
        roll_ts = prev["ts"].max()
        old_close = float(prev["close"].iloc[-1])
        same_day = ordered[i][1].loc[ordered[i][1]["ts"] == roll_ts, "close"]
        # The new contract's close on the roll day; without a bar that day, its first close after it.
        new_close = float(same_day.iloc[0] if len(same_day) else bars["close"].iloc[0])
        target = new_close * scale + shift  # the new contract's close at the newest contract's level
        if method == "difference":
            shift, scale = target - old_close, 1.0
            step = new_close - old_close
        else:
            shift, scale = 0.0, target / old_close
            step = new_close / old_close
        log.append(
            {
                "roll_ts": roll_ts,
                "from_contract": prev_code,
                "to_contract": code,
                "from_close": old_close,
                "to_close": new_close,
                "method": method,
                "adjustment": step,
            }
        )
    series = pd.concat(pieces[::-1], ignore_index=True).reset_index(drop=True)
    series[PRICE_COLUMNS] = np.round(series[PRICE_COLUMNS].to_numpy(dtype="float64"), 6)
    return series, pd.DataFrame(log[::-1])
