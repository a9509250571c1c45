"""Re-evaluate an already trained agent on given walk-forward windows (the champion, for the gate)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from pipeline.backtest.engine import run_backtest
from pipeline.backtest.metrics import compute_metrics
from pipeline.backtest.walkforward import Fold
from pipeline.rl.agent import TradingAgent


def reevaluate_agent(
    agent: TradingAgent,
    bars: pd.DataFrame,
    folds: Sequence[Fold],
    periods_per_year: float = 252.0,
    splits: Sequence[str] = ("val", "test"),
) -> pd.DataFrame:
    """Backtest ``agent`` (greedy, no retraining) on each fold's windows of ``bars``, with its own costs.

    Rows have the shape of :class:`pipeline.backtest.walkforward.WalkForwardResult.metrics` (strategy
    ``agent``, seed 0), so the gate compares a candidate and the champion on exactly the same bars."""
    rows: list[dict[str, Any]] = []
    for fold in folds:
        market = agent.market(bars.iloc[: fold.test.stop])
        for split in splits:
            window: slice = getattr(fold, split)
            start = market.position_of(bars.index[window.start])
            end = market.position_of(bars.index[window.stop - 1])
            result = run_backtest(agent.policy(), market, agent.config.env, start, end)
            rows.append(
                {
                    "fold": fold.index,
                    "split": split,
                    "strategy": "agent",
                    "seed": 0,
                    "start": result.frame.index[0],
                    "end": result.frame.index[-1],
                    "n_bars": len(result.frame),
                    **compute_metrics(result, periods_per_year),
                }
            )
    return pd.DataFrame(rows)
