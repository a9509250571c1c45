"""Backtests of a trained agent, and of the baselines, on a spec's dated walk-forward windows: the rows of
``pipeline.backtest.walkforward`` (one per fold, split, strategy and seed — and symbol over a universe),
the agent's per-bar returns for the statistics, and one figure per fold."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.backtest.engine import BacktestResult, run_backtest
from pipeline.backtest.metrics import compute_metrics
from pipeline.backtest.plot import plot_backtests
from pipeline.backtest.policies import BASELINES, make_baseline
from pipeline.backtest.walkforward import SPLITS, Fold
from pipeline.registry.data import SpecData
from pipeline.rl.agent import TradingAgent


@dataclass
class FoldBacktests:
    """Walk-forward rows, the agent's per-bar returns and the per-fold figures of one agent."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    returns: list[pd.DataFrame] = field(default_factory=list)
    """Per window: ``ts`` and the agent's simple return per bar (``ret``), with fold, split and symbol."""
    figures: list[Path] = field(default_factory=list)

    def metrics(self) -> pd.DataFrame:
        """The rows as a frame."""
        return pd.DataFrame(self.rows)

    def returns_frame(self) -> pd.DataFrame:
        """Every window's returns stacked (columns fold, split, symbol, ts, ret)."""
        columns = ["fold", "split", "symbol", "ts", "ret"]
        return pd.concat(self.returns, ignore_index=True) if self.returns else pd.DataFrame(columns=columns)


def _row(
    fold: int, split: str, seed: int, symbol: str | None, res: BacktestResult, ppy: float
) -> dict[str, Any]:
    return {
        "fold": fold,
        **({} if symbol is None else {"symbol": symbol}),
        "split": split,
        "strategy": res.name,
        "seed": seed,
        "start": res.frame.index[0],
        "end": res.frame.index[-1],
        "n_bars": len(res.frame),
        **compute_metrics(res, ppy),
    }


def _returns(fold: int, split: str, symbol: str, res: BacktestResult) -> pd.DataFrame:
    equity = res.frame["equity"]
    ret = (equity / equity.shift(1) - 1.0).iloc[1:]
    return pd.DataFrame(
        {"fold": fold, "split": split, "symbol": symbol, "ts": ret.index, "ret": ret.to_numpy()}
    )


def backtest_agent(
    agent: TradingAgent,
    data: SpecData,
    fold: Fold,
    seed: int,
    baselines: Sequence[str] = BASELINES,
    figures_dir: Path | None = None,
) -> FoldBacktests:
    """Greedy ``agent`` and ``baselines`` (the agent's env and costs) on every symbol's ``val`` and ``test``
    windows of ``fold``: decisions use bars up to t only (the market is built from the bars up to the end
    of the test window; features and regimes are causal). A symbol with fewer than two decisions in a
    window is skipped there, as in ``run_walkforward``. ``figures_dir``: one PNG per symbol (test window)."""
    out = FoldBacktests()
    dates = data.dates(fold)
    env = agent.config.env
    ppy = data.spec.periods_per_year
    for symbol, bars in data.universe.items():
        market = agent.market(bars[bars.index <= dates["test"][1]])
        if market.index is None or len(market) < env.window + 1:
            continue
        for split in SPLITS:
            first, last = dates[split]
            start = market.position_of(first)
            end = int(market.index.searchsorted(last, side="right")) - 1
            if end - max(start, env.window - 1) < 1:
                continue
            results = [run_backtest(agent.policy(), market, env, start, end)]
            results += [run_backtest(make_baseline(b, env, seed), market, env, start, end) for b in baselines]
            label = symbol if data.many else None
            out.rows += [_row(fold.index, split, seed, label, res, ppy) for res in results]
            out.returns.append(_returns(fold.index, split, symbol, results[0]))
            if split == "test" and figures_dir is not None:
                name = f"fold_{fold.index}_test" + (f"_{symbol}" if data.many else "") + ".png"
                title = f"{symbol} fold {fold.index} test (seed {seed})"
                out.figures.append(plot_backtests(results, figures_dir / name, title))
    return out


def baselines_for(first_seed: bool, baselines: Sequence[str] = BASELINES) -> tuple[str, ...]:
    """Baselines a trial backtests: the deterministic ones by the first seed only, ``random`` by every
    seed (the split ``run_walkforward`` makes, so merged trials have its rows)."""
    return tuple(b for b in baselines if first_seed or b == "random")


def reevaluate_on(agent: TradingAgent, data: SpecData) -> pd.DataFrame:
    """``agent`` alone (e.g. the champion) on every fold's windows of ``data``: agent rows, seed 0."""
    rows: list[dict[str, Any]] = []
    for fold in data.folds:
        rows += backtest_agent(agent, data, fold, 0, baselines=()).rows
    return pd.DataFrame(rows)
