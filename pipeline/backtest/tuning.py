"""Choose the agent's configuration on validation windows only, counting every trial.

Each candidate (a set of overrides of :class:`AgentEvaluationConfig`) runs the yearly walk-forward with
``splits=("val",)``: the agent trains on the bars before each test year's validation window and is
backtested on that window alone, so no test year is ever run while choosing. Both policies of a run (each
seed's agent, and the seeds' ensemble) are trials. The winner is the trial with the highest validation
``folds_beat_bh`` (ties: the larger Sharpe gap over buy-and-hold); :func:`chosen_config` turns it into the
configuration a test run uses, with ``configurations`` = every trial, so the deflated Sharpe pays for the
search."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.backtest.evaluation import AgentEvaluationConfig, evaluate_agent

#: Candidate configurations: overrides of the base configuration, each a hypothesis from issue 13's list
#: (``steps_factor`` multiplies the base's training budget).
CANDIDATES: dict[str, dict[str, Any]] = {
    "base": {},
    "levels5": {"levels": (0.0, 0.25, 0.5, 0.75, 1.0)},
    "vol_penalty": {"volatility_penalty": 1.0},
    "dd_penalty": {"drawdown_penalty": 0.5},
    "dd_penalty_strong": {"drawdown_penalty": 1.0},
    "budget_2x": {"steps_factor": 2},
    "entropy_high": {"ent_coef": 0.05},
    # One agent per (year, seed) over every fund's bars; 4x the steps of one fund's agent, still about
    # half the env steps of a per-fund run (7 trainings a seed instead of 47).
    "pooled": {"pooled": True, "steps_factor": 4},
    # Training is cheap next to the regime fit and the backtests (~40,000 env steps/s on 2 cores): 20,000
    # steps are ~10 passes over a fund's bars. Are the agents under-trained?
    "budget_10x": {"steps_factor": 10},
    "budget_10x_dd": {"steps_factor": 10, "drawdown_penalty": 0.5},
    "budget_10x_entropy": {"steps_factor": 10, "ent_coef": 0.05},
    "budget_10x_dsr": {"steps_factor": 10, "reward": "differential_sharpe"},
    "pooled_40x": {"pooled": True, "steps_factor": 40},
    # Third round, both on top of the differential Sharpe reward (declared before either ran): its
    # policies still end near uniform, so is it still under-trained (twice its budget)? And does a higher
    # entropy bonus, which gave the best ensemble of the first round, make its ensemble's members differ
    # usefully?
    "budget_20x_dsr": {"steps_factor": 20, "reward": "differential_sharpe"},
    "budget_10x_dsr_entropy": {"steps_factor": 10, "reward": "differential_sharpe", "ent_coef": 0.05},
}
POLICIES = ("agent", "ensemble")
TUNING_FILE = "tuning.json"


@dataclass(frozen=True)
class Trial:
    """One (candidate, policy) measured on the validation windows."""

    candidate: str
    policy: str
    overrides: dict[str, Any]
    folds_beat_bh: float
    mdd_not_worse: float
    mean_sharpe: float
    mean_sharpe_bh: float
    pairs_beat_bh: float
    n_folds: int
    run: str = ""
    """What the candidate was run on (seeds, budget, years): a rerun on the same replaces its trial."""

    @property
    def key(self) -> tuple[str, str, str]:
        return self.candidate, self.policy, self.run

    @property
    def gap(self) -> float:
        """Mean validation Sharpe minus buy-and-hold's."""
        return self.mean_sharpe - self.mean_sharpe_bh

    def rank_key(self) -> tuple[float, float]:
        """Higher is better: validation folds beaten, then the Sharpe gap (NaN ranks last)."""

        def finite(x: float) -> float:
            return x if math.isfinite(x) else -math.inf

        return finite(self.folds_beat_bh), finite(self.gap)


@dataclass
class Tuning:
    """Every trial, the winner and the base configuration they override."""

    base: AgentEvaluationConfig
    trials: list[Trial]

    @property
    def best(self) -> Trial:
        return max(self.trials, key=Trial.rank_key)

    def table(self) -> pd.DataFrame:
        """One row per trial, best first."""
        rows = [{**asdict(t), "gap": t.gap} for t in sorted(self.trials, key=Trial.rank_key, reverse=True)]
        return pd.DataFrame(rows).drop(columns=["overrides"])

    def to_dict(self) -> dict[str, Any]:
        best = self.best
        return {
            "split": "val",
            "chosen": {"candidate": best.candidate, "policy": best.policy, "overrides": best.overrides},
            "configurations": len(self.trials),
            "trials": [{**asdict(t), "gap": t.gap} for t in self.trials],
            "base": asdict(self.base),
        }


