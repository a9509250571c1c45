"""A hyper-parameter search (Optuna's TPE sampler) on the validation windows, every trial counted.

``krx evaluate --search N`` is ``--tune`` with the candidates proposed by a sampler instead of named by
hand: each proposal runs the same validation-only walk-forward (:func:`pipeline.backtest.tuning.measure`),
both of its policies become trials in the same ledger, and ``--tuned`` runs whichever trial ranks first,
named or searched, with every trial counted in the deflated Sharpe.

The ledger is the search's memory: before proposing anything, every earlier trial of the same run (seeds,
base budget, years) whose configuration lies in :data:`DISTRIBUTIONS` is told to the study as a finished
trial, so the sampler starts from what has already been paid for (the named candidates included) on any
machine, with no study database to carry around. A searched trial is named ``search-`` and a hash of its
configuration, so the same configuration proposed twice is one trial, not two.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import optuna
import pandas as pd
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution

from pipeline.backtest.evaluation import AgentEvaluationConfig
from pipeline.backtest.tuning import Trial, Tuning, measure, resolve, run_label

#: The searched space: the knobs the named candidates showed to matter, with their ranges. ``levels`` is the
#: number of evenly spaced position levels from flat to fully long; ``steps_factor`` multiplies the base
#: training budget.
DISTRIBUTIONS: dict[str, BaseDistribution] = {
    "reward": CategoricalDistribution(("log_return", "differential_sharpe")),
    "steps_factor": CategoricalDistribution((1, 2, 10, 20)),
    "ent_coef": FloatDistribution(1e-3, 0.1, log=True),
    "drawdown_penalty": FloatDistribution(0.0, 1.0),
    "volatility_penalty": FloatDistribution(0.0, 1.0),
    "levels": CategoricalDistribution((3, 5)),
}
#: Added to a trial's validation ``folds_beat_bh`` times its Sharpe gap (clipped to ±1), so the sampler
#: ranks as :meth:`Trial.rank_key` does: one window of 47 is 0.021, more than any gap can add.
GAP_WEIGHT = 1e-3
SEARCH_PREFIX = "search-"


def overrides_of(params: Mapping[str, Any]) -> dict[str, Any]:
    """A sampled point as overrides of :class:`AgentEvaluationConfig` (what the ledger stores)."""
    n = int(params["levels"])
    return {
        "reward": params["reward"],
        "steps_factor": int(params["steps_factor"]),
        "ent_coef": float(params["ent_coef"]),
        "drawdown_penalty": float(params["drawdown_penalty"]),
        "volatility_penalty": float(params["volatility_penalty"]),
        "levels": tuple(k / (n - 1) for k in range(n)),
    }


def params_of(overrides: Mapping[str, Any], base: AgentEvaluationConfig) -> dict[str, Any] | None:
    """The point of :data:`DISTRIBUTIONS` that a ledger trial's (resolved) overrides of ``base`` are, or
    ``None`` when they set anything the search does not vary (pooled training, another budget)."""
    known = {"reward", "total_steps", "ent_coef", "drawdown_penalty", "volatility_penalty", "levels"}
    if set(overrides) - known:
        return None
    config = replace(base, **_tuples(overrides))
    factor, rest = divmod(config.total_steps, base.total_steps)
    n = len(config.levels)
    even = tuple(k / (n - 1) for k in range(n)) if n > 1 else ()
    params = {
        "reward": config.reward,
        "steps_factor": factor,
        "ent_coef": config.ent_coef,
        "drawdown_penalty": config.drawdown_penalty,
        "volatility_penalty": config.volatility_penalty,
        "levels": n,
    }
    if rest or tuple(config.levels) != even:
        return None
    return params if all(_contains(DISTRIBUTIONS[k], v) for k, v in params.items()) else None


def _tuples(overrides: Mapping[str, Any]) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}


def _contains(distribution: BaseDistribution, value: Any) -> bool:
    if isinstance(distribution, CategoricalDistribution):
        return value in distribution.choices
    assert isinstance(distribution, FloatDistribution)
    return bool(distribution.low <= float(value) <= distribution.high)


def objective(trials: Sequence[Trial]) -> float:
    """The value the sampler maximises: the best policy's validation ``folds_beat_bh`` plus
    :data:`GAP_WEIGHT` times its Sharpe gap over buy-and-hold (NaN counts as the worst)."""

    def value(t: Trial) -> float:
        gap = t.gap if math.isfinite(t.gap) else -1.0
        folds = t.folds_beat_bh if math.isfinite(t.folds_beat_bh) else 0.0
        return folds + GAP_WEIGHT * max(-1.0, min(1.0, gap))

    return max(value(t) for t in trials)


def trial_name(overrides: Mapping[str, Any]) -> str:
    """``search-`` and 8 hex digits of the configuration: the same point proposed twice is one trial."""
    text = json.dumps(
        {k: list(v) if isinstance(v, tuple) else v for k, v in overrides.items()}, sort_keys=True
    )
    return SEARCH_PREFIX + hashlib.sha256(text.encode()).hexdigest()[:8]


def seeded_study(base: AgentEvaluationConfig, previous: Sequence[Trial], seed: int) -> optuna.Study:
    """A TPE study told every earlier trial of ``base``'s run that lies in the searched space."""
    optuna.logging.disable_default_handler()  # its chatter goes to the log file, with everything else's
    optuna.logging.enable_propagation()
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    groups: dict[tuple[str, str], list[Trial]] = {}
    for t in previous:
        groups.setdefault((t.candidate, t.run), []).append(t)
    for (_, run), trials in groups.items():
        overrides = trials[0].overrides
        params = params_of(overrides, base)
        if params is None or run != run_label(replace(base, **_tuples(overrides), splits=("val",))):
            continue
        study.add_trial(
            optuna.trial.create_trial(params=params, distributions=DISTRIBUTIONS, value=objective(trials))
        )
    return study


