"""The promotion gate: typed rules kept as data (settings), evaluated on validation folds against
buy-and-hold, the deflated Sharpe ratio and the current champion re-evaluated on the same windows."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipeline.backtest.stats import expected_max_sharpe, kurtosis, psr_from_moments, skewness
from pipeline.config import Settings, get_settings

#: Strategy name of the agent and of the buy-and-hold baseline in walk-forward rows.
AGENT, BUY_AND_HOLD = "agent", "buy_and_hold"


class GateRules(BaseModel):
    """Promotion rules (override any in ``KRX_PROMOTION_GATE`` as JSON). Sharpe ratios are annualised."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    split: str = "val"
    """Split the rules judge (test stays untouched for reporting)."""
    sharpe_margin_vs_buy_and_hold: float = 0.0
    """Mean Sharpe over seeds and folds must exceed buy-and-hold's by more than this."""
    sharpe_margin_vs_champion: float = 0.0
    """…and exceed the current champion's, re-evaluated on the same windows, by more than this."""
    min_dsr_prob: float = Field(0.95, ge=0, le=1)
    """Deflated Sharpe probability (trials = seeds × configurations) must reach this."""
    n_configurations: int = Field(1, ge=1)
    """Configurations tried to arrive at this candidate (multiplies the DSR's number of trials)."""
    max_drawdown: float = Field(0.35, gt=0)
    """Worst fold's max drawdown (mean over seeds) may not exceed this fraction."""
    max_drawdown_vs_buy_and_hold: float = Field(1.5, gt=0)
    """…nor this multiple of buy-and-hold's worst fold drawdown."""
    min_turnover: float = Field(0.0, ge=0)
    """Mean annual turnover (traded notional / mean equity per year) must be at least this…"""
    max_turnover: float = Field(60.0, gt=0)
    """…and at most this (a churning agent pays its edge away in costs)."""
    nan_checked_metrics: tuple[str, ...] = (
        "total_return",
        "sharpe",
        "volatility",
        "max_drawdown",
        "turnover",
        "costs_paid",
    )
    """Agent metrics that must be finite in every fold, split and seed (ratios that are undefined by
    construction for a flat policy, such as Sortino, Calmar or hit rate, are not checked)."""


def gate_rules(settings: Settings | None = None) -> GateRules:
    """The rules in force: defaults overridden by ``settings.promotion_gate``."""
    s = settings or get_settings()
    try:
        return GateRules.model_validate(s.promotion_gate)
    except ValidationError as exc:
        fields = ", ".join(".".join(map(str, e["loc"])) + f": {e['msg']}" for e in exc.errors())
        raise ValueError(f"promotion_gate setting is invalid: {fields}") from None


class Outcome(StrEnum):
    """What the gate decided for a version."""

    CHAMPION = "champion"
    """Passed every absolute rule and beat the champion (or there was none): serves from now on."""
    CHALLENGER = "challenger"
    """Passed every absolute rule but did not beat the champion."""
    REJECTED = "rejected"
    """Failed an absolute rule: no alias moves."""


@dataclass(frozen=True)
class RuleResult:
    """One rule's verdict and the numbers behind it."""

    name: str
    passed: bool
    value: float
    threshold: float
    detail: str


@dataclass(frozen=True)
class GateDecision:
    """The gate's verdict on one candidate, with every rule's outcome."""

    outcome: Outcome
    rules: list[RuleResult]
    first_version: bool
    """No champion existed: the champion rule passed by definition."""
    numbers: dict[str, float] = field(default_factory=dict)

    @property
    def failed(self) -> list[RuleResult]:
        """Rules that failed."""
        return [r for r in self.rules if not r.passed]

    @property
    def summary(self) -> str:
        """One plain sentence for logs, tags and the CLI."""
        if self.outcome is Outcome.REJECTED:
            names = ", ".join(r.name for r in self.failed)
            return f"rejected: no new champion and no challenger (failed: {names})"
        if self.outcome is Outcome.CHALLENGER:
            return "challenger: passed the absolute rules but did not beat the current champion"
        if self.first_version:
            return "champion: passed every rule; first version, there was no champion to beat"
        return "champion: passed every rule and beat the current champion"

    def tags(self) -> dict[str, str]:
        """Tags for the model version and the run: ``gate.decision`` and ``gate.<rule>.*``."""
        out = {"gate.decision": self.outcome.value, "gate.summary": self.summary}
        out["gate.first_version"] = str(self.first_version).lower()
        for r in self.rules:
            out[f"gate.{r.name}.passed"] = str(r.passed).lower()
            out[f"gate.{r.name}.value"] = _fmt(r.value)
            out[f"gate.{r.name}.threshold"] = _fmt(r.threshold)
            out[f"gate.{r.name}.detail"] = r.detail
        out.update({f"gate.numbers.{k}": _fmt(v) for k, v in self.numbers.items()})
        return out


