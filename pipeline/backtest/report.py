"""Walk-forward evaluation of the agent on stored bars of one symbol: metrics CSV, figures, a summary
table as data (the CLI renders it)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from sqlalchemy.engine import Engine

from pipeline.backtest.walkforward import WalkForwardConfig, WalkForwardResult, run_walkforward
from pipeline.market import CONTINUOUS_FUTURES, InstrumentKind, classify
from pipeline.rl.config import TrainConfig
from pipeline.rl.env import EnvConfig
from pipeline.rl.instruments import instrument_spec
from pipeline.store import read_bars

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


def env_for(symbol: str, futures: bool | None, futures_symbol: str, etfs: Iterable[str] = ()) -> EnvConfig:
    """The env ``symbol`` trades in: futures (the continuous series, contract codes, or ``futures=True``)
    short / flat / long one contract; stocks and ETFs (``pipeline.market`` knows the big ones, ``etfs``
    names more) long or flat, with their own ticks and sell tax by date. An index is refused."""
    kind = classify(symbol, futures=(futures_symbol,), etfs=etfs)
    if futures is not None:
        kind = InstrumentKind.FUTURES if futures else InstrumentKind.STOCK
    if kind is InstrumentKind.FUTURES:
        return EnvConfig(instrument=instrument_spec(kind), levels=(-1.0, 0.0, 1.0))
    if kind is InstrumentKind.INDEX:
        raise ValueError(f"{symbol} is an index, which is not tradable: backtest its futures or an ETF")
    return EnvConfig(instrument=instrument_spec(kind), levels=(0.0, 1.0))


def evaluate_symbol(
    spec: EvaluationSpec,
    *,
    engine: Engine,
    futures_symbol: str = CONTINUOUS_FUTURES,
    etfs: Iterable[str] = (),
) -> tuple[WalkForwardResult, pd.DataFrame, Path]:
    """Run the walk-forward on the symbol's stored bars; returns (result, test summary: strategies x
    ``SUMMARY_METRICS``, metrics CSV path)."""
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
        env=env_for(spec.symbol, spec.futures, futures_symbol, etfs),
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
