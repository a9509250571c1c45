"""MLflow tracking of a training: parent and nested seed runs, params, curves with steps, eval and baseline
metrics, reproducibility artifacts; identical metrics for the same seed; no secret anywhere; a quiet
console."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from pipeline.backtest.walkforward import make_folds
from pipeline.config import get_settings
from pipeline.registry.evaluation import reevaluate_agent
from pipeline.registry.gate import GateRules, evaluate_gate
from pipeline.registry.promotion import apply_decision
from pipeline.registry.register import register_agent
from pipeline.registry.tracking import Tracker, bars_fingerprint, mlflow_log_file
from pipeline.rl.train import train
from tests.registry.factories import market_bars, tiny_spec, wf_rows

#: MLflow's own SQLAlchemy mappings warn once per process; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy:DeprecationWarning")

SENTINELS = {
    "KRX_KIS_APP_KEY": "PSsentinelAPPKEY0000000000000000000",
    "KRX_KIS_APP_SECRET": "sentinelSECRET" + "x" * 40,
    "KRX_KIS_ACCOUNT_NO": "87654321",
    "KRX_KIS_FUTURES_ACCOUNT_NO": "12348765",
    "KRX_DATABASE_URL": "postgresql+psycopg://trader:sentinelDBPASS@127.0.0.1:5432/krx",
}


def _artifact(client: object, run_id: str, path: str) -> str:
    return Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=path)).read_text()


def test_a_training_is_one_parent_run_with_a_nested_run_per_seed(tracker: Tracker) -> None:
    spec, bars = tiny_spec("stocks-1d"), market_bars()
    parent = tracker.start_training(spec, bars)
    children = [tracker.start_seed_run(parent, seed, spec) for seed in spec.seeds]
    client = tracker.client
    for seed, run_id in zip(spec.seeds, children, strict=True):
        run = client.get_run(run_id)
        assert run.data.tags["mlflow.parentRunId"] == parent["run_id"]
        assert run.data.params["train.seed"] == str(seed)
    params = client.get_run(parent["run_id"]).data.params
    assert params["spec.symbols"] == str(list(spec.symbols)) and params["train.learning_rate"] == "0.0007"
    assert params["walkforward.n_folds"] == "1" and params["train.env.levels"] == "[0.0, 1.0]"
    data = json.loads(_artifact(client, parent["run_id"], "data/training_bars.json"))
    assert data["sha256"] == bars_fingerprint(bars)["sha256"] and data["rows"] == len(bars)
    assert data["first"].startswith(str(bars.index[0].date()))
    features = json.loads(_artifact(client, parent["run_id"], "data/feature_set.json"))
    assert features["feature_set"] == "basic"
    resolved = json.loads(_artifact(client, parent["run_id"], "config/resolved_config.json"))
    assert resolved["train_config"]["env"]["window"] == 4
    experiment = client.get_experiment(parent["experiment_id"])
    assert experiment.name == "krx-a3c-stocks-1d"
    assert experiment.artifact_location.startswith(get_settings().var_dir.resolve().as_uri())
    tracker.finish_training(parent)
    assert client.get_run(parent["run_id"]).info.status == "FINISHED"


def test_changing_one_bar_changes_the_data_hash() -> None:
    bars = market_bars()
    edited = bars.copy()
    edited.iloc[100, 3] += 1.0
    assert bars_fingerprint(bars)["sha256"] != bars_fingerprint(edited)["sha256"]
    assert bars_fingerprint(bars)["sha256"] == bars_fingerprint(bars.copy())["sha256"]


def test_training_curves_are_logged_with_the_trainers_steps(tracker: Tracker, trained) -> None:
    result = trained()
    parent = tracker.start_training(tiny_spec())
    run_id = tracker.start_seed_run(parent, 0)
    assert tracker.log_history(run_id, result.history) > 0
    client = tracker.client
    keys = set(client.get_run(run_id).data.metrics)
    assert {"train/steps_per_s", "train/explained_variance", "losses/policy", "losses/value"} <= keys
    assert not any(k.startswith("charts/") for k in keys)
    steps = [m.step for m in client.get_metric_history(run_id, "losses/value")]
    assert steps == sorted(steps) and steps == result.history["global_step"].astype(int).tolist()


def test_walkforward_rows_become_eval_and_baseline_metrics(tracker: Tracker) -> None:
    rows = wf_rows({"sharpe": 1.5}, seeds=(0, 1, 2))
    parent = tracker.start_training(tiny_spec())
    seed_run = tracker.start_seed_run(parent, 2)
    tracker.log_evaluation(parent["run_id"], rows)
    tracker.log_evaluation(seed_run, rows, seed=2)
    client = tracker.client
    metrics = client.get_run(parent["run_id"]).data.metrics
    assert metrics["eval/val/sharpe"] == pytest.approx(1.5)
    assert metrics["baseline/buy_and_hold/val/sharpe"] == pytest.approx(0.5)
    assert "baseline/buy_and_hold/test/max_drawdown" in metrics
    seed_metrics = client.get_run(seed_run).data.metrics
    assert seed_metrics["eval/val/sharpe"] == pytest.approx(1.55)  # seed 2 of the spread
    assert not any(k.startswith("baseline/") for k in seed_metrics)
    csv = _artifact(client, parent["run_id"], "evaluation/walkforward_metrics.csv")
    assert len(pd.read_csv(pd.io.common.StringIO(csv))) == len(rows)


def test_the_same_seed_in_sync_mode_gives_identical_metrics(tracker: Tracker) -> None:
    spec, bars = tiny_spec(), market_bars()
    folds = make_folds(len(bars), spec.walkforward_config())
    parent = tracker.start_training(spec, bars)
    runs = []
    for _ in range(2):
        result = train(spec.train_config(0), bars.iloc[: folds[-1].train.stop])
        run_id = tracker.start_seed_run(parent, 0, spec)
        tracker.log_history(run_id, result.history)
        tracker.log_evaluation(run_id, reevaluate_agent(result.agent, bars, folds), seed=0)
        runs.append(run_id)
    client = tracker.client
    first, second = (client.get_run(r).data.metrics for r in runs)
    assert first.keys() == second.keys() and "eval/test/sharpe" in first
    for key in first.keys() - {"train/steps_per_s"}:  # wall-clock speed is the only thing that varies
        history = [client.get_metric_history(r, key) for r in runs]
        assert [m.step for m in history[0]] == [m.step for m in history[1]], key
        values = [np.array([m.value for m in h]) for h in history]
        assert np.array_equal(values[0], values[1], equal_nan=True), key  # a flat agent's hit rate is NaN


def test_no_secret_reaches_any_param_tag_metric_or_artifact(
    monkeypatch: pytest.MonkeyPatch, agent, isolated_settings: Path
) -> None:
    for key, value in SENTINELS.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    tracker = Tracker(get_settings())
    spec, bars = tiny_spec(), market_bars()
    parent = tracker.start_training(spec, bars)
    seed_run = tracker.start_seed_run(parent, 0, spec)
    version = register_agent(agent, spec, tracker, seed_run, example=bars.iloc[-250:])
    decision = evaluate_gate(wf_rows({"sharpe": 1.5}), GateRules(), spec.periods_per_year)
    apply_decision(tracker.client, spec.registered_model_name, version, decision, [parent["run_id"]])
    tracker.finish_training(parent)
    secrets = [v for k, v in SENTINELS.items() if k != "KRX_DATABASE_URL"] + ["sentinelDBPASS"]
    logged = []
    for run in tracker.client.search_runs([parent["experiment_id"]]):
        logged += [*run.data.params.items(), *run.data.tags.items(), *run.data.metrics]
    logged += list(tracker.client.get_model_version(spec.registered_model_name, version).tags.items())
    text = json.dumps(logged, default=str)
    files = [p for p in isolated_settings.rglob("*") if p.is_file()]  # the store, artifacts, logs
    assert any(p.name == "mlflow.db" for p in files) and any(p.name == "model.pt" for p in files)
    blobs = [p.read_bytes() for p in files]
    for secret in secrets:
        assert secret not in text
        assert not any(secret.encode() in blob for blob in blobs), secret
    resolved = json.loads(_artifact(tracker.client, parent["run_id"], "config/resolved_config.json"))
    assert "kis_app_secret" not in resolved["settings"] and "***" in resolved["settings"]["database_url"]


def test_mlflow_chatter_goes_to_its_log_file_not_the_console(
    capfd: pytest.CaptureFixture[str], agent
) -> None:
    tracker = Tracker(get_settings())
    spec = tiny_spec()
    parent = tracker.start_training(spec, market_bars())
    register_agent(agent, spec, tracker, tracker.start_seed_run(parent, 0))
    out, err = capfd.readouterr()
    assert "INFO mlflow" not in err + out and "Successfully registered" not in err + out
    assert "Downloading artifacts" not in err + out
    assert "Successfully registered model" in mlflow_log_file(get_settings()).read_text()
