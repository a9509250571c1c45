"""Fetch bars per symbol, quarantine rows that cannot be stored, upsert the rest, report what happened."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pipeline.ingest.contracts import BarsWindow, MinuteBackfill, SymbolFailure
from pipeline.ingest.sources import BarSource
from pipeline.market import TZ_NAME
from pipeline.store import load_bars
from pipeline.store.schema import bars as bars_table
from pipeline.store.times import to_utc

log = logging.getLogger(__name__)


@dataclass
class SymbolIngest:
    """One symbol's share of an ingest run. ``fetched == inserted + updated + unchanged + quarantined``."""

    symbol: str
    interval: str
    start: str
    end: str
    fetched: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    quarantined: int = 0
    error: str | None = None


@dataclass
class IngestReport:
    """Everything one ingest call did (summarised for XCom by :mod:`pipeline.ingest.tasks`)."""

    items: list[SymbolIngest] = field(default_factory=list)
    backfill: MinuteBackfill | None = None
    """Minute ingests: the backfill's progress over past sessions."""

    def total(self, name: str) -> int:
        return sum(int(getattr(i, name)) for i in self.items)

    @property
    def failed(self) -> list[SymbolIngest]:
        return [i for i in self.items if i.error]

    def failures(self) -> list[SymbolFailure]:
        """The failed symbols, JSON-able."""
        return [
            SymbolFailure(symbol=i.symbol, interval=i.interval, start=i.start, end=i.end, error=i.error or "")
            for i in self.failed
        ]

    def extend(self, other: IngestReport) -> None:
        self.items.extend(other.items)

    def window(self) -> BarsWindow | None:
        """The symbols and KST days bars were stored for (None when no bar landed): what to validate."""
        landed = [i for i in self.items if not i.error and i.fetched > i.quarantined]
        if not landed:
            return None
        return BarsWindow(
            symbols=tuple(sorted({i.symbol for i in landed})),
            intervals=tuple(sorted({i.interval for i in landed})),
            start=min(dt.date.fromisoformat(i.start) for i in landed),
            end=max(dt.date.fromisoformat(i.end) for i in landed),
        )

    def without_bar_on(self, day: dt.date, engine: Engine) -> list[SymbolIngest]:
        """Items whose fetch covered session ``day`` yet whose symbol has no stored bar that day."""
        covering = [i for i in self.items if not i.error and i.start <= day.isoformat() <= i.end]
        have: set[tuple[str, str]] = set()
        for interval in {i.interval for i in covering}:
            symbols = {i.symbol for i in covering if i.interval == interval}
            have |= {(s, interval) for s in symbols_with_bar_on(symbols, interval, day, engine)}
        return [i for i in covering if (i.symbol, i.interval) not in have]


def store_fetched(raw: pd.DataFrame, item: SymbolIngest, *, source: str, engine: Engine) -> SymbolIngest:
    """Check broker rows, quarantine the malformed ones with their reason, upsert the rest."""
    result = load_bars(raw.assign(symbol=item.symbol, interval=item.interval), source=source, engine=engine)
    if result.quarantined:
        log.warning("%s %s: quarantined %d malformed rows", item.symbol, item.interval, result.quarantined)
    item.fetched += result.rows
    item.inserted += result.inserted
    item.updated += result.updated
    item.unchanged += result.unchanged
    item.quarantined += result.quarantined
    return item


def last_stored_day(symbol: str, interval: str, engine: Engine) -> dt.date | None:
    """KST date of the newest stored bar of ``symbol``/``interval`` (None when there is none)."""
    query = sa.select(sa.func.max(bars_table.c.ts)).where(
        bars_table.c.symbol == symbol, bars_table.c.interval == interval
    )
    with engine.connect() as conn:
        newest = conn.execute(query).scalar_one_or_none()
    return None if newest is None else pd.Timestamp(newest).tz_convert(TZ_NAME).date()


def symbols_with_bar_on(symbols: Iterable[str], interval: str, day: dt.date, engine: Engine) -> set[str]:
    """Which of ``symbols`` have a stored ``interval`` bar on KST day ``day``."""
    lo = to_utc(pd.Timestamp(day).tz_localize(TZ_NAME))
    query = (
        sa.select(bars_table.c.symbol)
        .distinct()
        .where(
            bars_table.c.symbol.in_(list(symbols)),
            bars_table.c.interval == interval,
            bars_table.c.ts >= lo,
            bars_table.c.ts < lo + dt.timedelta(days=1),
        )
    )
    with engine.connect() as conn:
        return set(conn.execute(query).scalars())


def daily_window(symbol: str, day: dt.date, history_days: int, engine: Engine) -> tuple[dt.date, dt.date]:
    """What to fetch for ``day``: the missing days since the last stored bar (the whole history on a
    first run); just ``day`` when backfilling a day older than what is stored."""
    newest = last_stored_day(symbol, "1d", engine)
    if newest is None:
        return day - dt.timedelta(days=history_days), day
    return (day, day) if newest >= day else (newest + dt.timedelta(days=1), day)


def fetch_and_store(item: SymbolIngest, fetch: Any, source: str, engine: Engine) -> SymbolIngest:
    try:
        raw = fetch()
    except Exception as exc:  # noqa: BLE001 - one symbol's broker failure must not stop the others
        item.error = f"{type(exc).__name__}: {exc}"
        log.error(
            "%s %s %s..%s: fetch failed: %s", item.symbol, item.interval, item.start, item.end, item.error
        )
        return item
    store_fetched(raw, item, source=source, engine=engine)
    log.info(
        "%s %s %s..%s: %d fetched, %d new, %d changed, %d quarantined",
        item.symbol,
        item.interval,
        item.start,
        item.end,
        item.fetched,
        item.inserted,
        item.updated,
        item.quarantined,
    )
    return item


def ingest_daily(
    source: BarSource, symbols: list[str], day: dt.date, *, engine: Engine, history_days: int = 730
) -> IngestReport:
    """Daily bars of ``symbols`` up to ``day`` (KST session date); idempotent per (symbol, interval, day)."""
    report = IngestReport()
    for n, symbol in enumerate(symbols, 1):
        start, end = daily_window(symbol, day, history_days, engine)
        item = SymbolIngest(symbol, "1d", start.isoformat(), end.isoformat())
        log.info("[%d/%d] %s daily %s..%s", n, len(symbols), symbol, start, end)
        report.items.append(
            fetch_and_store(item, lambda s=symbol, a=start, b=end: source.daily(s, a, b), source.name, engine)
        )
    return report


def ingest_minutes(source: BarSource, symbols: list[str], day: dt.date, *, engine: Engine) -> IngestReport:
    """1-minute bars of ``symbols`` for session ``day``; rerunning the day changes nothing."""
    report = IngestReport()
    for n, symbol in enumerate(symbols, 1):
        item = SymbolIngest(symbol, "1m", day.isoformat(), day.isoformat())
        log.info("[%d/%d] %s minutes %s", n, len(symbols), symbol, day)
        fetch = lambda s=symbol: source.minutes(s, day)  # noqa: E731
        report.items.append(fetch_and_store(item, fetch, source.name, engine))
    return report
