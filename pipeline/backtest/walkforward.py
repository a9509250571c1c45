"""Walk-forward evaluation: time-ordered train / validation / test folds with embargo, agent vs baselines;
one symbol, or one agent over many symbols with folds by date on their common calendar."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.backtest.engine import BacktestResult, run_backtest
from pipeline.backtest.metrics import compute_metrics
from pipeline.backtest.plot import plot_backtests
from pipeline.backtest.policies import BASELINES, make_baseline
from pipeline.rl.agent import EnsemblePolicy, TradingAgent
from pipeline.rl.config import TrainConfig
from pipeline.rl.env import EnvConfig
from pipeline.rl.instruments import InstrumentSpec
from pipeline.rl.market import MarketArrays
from pipeline.rl.train import TrainResult, train
from pipeline.rl.universe import BarsInput, Universe, split_universe

SPLITS = ("val", "test")
ENSEMBLE_SEED = -1
"""The ``seed`` of the rows of the seeds' ensemble (``WalkForwardConfig.ensemble``)."""
BacktestHook = Callable[["Fold", str, int, BacktestResult], None]
"""Called with (fold, split, seed, result) after every backtest of one symbol's walk-forward."""


@dataclass(frozen=True)
class Fold:
    """Row ranges (``slice`` over the bars, or over the common calendar of many symbols) of one fold:
    train < embargo < val < embargo < test."""

    index: int
    train: slice
    val: slice
    test: slice

    def dates(self, calendar: pd.Index) -> dict[str, tuple[Any, Any]]:
        """First and last timestamp of each window (``train``, ``val``, ``test``) on ``calendar``."""
        return {
            name: (calendar[rows.start], calendar[rows.stop - 1])
            for name, rows in (("train", self.train), ("val", self.val), ("test", self.test))
        }


@dataclass
class WalkForwardConfig:
    """How the bars are cut into folds and what is evaluated on them."""

    n_folds: int = 3
    """Folds; their test blocks tile the end of the series, oldest first."""
    val_size: int = 126
    """Bars in each validation block."""
    test_size: int = 126
    """Bars in each test block."""
    embargo: int = 5
    """Bars dropped between train and val and between val and test (feature look-backs straddle no edge)."""
    min_train_size: int = 500
    """Fewest training bars a fold may have."""
    rolling_train_size: int | None = None
    """Training bars per fold for a rolling window; ``None``: expanding (all earlier bars)."""
    seeds: tuple[int, ...] = (0,)
    """Agent seeds trained per fold (the design asks for ≥ 3 in demos, 5 in full runs)."""
    baselines: tuple[str, ...] = BASELINES
    """Baselines evaluated on the same windows and costs."""
    periods_per_year: float = 252.0
    """Bars per year, for annualisation."""
    figures_dir: str | None = None
    """Write one PNG per fold (test window, first seed) here; ``None``: no figures."""
    splits: tuple[str, ...] = SPLITS
    """Windows backtested: ``("val",)`` leaves the test windows unseen (choosing a configuration)."""
    ensemble: bool = False
    """One symbol with several seeds: also backtest the seeds' agents as one policy (mean action
    probabilities, :class:`~pipeline.rl.agent.EnsemblePolicy`), strategy ``ensemble``, seed -1."""


def make_folds(n_bars: int, cfg: WalkForwardConfig) -> list[Fold]:
    """Folds over ``n_bars`` time-ordered bars; raises if the earliest fold's train window is too short."""
    folds = []
    for k in range(cfg.n_folds):
        test_start = n_bars - (cfg.n_folds - k) * cfg.test_size
        val_start = test_start - cfg.embargo - cfg.val_size
        train_end = val_start - cfg.embargo
        train_start = 0 if cfg.rolling_train_size is None else max(0, train_end - cfg.rolling_train_size)
        if train_end - train_start < cfg.min_train_size:
            raise ValueError(f"fold {k} has {train_end - train_start} training bars < {cfg.min_train_size}")
        folds.append(
            Fold(
                index=k,
                train=slice(train_start, train_end),
                val=slice(val_start, val_start + cfg.val_size),
                test=slice(test_start, test_start + cfg.test_size),
            )
        )
    return folds


def yearly_folds(
    index: pd.DatetimeIndex, years: Sequence[int], val_size: int, embargo: int, min_train_size: int
) -> list[Fold]:
    """One fold per calendar year in ``years`` that ``index`` (time-ordered bars) covers: test = that year's
    bars; validation = the ``val_size`` bars ending ``embargo`` bars before it; training = every bar up to
    ``embargo`` bars before validation (expanding). Years without bars, or without ``min_train_size``
    training bars before them, are left out; ``Fold.index`` is the year."""
    folds = []
    for year in years:
        rows = np.flatnonzero(index.year == year)
        if len(rows) < 2:
            continue
        val_start = int(rows[0]) - embargo - val_size
        train_end = val_start - embargo
        if train_end < min_train_size:
            continue
        folds.append(
            Fold(
                index=int(year),
                train=slice(0, train_end),
                val=slice(val_start, val_start + val_size),
                test=slice(int(rows[0]), int(rows[-1]) + 1),
            )
        )
    return folds


