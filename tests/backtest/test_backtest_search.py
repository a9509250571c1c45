"""The Optuna search of ``krx evaluate --search N``: each proposal runs on validation windows only, both
of its policies are trials counted in the ledger, the ledger's earlier trials steer the sampler, a point
already paid for is not run again, and the CLI refuses what makes no sense. ``evaluate_agent`` is a
stand-in whose validation figures depend on the configuration (a landscape with a known peak), so the
sampler's behaviour, not training noise, is what is checked."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import pytest
from typer.testing import CliRunner

from pipeline.backtest import search as search_module
from pipeline.backtest import tuning
from pipeline.backtest.evaluation import AgentEvaluation, AgentEvaluationConfig
from pipeline.backtest.search import (
    DISTRIBUTIONS,
    GAP_WEIGHT,
    objective,
    overrides_of,
    params_of,
    search_agent,
    seeded_study,
    trial_name,
)
from pipeline.backtest.tuning import TUNING_FILE, Trial, Tuning, chosen_config, load_trials, run_label
from pipeline.backtest.tuning import resolve as resolve_overrides
from pipeline.cli import SHARED_KRX_DATA, app

BASE = AgentEvaluationConfig(years=(2018, 2019), seeds=(0, 1, 2), total_steps=1000)
BARS = {"069500": pd.DataFrame()}


def landscape(config: AgentEvaluationConfig) -> float:
    """Validation folds beaten as a function of the configuration: the differential Sharpe reward and a
    small entropy bonus are what pay."""
    return 0.4 + 0.3 * (config.reward == "differential_sharpe") + 0.1 * (config.ent_coef < 0.01)


class Landscape:
    """Stands in for ``evaluate_agent``: records each configuration and answers :func:`landscape`."""

    def __init__(self) -> None:
        self.configs: list[AgentEvaluationConfig] = []

    def __call__(self, bars: Any, config: AgentEvaluationConfig, progress: Any = None) -> AgentEvaluation:
        self.configs.append(config)
        folds = landscape(config)
        ev = AgentEvaluation(config=config, metrics=pd.DataFrame())
        ev.headline = {"pairs_beat_bh": folds - 0.05}
        figures = {"folds_beat_bh": folds, "mdd_not_worse": 0.9, "mean_sharpe": folds - 0.5}
        ev.details = {
            "n_folds": 47,
            "policies": {
                "agent": {**figures, "mean_sharpe_bh": -0.2},
                "ensemble": {**figures, "folds_beat_bh": folds + 0.02, "mean_sharpe_bh": -0.2},
            },
        }
        return ev


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Landscape:
    stand_in = Landscape()
    monkeypatch.setattr(tuning, "evaluate_agent", stand_in)
    return stand_in


def _ledger_trial(
    candidate: str, overrides: dict[str, Any], folds: float, base: AgentEvaluationConfig
) -> Trial:
    """A trial as a --tune run records it: resolved overrides, JSON lists, its run's label."""
    resolved = resolve_overrides(base, overrides)
    run = run_label(replace(base, **resolved, splits=("val",)))
    plain = {k: list(v) if isinstance(v, tuple) else v for k, v in resolved.items()}
    return Trial(candidate, "ensemble", plain, folds, 1.0, 0.2, -0.2, 0.5, 47, run=run)


