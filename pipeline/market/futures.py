"""KOSPI200 futures contracts: quarterly expiries, last trading days, short codes, front contract and rolls.

Facts (KIS_API_SPEC.md §6, KRX product page): quarterly contracts (Mar/Jun/Sep/Dec), last trading day the
2nd Thursday of the contract month (the previous session when that is a holiday), short codes ``101`` +
year letter + 2-digit month (``101W09`` = Sep 2025; the letters are inferred [U]).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import lru_cache

from pipeline.market.calendar import krx_sessions

#: Year letters of KOSPI200 futures short codes (I, O and U are skipped) [U]: S=2022, T=2023, V=2024, W=2025.
YEAR_LETTERS: dict[int, str] = dict(zip(range(2015, 2031), "KLMNPQRSTVWXYZAB", strict=True))
QUARTER_MONTHS = (3, 6, 9, 12)


@dataclass(frozen=True)
class FuturesContract:
    """One quarterly KOSPI200 futures contract."""

    year: int
    month: int
    last_trading_day: dt.date

    @property
    def code(self) -> str:
        """KIS short code, e.g. ``101W09``."""
        return contract_code(self.year, self.month)


def contract_code(year: int, month: int) -> str:
    """The short code of the contract expiring in ``year``/``month``; years without a known letter raise."""
    if year not in YEAR_LETTERS:
        first, last = min(YEAR_LETTERS), max(YEAR_LETTERS)
        raise ValueError(f"no KOSPI200 futures year letter known for {year} (known: {first}-{last})")
    return f"101{YEAR_LETTERS[year]}{month:02d}"


def is_expiry_day(day: dt.date) -> bool:
    """Is ``day`` the last trading day of a KOSPI200 futures contract?"""
    return day.month in QUARTER_MONTHS and day == contract(day.year, day.month).last_trading_day


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
