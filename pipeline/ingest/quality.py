"""After ingest: validate the new bars (Great Expectations), quarantine failures, build and store features."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from sqlalchemy.engine import Engine

from pipeline.config import Settings, get_settings
from pipeline.features import FEATURE_SET_VERSION, WARMUP_BARS, build_features, upsert_features
from pipeline.ingest.contracts import (
    INTERVALS,
    BarsWindow,
    InvalidWindow,
    SkippedEvent,
    ValidationSummary,
    WindowReport,
)
from pipeline.market import TZ_NAME, is_contract_code, krx_sessions
from pipeline.store import get_engine, move_to_quarantine, read_bars
from pipeline.validation import BarsValidationReport, validate_bars

log = logging.getLogger(__name__)


class ValidationFailed(RuntimeError):
    """More bars failed validation than ``KRX_VALIDATION_MAX_FAILURE_RATE`` allows (they are quarantined)."""


@dataclass
class MergedWindow:
    """The windows of one interval merged: every symbol named (empty: all) over the widest span."""

    start: dt.date
    end: dt.date
    symbols: set[str] = field(default_factory=set)
    every_symbol: bool = False


def parse_windows(extras: Iterable[object]) -> tuple[list[BarsWindow], list[SkippedEvent]]:
    """Asset-event extras to windows; an extra that is not a window is skipped with the reason logged,
    so one bad event never stops the others from being validated."""
    windows: list[BarsWindow] = []
    skipped: list[SkippedEvent] = []
    for extra in extras:
        try:
            windows.append(BarsWindow.from_extra(extra))
        except InvalidWindow as exc:
            shown = repr(extra)
            skipped.append(
                SkippedEvent(extra=shown if len(shown) <= 300 else shown[:297] + "...", reason=str(exc))
            )
            log.warning("skipping a bars event that is not a window (%s): %s", exc, skipped[-1]["extra"])
    return windows, skipped


def merge_windows(windows: Iterable[BarsWindow]) -> dict[str, MergedWindow]:
    """Windows merged per interval: the union of their symbols over [earliest start, latest end]."""
    merged: dict[str, MergedWindow] = {}
    for w in windows:
        for interval in w.intervals:
            m = merged.setdefault(interval, MergedWindow(w.start, w.end))
            m.start, m.end = min(m.start, w.start), max(m.end, w.end)
            m.symbols |= set(w.symbols)
            m.every_symbol |= not w.symbols
    return merged


def _kst(day: dt.date) -> pd.Timestamp:
    return pd.Timestamp(day).tz_localize(TZ_NAME)


def _previous_session(day: dt.date) -> dt.date:
    sessions = krx_sessions(day - dt.timedelta(days=20), day - dt.timedelta(days=1))
    return sessions[-1].date() if len(sessions) else day


def _read_window(
    interval: str, symbols: list[str] | None, start: dt.date, end: dt.date, engine: Engine
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(bars of the window, bars of the session before it — the price-limit check's previous close)."""
    rows = read_bars(
        symbols,
        interval,
        start=_kst(_previous_session(start)),
        end=_kst(end + dt.timedelta(1)),
        engine=engine,
    )
    before = rows["ts"] < _kst(start)
    return rows[~before].reset_index(drop=True), rows[before].reset_index(drop=True)


def _report(
    interval: str, start: dt.date, end: dt.date, report: BarsValidationReport, moved: int
) -> WindowReport:
    return WindowReport(
        interval=interval,
        start=start.isoformat(),
        end=end.isoformat(),
        rows_in=report.rows_in,
        good=len(report.good),
        quarantined=moved,
        failure_rate=round(report.failure_rate, 6),
        failed_expectations=report.failed_expectations,
        # A single futures contract trades only while it is listed: its "gaps" outside that are not gaps.
        missing_sessions={
            s: [d.isoformat() for d in days]
            for s, days in report.missing_sessions.items()
            if not is_contract_code(s)
        },
        data_docs=str(report.data_docs_path) if report.data_docs_path else None,
        passed=report.passed,
        features_written=0,
        feature_set=None,
    )


