"""Judge the agent on real bars: per instrument, a walk-forward with one test fold per calendar year
(validation before it, an embargo between), several seeds, the instrument's own costs; the agent against
buy-and-hold, SMA crossover, momentum and random; headline shares, the deflated Sharpe of the seed ensemble
and a bootstrap interval over seeds and folds; one self-contained HTML report.

Nothing here chooses anything on the test years: the configuration is fixed before the run, and every seed
counts (no best seed is reported alone)."""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from sqlalchemy.engine import Engine

from pipeline.backtest.engine import BacktestResult
from pipeline.backtest.stats import bootstrap_ci, deflated_sharpe, sharpe_ratio
from pipeline.backtest.walkforward import (
    BacktestHook,
    Fold,
    WalkForwardConfig,
    backtest_fold,
    run_walkforward,
    yearly_folds,
)
from pipeline.data.csv_import import import_csv_files
from pipeline.market import TZ_NAME, classify
from pipeline.rl.config import TrainConfig
from pipeline.rl.env import EnvConfig, RewardKind
from pipeline.rl.instruments import instrument_spec
from pipeline.rl.train import TrainResult, train
from pipeline.store import read_bars
from pipeline.store.migrate import upgrade

#: Headline figures, in the order the report and the benchmark print them.
HEADLINE = (
    "folds_beat_bh",
    "pairs_beat_bh",
    "mdd_not_worse",
    "mean_sharpe_agent",
    "mean_sharpe_bh",
    "dsr_prob",
)


@dataclass(frozen=True)
class AgentEvaluationConfig:
    """What is run; fixed before looking at any test year."""

    years: tuple[int, ...] = tuple(range(2013, 2020))
    """Test years (one fold each, where the instrument has bars and enough history before)."""
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    """Agent seeds per fold; all of them count in every figure."""
    val_size: int = 126
    """Validation bars (about half a year) before each test year."""
    embargo: int = 5
    """Bars left out between train and validation and between validation and test."""
    min_train_size: int = 500
    """A test year needs at least this many training bars before it."""
    total_steps: int = 20_000
    """Training budget (env steps) of each (instrument, fold, seed)."""
    levels: tuple[float, ...] = (0.0, 0.5, 1.0)
    """Position levels (fractions of equity, long/flat: the data are ETFs in a cash account)."""
    n_workers: int = 2
    """A3C worker processes per training."""
    configurations: int = 1
    """Configurations tried before this one (with their seeds they are the trials the deflated Sharpe
    counts); raise it whenever a change was chosen by looking at earlier results."""
    drawdown_penalty: float = 0.0
    """Training reward penalty per unit increase of drawdown (``EnvConfig.drawdown_penalty``)."""
    volatility_penalty: float = 0.0
    """Training reward penalty times the squared log return (``EnvConfig.volatility_penalty``)."""
    ent_coef: float = 0.01
    """Entropy bonus of the A3C loss (``TrainConfig.ent_coef``)."""
    reward: RewardKind = "log_return"
    """Training reward (``EnvConfig.reward``): the log return, or the differential Sharpe ratio."""
    policy: Literal["agent", "ensemble"] = "agent"
    """What the fold figures judge: ``agent``, each seed's agent on its own (seed-mean Sharpe), or
    ``ensemble``, the seeds' agents acting as one (mean action probabilities). Both are always measured;
    ``pairs_beat_bh`` always counts each seed's own agent."""
    splits: tuple[str, ...] = ("val", "test")
    """Windows run; ``("val",)`` (tuning) never runs a test year, and the figures are validation's."""
    pooled: bool = False
    """``False``: one agent per (instrument, year, seed), trained on that instrument's bars alone.
    ``True``: one agent per (year, seed), trained on every instrument's bars before that year's earliest
    validation embargo (features per instrument, regimes and scaling pooled, each instrument's own costs),
    then judged on each instrument's fold exactly as the per-instrument agents are."""

    def __post_init__(self) -> None:
        if self.policy not in ("agent", "ensemble"):
            raise ValueError(f"policy must be 'agent' or 'ensemble', got {self.policy!r}")
        if not self.splits or not set(self.splits) <= {"val", "test"}:
            raise ValueError(f"splits must be 'val' and/or 'test', got {self.splits!r}")

    @property
    def scored_split(self) -> str:
        """The split the headline is computed on: test, unless only validation is run."""
        return "test" if "test" in self.splits else "val"

    def train_config(self, symbol: str) -> TrainConfig:
        """The agent's training config for ``symbol``: its instrument's costs and shorting rule."""
        env = EnvConfig(
            instrument=instrument_spec(classify(symbol)),
            levels=self.levels,
            drawdown_penalty=self.drawdown_penalty,
            volatility_penalty=self.volatility_penalty,
            reward=self.reward,
        )
        return TrainConfig(
            total_steps=self.total_steps,
            n_workers=self.n_workers,
            ent_coef=self.ent_coef,
            progress=False,
            env=env,
        )