def search_agent(
    bars: Mapping[str, pd.DataFrame],
    base: AgentEvaluationConfig,
    n_trials: int,
    previous: Sequence[Trial] = (),
    progress: Callable[[str], None] | None = None,
    on_trials: Callable[[list[Trial]], None] | None = None,
) -> Tuning:
    """Propose and measure ``n_trials`` configurations on the validation windows; the new trials only
    (merge them with ``previous`` to keep every trial counted). The sampler's seed is the number of
    earlier trials, so a search is reproducible from its ledger and a later one explores afresh.
    ``on_trials`` gets the new trials so far after each proposal measured (to save them as it goes)."""
    if n_trials < 1:
        raise ValueError(f"a search needs at least 1 trial, got {n_trials}")
    if len(base.seeds) < 2:
        raise ValueError("tuning needs at least 2 seeds (the ensemble policy is a trial)")
    study = seeded_study(base, previous, seed=len(previous))
    if progress:
        progress(f"search: {len(study.trials)} earlier trials of this run seed the sampler")
    measured: dict[tuple[str, str], list[Trial]] = {}
    for t in previous:
        measured.setdefault(t.key[::2], []).append(t)
    new: list[Trial] = []
    for n in range(1, n_trials + 1):
        proposal = study.ask(fixed_distributions=DISTRIBUTIONS)
        overrides = overrides_of(proposal.params)
        name = trial_name(overrides)
        resolved = resolve(base, overrides)
        key = (name, run_label(replace(base, **resolved, splits=("val",))))
        if progress:
            progress(f"search {n}/{n_trials} {name} {resolved}")
        trials = measured.get(key) or measure(bars, base, name, overrides, progress)
        if key not in measured:  # a point measured before (same run) is told again, not re-run
            new += trials
            measured[key] = trials
            if on_trials and trials:
                on_trials(list(new))
        if not trials:
            study.tell(proposal, state=optuna.trial.TrialState.FAIL)
            raise ValueError("no fold was evaluated: no symbol has a test year with enough training bars")
        study.tell(proposal, objective(trials))
        if progress:
            best = max((*previous, *new), key=Trial.rank_key)
            progress(
                f"  best so far: {best.candidate}/{best.policy}, validation folds {best.folds_beat_bh:.3f}"
            )
    logging.getLogger(__name__).info("search of %d trials done; %d new trials", n_trials, len(new))
    return Tuning(base=base, trials=new)