def tune_agent(
    bars: Mapping[str, pd.DataFrame],
    base: AgentEvaluationConfig,
    candidates: Sequence[str] = tuple(CANDIDATES),
    progress: Callable[[str], None] | None = None,
    on_trials: Callable[[list[Trial]], None] | None = None,
) -> Tuning:
    """Run every named candidate on the validation windows of ``base``'s years and seeds. ``on_trials``
    gets the trials so far after each candidate (to save them: a crash then loses at most one)."""
    unknown = [c for c in candidates if c not in CANDIDATES]
    if unknown:
        raise ValueError(f"unknown candidate(s) {', '.join(unknown)}; known: {', '.join(CANDIDATES)}")
    if len(base.seeds) < 2:
        raise ValueError("tuning needs at least 2 seeds (the ensemble policy is a trial)")
    trials: list[Trial] = []
    for n, name in enumerate(candidates, 1):
        overrides = resolve(base, CANDIDATES[name])
        if progress:
            progress(f"candidate {n}/{len(candidates)} {name} {overrides or '(defaults)'}")
        trials += measure(bars, base, name, CANDIDATES[name], progress)
        if on_trials and trials:
            on_trials(list(trials))
    if not trials:
        raise ValueError("no fold was evaluated: no symbol has a test year with enough training bars")
    return Tuning(base=base, trials=trials)


def measure(
    bars: Mapping[str, pd.DataFrame],
    base: AgentEvaluationConfig,
    name: str,
    overrides: Mapping[str, Any],
    progress: Callable[[str], None] | None = None,
) -> list[Trial]:
    """Both policies' trials of ``base`` with ``overrides``, run on the validation windows only."""
    resolved = resolve(base, overrides)
    config = replace(base, **resolved, splits=("val",))
    evaluation = evaluate_agent(bars, config, progress=progress)
    pairs = evaluation.headline["pairs_beat_bh"]
    trials = []
    for policy, figures in evaluation.details.get("policies", {}).items():
        trial = Trial(
            name,
            policy,
            _jsonable(resolved),
            run=run_label(config),
            pairs_beat_bh=pairs,
            n_folds=evaluation.details["n_folds"],
            **figures,
        )
        trials.append(trial)
        if progress:
            progress(
                f"  {name}/{policy}: validation folds_beat_bh {trial.folds_beat_bh:.3f}, "
                f"Sharpe {trial.mean_sharpe:.3f} vs buy-and-hold {trial.mean_sharpe_bh:.3f}"
            )
    return trials


def run_label(config: AgentEvaluationConfig) -> str:
    years = f"{config.years[0]}-{config.years[-1]}" if config.years else "-"
    return f"{len(config.seeds)} seeds, {config.total_steps} steps, years {years}"


def load_trials(path: Path) -> list[Trial]:
    """The trials an earlier tuning recorded at ``path`` (none if there is no file)."""
    if not path.exists():
        return []
    return [
        Trial(**{k: v for k, v in t.items() if k != "gap"}) for t in json.loads(path.read_text())["trials"]
    ]


def merge_trials(previous: Sequence[Trial], new: Sequence[Trial]) -> list[Trial]:
    """Every trial ever run: ``previous`` and ``new``, a rerun of the same (candidate, policy, run)
    replacing the earlier one. Trials are never dropped otherwise: each counts in the deflated Sharpe."""
    merged = {t.key: t for t in previous}
    merged.update({t.key: t for t in new})
    return list(merged.values())


def resolve(base: AgentEvaluationConfig, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``overrides`` as fields of :class:`AgentEvaluationConfig` (``steps_factor`` → ``total_steps``)."""
    out = {k: v for k, v in overrides.items() if k != "steps_factor"}
    if "steps_factor" in overrides:
        out["total_steps"] = int(base.total_steps * overrides["steps_factor"])
    return out


def _jsonable(overrides: Mapping[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in overrides.items()}


def write_tuning(tuning: Tuning, out_dir: Path) -> Path:
    """``tuning.json`` (every trial, the choice) and ``tuning.csv`` (the table) under ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tuning.table().to_csv(out_dir / "tuning.csv", index=False)
    path = out_dir / TUNING_FILE
    path.write_text(json.dumps(tuning.to_dict(), indent=2, default=str))
    return path


def chosen_config(path: Path, base: AgentEvaluationConfig) -> AgentEvaluationConfig:
    """``base`` with the winner of the tuning written at ``path``: its overrides, its policy, and every
    trial counted in ``configurations`` (at least ``base``'s own count)."""
    if not path.exists():
        raise FileNotFoundError(f"no tuning at {path}: run `krx evaluate --tune` first")
    data = json.loads(path.read_text())
    chosen = data["chosen"]
    overrides: dict[str, Any] = {
        k: tuple(v) if isinstance(v, list) else v for k, v in chosen["overrides"].items()
    }
    configurations = max(int(data["configurations"]), base.configurations)
    return replace(base, **overrides, policy=chosen["policy"], configurations=configurations)
