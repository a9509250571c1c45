"""Choosing the configuration without training: ``evaluate_agent`` is replaced by a stand-in that records
the configuration of each candidate and answers chosen validation figures, so the candidates run, the
trials recorded, the lines a person reads, the winner and why, the files written and the configuration a
test run then uses are checked by hand in milliseconds (gaps found by mutation testing,
``tools/mutation.py``)."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from pipeline.backtest import tuning
from pipeline.backtest.evaluation import AgentEvaluation, AgentEvaluationConfig
from pipeline.backtest.tuning import (
    CANDIDATES,
    POLICIES,
    TUNING_FILE,
    Trial,
    Tuning,
    chosen_config,
    load_trials,
    merge_trials,
    resolve,
    tune_agent,
    write_tuning,
)

BASE = AgentEvaluationConfig(years=(2017, 2018, 2019), seeds=(0, 1, 2), total_steps=1000)
BARS = {"069500": pd.DataFrame()}


def figures(folds: float, mdd: float, sharpe: float, bh: float) -> dict[str, float]:
    return {"folds_beat_bh": folds, "mdd_not_worse": mdd, "mean_sharpe": sharpe, "mean_sharpe_bh": bh}


class FakeEvaluate:
    """Stands in for ``evaluate_agent``: records (bars, config), says one line through ``progress`` and
    answers the next of ``answers`` ((policies' figures, pairs_beat_bh, n_folds))."""

    def __init__(self, answers: list[tuple[dict[str, dict[str, float]], float, int]]) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[Any, AgentEvaluationConfig]] = []

    def __call__(self, bars: Any, config: AgentEvaluationConfig, progress: Any = None) -> AgentEvaluation:
        self.calls.append((bars, config))
        if progress:
            progress(f"evaluating {config.total_steps} steps")
        policies, pairs, n_folds = self.answers.pop(0)
        ev = AgentEvaluation(config=config, metrics=pd.DataFrame())
        ev.headline = {"pairs_beat_bh": pairs}
        ev.details = {"n_folds": n_folds} | ({"policies": policies} if policies else {})
        return ev


def install(monkeypatch: pytest.MonkeyPatch, answers: list[Any]) -> FakeEvaluate:
    fake = FakeEvaluate(answers)
    monkeypatch.setattr(tuning, "evaluate_agent", fake)
    return fake


ANSWERS = [
    ({"agent": figures(0.5, 0.75, 0.125, -0.05), "ensemble": figures(0.5, 1.0, 0.25, -0.05)}, 0.4, 12),
    ({"agent": figures(0.25, 0.5, -0.5, -0.05), "ensemble": figures(0.625, 0.5, -0.1, -0.05)}, 0.3, 12),
    ({"agent": figures(0.625, 1.0, 0.5, -0.05)}, 0.6, 11),
]


def test_every_candidate_runs_on_validation_only_and_each_policy_is_a_trial(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = install(monkeypatch, ANSWERS)
    lines: list[str] = []
    result = tune_agent(BARS, BASE, ["base", "levels5", "budget_2x"], progress=lines.append)
    assert [bars for bars, _ in fake.calls] == [BARS] * 3
    assert [config for _, config in fake.calls] == [
        replace(BASE, splits=("val",)),
        replace(BASE, levels=(0.0, 0.25, 0.5, 0.75, 1.0), splits=("val",)),
        replace(BASE, total_steps=2000, splits=("val",)),
    ]
    run = "3 seeds, 1000 steps, years 2017-2019"
    levels = {"levels": [0.0, 0.25, 0.5, 0.75, 1.0]}  # JSON-ready: a list
    assert result.trials == [
        Trial("base", "agent", {}, 0.5, 0.75, 0.125, -0.05, 0.4, 12, run=run),
        Trial("base", "ensemble", {}, 0.5, 1.0, 0.25, -0.05, 0.4, 12, run=run),
        Trial("levels5", "agent", levels, 0.25, 0.5, -0.5, -0.05, 0.3, 12, run=run),
        Trial("levels5", "ensemble", levels, 0.625, 0.5, -0.1, -0.05, 0.3, 12, run=run),
        Trial(
            "budget_2x", "agent", {"total_steps": 2000}, 0.625, 1.0, 0.5, -0.05, 0.6, 11,
            run="3 seeds, 2000 steps, years 2017-2019",
        ),
    ]  # fmt: skip
    assert result.base is BASE
    assert lines == [
        "candidate 1/3 base (defaults)",
        "evaluating 1000 steps",
        "  base/agent: validation folds_beat_bh 0.500, Sharpe 0.125 vs buy-and-hold -0.050",
        "  base/ensemble: validation folds_beat_bh 0.500, Sharpe 0.250 vs buy-and-hold -0.050",
        "candidate 2/3 levels5 {'levels': (0.0, 0.25, 0.5, 0.75, 1.0)}",
        "evaluating 1000 steps",
        "  levels5/agent: validation folds_beat_bh 0.250, Sharpe -0.500 vs buy-and-hold -0.050",
        "  levels5/ensemble: validation folds_beat_bh 0.625, Sharpe -0.100 vs buy-and-hold -0.050",
        "candidate 3/3 budget_2x {'total_steps': 2000}",
        "evaluating 2000 steps",
        "  budget_2x/agent: validation folds_beat_bh 0.625, Sharpe 0.500 vs buy-and-hold -0.050",
    ]
    # Two trials beat buy-and-hold in 0.625 of the folds; the larger Sharpe gap (0.55 against -0.05) wins.
    assert (result.best.candidate, result.best.policy) == ("budget_2x", "agent")


def test_without_a_progress_callback_nothing_is_said(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = install(monkeypatch, ANSWERS[:1])
    result = tune_agent(BARS, BASE, ["base"])
    assert len(result.trials) == 2 and len(fake.calls) == 1


def test_the_default_candidates_are_every_one_documented(monkeypatch: pytest.MonkeyPatch) -> None:
    one = ({"agent": figures(0.5, 0.5, 0.0, 0.0)}, 0.5, 1)
    fake = install(monkeypatch, [one] * len(CANDIDATES))
    result = tune_agent(BARS, BASE)
    assert [t.candidate for t in result.trials] == list(CANDIDATES)
    assert len(fake.calls) == 15
    # README's table: the defaults, finer levels, the penalties, twice the budget, a higher entropy bonus,
    # pooled training, ten times the budget (alone, with the drawdown penalty, the entropy bonus, the
    # differential Sharpe reward).
    assert CANDIDATES == {
        "base": {},
        "levels5": {"levels": (0.0, 0.25, 0.5, 0.75, 1.0)},
        "vol_penalty": {"volatility_penalty": 1.0},
        "dd_penalty": {"drawdown_penalty": 0.5},
        "dd_penalty_strong": {"drawdown_penalty": 1.0},
        "budget_2x": {"steps_factor": 2},
        "entropy_high": {"ent_coef": 0.05},
        "pooled": {"pooled": True, "steps_factor": 4},
        "budget_10x": {"steps_factor": 10},
        "budget_10x_dd": {"steps_factor": 10, "drawdown_penalty": 0.5},
        "budget_10x_entropy": {"steps_factor": 10, "ent_coef": 0.05},
        "budget_10x_dsr": {"steps_factor": 10, "reward": "differential_sharpe"},
        "pooled_40x": {"pooled": True, "steps_factor": 40},
        "budget_20x_dsr": {"steps_factor": 20, "reward": "differential_sharpe"},
        "budget_10x_dsr_entropy": {"steps_factor": 10, "reward": "differential_sharpe", "ent_coef": 0.05},
    }
    assert POLICIES == ("agent", "ensemble") and TUNING_FILE == "tuning.json"


def test_bad_requests_are_refused_with_what_is_known(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = install(monkeypatch, [])
    known = (
        "base, levels5, vol_penalty, dd_penalty, dd_penalty_strong, budget_2x, entropy_high, pooled, "
        "budget_10x, budget_10x_dd, budget_10x_entropy, budget_10x_dsr, pooled_40x, budget_20x_dsr, "
        "budget_10x_dsr_entropy"
    )
    with pytest.raises(ValueError, match=rf"^unknown candidate\(s\) nope, wild; known: {known}$"):
        tune_agent(BARS, BASE, ["base", "nope", "wild"])
    with pytest.raises(
        ValueError, match=r"^tuning needs at least 2 seeds \(the ensemble policy is a trial\)$"
    ):
        tune_agent(BARS, replace(BASE, seeds=(0,)), ["base"])
    assert fake.calls == []  # refused before anything ran
    install(monkeypatch, [({}, math.nan, 0), ({}, math.nan, 0)])
    with pytest.raises(
        ValueError, match=r"^no fold was evaluated: no symbol has a test year with enough training bars$"
    ):
        tune_agent(BARS, replace(BASE, seeds=(0, 1)), ["base", "dd_penalty"])


def test_two_seeds_are_enough(monkeypatch: pytest.MonkeyPatch) -> None:
    install(monkeypatch, ANSWERS[:1])
    result = tune_agent(BARS, replace(BASE, seeds=(4, 5), years=()), ["base"])
    assert result.trials[0].run == "2 seeds, 1000 steps, years -"


def trial(candidate: str, policy: str, folds: float, sharpe: float, bh: float = 0.0, run: str = "r") -> Trial:
    return Trial(candidate, policy, {}, folds, 1.0, sharpe, bh, 0.5, 10, run=run)


def test_the_winner_beats_buy_and_hold_in_most_folds_then_by_the_widest_gap() -> None:
    assert trial("a", "agent", 0.5, 0.3, bh=0.1).gap == pytest.approx(0.2)
    most = trial("most", "agent", 0.6, -1.0)
    assert Tuning(BASE, [trial("a", "agent", 0.5, 2.0), most]).best is most
    wide = trial("wide", "ensemble", 0.5, 0.3, bh=-0.2)
    narrow = trial("narrow", "agent", 0.5, 0.3, bh=0.1)
    assert Tuning(BASE, [narrow, wide]).best is wide
    assert Tuning(BASE, [wide, narrow]).best is wide
    # A NaN figure ranks below every number, however bad.
    flat = trial("flat", "agent", math.nan, 5.0)
    worst = trial("worst", "agent", 0.0, -9.0)
    assert Tuning(BASE, [flat, worst]).best is worst
    no_sharpe = trial("nan_gap", "agent", 0.5, math.nan)
    assert Tuning(BASE, [no_sharpe, trial("neg", "agent", 0.5, -9.0)]).best.candidate == "neg"
    assert flat.rank_key() == (-math.inf, 5.0) and no_sharpe.rank_key() == (0.5, -math.inf)
    assert trial("inf", "agent", math.inf, math.inf).rank_key() == (-math.inf, -math.inf)
    assert most.key == ("most", "agent", "r")


def test_the_table_is_best_first_with_the_gap_and_no_overrides() -> None:
    t = Tuning(
        BASE,
        [trial("a", "agent", 0.25, 0.0), trial("b", "ensemble", 0.75, 0.5), trial("c", "agent", 0.5, 0.0)],
    )
    table = t.table()
    assert table["candidate"].tolist() == ["b", "c", "a"]
    assert table["gap"].tolist() == [0.5, 0.0, 0.0]
    assert list(table.columns) == [
        "candidate", "policy", "folds_beat_bh", "mdd_not_worse", "mean_sharpe", "mean_sharpe_bh",
        "pairs_beat_bh", "n_folds", "run", "gap",
    ]  # fmt: skip


def test_the_tuning_file_holds_every_trial_and_the_choice(tmp_path: Path) -> None:
    chosen = Trial("levels5", "ensemble", {"levels": [0.0, 1.0]}, 0.75, 1.0, 0.5, 0.25, 0.5, 10, run="r")
    t = Tuning(BASE, [trial("base", "agent", 0.5, 0.0), chosen])
    out = tmp_path / "runs" / "evaluate"  # parents made
    path = write_tuning(t, out)
    assert path == out / "tuning.json"
    text = path.read_text()
    assert text.startswith('{\n  "split": "val",\n  "chosen": {\n    "candidate": "levels5",')
    data = json.loads(text)
    assert data["split"] == "val" and data["configurations"] == 2
    assert data["chosen"] == {
        "candidate": "levels5",
        "policy": "ensemble",
        "overrides": {"levels": [0.0, 1.0]},
    }
    assert data["trials"][1] == {
        "candidate": "levels5", "policy": "ensemble", "overrides": {"levels": [0.0, 1.0]},
        "folds_beat_bh": 0.75, "mdd_not_worse": 1.0, "mean_sharpe": 0.5, "mean_sharpe_bh": 0.25,
        "pairs_beat_bh": 0.5, "n_folds": 10, "run": "r", "gap": 0.25,
    }  # fmt: skip
    assert data["base"]["seeds"] == [0, 1, 2] and data["base"]["total_steps"] == 1000
    csv = pd.read_csv(out / "tuning.csv")
    assert csv["candidate"].tolist() == ["levels5", "base"] and "overrides" not in csv.columns
    assert list(csv.columns) == list(t.table().columns)  # no index column
    assert load_trials(path) == t.trials
    assert write_tuning(t, out) == path  # a second run writes over the first
    assert load_trials(tmp_path / "none.json") == []


def test_the_chosen_configuration_is_the_winners_with_every_trial_counted(tmp_path: Path) -> None:
    chosen = Trial("levels5", "ensemble", {"levels": [0.0, 1.0], "ent_coef": 0.05}, 0.75, 1, 0.5, 0, 0.5, 9)
    t = Tuning(BASE, [trial("base", "agent", 0.5, 0.0), trial("base", "ensemble", 0.5, 0.0), chosen])
    path = write_tuning(t, tmp_path)
    config = chosen_config(path, BASE)
    assert config == replace(BASE, levels=(0.0, 1.0), ent_coef=0.05, policy="ensemble", configurations=3)
    assert chosen_config(path, replace(BASE, configurations=5)).configurations == 5
    assert chosen_config(path, replace(BASE, configurations=3)).configurations == 3
    missing = tmp_path / "absent.json"
    with pytest.raises(
        FileNotFoundError, match=rf"^no tuning at {missing}: run `krx evaluate --tune` first$"
    ):
        chosen_config(missing, BASE)


def test_a_rerun_of_the_same_trial_replaces_it_and_nothing_else_is_dropped() -> None:
    old = trial("base", "agent", 0.5, 0.0)
    other = trial("base", "ensemble", 0.5, 0.0)
    rerun = trial("base", "agent", 0.75, 0.0)
    wider = trial("base", "agent", 0.25, 0.0, run="5 seeds")
    assert merge_trials([old, other], [rerun, wider]) == [rerun, other, wider]


def test_overrides_become_fields_with_the_budget_scaled() -> None:
    assert resolve(replace(BASE, total_steps=1001), {"steps_factor": 1.5, "ent_coef": 0.1}) == {
        "ent_coef": 0.1,
        "total_steps": 1501,
    }
    assert resolve(BASE, {"levels": (0.0, 1.0)}) == {"levels": (0.0, 1.0)}
    assert resolve(BASE, {}) == {}
