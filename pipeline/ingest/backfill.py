"""Minute-bar backfill: the current and the last N XKRX sessions of 1-minute bars per intraday symbol,
fetching only the sessions not stored up to their close, never further back than the broker keeps them."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pipeline.ingest.bars import IngestReport, ingest_minutes
from pipeline.ingest.contracts import MinuteBackfill, SessionNote
from pipeline.ingest.futures import ingest_futures_minutes
from pipeline.ingest.sources import BarSource
from pipeline.market import (
    TZ_NAME,
    InstrumentKind,
    front_contract,
    is_expiry_day,
    krx_sessions,
    session_hours,
)
from pipeline.store.schema import bars as bars_table
from pipeline.store.times import to_utc

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MinuteSeries:
    """One intraday symbol to backfill, and how one session of it is fetched and stored."""

    symbol: str
    """The symbol whose stored bars say whether a session is complete."""
    kind: InstrumentKind
    """Its instrument kind: the session's close comes from it."""
    history_days: int
    """Calendar days back the source serves its minute bars (the retention clamp)."""
    fetch: Callable[[dt.date], IngestReport]
    """Fetch and store one session; the report's first item is the broker fetch."""


def stock_minute_series(
    source: BarSource, symbol: str, kind: InstrumentKind, *, engine: Engine
) -> MinuteSeries:
    """A stock, ETF or index: its own bars under its own code."""
    return MinuteSeries(
        symbol,
        kind,
        source.minute_history_days(symbol),
        lambda day: ingest_minutes(source, [symbol], day, engine=engine),
    )


def futures_minute_series(
    source: BarSource, continuous_symbol: str, roll_days: int, day: dt.date, *, engine: Engine
) -> MinuteSeries:
    """The continuous futures symbol: each session's front contract, stored under its code and under
    ``continuous_symbol`` (see :func:`~pipeline.ingest.futures.ingest_futures_minutes`)."""
    return MinuteSeries(
        continuous_symbol,
        InstrumentKind.FUTURES,
        source.minute_history_days(front_contract(day, roll_days).code),
        lambda session: ingest_futures_minutes(
            source, session, engine=engine, continuous_symbol=continuous_symbol, roll_days=roll_days
        ),
    )


def plan_sessions(day: dt.date, past: int, history_days: int) -> tuple[list[dt.date], str | None]:
    """Session ``day`` and up to ``past`` XKRX sessions before it, oldest first, none more than
    ``history_days`` calendar days before ``day``; the note says why there are fewer than asked."""
    oldest = day - dt.timedelta(days=history_days)
    reach = day - dt.timedelta(days=past * 2 + 15)  # KRX has ~250 sessions a year: this holds ``past``
    found = [s.date() for s in krx_sessions(max(oldest, reach), day)]
    if not found or found[-1] != day:  # the caller checked ``day`` is a session; keep it regardless
        found.append(day)
    sessions = found[-(past + 1) :]
    if len(sessions) > past or oldest <= reach:
        return sessions, None
    return sessions, (
        f"{past} past sessions asked, but the broker serves 1-minute bars only {history_days} days back: "
        f"backfilling {len(sessions) - 1} (from {sessions[0]})"
    )


def session_last_minute(kind: InstrumentKind, day: dt.date) -> pd.Timestamp:
    """Start of the last 1-minute bar of ``kind``'s regular session on ``day`` (the earlier expiry-day
    close for futures, so either contract's session counts as complete)."""
    close = session_hours(kind).close_on(is_expiry_day(day))
    return pd.Timestamp(dt.datetime.combine(day, close)).tz_localize(TZ_NAME) - pd.Timedelta(minutes=1)


def newest_minute_per_day(
    symbol: str, first: dt.date, last: dt.date, engine: Engine
) -> dict[dt.date, pd.Timestamp]:
    """The newest stored 1-minute bar of ``symbol`` per KST day in [first, last] (days without: absent)."""
    lo = pd.Timestamp(first).tz_localize(TZ_NAME)
    hi = pd.Timestamp(last + dt.timedelta(days=1)).tz_localize(TZ_NAME)
    query = sa.select(bars_table.c.ts).where(
        bars_table.c.symbol == symbol,
        bars_table.c.interval == "1m",
        bars_table.c.ts >= to_utc(lo),
        bars_table.c.ts < to_utc(hi),
    )
    with engine.connect() as conn:
        stamps = list(conn.execute(query).scalars())
    if not stamps:
        return {}
    kst = pd.Series(pd.to_datetime(stamps, utc=True)).dt.tz_convert(TZ_NAME)
    return {day: pd.Timestamp(ts) for day, ts in kst.groupby(kst.dt.date).max().items()}


def backfill_minutes(
    series: Sequence[MinuteSeries], day: dt.date, past: int, *, engine: Engine
) -> IngestReport:
    """Bring each series' 1-minute bars of session ``day`` and of ``past`` sessions before it up to the
    session's close: sessions already stored that far are skipped, missing or partial ones fetched (the
    broker client paces itself to the rate limit). The report's ``backfill`` holds the progress."""
    report = IngestReport()
    progress = MinuteBackfill(
        requested=past,
        first=day.isoformat(),
        last=day.isoformat(),
        fetched=0,
        partial=0,
        skipped=0,
        empty=[],
        clamped=[],
    )
    for one in series:
        sessions, clamp = plan_sessions(day, past, one.history_days)
        if clamp:
            progress["clamped"].append(f"{one.symbol}: {clamp}")
            log.warning("%s 1m: %s", one.symbol, clamp)
        progress["first"] = min(progress["first"], sessions[0].isoformat())
        _backfill_series(one, sessions, engine, report, progress)
    report.backfill = progress
    return report


def _backfill_series(
    one: MinuteSeries,
    sessions: list[dt.date],
    engine: Engine,
    report: IngestReport,
    progress: MinuteBackfill,
) -> None:
    newest = newest_minute_per_day(one.symbol, sessions[0], sessions[-1], engine)
    todo = [d for d in sessions if d not in newest or newest[d] < session_last_minute(one.kind, d)]
    progress["skipped"] += len(sessions) - len(todo)
    progress["partial"] += sum(d in newest for d in todo)
    log.info(
        "%s 1m %s..%s: %d of %d sessions to fetch (%d stored in part), the rest stored completely",
        one.symbol,
        sessions[0],
        sessions[-1],
        len(todo),
        len(sessions),
        sum(d in newest for d in todo),
    )
    for n, session in enumerate(todo, 1):
        part = one.fetch(session)
        report.extend(part)
        progress["fetched"] += 1
        reason = empty_reason(part)
        if reason:
            progress["empty"].append(SessionNote(symbol=one.symbol, day=session.isoformat(), reason=reason))
        log.info("[%d/%d] %s 1m %s: %s", n, len(todo), one.symbol, session, reason or "stored")


def empty_reason(part: IngestReport) -> str | None:
    """Why a session's fetch stored no bar (None when bars landed or the fetch failed: a failure is
    reported as such)."""
    fetch = part.items[0]
    if fetch.error:
        return None
    if fetch.fetched == 0:
        return f"the broker returned no 1-minute bar of {fetch.symbol}"
    if fetch.fetched == fetch.quarantined:
        return f"all {fetch.fetched} bars of {fetch.symbol} from the broker were malformed (quarantined)"
    return None
