"""Fetch bars per symbol, quarantine rows that cannot be stored, upsert the rest, report what happened."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pipeline.ingest.sources import BarSource
from pipeline.store import load_bars
from pipeline.store.schema import bars as bars_table

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
    """Everything one ingest call did, small enough for XCom (``to_dict``)."""

    items: list[SymbolIngest] = field(default_factory=list)

    def total(self, name: str) -> int:
        return sum(int(getattr(i, name)) for i in self.items)

    @property
    def failed(self) -> list[SymbolIngest]:
        return [i for i in self.items if i.error]

    def extend(self, other: IngestReport) -> None:
        self.items.extend(other.items)

    def to_dict(self) -> dict[str, Any]:
        keys = ("fetched", "inserted", "updated", "unchanged", "quarantined")
        return {
            **{k: self.total(k) for k in keys},
            "symbols": sorted({i.symbol for i in self.items}),
            "intervals": sorted({i.interval for i in self.items}),
            "start": min((i.start for i in self.items), default=None),
            "end": max((i.end for i in self.items), default=None),
            "failed": [asdict(i) for i in self.failed],
        }


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
    return None if newest is None else pd.Timestamp(newest).tz_convert("Asia/Seoul").date()


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