def test_each_proposal_runs_on_validation_only_and_both_policies_are_trials(fake: Landscape) -> None:
    lines: list[str] = []
    result = search_agent(BARS, BASE, 4, progress=lines.append)
    assert len(fake.configs) == 4 and len(result.trials) == 8
    for config in fake.configs:
        assert config.splits == ("val",) and config.seeds == BASE.seeds and config.years == BASE.years
        assert config.total_steps in {1000, 2000, 10_000, 20_000}
        assert config.levels in {(0.0, 0.5, 1.0), (0.0, 0.25, 0.5, 0.75, 1.0)}
        assert 1e-3 <= config.ent_coef <= 0.1 and 0 <= config.drawdown_penalty <= 1
    names = [t.candidate for t in result.trials]
    assert all(n.startswith("search-") for n in names) and len(set(names)) == 4
    for trial, config in zip(result.trials[::2], fake.configs, strict=True):
        # The ledger holds the configuration that ran, and maps back to the point the sampler proposed.
        assert trial.run == run_label(config) and {
            t.policy for t in result.trials if t.candidate == trial.candidate
        } == {
            "agent",
            "ensemble",
        }
        params = params_of(trial.overrides, BASE)
        assert params is not None and trial.candidate == trial_name(overrides_of(params))
        assert replace(BASE, **resolve_overrides(BASE, overrides_of(params)), splits=("val",)) == config
    assert lines[0] == "search: 0 earlier trials of this run seed the sampler"
    assert [line.split(" ")[1] for line in lines if line.startswith("search ")] == [
        "1/4",
        "2/4",
        "3/4",
        "4/4",
    ]
    assert sum("best so far: search-" in line for line in lines) == 4


def test_the_ledger_steers_the_sampler_toward_what_paid(fake: Landscape) -> None:
    # Twelve earlier trials of this run: every differential-Sharpe one beat every log-return one.
    previous = [
        _ledger_trial(f"named-{reward}-{k}", {"reward": reward, "ent_coef": 0.002 * (k + 1)}, folds, BASE)
        for k in range(6)
        for reward, folds in (("differential_sharpe", 0.75), ("log_return", 0.45))
    ]
    # Left out of the sampler's memory: pooled training (outside the space), another run's trial.
    pooled = _ledger_trial("pooled", {"pooled": True}, 0.9, BASE)
    other_run = _ledger_trial("base", {}, 0.9, replace(BASE, seeds=(0, 1)))
    study = seeded_study(BASE, [*previous, pooled, other_run], seed=0)
    assert len(study.trials) == 12
    assert {(t.params["reward"], round(t.value or 0, 3)) for t in study.trials} == {
        ("differential_sharpe", 0.75),
        ("log_return", 0.45),
    }
    result = search_agent(BARS, BASE, 8, [*previous, pooled, other_run])
    rewards = [c.reward for c in fake.configs]
    assert rewards.count("differential_sharpe") >= 6, rewards  # uniform sampling would give about 4
    fake.configs.clear()  # the same search with no memory: the sampler's first ten points are random
    search_agent(BARS, BASE, 8, [pooled, other_run])
    assert [c.reward for c in fake.configs].count("differential_sharpe") < rewards.count(
        "differential_sharpe"
    )
    chosen = Tuning(BASE, [*previous, pooled, other_run, *result.trials]).best
    assert chosen.candidate in {"pooled", "base"} or chosen.candidate.startswith("search-")


def test_a_point_already_paid_for_is_told_again_not_run_again(
    fake: Landscape, monkeypatch: pytest.MonkeyPatch
) -> None:
    point = {
        "reward": "differential_sharpe",
        "steps_factor": 10,
        "ent_coef": 0.02,
        "drawdown_penalty": 0.25,
        "volatility_penalty": 0.0,
        "levels": 3,
    }
    overrides = overrides_of(point)
    paid = _ledger_trial(trial_name(overrides), overrides, 0.8, BASE)
    real = search_module.seeded_study

    def proposing_it_twice(*args: Any, **kwargs: Any) -> optuna.Study:
        study = real(*args, **kwargs)
        study.enqueue_trial(point)
        study.enqueue_trial(point)
        return study

    monkeypatch.setattr(search_module, "seeded_study", proposing_it_twice)
    lines: list[str] = []
    result = search_agent(BARS, BASE, 3, [paid], progress=lines.append)
    assert len(fake.configs) == 1 and len(result.trials) == 2  # only the third proposal ran
    assert paid.candidate not in {t.candidate for t in result.trials}
    assert sum(paid.candidate in line for line in lines if line.startswith("search ")) == 2


