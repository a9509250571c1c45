"""Chart TRs don't page with tr_cont: walk their date/time cursors backwards (spec §5, §6)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from pipeline.kis.models import Bar
from pipeline.market import KST


@dataclass(frozen=True)
class BarShape:
    """Which KIS row fields hold open/high/low/close/volume/value for one chart TR."""

    open: str
    high: str
    low: str
    close: str
    volume: str
    value: str = "acml_tr_pbmn"


STOCK_DAILY = BarShape("stck_oprc", "stck_hgpr", "stck_lwpr", "stck_clpr", "acml_vol")
STOCK_MINUTE = BarShape("stck_oprc", "stck_hgpr", "stck_lwpr", "stck_prpr", "cntg_vol")
FUTURES_DAILY = BarShape("futs_oprc", "futs_hgpr", "futs_lwpr", "futs_prpr", "acml_vol")
FUTURES_MINUTE = BarShape("futs_oprc", "futs_hgpr", "futs_lwpr", "futs_prpr", "cntg_vol")
INDEX_DAILY = BarShape("bstp_nmix_oprc", "bstp_nmix_hgpr", "bstp_nmix_lwpr", "bstp_nmix_prpr", "acml_vol")


def to_bar(row: dict[str, Any], shape: BarShape) -> Bar | None:
    """A Bar from a chart row; None for the empty filler rows KIS sometimes appends.

    Minute rows are stamped with ``stck_cntg_hour`` read as the bar's start [U: KIS may label by end]."""
    day_text = str(row.get("stck_bsop_date", "")).strip()
    if not day_text:
        return None
    day = datetime.strptime(day_text, "%Y%m%d").date()
    hour = str(row.get("stck_cntg_hour", "")).strip()
    clock = datetime.strptime(hour, "%H%M%S").time() if hour else time(0)
    return Bar.model_validate(
        {
            "ts": datetime.combine(day, clock, KST),
            "open": row.get(shape.open),
            "high": row.get(shape.high),
            "low": row.get(shape.low),
            "close": row.get(shape.close),
            "volume": row.get(shape.volume),
            "value": row.get(shape.value),
        }
    )


def walk_daily(
    fetch: Callable[[date, date], list[Bar]], start: date, end: date, page_rows: int, max_calls: int
) -> list[Bar]:
    """Walk [start, end] newest-first in windows of ``page_rows`` rows, moving the end date back."""
    found: dict[date, Bar] = {}
    conflicts: list[Bar] = []
    cursor = end
    for _ in range(max_calls):
        batch = [b for b in fetch(start, cursor) if start <= b.ts.date() <= cursor]
        if not batch:
            break
        _merge(found, conflicts, ((b.ts.date(), b) for b in batch))
        oldest = min(b.ts.date() for b in batch)
        if oldest <= start or len(batch) < page_rows:
            break
        cursor = oldest - timedelta(days=1)
    return sorted([*found.values(), *conflicts], key=lambda b: b.ts)


def walk_minutes(
    fetch: Callable[[datetime], list[Bar]], day: date | None, session_open: time, until: time, max_calls: int
) -> list[Bar]:
    """Walk one day's minute bars backwards from ``until``: next cursor = oldest bar - 1 minute (spec §5).

    ``day`` None means "today as the server sees it" (the newest bar's date)."""
    found: dict[datetime, Bar] = {}
    conflicts: list[Bar] = []
    cursor = datetime.combine(day or date.today(), until, KST)
    for _ in range(max_calls):
        raw = fetch(cursor)
        if day is None and raw:
            day = max(b.ts for b in raw).date()
        batch = [b for b in raw if b.ts.date() == day]
        fresh = [b for b in batch if b.ts not in found]
        if not fresh or day is None:
            break
        _merge(found, conflicts, ((b.ts, b) for b in batch))
        oldest = min(b.ts for b in batch)
        if oldest <= datetime.combine(day, session_open, KST):
            break
        cursor = oldest - timedelta(minutes=1)
    return sorted([*found.values(), *conflicts], key=lambda b: b.ts)


def _merge(found: dict[Any, Bar], conflicts: list[Bar], keyed: Iterable[tuple[Any, Bar]]) -> None:
    """Cursor windows overlap, so the same bar arrives twice: keep one. Two *different* bars for one
    timestamp are a broker data error: keep both so the ingest quarantines them instead of guessing."""
    for key, bar in keyed:
        seen = found.get(key)
        if seen is None:
            found[key] = bar
        elif seen != bar and bar not in conflicts:
            conflicts.append(bar)


def yyyymmdd(day: date) -> str:
    """KIS date format."""
    return day.strftime("%Y%m%d")


def hhmmss(moment: datetime | time) -> str:
    """KIS time format."""
    return moment.strftime("%H%M%S")