def check_and_featurize(
    interval: str,
    symbols: list[str] | None,
    start: dt.date,
    end: dt.date,
    *,
    settings: Settings,
    engine: Engine,
) -> WindowReport:
    """Validate stored bars of one interval in [start, end] (KST days), quarantine failures, featurize.
    Only the window's bars are validated, counted and quarantined; the session before it only supplies
    the previous close for the price-limit check."""
    bars, context = _read_window(interval, symbols, start, end, engine)
    kinds = {s: settings.kind_of(s) for s in set(bars["symbol"]) | set(context["symbol"])}
    report = validate_bars(
        bars,
        context=context,
        sessions=krx_sessions(start, end),
        kinds=kinds,  # and with them each symbol's daily price limit
        data_docs_dir=settings.var_dir / "data_docs",
        max_failure_rate=settings.validation_max_failure_rate,
        run_name=f"bars-{interval}-{start}-{end}",
    )
    moved = move_to_quarantine(report.quarantined, source=f"validation:{interval}", engine=engine)
    summary = _report(interval, start, end, report, moved)
    log.info(
        "validated %s bars %s..%s: %d in, %d quarantined; Data Docs: %s",
        interval,
        start,
        end,
        report.rows_in,
        moved,
        summary["data_docs"],
    )
    if not report.passed:
        return summary
    # Features need WARMUP_BARS bars of history before the window: read back far enough for that.
    lookback = dt.timedelta(days=int(WARMUP_BARS * 1.6) + 10) if interval == "1d" else dt.timedelta(days=7)
    history = read_bars(
        symbols, interval, start=_kst(start) - lookback, end=_kst(end + dt.timedelta(1)), engine=engine
    )
    features = build_features(history)
    summary["features_written"] = upsert_features(features[features["ts"] >= _kst(start)], engine)
    summary["feature_set"] = FEATURE_SET_VERSION
    return summary


def _default_windows(end: dt.date | None, days: int) -> dict[str, MergedWindow]:
    last = end or pd.Timestamp.now(tz=TZ_NAME).date()
    return {i: MergedWindow(last - dt.timedelta(days=days), last, every_symbol=True) for i in INTERVALS}


def validate_and_featurize(
    windows: Iterable[Mapping[str, Any]] | None = None,
    *,
    settings: Settings | None = None,
    engine: Engine | None = None,
    default_end: dt.date | None = None,
    default_days: int = 10,
) -> ValidationSummary:
    """Validate and featurize the windows of the triggering ingest runs (asset-event extras, see
    :class:`~pipeline.ingest.contracts.BarsWindowExtra`); extras that are not windows are skipped and
    reported. Without windows: the ``default_days`` days up to ``default_end`` (default today) of every
    interval. Raises :class:`ValidationFailed` when a window's failure rate is too high."""
    settings = settings or get_settings()
    engine = engine or get_engine(settings.resolved_database_url)
    events = list(windows or [])
    parsed, skipped = parse_windows(events)
    merged = merge_windows(parsed) if events else _default_windows(default_end, default_days)
    if events and not parsed:
        log.warning("none of the %d bars event(s) describes a window: nothing to validate", len(events))
    results = [
        check_and_featurize(
            interval,
            None if w.every_symbol else sorted(w.symbols),
            w.start,
            w.end,
            settings=settings,
            engine=engine,
        )
        for interval, w in sorted(merged.items())
    ]
    failed = [r for r in results if not r["passed"]]
    if failed:
        worst = max(failed, key=lambda r: r["failure_rate"])
        raise ValidationFailed(
            f"{len(failed)} window(s) over the failure threshold {settings.validation_max_failure_rate:.1%}; "
            f"worst: {worst['interval']} {worst['failure_rate']:.1%} "
            f"({', '.join(worst['failed_expectations'])}); "
            f"failing rows are quarantined; Data Docs: {worst['data_docs']}"
        )
    return ValidationSummary(windows=results, skipped=skipped)