@dataclass
class AgentEvaluation:
    """Every (instrument, year, split, strategy, seed) row, the agent's and buy-and-hold's test returns,
    and the headline figures."""

    config: AgentEvaluationConfig
    metrics: pd.DataFrame
    agent_returns: dict[tuple[str, int, int], np.ndarray] = field(default_factory=dict)
    """Simple returns per bar of each (symbol, year, seed) window of the scored split (test, or validation
    in a tuning run); seed -1 is the seeds' ensemble."""
    headline: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)


def evaluate_agent(
    bars: Mapping[str, pd.DataFrame],
    config: AgentEvaluationConfig,
    progress: Callable[[str], None] | None = None,
) -> AgentEvaluation:
    """Run the yearly walk-forward on each symbol's ``bars`` (OHLCV indexed by time) and score it."""
    frames: list[pd.DataFrame] = []
    returns: dict[tuple[str, int, int], np.ndarray] = {}
    wf = WalkForwardConfig(
        seeds=config.seeds,
        embargo=config.embargo,
        val_size=config.val_size,
        splits=config.splits,
        ensemble=len(config.seeds) > 1,
    )
    scored = _scored_folds(bars, config, progress)

    def keeper(symbol: str) -> BacktestHook:
        def keep(fold: Fold, split: str, seed: int, res: BacktestResult) -> None:
            if split == config.scored_split and res.name in ("agent", "ensemble"):
                equity = res.frame["equity"].to_numpy()
                returns[(symbol, fold.index, seed)] = equity[1:] / equity[:-1] - 1.0

        return keep

    def add(symbol: str, rows: pd.DataFrame) -> None:
        frames.append(rows.assign(symbol=symbol).rename(columns={"fold": "year"}))

    if config.pooled:
        for symbol, rows in _run_pooled(bars, scored, config, wf, keeper, progress).items():
            add(symbol, rows)
    else:
        for symbol, folds in scored.items():
            if progress:
                progress(f"{symbol}: {len(folds)} test years x {len(config.seeds)} seeds")
            train_config = config.train_config(symbol)
            result = run_walkforward(bars[symbol], train_config, wf, folds=folds, on_backtest=keeper(symbol))
            add(symbol, result.metrics)
    metrics = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    evaluation = AgentEvaluation(config=config, metrics=metrics, agent_returns=returns)
    evaluation.headline, evaluation.details = score(metrics, returns, config)
    return evaluation


def _scored_folds(
    bars: Mapping[str, pd.DataFrame], config: AgentEvaluationConfig, progress: Callable[[str], None] | None
) -> dict[str, list[Fold]]:
    """Each symbol's yearly folds (symbols without any are left out, and said so)."""
    scored: dict[str, list[Fold]] = {}
    for symbol, series in bars.items():
        index = pd.DatetimeIndex(series.index)
        folds = yearly_folds(index, config.years, config.val_size, config.embargo, config.min_train_size)
        if folds:
            scored[symbol] = folds
        elif progress:
            progress(f"{symbol}: no test year with {config.min_train_size} training bars before it")
    return scored


def _run_pooled(
    bars: Mapping[str, pd.DataFrame],
    scored: Mapping[str, Sequence[Fold]],
    config: AgentEvaluationConfig,
    wf: WalkForwardConfig,
    keeper: Callable[[str], BacktestHook],
    progress: Callable[[str], None] | None,
) -> dict[str, pd.DataFrame]:
    """Pooled agents per year (:func:`_train_pooled`), each judged on every instrument's fold of that year:
    the metric rows per symbol, in the per-instrument run's order (symbol, then year)."""
    judged: dict[str, list[dict[str, Any]]] = {symbol: [] for symbol in scored}
    for year, found in _folds_by_year(scored).items():
        agents = _train_pooled(bars, found, config, year, progress)
        for symbol, fold in found.items():
            env = config.train_config(symbol).env
            judged[symbol] += backtest_fold(bars[symbol], fold, env, agents, wf, keeper(symbol))[0]
    return {symbol: pd.DataFrame(rows) for symbol, rows in judged.items()}


