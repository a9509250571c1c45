"""The statistics of one training, from its trials' walk-forward rows and per-bar returns: the deflated
Sharpe of the selected trial (trials = seeds × configurations), the probability of backtest overfitting
when more than one configuration was tried, and bootstrap intervals of the Sharpe over seeds and folds."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from pipeline.backtest.stats import (
    BacktestOverfitting,
    DeflatedSharpe,
    bootstrap_ci,
    deflated_sharpe,
    probability_of_backtest_overfitting,
    sharpe_ratio,
)

#: Most CSCV blocks used for the PBO (C(16, 8) = 12,870 splits).
MAX_PBO_SPLITS = 16
BOOTSTRAP_RESAMPLES = 4000


@dataclass
class TrainingStatistics:
    """What the report shows under "statistics"; a None result comes with a note saying why."""

    n_configurations: int
    n_seeds: int
    selected: tuple[int, int]
    """(configuration, seed) of the selected trial."""
    dsr: DeflatedSharpe | None = None
    dsr_note: str = ""
    pbo: BacktestOverfitting | None = None
    pbo_splits: int = 0
    pbo_note: str = ""
    sharpe_ci: dict[str, tuple[float, float, float] | None] = field(default_factory=dict)
    """Per split: (low, mean, high) 95% bootstrap interval of the annualised Sharpe over (fold, seed)."""
    ci_note: str = ""

    @property
    def n_trials(self) -> int:
        """Trials the selection was made from: seeds × configurations."""
        return self.n_seeds * self.n_configurations


def _series(returns: pd.DataFrame, splits: tuple[str, ...]) -> dict[tuple[int, int], pd.Series]:
    """Per (config, seed): the agent's per-bar returns on ``splits``, indexed by (fold, split, symbol, ts)."""
    rows = returns[returns["split"].isin(splits)]
    out = {}
    for (config, seed), group in rows.groupby(["config", "seed"], sort=True):
        keyed = group.set_index(["fold", "split", "symbol", "ts"])["ret"].sort_index()
        out[(int(config), int(seed))] = keyed.astype(np.float64)
    return out


def _dsr(stats: TrainingStatistics, returns: pd.DataFrame) -> None:
    trials = _series(returns, ("val",))
    picked = trials.get(stats.selected)
    if picked is None or len(picked) < 2:
        stats.dsr_note = "the selected trial has fewer than 2 validation returns"
        return
    sharpes = [sharpe_ratio(s.to_numpy()) for s in trials.values() if len(s) >= 2]
    try:
        stats.dsr = deflated_sharpe(picked.to_numpy(), sharpes, n_trials=stats.n_trials)
    except ValueError as exc:
        stats.dsr_note = str(exc)


def _pbo(stats: TrainingStatistics, returns: pd.DataFrame) -> None:
    if stats.n_configurations < 2:
        stats.pbo_note = "one configuration was tried: nothing was selected among configurations"
        return
    by_config: dict[int, list[pd.Series]] = {}
    for (config, _), series in _series(returns, ("val", "test")).items():
        by_config.setdefault(config, []).append(series)
    columns = {c: pd.concat(s, axis=1).mean(axis=1) for c, s in by_config.items()}  # mean over seeds
    matrix = pd.DataFrame(columns).dropna().to_numpy(np.float64)  # T × N, bars every configuration has
    splits = min(MAX_PBO_SPLITS, (len(matrix) // 2) // 2 * 2)
    if matrix.shape[1] < 2 or splits < 2:
        stats.pbo_note = f"too few common bars ({len(matrix)}) or configurations for CSCV"
        return
    try:
        stats.pbo, stats.pbo_splits = probability_of_backtest_overfitting(matrix, splits), splits
    except ValueError as exc:
        stats.pbo_note = str(exc)


def _ci(stats: TrainingStatistics, metrics: pd.DataFrame) -> None:
    agent = metrics[(metrics["strategy"] == "agent") & (metrics["config"] == stats.selected[0])]
    for split in ("val", "test"):
        cells = agent[agent["split"] == split].groupby(["fold", "seed"])["sharpe"].mean().dropna()
        if len(cells) < 2:
            stats.sharpe_ci[split] = None
            stats.ci_note = "a bootstrap needs at least 2 (fold, seed) Sharpe ratios"
            continue
        folds = cells.index.get_level_values("fold").to_numpy()
        stats.sharpe_ci[split] = bootstrap_ci(
            cells.to_numpy(), n_resamples=BOOTSTRAP_RESAMPLES, groups=folds if len(set(folds)) > 1 else None
        )


def training_statistics(
    metrics: pd.DataFrame, returns: pd.DataFrame, selected: tuple[int, int], n_configurations: int
) -> TrainingStatistics:
    """Statistics of a training from every trial's rows (``metrics``: walk-forward rows with ``config``)
    and per-bar agent returns (``returns``: config, seed, fold, split, symbol, ts, ret).

    DSR: the selected trial's validation returns against the validation Sharpe ratios of every trial,
    N = seeds × configurations (Bailey & López de Prado 2014). PBO (Bailey et al. 2015): CSCV over the
    configurations' seed-averaged returns on the validation and test windows. Bootstrap: the selected
    configuration's Sharpe per (fold, seed), folds resampled first, then seeds within them."""
    seeds = int(metrics.loc[metrics["strategy"] == "agent", "seed"].nunique())
    stats = TrainingStatistics(n_configurations=n_configurations, n_seeds=max(seeds, 1), selected=selected)
    _dsr(stats, returns)
    _pbo(stats, returns)
    _ci(stats, metrics)
    return stats


def headline(stats: TrainingStatistics) -> dict[str, float]:
    """The statistics as MLflow metrics (``stats/*``; NaN where not computed)."""
    out = {
        "stats/dsr_prob": stats.dsr.dsr_prob if stats.dsr else math.nan,
        "stats/n_trials": float(stats.n_trials),
        "stats/pbo": stats.pbo.pbo if stats.pbo else math.nan,
    }
    for split, ci in stats.sharpe_ci.items():
        low, _, high = ci if ci else (math.nan, math.nan, math.nan)
        out[f"stats/{split}/sharpe_ci_low"], out[f"stats/{split}/sharpe_ci_high"] = low, high
    return out
