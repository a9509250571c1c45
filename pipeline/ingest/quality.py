"""After ingest: validate the new bars (Great Expectations), quarantine failures, build and store features."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from typing import Any

import pandas as pd
from sqlalchemy.engine import Engine

from pipeline.config import Settings, get_settings
from pipeline.features import FEATURE_SET_VERSION, WARMUP_BARS, build_features, upsert_features
from pipeline.store import get_engine, move_to_quarantine, read_bars
from pipeline.universe import is_contract_code, krx_sessions
from pipeline.validation import validate_bars

log = logging.getLogger(__name__)
KST = "Asia/Seoul"
#: Daily price limits by instrument kind (KRX: stocks +-30%; KOSPI200 futures tiers 8/15/20%).
PRICE_LIMITS = {"stock": 0.30, "future": 0.20, "index": 0.30}


class ValidationFailed(RuntimeError):
    """More bars failed validation than ``KRX_VALIDATION_MAX_FAILURE_RATE`` allows (they are quarantined)."""


def merge_windows(windows: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Asset-event windows (symbols, intervals, start, end) merged per interval."""
    merged: dict[str, dict[str, Any]] = {}
    for w in windows:
        if not w or not w.get("start"):
            continue
        for interval in w.get("intervals") or ["1d"]:
            m = merged.setdefault(interval, {"symbols": set(), "start": w["start"], "end": w["end"]})
            m["symbols"] |= set(w.get("symbols") or [])
            m["start"], m["end"] = min(m["start"], w["start"]), max(m["end"], w["end"])
    return merged


def kinds_for(symbols: Iterable[str], settings: Settings) -> dict[str, str]:
    """symbol -> stock | future | index, for session hours and price limits."""
    out = {}
    for s in symbols:
        if s == settings.futures_symbol or is_contract_code(s):
            out[s] = "future"
        elif s in settings.index_symbols:
            out[s] = "index"
        else:
            out[s] = "stock"
    return out


def _kst(day: str | dt.date) -> pd.Timestamp:
    return pd.Timestamp(day).tz_localize(KST)


def check_and_featurize(
    interval: str,
    symbols: list[str] | None,
    start: dt.date,
    end: dt.date,
    *,
    settings: Settings,
    engine: Engine,
) -> dict[str, Any]:
    """Validate stored bars of one interval in [start, end] (KST days), quarantine failures, featurize."""
    window_end = _kst(end + dt.timedelta(days=1))
    # Include the sessions just before the window: the price-limit check compares with the previous close.
    context = start - dt.timedelta(days=10) if interval == "1d" else start
    bars = read_bars(symbols, interval, start=_kst(context), end=window_end, engine=engine)
    kinds = kinds_for(bars["symbol"].unique(), settings)
    report = validate_bars(
        bars,
        sessions=krx_sessions(context, end),
        kinds=kinds,
        price_limit={s: PRICE_LIMITS[k] for s, k in kinds.items()},
        data_docs_dir=settings.var_dir / "data_docs",
        max_failure_rate=settings.validation_max_failure_rate,
        run_name=f"bars-{interval}-{start}-{end}",
    )
    moved = move_to_quarantine(report.quarantined, source=f"validation:{interval}", engine=engine)
    summary: dict[str, Any] = {
        "interval": interval,
        "start": start.isoformat(),
        "end": end.isoformat(),
        "rows_in": report.rows_in,
        "good": len(report.good),
        "quarantined": moved,
        "failure_rate": round(report.failure_rate, 6),
        "failed_expectations": report.failed_expectations,
        # A single futures contract trades only while it is listed: its "gaps" outside that are not gaps.
        "missing_sessions": {
            s: [d.isoformat() for d in days]
            for s, days in report.missing_sessions.items()
            if not is_contract_code(s)
        },
        "data_docs": str(report.data_docs_path) if report.data_docs_path else None,
        "passed": report.passed,
    }
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
    history = read_bars(symbols, interval, start=_kst(start) - lookback, end=window_end, engine=engine)
    features = build_features(history)
    fresh = features[features["ts"] >= _kst(start)]
    summary["features_written"] = upsert_features(fresh, engine)
    summary["feature_set"] = FEATURE_SET_VERSION
    return summary


def validate_and_featurize(
    windows: Iterable[dict[str, Any]] | None = None,
    *,
    settings: Settings | None = None,
    engine: Engine | None = None,
    default_end: dt.date | None = None,
    default_days: int = 10,
) -> dict[str, Any]:
    """Validate and featurize what the triggering ingest runs covered (without windows: the
    ``default_days`` days up to ``default_end``, default today, of every interval).
    Raises :class:`ValidationFailed` when a window's failure rate is too high."""
    settings = settings or get_settings()
    engine = engine or get_engine(settings.resolved_database_url)
    merged = merge_windows(windows or [])
    if not merged:
        end = default_end or pd.Timestamp.now(tz=KST).date()
        start = (end - dt.timedelta(days=default_days)).isoformat()
        merged = {i: {"symbols": set(), "start": start, "end": end.isoformat()} for i in ("1d", "1m")}
    results = [
        check_and_featurize(
            interval,
            sorted(w["symbols"]) or None,
            dt.date.fromisoformat(w["start"]),
            dt.date.fromisoformat(w["end"]),
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
    return {"windows": results}