def _folds_by_year(scored: Mapping[str, Sequence[Fold]]) -> dict[int, dict[str, Fold]]:
    """``{year: {symbol: fold}}``, years ascending, symbols in their given order."""
    years = sorted({fold.index for folds in scored.values() for fold in folds})
    return {
        year: {symbol: fold for symbol, folds in scored.items() for fold in folds if fold.index == year}
        for year in years
    }


def _train_pooled(
    bars: Mapping[str, pd.DataFrame],
    found: Mapping[str, Fold],
    config: AgentEvaluationConfig,
    year: int,
    progress: Callable[[str], None] | None,
) -> list[tuple[int, TrainResult]]:
    """One agent per seed on every instrument's bars before ``year``'s earliest training cut-off (the first
    embargo bar of any instrument judged that year), so no training bar reaches any validation window."""
    cutoff = min(bars[symbol].index[fold.train.stop] for symbol, fold in found.items())
    pool = {symbol: series[series.index < cutoff] for symbol, series in bars.items()}
    pool = {symbol: series for symbol, series in pool.items() if len(series) >= config.min_train_size}
    instruments = {symbol: instrument_spec(classify(symbol)) for symbol in pool}
    if progress:
        rows = sum(len(series) for series in pool.values())
        progress(
            f"pooled {year}: {len(pool)} instrument{'s' * (len(pool) != 1)}, {rows:,} training bars before "
            f"{cutoff:%Y-%m-%d}, "
            f"{len(config.seeds)} seeds, judged on {len(found)}"
        )
    base = config.train_config(next(iter(found)))
    return [(seed, train(replace(base, seed=seed), pool, instruments)) for seed in config.seeds]


def _fold_figures(split_rows: pd.DataFrame, strategy: str, bh: pd.DataFrame) -> pd.DataFrame:
    """Seed-mean Sharpe and max drawdown of ``strategy`` per (symbol, year), buy-and-hold's beside."""
    rows = split_rows[split_rows["strategy"] == strategy]
    by_fold = rows.groupby(["symbol", "year"])[["sharpe", "max_drawdown"]].mean()
    return by_fold.merge(bh, left_index=True, right_index=True, how="left", suffixes=("", "_bh"))


def _shares(by_fold: pd.DataFrame) -> dict[str, float]:
    return {
        "folds_beat_bh": float((by_fold["sharpe"] > by_fold["sharpe_bh"]).mean()),
        "mdd_not_worse": float((by_fold["max_drawdown"] <= by_fold["max_drawdown_bh"]).mean()),
        "mean_sharpe": float(by_fold["sharpe"].mean()),
        "mean_sharpe_bh": float(by_fold["sharpe_bh"].mean()),
    }


