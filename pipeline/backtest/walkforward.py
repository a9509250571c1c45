"""Walk-forward evaluation: time-ordered train / validation / test folds with embargo, agent vs baselines."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.backtest.engine import BacktestResult, run_backtest
from pipeline.backtest.metrics import compute_metrics
from pipeline.backtest.plot import plot_backtests
from pipeline.backtest.policies import BASELINES, make_baseline
from pipeline.rl.config import TrainConfig
from pipeline.rl.market import MarketArrays
from pipeline.rl.train import train


@dataclass(frozen=True)
class Fold:
    """Row ranges (``slice`` over the bars) of one fold: train < embargo < val < embargo < test."""

    index: int
    train: slice
    val: slice
    test: slice


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


@dataclass
class WalkForwardResult:
    """Tidy metrics (one row per fold, split, strategy and seed) and the figures written."""

    metrics: pd.DataFrame
    folds: list[Fold]
    figures: list[Path] = field(default_factory=list)

    def summary(self, split: str = "test") -> pd.DataFrame:
        """Mean of each metric per strategy over folds and seeds on ``split``."""
        rows = self.metrics[self.metrics["split"] == split]
        return (
            rows.groupby("strategy").mean(numeric_only=True).drop(columns=["fold", "seed"], errors="ignore")
        )


def run_walkforward(bars: pd.DataFrame, config: TrainConfig, wf: WalkForwardConfig) -> WalkForwardResult:
    """Train the agent per fold and seed on the train block, backtest it and the baselines on val and test."""
    folds = make_folds(len(bars), wf)
    rows: list[dict[str, Any]] = []
    figures: list[Path] = []
    for fold in folds:
        for i, seed in enumerate(wf.seeds):
            trained = train(replace(config, seed=seed), bars.iloc[fold.train])
            agent = trained.agent
            market = agent.market(bars.iloc[: fold.test.stop])
            extra = {"train_steps": trained.steps, "train_seconds": trained.seconds}
            for split, rng in (("val", fold.val), ("test", fold.test)):
                start, end = _window(market, bars, rng)
                results = [run_backtest(agent.policy(), market, config.env, start, end)]
                names = [b for b in wf.baselines if i == 0 or b == "random"]  # deterministic ones once
                results += [
                    run_backtest(make_baseline(b, config.env, seed), market, config.env, start, end)
                    for b in names
                ]
                rows += [
                    _row(fold, split, seed, res, wf, extra if res.name == "agent" else {}) for res in results
                ]
                if split == "test" and i == 0 and wf.figures_dir is not None:
                    path = Path(wf.figures_dir) / f"fold_{fold.index}_test.png"
                    figures.append(plot_backtests(results, path, f"fold {fold.index} test (seed {seed})"))
    return WalkForwardResult(metrics=pd.DataFrame(rows), folds=folds, figures=figures)


def _window(market: MarketArrays, bars: pd.DataFrame, rows: slice) -> tuple[int, int]:
    # Map the fold's bar rows to market rows (the market dropped feature warm-up bars at its start).
    return market.position_of(bars.index[rows.start]), market.position_of(bars.index[rows.stop - 1])


def _row(
    fold: Fold, split: str, seed: int, res: BacktestResult, wf: WalkForwardConfig, extra: dict[str, Any]
) -> dict[str, Any]:
    return {
        "fold": fold.index,
        "split": split,
        "strategy": res.name,
        "seed": seed,
        "start": res.frame.index[0],
        "end": res.frame.index[-1],
        "n_bars": len(res.frame),
        **compute_metrics(res, wf.periods_per_year),
        **extra,
    }
