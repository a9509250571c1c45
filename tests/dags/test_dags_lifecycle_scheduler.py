"""The model-lifecycle DAGs under the real scheduler (LocalExecutor on SQLite), chained by Assets as in
production, not `airflow dags test`: a `features` event starts `cluster_regimes`, which stores the regimes
of the spec that has bars and emits `regimes`, which starts `train_agent` for that spec — its seeds mapped
in the pool `train_slots`, a version registered and gated in MLflow, the parent run ended.

An asset-triggered run has only its DAG's default params: the tiny training budget comes from the settings
(`KRX_MODEL_SPECS`), which the scheduler's task processes inherit."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from pipeline.config import Settings
from pipeline.registry.tracking import configure_mlflow
from pipeline.store import read_bars, read_regimes, upsert_bars
from pipeline.store.db import create_store_engine
from pipeline.store.migrate import upgrade
from tests.dags.conftest import LENIENT_GATE
from tests.dags.scheduler import (
    airflow_running,
    create_pool,
    diagnostics,
    post_asset_event,
    query,
    scheduler_env,
    skip_missed_cron_run,
    unpause,
    wait_for,
    wait_parsed,
)
from tests.registry.factories import TINY_PARAMS
from tests.registry.stored import synthetic_bars

pytestmark = [
    pytest.mark.slow,
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy:DeprecationWarning"),
]

#: The one spec with bars (a one-stock universe); the other specs have none and are skipped.
SPEC, SYMBOL = "stocks-1d", "005930"
MODEL = f"krx-a3c-{SPEC}"
#: One fold of TINY_PARAMS (200 training + 60 validation + 60 test bars and the embargoes) fits.
N_BARS = 400
#: From the event to the end of the training; generous (7 min on a shared 2-core machine under a load of
#: 6-10): the wait returns as soon as the run ends.
DEADLINE_S = 600
RUNS = "SELECT dag_id, run_type, state FROM dag_run WHERE run_type != 'manual' ORDER BY id"
SEED_TASKS = """
SELECT t.map_index, t.pool, t.state FROM task_instance t JOIN dag_run r
  ON r.dag_id = t.dag_id AND r.run_id = t.run_id
WHERE t.dag_id = 'train_agent' AND t.task_id = 'train_seed' AND r.run_type = 'asset_triggered'
"""
REGIMES_EVENTS = "SELECT e.id FROM asset_event e JOIN asset a ON a.id = e.asset_id WHERE a.name = 'regimes'"
#: The events that started each asset-triggered run: (run's DAG, asset, source DAG).
TRIGGERS = """
SELECT r.dag_id, a.name, e.source_dag_id FROM dagrun_asset_event d
JOIN asset_event e ON e.id = d.event_id JOIN asset a ON a.id = e.asset_id
JOIN dag_run r ON r.id = d.dag_run_id
"""


def _settled(home: Path) -> bool:
    """A `train_agent` run has finished, or none will: `cluster_regimes` failed or emitted no `regimes`."""
    runs = {(d, s) for d, _, s in query(home, RUNS)}
    if {("train_agent", "success"), ("train_agent", "failed"), ("cluster_regimes", "failed")} & runs:
        return True
    return ("cluster_regimes", "success") in runs and not query(home, REGIMES_EVENTS)


def test_a_features_event_leads_the_scheduler_through_regimes_to_a_gated_version(
    fresh_airflow_home: Path, tmp_path: Path
) -> None:
    home, var, logs = fresh_airflow_home, tmp_path / "var", tmp_path / "logs"
    logs.mkdir()
    engine = create_store_engine(f"sqlite:///{var / 'market.db'}")
    upgrade(engine)
    upsert_bars(synthetic_bars(SYMBOL, N_BARS), engine, source="test")
    env = scheduler_env(
        home,
        var,
        {
            "KRX_STOCK_SYMBOLS": SYMBOL,
            "KRX_MODEL_SPECS": json.dumps({SPEC: TINY_PARAMS}),
            "KRX_PROMOTION_GATE": json.dumps(LENIENT_GATE),
        },
    )
    started = time.monotonic()
    with airflow_running(env, logs):
        wait_parsed(logs, home, "cluster_regimes", "train_agent")
        create_pool(env, "train_slots", 2, "A3C training seeds")
        skip_missed_cron_run(env, home, "train_agent")  # else unpausing trains at once (catchup off)
        unpause(env, "cluster_regimes", "train_agent")
        post_asset_event(env, home, "features", {})
        wait_for("cluster_regimes, then train_agent", lambda: _settled(home), logs, home, DEADLINE_S)
        print(f"from the features event to a finished training: {time.monotonic() - started:.0f} s")
        runs, seeds, triggers = query(home, RUNS), query(home, SEED_TASKS), query(home, TRIGGERS)
        why = diagnostics(logs, home)

    assert runs == [
        ("cluster_regimes", "asset_triggered", "success"),
        ("train_agent", "asset_triggered", "success"),
    ], why
    assert sorted(triggers, key=str) == [
        ("cluster_regimes", "features", None),  # posted through the REST API
        ("train_agent", "regimes", "cluster_regimes"),
    ], why
    assert sorted(seeds) == [(0, "train_slots", "success"), (1, "train_slots", "success")], why
    _check_regimes_and_version(engine, var)
    engine.dispose()


def _check_regimes_and_version(engine: sa.Engine, var: Path) -> None:
    labels = read_regimes(SPEC, engine=engine)
    assert len(labels) == len(read_bars(SYMBOL, "1d", engine=engine)) == N_BARS
    client = configure_mlflow(Settings(var_dir=var))
    (version,) = client.search_model_versions(f"name = '{MODEL}'")
    assert version.tags["gate.decision"] == "champion" and "gate.deflated_sharpe.value" in version.tags
    assert client.get_model_version_by_alias(MODEL, "champion").version == version.version
    parent = client.get_run(version.tags["krx.training_run"])
    assert parent.info.status == "FINISHED" and parent.data.tags["gate.decision"] == "champion"
    params = parent.data.params  # the settings' budget, not the spec's default
    assert params["spec.mode"] == "sync" and params["spec.total_steps"] == str(TINY_PARAMS["total_steps"])
