"""A training as the train_agent DAG runs it, step by step in process: params over the spec, curves
logged while training without changing it, trials on fixed data, the best trial on validation registered,
gated against the champion re-evaluated on the same windows, reported, and every step safe to retry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import pytest
import torch

from pipeline.config import get_settings
from pipeline.registry.contracts import TrainingPlan, Trial, TrialEvaluation
from pipeline.registry.lifecycle import finish_plan, gate_registered, register_best, select_best, write_report
from pipeline.registry.specs import SpecError
from pipeline.registry.tracking import Tracker
from pipeline.registry.training import (
    DataChanged,
    LiveMetrics,
    evaluate_trial,
    open_trials,
    plan_training,
    spec_overrides,
    train_trial,
    trial_spec,
)
from pipeline.rl.train import train
from pipeline.store import upsert_bars
from tests.registry.factories import market_bars, tiny_spec
from tests.registry.stored import store_market, use_specs

pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy:DeprecationWarning")

END = "2030-01-01"
#: A gate every version passes (the rules have their own tests): the first version becomes champion.
LENIENT_GATE = (
    '{"sharpe_margin_vs_buy_and_hold": -100, "min_dsr_prob": 0, "max_drawdown": 1,'
    ' "max_drawdown_vs_buy_and_hold": 100, "max_turnover": 10000, "sharpe_margin_vs_champion": -100}'
)


def test_a_metrics_callback_sees_every_update_and_changes_nothing() -> None:
    spec, bars = tiny_spec(), market_bars().iloc[:300]
    seen: list[dict[str, Any]] = []
    plain = train(spec.train_config(0), bars)
    watched = train(spec.train_config(0), bars, on_metrics=seen.append)
    clock = ["time", "charts/steps_per_s"]  # wall-clock speed is the only thing that varies
    pd.testing.assert_frame_equal(plain.history.drop(columns=clock), watched.history.drop(columns=clock))
    assert [m["global_step"] for m in seen] == watched.history["global_step"].tolist()
    for name, tensor in plain.agent.model.state_dict().items():
        assert torch.equal(tensor, watched.agent.model.state_dict()[name]), name


def test_live_metrics_continue_one_curve_across_folds(tracker: Tracker) -> None:
    parent = tracker.start_training(tiny_spec())
    run_id = tracker.start_seed_run(parent, 0)
    live = LiveMetrics(tracker.client, run_id, flush_s=0.0)
    for fold_steps in (100, 100):
        for step in (40, 100):
            live({"global_step": step, "losses/value": 1.0, "charts/steps_per_s": 5.0, "rank": 0})
        live.next_fold(fold_steps)
    steps = [m.step for m in tracker.client.get_metric_history(run_id, "losses/value")]
    assert steps == [40, 100, 140, 200]
    assert len(tracker.client.get_metric_history(run_id, "train/steps_per_s")) == 4
    assert live.points == 8


def test_run_params_override_the_spec_and_configurations_override_its_hyperparameters(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    use_specs(monkeypatch)
    given = spec_overrides(
        "stocks-1d", {"total_steps": 50, "seeds": None, "hyperparameters": {"n_envs": 2}}, get_settings()
    )
    assert given["total_steps"] == 50 and "seeds" not in given
    assert given["hyperparameters"]["n_envs"] == 2 and given["hyperparameters"]["env.window"] == 4  # merged
    spec = trial_spec("stocks-1d", given, {"learning_rate": 0.01})
    assert spec.hyperparameters["learning_rate"] == 0.01 and spec.train_config().n_envs == 2
    with pytest.raises(SpecError, match="learning_rate"):
        plan_training(["stocks-1d"], {"configurations": [{}, {"learning_rate": -1.0}]}, END)
    assert not Tracker(get_settings()).client.search_experiments(filter_string="name = 'krx-a3c-stocks-1d'")


def _evaluation(run_id: str, config: int, seed: int, val: float | None) -> TrialEvaluation:
    trial = {"run": {"run_id": run_id}, "config_index": config, "seed": seed}
    return TrialEvaluation(trial=trial, val_sharpe=val, test_sharpe=None, rows=1)  # type: ignore[typeddict-item]


def test_the_best_configuration_by_mean_then_its_best_seed_is_selected_and_nan_ranks_last() -> None:
    plan = {"spec": "s", "run": {"run_id": "p"}}
    evaluations = [
        _evaluation("p", 0, 0, 2.0),
        _evaluation("p", 0, 1, -1.0),  # configuration 0: mean 0.5
        _evaluation("p", 1, 0, 0.9),
        _evaluation("p", 1, 1, 0.8),  # configuration 1: mean 0.85
        _evaluation("other", 2, 0, 9.0),  # another training's trial
        _evaluation("p", 3, 0, None),  # NaN
    ]
    best = select_best(plan, evaluations)  # type: ignore[arg-type]
    assert (best["trial"]["config_index"], best["trial"]["seed"]) == (1, 0)


def _run_training(
    specs: list[str], params: dict[str, Any], key: str
) -> tuple[list[TrainingPlan], list[Trial]]:
    plans = plan_training(specs, params, END, run_key=key)  # type: ignore[arg-type]
    trials = open_trials(plans)
    assert plan_training(specs, params, END, run_key=key) == plans  # a retried prepare opens no new run
    assert open_trials(plans) == trials
    return plans, trials


@pytest.mark.slow
def test_a_training_registers_gates_and_reports_the_best_trial_and_a_second_meets_the_champion(
    monkeypatch: pytest.MonkeyPatch, isolated_settings: Path
) -> None:
    use_specs(monkeypatch, KRX_PROMOTION_GATE=LENIENT_GATE)
    market = store_market()
    params = {"configurations": [{}, {"learning_rate": 0.002}]}
    plans, trials = _run_training(["stocks-1d"], params, "dag/run-1")
    assert len(trials) == 4 and {t["config_index"] for t in trials} == {0, 1}
    evaluations = [evaluate_trial(train_trial(t)) for t in trials]
    registered = register_best(plans[0], evaluations)
    assert register_best(plans[0], evaluations)["version"] == registered["version"] == "1"  # retry
    gated = gate_registered(registered)
    assert gated["outcome"] == "champion" and gated["aliases"]["champion"] == "1"
    assert gate_registered(registered)["outcome"] == "champion"  # a retried gate keeps its decision
    report = write_report(gated)
    html = Path(report["path"]).read_text()
    assert "Probability of backtest overfitting</b> (CSCV" in html  # two configurations: PBO computed
    assert "4 seeds" not in html and "2 seeds × 2 configurations = 4" in html
    assert finish_plan(plans[0]) == "FINISHED"
    client = Tracker(get_settings()).client
    assert client.get_run(plans[0]["run"]["run_id"]).data.metrics["stats/n_trials"] == 4

    second, second_trials = _run_training(["stocks-1d"], {"seeds": [3]}, "dag/run-2")
    registered2 = register_best(second[0], [evaluate_trial(train_trial(t)) for t in second_trials])
    gated2 = gate_registered(registered2)
    assert gated2["aliases"]["champion"] in {"1", "2"}
    parent = client.get_run(second[0]["run"]["run_id"])
    assert parent.data.tags["krx.champion_compared"] == "1"
    assert "gate.beats_champion.value" in parent.data.tags
    champion_rows = mlflow.artifacts.download_artifacts(
        run_id=parent.info.run_id, artifact_path="evaluation/champion_metrics.csv"
    )
    assert set(pd.read_csv(champion_rows)["split"]) == {"val", "test"}
    html2 = Path(write_report(gated2)["path"]).read_text()
    assert "<td>champion</td>" in html2 and "v1" in html2
    assert "one configuration was tried" in html2

    changed = market[market["symbol"] == "005930"].iloc[[5]]
    upsert_bars(changed.assign(close=changed["close"] * 1.01, high=changed["high"] * 1.01), source="test")
    with pytest.raises(DataChanged):
        train_trial(second_trials[0])
    assert finish_plan(second[0]) == "FINISHED"


def test_an_unfinished_training_ends_failed_with_its_open_seed_runs(
    monkeypatch: pytest.MonkeyPatch, tracker: Tracker
) -> None:
    use_specs(monkeypatch)
    store_market()
    (plan,) = plan_training(["kospi200f-1d"], {}, END, run_key="dag/run-x")
    trials = open_trials([plan])
    assert finish_plan(plan) == "FAILED"
    client = Tracker(get_settings()).client
    assert client.get_run(plan["run"]["run_id"]).info.status == "FAILED"
    assert {client.get_run(t["seed_run_id"]).info.status for t in trials} == {"FAILED"}