def test_the_objective_ranks_as_the_tuning_does() -> None:
    better_gap = Trial("a", "agent", {}, 0.5, 1.0, 0.3, -0.2, 0.5, 47)
    worse_gap = Trial("b", "agent", {}, 0.5, 1.0, 0.1, -0.2, 0.5, 47)
    one_more_fold = Trial("c", "agent", {}, 0.5 + 1 / 47, 1.0, -5.0, 0.0, 0.5, 47)
    assert objective([better_gap]) == pytest.approx(0.5 + GAP_WEIGHT * 0.5)
    assert objective([worse_gap]) < objective([better_gap]) < objective([one_more_fold])
    assert objective([better_gap, worse_gap]) == objective([better_gap])  # the best policy counts
    flat = Trial("d", "agent", {}, float("nan"), 1.0, float("nan"), -0.2, 0.5, 47)
    assert objective([flat]) == pytest.approx(-GAP_WEIGHT)


def test_the_space_and_its_mapping_to_configurations() -> None:
    assert set(DISTRIBUTIONS) == {
        "reward",
        "steps_factor",
        "ent_coef",
        "drawdown_penalty",
        "volatility_penalty",
        "levels",
    }
    base = AgentEvaluationConfig()
    assert params_of({}, base) == {
        "reward": "log_return",
        "steps_factor": 1,
        "ent_coef": 0.01,
        "drawdown_penalty": 0.0,
        "volatility_penalty": 0.0,
        "levels": 3,
    }
    assert params_of({"total_steps": 200_000, "reward": "differential_sharpe"}, base) == {
        **params_of({}, base),  # type: ignore[dict-item]
        "reward": "differential_sharpe",
        "steps_factor": 10,
    }
    assert params_of({"levels": [0.0, 0.25, 0.5, 0.75, 1.0]}, base)["levels"] == 5  # type: ignore[index]
    for outside in (
        {"pooled": True},
        {"total_steps": 800_000},  # 40x: not a searched budget
        {"total_steps": 30_000},  # not a multiple of the base budget
        {"levels": [0.0, 1.0]},
        {"levels": [0.0, 0.1, 1.0]},  # uneven levels
        {"ent_coef": 0.5},
    ):
        assert params_of(outside, base) is None, outside
    # The name is the configuration's: the same point is one trial whichever way it is written.
    same = overrides_of({**params_of({}, base), "levels": 5})  # type: ignore[dict-item]
    assert trial_name(same) == trial_name(dict(reversed(list(same.items()))))
    assert trial_name(same) != trial_name({**same, "ent_coef": 0.011})


def test_a_search_that_cannot_run_says_why(fake: Landscape, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="at least 1 trial"):
        search_agent(BARS, BASE, 0)
    with pytest.raises(ValueError, match="at least 2 seeds"):
        search_agent(BARS, replace(BASE, seeds=(0,)), 2)
    monkeypatch.setattr(Landscape, "__call__", lambda self, bars, config, progress=None: _no_folds(config))
    with pytest.raises(ValueError, match="no fold was evaluated"):
        search_agent(BARS, BASE, 2)


def _no_folds(config: AgentEvaluationConfig) -> AgentEvaluation:
    ev = AgentEvaluation(config=config, metrics=pd.DataFrame())
    ev.headline = {"pairs_beat_bh": float("nan")}
    ev.details = {"n_folds": 0}
    return ev


def _invoke(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *args: str) -> Any:
    monkeypatch.setenv("KRX_VAR_DIR", str(tmp_path))
    from pipeline.config import get_settings

    get_settings.cache_clear()
    try:
        return CliRunner().invoke(app, ["evaluate", "--symbol", "229200", "--years", "2019", *args])
    finally:
        get_settings.cache_clear()


