"""Rich console views of store contents for the CLI and the demo (no I/O besides reading the store)."""

from __future__ import annotations

import pandas as pd
import sqlalchemy as sa
from rich.console import Console
from rich.table import Table

from pipeline.market import KST
from pipeline.reports import Report
from pipeline.store import get_engine, summarize_bars


def print_bar_summary(console: Console, interval: str) -> None:
    """Per symbol: bar count, first and last bar (KST), last close."""
    if not sa.inspect(get_engine()).has_table("bars"):
        console.print("the store has no tables yet: run `krx db upgrade` (or `krx data ingest`) first")
        return
    summary = summarize_bars(interval)
    if summary.empty:
        console.print(f"no {interval} bars in the store")
        return
    fmt = "%Y-%m-%d" if interval == "1d" else "%Y-%m-%d %H:%M"
    table = Table("symbol", "bars", "first (KST)", "last (KST)", "last close", title=f"{interval} bars")
    for row in summary.itertuples():
        table.add_row(
            str(row.symbol),
            f"{row.bars:,}",
            row.first.tz_convert(KST).strftime(fmt),
            row.last.tz_convert(KST).strftime(fmt),
            f"{row.last_close:,.2f}",
        )
    console.print(table)


def print_backtest_summary(console: Console, summary: pd.DataFrame, title: str) -> None:
    """A strategies x metrics table of a walk-forward summary (``pipeline.backtest.report``)."""
    short = {
        "total_return": "return",
        "max_drawdown": "max dd",
        "hit_rate": "hit rate",
        "costs_paid": "costs",
    }
    table = Table("strategy", *(short.get(c, c) for c in summary.columns), title=title)
    for name, row in summary.iterrows():
        table.add_row(str(name), *(f"{v:,.3f}" if abs(v) < 1000 else f"{v:,.0f}" for v in row.to_numpy()))
    console.print(table)


def print_reports(console: Console, reports: list[Report]) -> None:
    """Each report on disk (``pipeline.reports``): what it is, when written, and its path on a line of its
    own (unwrapped, to copy into a browser)."""
    if not reports:
        console.print("no reports written yet: run `krx demo` (or `krx data validate`, `krx backtest`)")
        return
    for r in reports:
        console.print(f"[bold]{r.kind}[/]: {r.name}, written {r.written:%Y-%m-%d %H:%M} UTC", soft_wrap=True)
        console.print(f"  {r.path}", soft_wrap=True, markup=False, highlight=False)
    console.print("each opens from the file system, without a network")
