"""`airflow dags test` of the model-lifecycle DAGs on simulator data: `cluster_regimes` stores and logs
each spec's regimes (and skips a spec without bars); `train_agent` (params from the trigger form, one
trial per seed as mapped tasks, A3C worker processes forked inside them) registers a version per spec
with its report, gates it, and the pyfunc loaded by alias decides exactly like the agent in process."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pytest
import sqlalchemy as sa

from pipeline.config import get_settings
from pipeline.registry.pyfunc import to_model_input
from pipeline.registry.tracking import configure_mlflow
from pipeline.registry.training import load_fold_agent
from pipeline.store import read_bars, read_regimes
from pipeline.store.db import create_store_engine
from pipeline.store.migrate import upgrade
from tests.dags.conftest import APP_SECRET, LENIENT_GATE, airflow_env, kis_env, run_airflow

pytestmark = [
    pytest.mark.slow,
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy:DeprecationWarning"),
]

SPECS = ["kospi200f-1d", "stocks-1d"]
#: Folds that fit the ~470 daily bars 700 days of simulator history give (both DAGs read these settings).
FOLDS = {"n_folds": 1, "val_size": 60, "test_size": 60, "min_train_size": 200}
#: No 1-minute futures bars are stored: `kospi200f-1m` is skipped.
REGIMES_CONF = {"specs": [*SPECS, "kospi200f-1m"]}
#: What the trigger form would send: a tiny training, A3C worker processes forked inside the task.
CONF = {
    "specs": SPECS,
    "seeds": [0, 1],
    "total_steps": 600,
    "mode": "async",
    "n_workers": 2,
    "feature_set": "basic",
    "hyperparameters": {"n_envs": 4, "n_steps": 10, "env.window": 4, "env.episode_length": 64},
}
DECISION_KEYS = ("action", "target_level", "value", "regime", "simulated_position")


def _env(home: Path, var: Path, simulator: str) -> dict[str, str]:
    specs = {name: {**FOLDS, "hyperparameters": {"regimes.k_max": 3}} for name in SPECS}
    extra = {
        **kis_env(simulator),
        "KRX_INGEST_HISTORY_DAYS": "700",
        "KRX_MODEL_SPECS": json.dumps(specs),
        "KRX_PROMOTION_GATE": json.dumps(LENIENT_GATE),
    }
    return airflow_env(home, var, extra)


def _ok(proc: Any) -> None:
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    assert APP_SECRET not in proc.stdout + proc.stderr


def _check_regimes(engine: sa.Engine, client: mlflow.MlflowClient) -> None:
    for name in SPECS:
        labels = read_regimes(name, engine=engine)
        symbols = ["KOSPI200F"] if name == "kospi200f-1d" else ["005930", "000660"]
        assert len(labels) == len(read_bars(symbols, "1d", engine=engine)) > 400
        assert labels["model_id"].nunique() == 1 and (labels["regime"] >= 0).mean() > 0.9
        run = client.get_run(labels["run_id"].iloc[0])
        k = int(run.data.metrics["regimes/k"])
        assert 2 <= k <= 3 and labels["regime"].max() == k - 1
        assert {f"regimes/bic/k{i}" for i in (2, 3)} <= run.data.metrics.keys()
        assert {
            f"regimes/{r}/{m}" for r in range(k) for m in ("mean_return", "ann_volatility", "share")
        } <= set(run.data.metrics)
        assert run.data.tags["regimes.criterion"] == "bic" and run.info.status == "FINISHED"
        files = {f.path for f in client.list_artifacts(run.info.run_id, "regimes")}
        assert {"regimes/regimes.png", "regimes/summary.csv"} <= files
    assert read_regimes("kospi200f-1m", engine=engine).empty


def _check_training(name: str, client: mlflow.MlflowClient, var: Path) -> None:
    model = f"krx-a3c-{name}"
    (mv,) = client.search_model_versions(f"name = '{model}'")
    assert mv.tags["gate.decision"] == "champion" and "gate.deflated_sharpe.value" in mv.tags
    assert client.get_model_version_by_alias(model, "champion").version == mv.version
    parent_id = mv.tags["krx.training_run"]
    parent = client.get_run(parent_id)
    assert parent.info.status == "FINISHED" and parent.data.tags["gate.decision"] == "champion"
    assert parent.data.params["spec.total_steps"] == "600" and parent.data.params["spec.mode"] == "async"
    assert (
        "baseline/buy_and_hold/val/sharpe" in parent.data.metrics and "stats/dsr_prob" in parent.data.metrics
    )
    report = Path(mlflow.artifacts.download_artifacts(run_id=parent_id, artifact_path="report/report.html"))
    html = report.read_text()
    assert "Agent vs baselines" in html and "Deflated Sharpe" in html and "data:image/png;base64," in html
    assert mv.tags["krx.report"] == f"runs:/{parent_id}/report/report.html"
    assert (var / "reports" / name / f"{model}-v{mv.version}.html").read_text() == html
    seeds = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent_id}'")
    assert sorted(r.data.tags["krx.seed"] for r in seeds) == ["0", "1"]
    for run in seeds:
        assert run.info.status == "FINISHED" and "eval/test/sharpe" in run.data.metrics
        curve = client.get_metric_history(run.info.run_id, "losses/value")
        assert len(curve) > 5  # logged while training, one point per update
    _check_pyfunc(name, model, mv.run_id, client)


def _check_pyfunc(name: str, model: str, run_id: str, client: mlflow.MlflowClient) -> None:
    agent = load_fold_agent(client, run_id, 0)  # one fold: the registered agent is fold 0's
    pyfunc = mlflow.pyfunc.load_model(f"models:/{model}@champion")
    symbol = "KOSPI200F" if name == "kospi200f-1d" else "005930"
    bars = read_bars(symbol, "1d").set_index("ts")[["open", "high", "low", "close", "volume"]]
    bars.index = bars.index.tz_convert("Asia/Seoul")
    for end in (len(bars) - 100, len(bars)):
        window = bars.iloc[end - 250 : end]
        row = pyfunc.predict(to_model_input(window)).iloc[0]
        expected = agent.decide(window)
        for key in DECISION_KEYS:
            assert row[key] == expected[key], (name, key)
        assert np.array_equal(np.asarray(row["probabilities"]), np.asarray(expected["probabilities"]))


def _check_mapping(home: Path) -> None:
    """One `train_seed` per (spec, seed), each in the `train_slots` pool, all successful."""
    airflow_db = sa.create_engine(f"sqlite:///{home / 'airflow.db'}")
    query = sa.text(
        "SELECT map_index, pool, state, rendered_map_index FROM task_instance WHERE dag_id = 'train_agent' "
        "AND task_id = 'train_seed' AND run_id = (SELECT run_id FROM dag_run WHERE dag_id = 'train_agent' "
        "ORDER BY id DESC LIMIT 1)"
    )
    with airflow_db.connect() as conn:
        rows = conn.execute(query).all()
    airflow_db.dispose()
    assert sorted(r.map_index for r in rows) == [0, 1, 2, 3]
    assert {(r.pool, r.state) for r in rows} == {("train_slots", "success")}
    assert {r.rendered_map_index for r in rows} == {f"{s} c0 seed {i}" for s in SPECS for i in (0, 1)}


def test_regimes_then_training_register_gate_and_report_a_version_per_spec(
    airflow_home: Path, simulator: str, tmp_path: Path
) -> None:
    var = tmp_path / "var"  # also the tests' own KRX_VAR_DIR: this process reads the same stores
    env = _env(airflow_home, var, simulator)
    engine = create_store_engine(f"sqlite:///{var / 'market.db'}")
    upgrade(engine)
    _ok(run_airflow(["pools", "set", "train_slots", "2", "A3C training seeds"], env))
    _ok(run_airflow(["dags", "test", "ingest_bars", "2025-09-10"], env))

    started = time.perf_counter()
    _ok(run_airflow(["dags", "test", "cluster_regimes", "2025-09-10", "-c", json.dumps(REGIMES_CONF)], env))
    regimes_s = time.perf_counter() - started
    started = time.perf_counter()
    _ok(run_airflow(["dags", "test", "train_agent", "2025-09-10", "-c", json.dumps(CONF)], env, timeout=600))
    train_s = time.perf_counter() - started
    print(f"cluster_regimes {regimes_s:.0f} s, train_agent {train_s:.0f} s")

    _check_mapping(airflow_home)
    client = configure_mlflow(get_settings())
    _check_regimes(engine, client)
    for name in SPECS:
        _check_training(name, client, var)
    engine.dispose()