def _fmt(x: float) -> str:
    return "nan" if math.isnan(x) else f"{x:.6g}"


# ---- aggregation of walk-forward rows -----------------------------------------------------------------
def _rows(metrics: pd.DataFrame, strategy: str, split: str) -> pd.DataFrame:
    return metrics[(metrics["strategy"] == strategy) & (metrics["split"] == split)]


def mean_metric(metrics: pd.DataFrame, strategy: str, split: str, metric: str) -> float:
    """Mean of ``metric`` over folds and seeds (NaN when there is no row or a NaN in it)."""
    rows = _rows(metrics, strategy, split)
    return float(rows[metric].to_numpy(np.float64).mean()) if len(rows) else math.nan


def worst_fold(metrics: pd.DataFrame, strategy: str, split: str, metric: str) -> float:
    """Largest per-fold mean (over seeds) of ``metric`` — the worst fold for a drawdown."""
    rows = _rows(metrics, strategy, split)
    if rows.empty:
        return math.nan
    per_fold = rows.groupby("fold")[metric].apply(lambda s: float(s.to_numpy(np.float64).mean()))
    return float(per_fold.to_numpy(np.float64).max())


def deflated_sharpe_prob(
    metrics: pd.DataFrame,
    split: str,
    periods_per_year: float,
    n_configurations: int = 1,
    returns: np.ndarray | None = None,
) -> tuple[float, dict[str, float]]:
    """DSR (Bailey & López de Prado 2014) of the agent's mean Sharpe over seeds on ``split``.

    Trials: each seed's Sharpe (mean over folds, per period), N = seeds × ``n_configurations``; T = bars
    per seed; skewness/kurtosis from ``returns`` (the agent's per-bar returns) or a Normal's (0, 3)."""
    rows = _rows(metrics, AGENT, split)
    if rows.empty:
        return math.nan, {}
    scale = math.sqrt(periods_per_year)
    per_seed = rows.groupby("seed")["sharpe"].mean().to_numpy(np.float64) / scale
    n_obs = int(rows.groupby("seed")["n_bars"].sum().max()) - 1 if "n_bars" in rows else 0
    n_trials = len(per_seed) * n_configurations
    var = float(per_seed.var(ddof=1)) if len(per_seed) > 1 else 0.0
    skew, kurt = (0.0, 3.0) if returns is None or len(returns) < 2 else (skewness(returns), kurtosis(returns))
    sr = float(per_seed.mean())
    if not np.all(np.isfinite(per_seed)) or n_obs < 2:
        return math.nan, {}
    sr0 = expected_max_sharpe(n_trials, var)
    prob = psr_from_moments(sr, sr0, n_obs, skew, kurt)
    return prob, {"dsr_sr": sr, "dsr_sr0": sr0, "dsr_trials": float(n_trials), "dsr_n_obs": float(n_obs)}


# ---- the rules ------------------------------------------------------------------------------------------
def _rule(name: str, passed: bool, value: float, threshold: float, detail: str) -> RuleResult:
    # A NaN never passes: comparisons with NaN are False, but `not (x > y)` style checks would pass it.
    ok = bool(passed) and not math.isnan(value)
    return RuleResult(name, ok, float(value), float(threshold), detail)


def _no_nan(metrics: pd.DataFrame, rules: GateRules, extra: dict[str, float]) -> RuleResult:
    agent = metrics[metrics["strategy"] == AGENT]
    cols = [c for c in rules.nan_checked_metrics if c in agent.columns]
    missing = [c for c in rules.nan_checked_metrics if c not in agent.columns]
    values = agent[cols].to_numpy(np.float64)
    bad = int(np.size(values) - np.isfinite(values).sum()) + len(missing)
    bad += sum(not math.isfinite(v) for v in extra.values())
    where = [c for c in cols if not np.isfinite(agent[c].to_numpy(np.float64)).all()] + missing
    where += [k for k, v in extra.items() if not math.isfinite(v)]
    detail = "every checked value is finite" if bad == 0 else f"NaN/inf or missing in {sorted(set(where))}"
    return RuleResult("no_nan", bad == 0 and len(agent) > 0, float(bad), 0.0, detail)


