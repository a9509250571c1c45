"""Performance metrics of a backtest: returns, risk, risk-adjusted ratios (Sharpe CI), trading activity."""

from __future__ import annotations

import math

import numpy as np

from pipeline.backtest.engine import BacktestResult

METRIC_NAMES = (
    "total_return",
    "annual_return",
    "volatility",
    "sharpe",
    "sharpe_ci_low",
    "sharpe_ci_high",
    "sortino",
    "max_drawdown",
    "calmar",
    "turnover",
    "hit_rate",
    "avg_holding_period",
    "n_trades",
    "costs_paid",
    "costs_pct",
    "exposure",
)


def sharpe_ci(returns: np.ndarray, periods_per_year: float, z: float = 1.96) -> tuple[float, float, float]:
    """Annualised Sharpe ratio and its ~95 % CI from Lo (2002): SE(SR) = sqrt((1 + SR^2 / 2) / n), i.i.d.

    A strategy that never moves (zero variance) has Sharpe 0 with the degenerate interval [0, 0].
    """
    r = np.asarray(returns, dtype=np.float64)
    n, sd = len(r), float(r.std(ddof=1)) if len(r) > 1 else 0.0
    if n < 2 or sd == 0.0:
        return 0.0, 0.0, 0.0
    sr = float(r.mean()) / sd
    se = math.sqrt((1.0 + 0.5 * sr**2) / n)
    scale = math.sqrt(periods_per_year)
    return sr * scale, (sr - z * se) * scale, (sr + z * se) * scale


def max_drawdown(equity: np.ndarray) -> float:
    """Largest peak-to-trough fall as a positive fraction of the peak."""
    eq = np.asarray(equity, dtype=np.float64)
    return float(np.max(1.0 - eq / np.maximum.accumulate(eq))) if len(eq) else 0.0


def holding_periods(position: np.ndarray) -> np.ndarray:
    """Lengths in bars of each run of a non-zero position with one sign."""
    sign = np.sign(np.asarray(position, dtype=np.float64))
    change = np.flatnonzero(np.diff(sign) != 0) + 1
    runs = np.split(sign, change)
    return np.array([len(run) for run in runs if run[0] != 0], dtype=np.float64)


def compute_metrics(result: BacktestResult, periods_per_year: float = 252.0) -> dict[str, float]:
    """Every metric in :data:`METRIC_NAMES` for one backtest (per-bar returns, annualised)."""
    f = result.frame
    equity = f["equity"].to_numpy()
    rets = equity[1:] / equity[:-1] - 1.0  # simple return per bar
    years = max(len(rets) / periods_per_year, 1e-12)
    total = float(equity[-1] / equity[0] - 1.0)
    annual = float((equity[-1] / equity[0]) ** (1.0 / years) - 1.0) if equity[-1] > 0 else -1.0
    sharpe, lo, hi = sharpe_ci(rets, periods_per_year)
    downside = float(np.sqrt(np.mean(np.minimum(rets, 0.0) ** 2))) if len(rets) else 0.0
    mdd = max_drawdown(equity)
    held = f["position"].to_numpy()[1:] != 0  # position held over bar k (set at its open)
    periods = holding_periods(f["position"].to_numpy())
    costs = float((f["fee"] + f["slippage"]).sum())
    return {
        "total_return": total,
        "annual_return": annual,
        "volatility": float(rets.std(ddof=1) * math.sqrt(periods_per_year)) if len(rets) > 1 else 0.0,
        "sharpe": sharpe,
        "sharpe_ci_low": lo,
        "sharpe_ci_high": hi,
        "sortino": float(rets.mean() / downside * math.sqrt(periods_per_year)) if downside > 0 else math.nan,
        "max_drawdown": mdd,
        "calmar": annual / mdd if mdd > 0 else math.nan,
        "turnover": float(f["traded_notional"].sum() / equity.mean() / years),
        "hit_rate": float((rets[held] > 0).mean()) if held.any() else math.nan,
        "avg_holding_period": float(periods.mean()) if len(periods) else 0.0,
        "n_trades": float((f["traded_notional"] > 0).sum()),
        "costs_paid": costs,
        "costs_pct": costs / result.initial_cash,
        "exposure": float(f["exposure"].abs().mean()),
    }