@dataclass
class WalkForwardResult:
    """Tidy metrics (one row per fold, split, strategy and seed — and symbol, over many symbols) and the
    figures written."""

    metrics: pd.DataFrame
    folds: list[Fold]
    figures: list[Path] = field(default_factory=list)
    calendar: pd.Index | None = None
    """Many symbols: the timestamps the folds' slices index (every symbol's bars, united); None for one
    symbol, whose folds index its bars."""

    def summary(self, split: str = "test", by_symbol: bool = False) -> pd.DataFrame:
        """Mean of each metric per strategy (per symbol and strategy) over folds, seeds (and symbols)."""
        rows = self.metrics[self.metrics["split"] == split]
        keys = ["symbol", "strategy"] if by_symbol else "strategy"
        return rows.groupby(keys).mean(numeric_only=True).drop(columns=["fold", "seed"], errors="ignore")


def run_walkforward(
    bars: BarsInput,
    config: TrainConfig,
    wf: WalkForwardConfig,
    instruments: Mapping[str, InstrumentSpec] | None = None,
    folds: Sequence[Fold] | None = None,
    on_backtest: BacktestHook | None = None,
) -> WalkForwardResult:
    """Train the agent per fold and seed on the train block, backtest it and the baselines on val and test.

    ``bars``: one symbol's bars, or many symbols' (``{symbol: bars}`` or a long frame with a ``symbol``
    column): then one agent per fold and seed trains on every symbol's training window (folds by date on
    the common calendar, so no symbol's training bar reaches a validation or test date) and is backtested
    per symbol; rows gain ``symbol``. ``instruments``: what each symbol trades as (many symbols only).
    One symbol only: ``folds`` (rows of ``bars``) replace those of ``wf`` (e.g. :func:`yearly_folds`), and
    ``on_backtest`` sees every backtest (to keep the returns behind the metrics)."""
    universe = split_universe(bars)
    if universe is not None:
        if folds is not None or on_backtest is not None:
            raise ValueError("folds and on_backtest are for one symbol; many symbols fold by date")
        if wf.ensemble:
            raise ValueError("ensemble is for one symbol's walk-forward")
        return _run_universe(universe, config, wf, dict(instruments or {}))
    assert isinstance(bars, pd.DataFrame)
    if instruments:
        raise ValueError("instruments need many symbols; one symbol trades as config.env.instrument")
    folds = list(folds) if folds is not None else make_folds(len(bars), wf)
    rows: list[dict[str, Any]] = []
    figures: list[Path] = []
    for fold in folds:
        fold_rows, fold_figures = _run_fold(bars, fold, config, wf, on_backtest)
        rows += fold_rows
        figures += fold_figures
    return WalkForwardResult(metrics=pd.DataFrame(rows), folds=folds, figures=figures)


def _run_fold(
    bars: pd.DataFrame,
    fold: Fold,
    config: TrainConfig,
    wf: WalkForwardConfig,
    on_backtest: BacktestHook | None,
) -> tuple[list[dict[str, Any]], list[Path]]:
    """One symbol's fold: each seed trained on the fold's training bars, then :func:`backtest_fold`."""
    trained = [(seed, train(replace(config, seed=seed), bars.iloc[fold.train])) for seed in wf.seeds]
    return backtest_fold(bars, fold, config.env, trained, wf, on_backtest)


def backtest_fold(
    bars: pd.DataFrame,
    fold: Fold,
    env: EnvConfig,
    trained: Sequence[tuple[int, TrainResult]],
    wf: WalkForwardConfig,
    on_backtest: BacktestHook | None = None,
) -> tuple[list[dict[str, Any]], list[Path]]:
    """One symbol's fold with agents already trained (``(seed, result)``, on this symbol's training bars or
    on many symbols' bars before the fold): each seed's agent and the baselines backtested on the fold's
    windows with ``env``'s costs, then the seeds' ensemble (``wf.ensemble``)."""
    windows = [(split, rng) for split, rng in (("val", fold.val), ("test", fold.test)) if split in wf.splits]
    rows: list[dict[str, Any]] = []
    figures: list[Path] = []
    members = []
    for i, (seed, result) in enumerate(trained):
        agent = result.agent
        members.append(agent.model)
        market = agent.market(bars.iloc[: fold.test.stop])
        extra = {"train_steps": result.steps, "train_seconds": result.seconds}
        for split, rng in windows:
            start, end = _window(market, bars, rng)
            results = [run_backtest(agent.policy(), market, env, start, end)]
            names = [b for b in wf.baselines if i == 0 or b == "random"]  # deterministic ones once
            results += [run_backtest(make_baseline(b, env, seed), market, env, start, end) for b in names]
            rows += [
                _row(fold, split, seed, res, wf, extra if res.name == "agent" else {}) for res in results
            ]
            if on_backtest is not None:
                for res in results:
                    on_backtest(fold, split, seed, res)
            if split == "test" and i == 0 and wf.figures_dir is not None:
                path = Path(wf.figures_dir) / f"fold_{fold.index}_test.png"
                figures.append(plot_backtests(results, path, f"fold {fold.index} test (seed {seed})"))
    if wf.ensemble and len(members) > 1:
        # The members share the market arrays: features, regimes (their own seed) and the normalisation
        # are fitted on the same training bars, whatever the agent's seed.
        for split, rng in windows:
            start, end = _window(market, bars, rng)
            res = run_backtest(EnsemblePolicy(members), market, env, start, end)
            rows.append(_row(fold, split, ENSEMBLE_SEED, res, wf, {}))
            if on_backtest is not None:
                on_backtest(fold, split, ENSEMBLE_SEED, res)
    return rows, figures


