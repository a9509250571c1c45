"""``krx demo``: the data pipeline end to end on embedded defaults (SQLite, the offline KIS simulator)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from rich.console import Console
from rich.table import Table

from pipeline.config import Settings, get_settings, mask_url
from pipeline.console import print_bar_summary, print_reports
from pipeline.ingest.contracts import IngestSummary, ValidationSummary
from pipeline.ingest.quality import validate_and_featurize
from pipeline.ingest.tasks import ingest_daily_session, ingest_minute_session
from pipeline.kis.simulator.server import SimServer
from pipeline.kis.simulator.simconfig import SimConfig
from pipeline.market import KST, krx_sessions
from pipeline.reports import find_reports
from pipeline.store import get_engine
from pipeline.store.migrate import upgrade
from pipeline.store.schema import futures_rolls

#: Daily ingest runs at 16:40 KST, after the futures close (15:45).
INGEST_TIME = dt.time(16, 40)


def last_closed_session(now: dt.datetime) -> dt.date:
    """The newest KRX session whose data is complete at ``now``."""
    local = now.astimezone(KST)
    sessions = krx_sessions(local.date() - dt.timedelta(days=15), local.date())
    days = [d.date() for d in sessions]
    if days and days[-1] == local.date() and local.time() < INGEST_TIME:
        days.pop()
    return days[-1]


def run_demo(
    console: Console, *, days: int, seed: int | None = None, train_seconds: float = 4.0
) -> dict[str, Any]:
    """Migrate, start the simulator, ingest daily + minute bars over HTTP, validate, featurize, summarise,
    then (``train_seconds`` > 0) a walk-forward of the A3C agent against the baselines on KOSPI200F."""
    settings = get_settings()
    engine = get_engine(settings.resolved_database_url)
    console.rule("1. market store")
    console.print(f"revision {upgrade(engine)} at {mask_url(settings.resolved_database_url)}")
    day = last_closed_session(dt.datetime.now(dt.UTC))
    cfg = SimConfig.from_settings(
        settings,
        seed=seed if seed is not None else settings.sim_seed,
        clock_start=dt.datetime.combine(day, INGEST_TIME, KST),
        db_path=settings.var_dir / "demo_sim.db",
    )
    with SimServer(cfg) as sim:
        demo: Settings = settings.model_copy(
            update={"kis_env": "sim", "kis_base_url": sim.base_url, "ingest_history_days": days}
        )
        console.rule(f"2. ingest from the KIS simulator at {sim.base_url} (session {day})")
        daily = ingest_daily_session(day, settings=demo, engine=engine)
        minutes = ingest_minute_session(day, settings=demo, engine=engine)
    _print_ingest(console, daily, minutes)
    console.rule("3. validate (Great Expectations) and build features")
    windows: list[Mapping[str, Any]] = [
        {
            "intervals": ["1d"],
            "symbols": [],
            "start": (day - dt.timedelta(days=days)).isoformat(),
            "end": str(day),
        },
        # the minute ingest's own window covers its backfill of past sessions
        minutes["window"] or {"intervals": ["1m"], "symbols": [], "start": str(day), "end": str(day)},
    ]
    quality = validate_and_featurize(windows, settings=demo, engine=engine)
    _print_quality(console, quality)
    console.rule("4. store contents")
    for interval in ("1d", "1m"):
        print_bar_summary(console, interval)
    _print_rolls(console, engine, settings.futures_symbol)
    out: dict[str, Any] = {"day": day.isoformat(), "daily": daily, "minutes": minutes, "quality": quality}
    if train_seconds > 0:
        out["backtest"] = _walkforward(console, settings, engine, train_seconds)
    console.rule("reports written (also: `krx reports`)")
    reports = find_reports(settings.var_dir)
    print_reports(console, reports)
    out["reports"] = [str(r.path) for r in reports]
    return out


def _walkforward(console: Console, settings: Settings, engine: sa.Engine, seconds: float) -> dict[str, Any]:
    from pipeline.backtest.report import EvaluationSpec, evaluate_symbol
    from pipeline.console import print_backtest_summary

    symbol = settings.futures_symbol
    console.rule(
        f"5. A3C agent vs baselines on {symbol}: walk-forward, 2 folds x 3 seeds, {seconds:g} s each"
    )
    spec = EvaluationSpec(symbol=symbol, seconds_per_fold=seconds, out_dir=settings.var_dir / "reports")
    result, summary, csv = evaluate_symbol(
        spec, engine=engine, futures_symbol=symbol, etfs=settings.etf_symbols
    )
    print_backtest_summary(console, summary, f"{symbol} test windows (mean over folds and seeds)")
    console.print(f"metrics: {csv}", soft_wrap=True)
    for path in result.figures:
        console.print(f"figure:  {path}", soft_wrap=True)
    return {"metrics": str(csv), "figures": [str(p) for p in result.figures]}


def _print_ingest(console: Console, *reports: IngestSummary) -> None:
    table = Table(
        "bars", "fetched", "inserted", "updated", "unchanged", "quarantined", "symbols", title="ingest"
    )
    for name, r in zip(("daily", "1-minute"), reports, strict=True):
        counts = (r["fetched"], r["inserted"], r["updated"], r["unchanged"], r["quarantined"])
        table.add_row(name, *(f"{c:,}" for c in counts), str(len(r["symbols"])))
    console.print(table)
    for r in reports:
        for warning in r["warnings"]:
            console.print(f"[yellow]warning[/]: {warning}", soft_wrap=True)


def _print_quality(console: Console, quality: ValidationSummary) -> None:
    table = Table(
        "interval", "window", "rows", "quarantined", "features", "missing sessions", title="quality"
    )
    for w in quality["windows"]:
        gaps = sum(len(v) for v in w["missing_sessions"].values())
        table.add_row(
            w["interval"],
            f"{w['start']}..{w['end']}",
            f"{w['rows_in']:,}",
            f"{w['quarantined']:,}",
            f"{w['features_written']:,}",
            str(gaps),
        )
    console.print(table)
    for w in quality["windows"]:
        if w["data_docs"]:
            console.print(f"Data Docs ({w['interval']}): {w['data_docs']}", soft_wrap=True)


def _print_rolls(console: Console, engine: sa.Engine, symbol: str) -> None:
    query = (
        sa.select(futures_rolls)
        .where(futures_rolls.c.continuous_symbol == symbol)
        .order_by(futures_rolls.c.roll_ts)
    )
    with engine.connect() as conn:
        rolls = conn.execute(query).all()
    if not rolls:
        return
    table = Table("roll day (KST)", "from", "to", "method", "adjustment", title=f"{symbol} rolls")
    for r in rolls:
        day = r.roll_ts.astimezone(KST).strftime("%Y-%m-%d")
        table.add_row(day, r.from_contract, r.to_contract, r.method, f"{r.adjustment:.4f}")
    console.print(table)