def score(
    metrics: pd.DataFrame, returns: Mapping[tuple[str, int, int], np.ndarray], config: AgentEvaluationConfig
) -> tuple[dict[str, float], dict[str, Any]]:
    """The headline figures (:data:`HEADLINE`) on ``config.scored_split`` and what stands behind them.

    ``folds_beat_bh``: share of (instrument, year) whose Sharpe of ``config.policy`` (the seed-mean of the
    agents, or the seeds' ensemble) beats buy-and-hold's; ``pairs_beat_bh``: share of (instrument, year,
    seed) whose own agent does; ``mdd_not_worse``: share of (instrument, year) whose max drawdown (seed
    mean) is no deeper than buy-and-hold's; the mean Sharpes over (instrument, year); ``dsr_prob``:
    deflated Sharpe probability of the policy's pooled returns (the agents: an equal-weight mix of the
    seeds), with n_trials = seeds x configurations. A NaN Sharpe (a flat agent) never counts as beating.
    ``details["policies"]`` holds the fold figures of both policies, whichever the headline judges."""
    if metrics.empty:
        return dict.fromkeys(HEADLINE, math.nan), {}
    rows = metrics[metrics["split"] == config.scored_split]
    bh = (
        rows[rows["strategy"] == "buy_and_hold"]
        .groupby(["symbol", "year"])[["sharpe", "max_drawdown"]]
        .mean()
    )
    agent = rows[rows["strategy"] == "agent"]
    by_policy = {
        name: _fold_figures(rows, name, bh)
        for name in ("agent", "ensemble")
        if (rows["strategy"] == name).any()
    }
    by_fold = by_policy.get(config.policy, by_policy["agent"])
    pairs = agent.merge(bh, left_on=["symbol", "year"], right_index=True, how="left", suffixes=("", "_bh"))
    diffs = (pairs["sharpe"] - pairs["sharpe_bh"]).to_numpy()
    labels = (pairs["symbol"] + ":" + pairs["year"].astype(str)).to_numpy()
    mixed, seed_returns = _ensemble_returns(returns, config.seeds)
    pooled = mixed
    if config.policy == "ensemble" and any(seed == -1 for *_, seed in returns):
        pooled = np.concatenate([r for (*_, seed), r in sorted(returns.items()) if seed == -1])
    trials = [sharpe_ratio(r) for r in seed_returns.values() if len(r) > 1]
    n_trials = len(config.seeds) * config.configurations
    dsr = deflated_sharpe(pooled, trials, n_trials) if len(pooled) > 2 and len(trials) > 1 else None
    finite = np.isfinite(diffs)
    ci = bootstrap_ci(diffs[finite], groups=labels[finite]) if finite.sum() >= 2 else (math.nan,) * 3
    shares = _shares(by_fold)
    headline = {
        "folds_beat_bh": shares["folds_beat_bh"],
        "pairs_beat_bh": float((pairs["sharpe"] > pairs["sharpe_bh"]).mean()),
        "mdd_not_worse": shares["mdd_not_worse"],
        "mean_sharpe_agent": shares["mean_sharpe"],
        "mean_sharpe_bh": shares["mean_sharpe_bh"],
        "dsr_prob": math.nan if dsr is None else dsr.dsr_prob,
    }
    details = {
        "split": config.scored_split,
        "policy": config.policy,
        "policies": {name: _shares(frame) for name, frame in by_policy.items()},
        "n_folds": len(by_fold),
        "n_pairs": len(pairs),
        "n_trials": n_trials,
        "sharpe_gap_ci": {"low": ci[0], "mean": ci[1], "high": ci[2]},
        "dsr": None if dsr is None else asdict(dsr),
        "by_fold": by_fold.reset_index(),
    }
    return headline, details


def _ensemble_returns(
    returns: Mapping[tuple[str, int, int], np.ndarray], seeds: tuple[int, ...]
) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """The equal-weight mix of seeds (mean simple return per bar) pooled over every (symbol, year),
    and each seed's own pooled returns (its trial Sharpe). The ensemble policy's rows (seed -1) are not
    seeds."""
    windows = sorted({(s, y) for s, y, seed in returns if seed in seeds})
    pooled: list[np.ndarray] = []
    per_seed: dict[int, list[np.ndarray]] = {seed: [] for seed in seeds}
    for symbol, year in windows:
        runs = [returns[(symbol, year, seed)] for seed in seeds if (symbol, year, seed) in returns]
        pooled.append(np.mean(np.stack(runs), axis=0))
        for seed in seeds:
            if (symbol, year, seed) in returns:
                per_seed[seed].append(returns[(symbol, year, seed)])
    joined = {seed: np.concatenate(parts) for seed, parts in per_seed.items() if parts}
    return (np.concatenate(pooled) if pooled else np.zeros(0)), joined


def load_through_store(paths: Sequence[Path], engine: Engine) -> tuple[dict[str, pd.DataFrame], Any]:
    """Import the CSV ``paths`` into the (migrated) store behind ``engine`` as any user's bars would arrive,
    read them back: ({symbol: OHLCV indexed by KST session}, the import summary)."""
    upgrade(engine)
    summary = import_csv_files(paths, engine=engine)
    stored = read_bars(None, "1d", engine=engine)
    out = {}
    for symbol, rows in stored.groupby("symbol", sort=True):
        frame = rows.set_index(pd.DatetimeIndex(rows["ts"]).tz_convert(TZ_NAME).rename("ts"))
        out[str(symbol)] = frame[["open", "high", "low", "close", "volume"]].astype(float)
    return out, summary


# ---- output ---------------------------------------------------------------------------------------------
def summary_table(evaluation: AgentEvaluation) -> pd.DataFrame:
    """Test Sharpe, return, max drawdown and turnover per (symbol, year) and strategy, seeds averaged."""
    m = evaluation.metrics
    test = m[m["split"] == evaluation.config.scored_split]
    cols = ["sharpe", "total_return", "max_drawdown", "turnover"]
    return test.groupby(["symbol", "year", "strategy"])[cols].mean().unstack("strategy")  # type: ignore[no-any-return]