def common_calendar(universe: Universe) -> pd.Index:
    """Every timestamp any symbol has a bar at, sorted: the time axis folds are cut on for many symbols."""
    indexes = [bars.index for bars in universe.values()]
    return indexes[0].append(indexes[1:]).unique().sort_values()


def _run_universe(
    universe: Universe, config: TrainConfig, wf: WalkForwardConfig, instruments: dict[str, InstrumentSpec]
) -> WalkForwardResult:
    calendar = common_calendar(universe)
    folds = make_folds(len(calendar), wf)
    rows: list[dict[str, Any]] = []
    figures: list[Path] = []
    for fold in folds:
        dates = fold.dates(calendar)
        first, last = dates["train"]
        train_data = {s: b[(b.index >= first) & (b.index <= last)] for s, b in universe.items()}
        for i, seed in enumerate(wf.seeds):
            trained = train(replace(config, seed=seed), train_data, instruments or None)
            for symbol, bars in universe.items():
                env = replace(config.env, instrument=instruments.get(symbol, config.env.instrument))
                history = bars[bars.index <= dates["test"][1]]
                found, results = _evaluate_symbol(trained, history, env, dates, seed, wf, i == 0)
                rows += [
                    _row(fold, split, seed, res, wf, _extra(trained, res), symbol) for split, res in found
                ]
                if i == 0 and wf.figures_dir is not None and results:
                    path = Path(wf.figures_dir) / f"fold_{fold.index}_test_{symbol}.png"
                    title = f"{symbol} fold {fold.index} test (seed {seed})"
                    figures.append(plot_backtests(results, path, title))
    return WalkForwardResult(metrics=pd.DataFrame(rows), folds=folds, figures=figures, calendar=calendar)


def _evaluate_symbol(
    trained: TrainResult,
    history: pd.DataFrame,
    env: EnvConfig,
    dates: dict[str, tuple[Any, Any]],
    seed: int,
    wf: WalkForwardConfig,
    first_seed: bool,
) -> tuple[list[tuple[str, BacktestResult]], list[BacktestResult]]:
    """Agent and baselines on one symbol's val and test windows → ((split, result) pairs, test results).
    A window where the symbol has fewer than two bars past its feature warm-up is skipped."""
    agent: TradingAgent = trained.agent
    market = agent.market(history)
    found: list[tuple[str, BacktestResult]] = []
    test: list[BacktestResult] = []
    if market.index is None or len(market) < env.window + 1:
        return found, test
    for split in wf.splits:
        start, end = _dated_window(market, *dates[split])
        if end - max(start, env.window - 1) < 1:
            continue
        results = [run_backtest(agent.policy(), market, env, start, end)]
        names = [b for b in wf.baselines if first_seed or b == "random"]  # deterministic ones once
        results += [run_backtest(make_baseline(b, env, seed), market, env, start, end) for b in names]
        found += [(split, res) for res in results]
        test = results if split == "test" else test
    return found, test


def _dated_window(market: MarketArrays, first: Any, last: Any) -> tuple[int, int]:
    # Market rows of the first bar on or after `first` and the last bar on or before `last`.
    assert market.index is not None
    return market.position_of(first), int(market.index.searchsorted(last, side="right")) - 1


def _extra(trained: TrainResult, res: BacktestResult) -> dict[str, Any]:
    return {"train_steps": trained.steps, "train_seconds": trained.seconds} if res.name == "agent" else {}


def _window(market: MarketArrays, bars: pd.DataFrame, rows: slice) -> tuple[int, int]:
    # Map the fold's bar rows to market rows (the market dropped feature warm-up bars at its start).
    return market.position_of(bars.index[rows.start]), market.position_of(bars.index[rows.stop - 1])


def _row(
    fold: Fold,
    split: str,
    seed: int,
    res: BacktestResult,
    wf: WalkForwardConfig,
    extra: dict[str, Any],
    symbol: str | None = None,
) -> dict[str, Any]:
    return {
        "fold": fold.index,
        **({} if symbol is None else {"symbol": symbol}),
        "split": split,
        "strategy": res.name,
        "seed": seed,
        "start": res.frame.index[0],
        "end": res.frame.index[-1],
        "n_bars": len(res.frame),
        **compute_metrics(res, wf.periods_per_year),
        **extra,
    }
