"""Units of work the data DAGs and `krx data` run: one call each, settings-driven, JSON-able result."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from contextlib import ExitStack, closing

import pandas as pd
from sqlalchemy.engine import Engine

from pipeline.config import Settings, get_settings
from pipeline.ingest.backfill import (
    MinuteSeries,
    backfill_minutes,
    futures_minute_series,
    stock_minute_series,
)
from pipeline.ingest.bars import IngestReport, ingest_daily
from pipeline.ingest.contracts import IngestSummary, MinuteBackfill
from pipeline.ingest.futures import ingest_futures_daily
from pipeline.ingest.sources import BarSource, KisBarSource
from pipeline.market import TZ_NAME, is_session
from pipeline.store import get_engine

log = logging.getLogger(__name__)


class IngestFailed(RuntimeError):
    """Some symbols could not be fetched, or (daily bars) the broker had no bar for an open session;
    everything else was stored. Safe to retry (idempotent)."""


def kis_source(settings: Settings | None = None) -> KisBarSource:
    """Bars from KIS for ``settings.kis_env`` (the local simulator by default); close it after use."""
    from pipeline.kis import KisClient

    return KisBarSource(KisClient.from_settings(settings or get_settings()))


def _summary(
    day: dt.date, report: IngestReport | None = None, empty: list[str] | None = None, *, session: bool = True
) -> IngestSummary:
    report = report or IngestReport()
    window = report.window()
    summary = IngestSummary(
        session=session,
        day=day.isoformat(),
        fetched=report.total("fetched"),
        inserted=report.total("inserted"),
        updated=report.total("updated"),
        unchanged=report.total("unchanged"),
        quarantined=report.total("quarantined"),
        symbols=sorted({i.symbol for i in report.items}),
        intervals=sorted({i.interval for i in report.items}),
        failed=report.failures(),
        empty=empty or [],
        warnings=[f"{e}: the broker returned no bar for session {day}" for e in empty or []],
        window=window.to_extra() if window else None,
    )
    if report.backfill is not None:
        summary["backfill"] = report.backfill
        summary["warnings"] += _backfill_warnings(report.backfill)
    return summary


def _backfill_warnings(progress: MinuteBackfill) -> list[str]:
    """The retention clamp, and past sessions without a bar (the current one is warned about above)."""
    past = [e for e in progress["empty"] if e["day"] != progress["last"]]
    return [*progress["clamped"], *(f"{e['symbol']} 1m {e['day']}: {e['reason']}" for e in past)]


def _finish(
    report: IngestReport, what: str, day: dt.date, engine: Engine, empty_fails: bool
) -> IngestSummary:
    empty = [f"{i.symbol} {i.interval}" for i in report.without_bar_on(day, engine)]
    summary = _summary(day, report, empty)
    log.info("%s: %s", what, {k: v for k, v in summary.items() if k not in ("failed", "symbols")})
    for warning in summary["warnings"]:
        log.warning("%s: %s", what, warning)
    problems = [f"{f.symbol} ({f.error})" for f in report.failed]
    if empty and empty_fails:
        problems.append(f"no bar for session {day} from the broker for {', '.join(empty)}")
    if problems:
        raise IngestFailed(
            f"{what}: {'; '.join(problems)}; the rest is stored, a retry fetches what is missing"
        )
    return summary


def _daily(day: dt.date, settings: Settings, source: BarSource, engine: Engine) -> IngestReport:
    symbols = [*settings.stock_symbols, *settings.index_symbols]
    report = ingest_daily(source, symbols, day, engine=engine, history_days=settings.ingest_history_days)
    report.extend(
        ingest_futures_daily(
            source,
            day,
            engine=engine,
            continuous_symbol=settings.futures_symbol,
            roll_days=settings.futures_roll_days,
            method=settings.futures_adjust,
            history_days=settings.ingest_history_days,
        )
    )
    return report


def _minutes(day: dt.date, settings: Settings, source: BarSource, engine: Engine) -> IngestReport:
    series: list[MinuteSeries] = [
        stock_minute_series(source, s, settings.kind_of(s), engine=engine)
        for s in settings.intraday_symbols
        if s != settings.futures_symbol
    ]
    if settings.futures_symbol in settings.intraday_symbols:
        series.append(
            futures_minute_series(
                source, settings.futures_symbol, settings.futures_roll_days, day, engine=engine
            )
        )
    return backfill_minutes(series, day, settings.ingest_minute_sessions, engine=engine)


def _run_session(
    what: str,
    work: Callable[[dt.date, Settings, BarSource, Engine], IngestReport],
    day: dt.date,
    source: BarSource | None,
    settings: Settings | None,
    engine: Engine | None,
    *,
    empty_fails: bool,
) -> IngestSummary:
    settings = settings or get_settings()
    if not is_session(day):
        log.info("%s is not a KRX session: no %s to ingest", day, what)
        return _summary(day, session=False)
    engine = engine or get_engine(settings.resolved_database_url)
    with ExitStack() as stack:
        if source is None:  # ours to close; a source passed in belongs to the caller
            source = stack.enter_context(closing(kis_source(settings)))
        report = work(day, settings, source, engine)
    return _finish(report, f"{what} {day}", day, engine, empty_fails)


def ingest_daily_session(
    day: dt.date,
    *,
    source: BarSource | None = None,
    settings: Settings | None = None,
    engine: Engine | None = None,
) -> IngestSummary:
    """Daily bars of stocks, indices and KOSPI200 futures (contracts + continuous) up to session ``day``.
    Raises :class:`IngestFailed` after storing the rest when a fetch failed or the broker had no bar
    of a symbol for the session."""
    return _run_session("daily bars", _daily, day, source, settings, engine, empty_fails=True)


def ingest_minute_session(
    day: dt.date,
    *,
    source: BarSource | None = None,
    settings: Settings | None = None,
    engine: Engine | None = None,
    sessions: int | None = None,
) -> IngestSummary:
    """1-minute bars of ``settings.intraday_symbols`` for session ``day`` and, where not stored up to
    their close, for the ``sessions`` XKRX sessions before it (default ``settings.ingest_minute_sessions``;
    clamped to the broker's retention). Sessions the broker had no bar for are warnings in the summary,
    its ``backfill`` the progress. Raises :class:`IngestFailed` after storing the rest when a fetch failed."""
    if sessions is not None:
        if sessions < 0:
            raise ValueError(f"sessions must be 0 or more, not {sessions}")
        settings = (settings or get_settings()).model_copy(update={"ingest_minute_sessions": sessions})
    return _run_session("minute bars", _minutes, day, source, settings, engine, empty_fails=False)


def session_day(when: dt.datetime | pd.Timestamp | None) -> dt.date:
    """The KRX session date (KST) a DAG run is about: pass its ``logical_date``, or ``run_after`` for
    runs without one (asset-triggered runs)."""
    if when is None or pd.isna(when):
        raise ValueError("the run has no date: pass dag_run.run_after when logical_date is None")
    return pd.Timestamp(when).tz_convert(TZ_NAME).date()