def absolute_rules(
    metrics: pd.DataFrame,
    rules: GateRules,
    periods_per_year: float,
    returns: np.ndarray | None = None,
) -> tuple[list[RuleResult], dict[str, float]]:
    """Every rule that does not involve the champion, and the numbers they used."""
    split = rules.split
    sharpe = mean_metric(metrics, AGENT, split, "sharpe")
    hold_sharpe = mean_metric(metrics, BUY_AND_HOLD, split, "sharpe")
    dsr, dsr_numbers = deflated_sharpe_prob(metrics, split, periods_per_year, rules.n_configurations, returns)
    mdd = worst_fold(metrics, AGENT, split, "max_drawdown")
    hold_mdd = worst_fold(metrics, BUY_AND_HOLD, split, "max_drawdown")
    turnover = mean_metric(metrics, AGENT, split, "turnover")
    mdd_cap, edge = rules.max_drawdown_vs_buy_and_hold * hold_mdd, sharpe - hold_sharpe
    results = [
        _no_nan(metrics, rules, {"sharpe": sharpe, "buy_and_hold_sharpe": hold_sharpe, "dsr_prob": dsr}),
        _rule(
            "sharpe_vs_buy_and_hold",
            edge > rules.sharpe_margin_vs_buy_and_hold,
            edge,
            rules.sharpe_margin_vs_buy_and_hold,
            f"{split} Sharpe {sharpe:.3f} vs buy-and-hold {hold_sharpe:.3f}",
        ),
        _rule(
            "deflated_sharpe",
            dsr >= rules.min_dsr_prob,
            dsr,
            rules.min_dsr_prob,
            f"P(true Sharpe > best of {dsr_numbers.get('dsr_trials', math.nan):.0f} lucky trials)",
        ),
        _rule("max_drawdown", mdd <= rules.max_drawdown, mdd, rules.max_drawdown, f"worst {split} fold"),
        _rule(
            "drawdown_vs_buy_and_hold",
            mdd <= mdd_cap,
            mdd,
            mdd_cap,
            f"{rules.max_drawdown_vs_buy_and_hold:g} x buy-and-hold's {hold_mdd:.3f}",
        ),
        _rule(
            "turnover",
            rules.min_turnover <= turnover <= rules.max_turnover,
            turnover,
            rules.max_turnover,
            f"mean annual turnover within [{rules.min_turnover:g}, {rules.max_turnover:g}]",
        ),
    ]
    numbers = {"sharpe": sharpe, "buy_and_hold_sharpe": hold_sharpe, "dsr_prob": dsr, **dsr_numbers}
    numbers |= {"max_drawdown": mdd, "buy_and_hold_max_drawdown": hold_mdd, "turnover": turnover}
    return results, numbers


def champion_rule(sharpe: float, champion_sharpe: float | None, rules: GateRules) -> RuleResult:
    """Beat the current champion's Sharpe on the same windows; with no champion it passes, said plainly."""
    if champion_sharpe is None:
        return RuleResult("beats_champion", True, sharpe, math.nan, "first version: no champion to beat")
    edge = sharpe - champion_sharpe
    detail = f"Sharpe {sharpe:.3f} vs champion {champion_sharpe:.3f} on the same windows"
    return _rule(
        "beats_champion",
        edge > rules.sharpe_margin_vs_champion,
        edge,
        rules.sharpe_margin_vs_champion,
        detail,
    )


def evaluate_gate(
    metrics: pd.DataFrame,
    rules: GateRules,
    periods_per_year: float,
    champion_metrics: pd.DataFrame | None = None,
    returns: np.ndarray | None = None,
) -> GateDecision:
    """Judge a candidate from its walk-forward rows (``pipeline.backtest.walkforward`` shape: fold, split,
    strategy, seed, n_bars and metrics; ``agent`` and ``buy_and_hold`` rows on ``rules.split``).

    ``champion_metrics``: the current champion's ``agent`` rows on the same windows (see
    :func:`pipeline.registry.evaluation.reevaluate_agent`); None when there is no champion yet."""
    results, numbers = absolute_rules(metrics, rules, periods_per_year, returns)
    champion_sharpe = None
    if champion_metrics is not None:
        champion_sharpe = mean_metric(champion_metrics, AGENT, rules.split, "sharpe")
        numbers["champion_sharpe"] = champion_sharpe
    beats = champion_rule(numbers["sharpe"], champion_sharpe, rules)
    if not all(r.passed for r in results):
        outcome = Outcome.REJECTED
    else:
        outcome = Outcome.CHAMPION if beats.passed else Outcome.CHALLENGER
    return GateDecision(outcome, [*results, beats], champion_metrics is None, numbers)


def decision_record(decision: GateDecision) -> dict[str, Any]:
    """JSON-able form of a decision (an artifact next to the tags)."""
    return {
        "outcome": decision.outcome.value,
        "summary": decision.summary,
        "first_version": decision.first_version,
        "rules": [r.__dict__ for r in decision.rules],
        "numbers": decision.numbers,
    }