def write_outputs(evaluation: AgentEvaluation, out_dir: Path) -> dict[str, Path]:
    """``metrics.csv`` (every row), ``summary.json`` (headline and details) and ``report.html``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "metrics": out_dir / "metrics.csv",
        "summary": out_dir / "summary.json",
        "report": out_dir / "report.html",
    }
    evaluation.metrics.to_csv(paths["metrics"], index=False)
    details = {k: v for k, v in evaluation.details.items() if k != "by_fold"}
    summary = {"headline": evaluation.headline, **details, "config": asdict(evaluation.config)}
    paths["summary"].write_text(json.dumps(summary, indent=2, default=str))
    paths["report"].write_text(render_html(evaluation))
    return paths


_CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
table{border-collapse:collapse;font-size:.85em}td,th{border:1px solid #ddd;padding:.2em .5em;text-align:right}
th{background:#f4f4f4}.good{color:#176f2c}.bad{color:#b00020}img{max-width:100%}"""


def render_html(evaluation: AgentEvaluation) -> str:
    """One self-contained page: headline, per-(symbol, year) table, the Sharpe figure; no external asset."""
    h = evaluation.headline
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{h.get(k, math.nan):.3f}</td></tr>" for k in HEADLINE)
    ci = evaluation.details.get("sharpe_gap_ci", {})
    gap = (
        f"<p>Agent minus buy-and-hold test Sharpe, mean over (instrument, year, seed): "
        f"{ci.get('mean', math.nan):+.3f} (95% bootstrap interval over years and seeds "
        f"{ci.get('low', math.nan):+.3f} to {ci.get('high', math.nan):+.3f}).</p>"
        if ci
        else ""
    )
    policies = evaluation.details.get("policies", {})
    judged = evaluation.details.get("policy", evaluation.config.policy)
    policy_rows = "".join(
        f"<tr><th>{html.escape(name)}{' (judged)' if name == judged else ''}</th>"
        + "".join(f"<td>{figures[k]:.3f}</td>" for k in ("folds_beat_bh", "mdd_not_worse", "mean_sharpe"))
        + "</tr>"
        for name, figures in policies.items()
    )
    policy_table = (
        "<h2>Each seed's agent and the seeds' ensemble</h2><table><tr><th>policy</th><th>folds_beat_bh</th>"
        f"<th>mdd_not_worse</th><th>mean Sharpe</th></tr>{policy_rows}</table>"
        if policy_rows
        else ""
    )
    table = summary_table(evaluation) if not evaluation.metrics.empty else pd.DataFrame()
    cfg = html.escape(json.dumps(asdict(evaluation.config)))
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Agent evaluation on KRX data</title>"
        f"<style>{_CSS}</style></head><body><h1>Agent evaluation on real KRX bars</h1>"
        f"<h2>Headline ({html.escape(evaluation.config.scored_split)})</h2><table>{rows}</table>{gap}"
        f"{policy_table}"
        f"<h2>Test Sharpe per instrument and year</h2>{_sharpe_figure(evaluation)}"
        "<h2>Per instrument and year (seeds averaged)</h2>"
        f"<div style='overflow-x:auto'>{table.to_html(float_format=lambda x: f'{x:.3f}')}</div>"
        f"<h2>Configuration</h2><pre>{cfg}</pre></body></html>"
    )


def _sharpe_figure(evaluation: AgentEvaluation) -> str:
    by_fold = evaluation.details.get("by_fold")
    if by_fold is None or len(by_fold) == 0:
        return "<p>No fold was evaluated.</p>"
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{s}\n{y}" for s, y in zip(by_fold["symbol"], by_fold["year"], strict=True)]
    x = np.arange(len(labels))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.5 * len(labels)), 3.5))
    judged = evaluation.details.get("policy", "agent")
    label = "agent (seed mean)" if judged == "agent" else "seeds' ensemble"
    ax.bar(x - 0.2, by_fold["sharpe"], 0.4, label=label)
    ax.bar(x + 0.2, by_fold["sharpe_bh"], 0.4, label="buy-and-hold")
    ax.axhline(0.0, color="#888", linewidth=0.8)
    ax.set_xticks(x, labels, fontsize=7)
    ax.set_ylabel("test Sharpe (annualised)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="test Sharpe per instrument and year" src="data:image/png;base64,{encoded}">'


def quick_config(config: AgentEvaluationConfig | None = None) -> AgentEvaluationConfig:
    """A small run of ``config`` (two recent years, two seeds, a tiny budget) for smoke tests."""
    return replace(config or AgentEvaluationConfig(), years=(2018, 2019), seeds=(0, 1), total_steps=2_000)
