"""Embedded sample data for the demo: seeded KRX-like daily bars written as CSV files (no network)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd


def sample_daily_bars(symbol: str, start: str, end: str, seed: int) -> pd.DataFrame:
    """Daily OHLCV for ``symbol`` on XKRX sessions between ``start`` and ``end`` from the simulator's
    seeded market generator (the same seed gives the same bars)."""
    from pipeline.kis.simulator.marketgen import daily_bars

    return daily_bars(symbol, start, end, seed=seed)


def write_sample_csvs(
    folder: Path, symbols: Sequence[str], start: str, end: str, seed: int
) -> list[Path]:
    """One CSV per symbol in ``folder`` (columns date, open, high, low, close, volume, turnover)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for symbol in symbols:
        bars = sample_daily_bars(symbol, start, end, seed)
        frame = bars.assign(date=bars["ts"].dt.tz_convert("Asia/Seoul").dt.strftime("%Y-%m-%d"))
        path = folder / f"{symbol}.csv"
        frame[["date", "open", "high", "low", "close", "volume", "turnover"]].to_csv(path, index=False)
        paths.append(path)
    return paths
