"""Backtest figure: equity, drawdown and position of one or more policies, written as PNG."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: figures go to files only
import matplotlib.pyplot as plt
import numpy as np

from pipeline.backtest.engine import BacktestResult


def plot_backtests(results: list[BacktestResult], path: str | Path, title: str = "") -> Path:
    """Three stacked panels (equity / initial, drawdown, exposure) sharing the time axis; returns ``path``."""
    fig, (ax_eq, ax_dd, ax_pos) = plt.subplots(
        3, 1, figsize=(10, 8), sharex=True, height_ratios=(3, 1.5, 1.5)
    )
    for res in results:
        f = res.frame
        x = f.index
        equity = f["equity"].to_numpy() / res.initial_cash
        ax_eq.plot(x, equity, label=res.name, lw=1.4 if res.name == "agent" else 0.9)
        ax_dd.plot(x, -(1.0 - equity / np.maximum.accumulate(equity)), lw=0.9)
        ax_pos.step(x, f["exposure"], where="post", lw=0.9)
    ax_eq.set_ylabel("equity / initial")
    ax_eq.legend(loc="upper left", fontsize=8)
    ax_eq.set_title(title)
    ax_dd.set_ylabel("drawdown")
    ax_pos.set_ylabel("exposure")
    for ax in (ax_eq, ax_dd, ax_pos):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