def test_krx_evaluate_search_adds_its_trials_to_the_ledger_and_tuned_runs_the_winner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake: Landscape
) -> None:
    if not (SHARED_KRX_DATA / "229200.csv").exists():
        pytest.skip(f"no shared KRX data at {SHARED_KRX_DATA}")
    base = AgentEvaluationConfig(years=(2019,), seeds=(0, 1), total_steps=20_000)
    earlier = [_ledger_trial("base", {}, 0.3, base), _ledger_trial("pooled", {"pooled": True}, 0.35, base)]
    ledger = tuning.write_tuning(Tuning(base, earlier), tmp_path / "repo")
    result = _invoke(tmp_path, monkeypatch, "--search", "2", "--seeds", "2", "--ledger", str(ledger))
    assert result.exit_code == 0, result.output
    assert "2 earlier trials from" in result.output and "search 2/2 search-" in result.output
    assert "search: 1 earlier trials of this run seed the sampler" in result.output
    saved = json.loads((tmp_path / "evaluate" / TUNING_FILE).read_text())
    assert saved["configurations"] == 6 and len(load_trials(tmp_path / "evaluate" / TUNING_FILE)) == 6
    assert saved["chosen"]["candidate"].startswith("search-")  # the stand-in scores every search ≥ 0.42
    assert f"chosen: {saved['chosen']['candidate']}/ensemble of 6 trials" in result.output
    config = chosen_config(tmp_path / "evaluate" / TUNING_FILE, base)
    ran = [(c.reward, c.total_steps, c.levels, c.ent_coef, c.drawdown_penalty) for c in fake.configs]
    assert (config.reward, config.total_steps, config.levels, config.ent_coef, config.drawdown_penalty) in ran
    assert config.policy == "ensemble" and config.configurations == 6 and config.splits == ("val", "test")


def test_krx_evaluate_search_refuses_what_makes_no_sense(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not (SHARED_KRX_DATA / "229200.csv").exists():
        pytest.skip(f"no shared KRX data at {SHARED_KRX_DATA}")
    both = _invoke(tmp_path, monkeypatch, "--search", "2", "--tune")
    assert both.exit_code == 2 and "give one" in both.output
    named = _invoke(tmp_path, monkeypatch, "--search", "2", "--candidates", "base")
    assert named.exit_code == 2 and "--search proposes its own" in named.output
    zero = _invoke(tmp_path, monkeypatch, "--search", "0")
    assert zero.exit_code == 2 and "--search" in zero.output
    assert not (tmp_path / "evaluate" / TUNING_FILE).exists()


def test_a_search_that_crashes_keeps_every_proposal_it_finished(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake: Landscape
) -> None:
    if not (SHARED_KRX_DATA / "229200.csv").exists():
        pytest.skip(f"no shared KRX data at {SHARED_KRX_DATA}")
    real_call = Landscape.__call__

    def dies_on_the_second(
        self: Landscape, bars: Any, config: AgentEvaluationConfig, progress: Any = None
    ) -> Any:
        if self.configs:
            raise MemoryError("killed while training")
        return real_call(self, bars, config, progress)

    monkeypatch.setattr(Landscape, "__call__", dies_on_the_second)
    base = AgentEvaluationConfig(years=(2019,), seeds=(0, 1), total_steps=20_000)
    ledger = tuning.write_tuning(Tuning(base, [_ledger_trial("base", {}, 0.3, base)]), tmp_path / "repo")
    result = _invoke(tmp_path, monkeypatch, "--search", "3", "--seeds", "2", "--ledger", str(ledger))
    assert isinstance(result.exception, MemoryError)
    kept = load_trials(tmp_path / "evaluate" / TUNING_FILE)
    assert len(kept) == 3 and sum(t.candidate.startswith("search-") for t in kept) == 2
    # Named candidates are saved the same way, one candidate at a time.
    fake.configs.clear()
    again = _invoke(tmp_path, monkeypatch, "--tune", "--candidates", "levels5,budget_2x", "--seeds", "2")
    assert isinstance(again.exception, MemoryError)
    kept = load_trials(tmp_path / "evaluate" / TUNING_FILE)
    assert len(kept) == 5 and {t.candidate for t in kept} >= {"base", "levels5"}
