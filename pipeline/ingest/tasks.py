"""Units of work the data DAGs and `krx data` run: one call each, settings-driven, JSON-able result."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

import pandas as pd
from sqlalchemy.engine import Engine

from pipeline.config import Settings, get_settings
from pipeline.ingest.bars import IngestReport, ingest_daily, ingest_minutes
from pipeline.ingest.futures import ingest_futures_daily, ingest_futures_minutes
from pipeline.ingest.sources import BarSource, KisBarSource
from pipeline.store import get_engine
from pipeline.universe import is_session

log = logging.getLogger(__name__)


class IngestFailed(RuntimeError):
    """Some symbols could not be fetched; everything else was stored. Safe to retry (idempotent)."""


def kis_source(settings: Settings | None = None) -> BarSource:
    """Bars from KIS for ``settings.kis_env`` (the local simulator by default)."""
    from pipeline.kis import KisClient

    return KisBarSource(KisClient.from_settings(settings or get_settings()))


def _finish(report: IngestReport, what: str) -> dict[str, Any]:
    summary = report.to_dict()
    log.info("%s: %s", what, {k: v for k, v in summary.items() if k != "failed"})
    if report.failed:
        names = ", ".join(f"{f.symbol} ({f.error})" for f in report.failed)
        raise IngestFailed(f"{what}: {len(report.failed)} symbol(s) failed, the rest is stored: {names}")
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
    stocks = [s for s in settings.intraday_symbols if s != settings.futures_symbol]
    report = ingest_minutes(source, stocks, day, engine=engine)
    if settings.futures_symbol in settings.intraday_symbols:
        report.extend(
            ingest_futures_minutes(
                source,
                day,
                engine=engine,
                continuous_symbol=settings.futures_symbol,
                roll_days=settings.futures_roll_days,
            )
        )
    return report


def _run_session(
    what: str,
    work: Callable[[dt.date, Settings, BarSource, Engine], IngestReport],
    day: dt.date,
    source: BarSource | None,
    settings: Settings | None,
    engine: Engine | None,
) -> dict[str, Any]:
    settings = settings or get_settings()
    if not is_session(day):
        log.info("%s is not a KRX session: no %s to ingest", day, what)
        return {"session": False, "day": day.isoformat()}
    report = work(
        day, settings, source or kis_source(settings), engine or get_engine(settings.resolved_database_url)
    )
    return {"session": True, "day": day.isoformat(), **_finish(report, f"{what} {day}")}


def ingest_daily_session(
    day: dt.date,
    *,
    source: BarSource | None = None,
    settings: Settings | None = None,
    engine: Engine | None = None,
) -> dict[str, Any]:
    """Daily bars of stocks, indices and KOSPI200 futures (contracts + continuous) up to session ``day``."""
    return _run_session("daily bars", _daily, day, source, settings, engine)


def ingest_minute_session(
    day: dt.date,
    *,
    source: BarSource | None = None,
    settings: Settings | None = None,
    engine: Engine | None = None,
) -> dict[str, Any]:
    """1-minute bars of ``settings.intraday_symbols`` for session ``day``."""
    return _run_session("minute bars", _minutes, day, source, settings, engine)


def session_day(logical_date: dt.datetime | pd.Timestamp) -> dt.date:
    """The KRX session date (KST) a DAG run is about."""
    return pd.Timestamp(logical_date).tz_convert("Asia/Seoul").date()
