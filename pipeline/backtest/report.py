"""Walk-forward evaluation of the agent on stored bars of one symbol: metrics CSV, figures, a summary."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table
from sqlalchemy.engine import Engine

from pipeline.backtest.walkforward import WalkForwardConfig, WalkForwardResult, run_walkforward
from pipeline.rl.config import TrainConfig
from pipeline.rl.env import EnvConfig
from pipeline.rl.instruments import kospi200_futures_spec, stock_spec
from pipeline.store import read_bars
from pipeline.universe import is_contract_code

log = logging.getLogger(__name__)
#: Metrics shown in the summary table, in this order.
SUMMARY_METRICS = ["total_return", "sharpe", "max_drawdown", "turnover", "hit_rate", "costs_paid"]


@dataclass
class EvaluationSpec:
    """What to evaluate and with how much compute."""

    symbol: str
    interval: str = "1d"
    futures: bool | None = None
    """Trade as KOSPI200 futures (long/short contracts); None: decided from the symbol."""
    seconds_per_fold: float = 20.0
    """Training budget of each (fold, seed)."""
    folds: int = 2
    seeds: tuple[int, ...] = (0, 1, 2)
    test_size: int = 120
    val_size: int = 60
    min_train_size: int = 250
    out_dir: Path = field(default_factory=lambda: Path("var/reports"))


def env_for(symbol: str, futures: bool | None, futures_symbol: str) -> EnvConfig:
    """Futures for the continuous series and contract codes (short / flat / long), stocks long or flat."""
    if futures if futures is not None else (symbol == futures_symbol or is_contract_code(symbol)):
        return EnvConfig(instrument=kospi200_futures_spec(), levels=(-1.0, 0.0, 1.0))
    return EnvConfig(instrument=stock_spec(), levels=(0.0, 1.0))


def evaluate_symbol(
    spec: EvaluationSpec, *, engine: Engine, futures_symbol: str = "KOSPI200F"
) -> tuple[WalkForwardResult, pd.DataFrame, Path]:
    """Run the walk-forward on the symbol's stored bars; returns (result, test summary, metrics CSV path)."""
    bars = read_bars(spec.symbol, spec.interval, engine=engine)
    if bars.empty:
        raise ValueError(f"no {spec.interval} bars of {spec.symbol} in the store: ingest them first")
    series = bars.set_index("ts")[["open", "high", "low", "close", "volume"]]
    out = spec.out_dir / spec.symbol
    out.mkdir(parents=True, exist_ok=True)
    config = TrainConfig(
        total_steps=None,
        max_seconds=spec.seconds_per_fold,
        progress=False,
        env=env_for(spec.symbol, spec.futures, futures_symbol),
    )
    wf = WalkForwardConfig(
        n_folds=spec.folds,
        val_size=spec.val_size,
        test_size=spec.test_size,
        min_train_size=spec.min_train_size,
        seeds=spec.seeds,
        figures_dir=str(out),
    )
    log.info(
        "walk-forward on %s: %d bars, %d folds x %d seeds",
        spec.symbol,
        len(series),
        spec.folds,
        len(spec.seeds),
    )
    result = run_walkforward(series, config, wf)
    csv = out / "walkforward_metrics.csv"
    result.metrics.to_csv(csv, index=False)
    summary = result.summary("test")[[c for c in SUMMARY_METRICS if c in result.metrics.columns]]
    return result, summary, csv


def print_summary(console: Console, summary: pd.DataFrame, title: str) -> None:
    """A strategies x metrics table."""
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
