"""The model-lifecycle DAGs as parsed and their task bodies called directly: features → cluster_regimes →
regimes → train_agent (or the weekly cron), trials mapped in the `train_slots` pool, the trigger form's
params typed once, the `regimes` event only when a spec was fitted, and the specs it names trained."""

from __future__ import annotations

import itertools
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pendulum
import pytest

from pipeline.registry.contracts import RegimesSummary, TrainParams

DAGS = Path(__file__).parents[2] / "dags"
RUN_AFTER = pendulum.datetime(2025, 9, 13, 6, 0, tz="Asia/Seoul")


@pytest.fixture(scope="module")
def dags() -> dict[str, Any]:
    from airflow.dag_processing.dagbag import BundleDagBag

    bag = BundleDagBag(dag_folder=str(DAGS), bundle_path=DAGS)
    assert bag.import_errors == {}
    return dict(bag.dags)


def test_regimes_follow_features_and_training_follows_regimes_or_a_weekly_cron(dags: dict[str, Any]) -> None:
    from krx_assets import FEATURES, REGIMES, REGIMES_WRITTEN

    cluster = dags["cluster_regimes"]
    assert cluster.timetable.asset_condition.objects == (FEATURES,)
    assert {o for t in cluster.tasks for o in t.outlets} == {REGIMES_WRITTEN}
    train = dags["train_agent"]
    assert type(train.timetable).__name__ == "AssetOrTimeSchedule"
    assert train.timetable.asset_condition.objects == (REGIMES,)
    cron = repr(train.timetable.timetable)  # Saturdays 06:00 in Seoul
    assert "expression='0 6 * * 6'" in cron and "timezone='Asia/Seoul'" in cron


def test_training_maps_trials_in_the_train_slots_pool_and_always_ends_its_run(dags: dict[str, Any]) -> None:
    train = dags["train_agent"]
    order = ["prepare", "open_trials", "train_seed", "evaluate_seed", "register", "gate", "report", "end_run"]
    assert sorted(train.task_ids, key=order.index) == order
    for upstream, downstream in itertools.pairwise(order):
        assert downstream in train.get_task(upstream).downstream_task_ids, (upstream, downstream)
    mapped = {t.task_id for t in train.tasks if t.is_mapped}
    assert mapped == {"train_seed", "evaluate_seed", "register", "gate", "report", "end_run"}
    assert train.get_task("train_seed").pool == "train_slots"
    assert {t.pool for t in train.tasks} == {"train_slots", "default_pool"}
    assert train.get_task("end_run").trigger_rule == "all_done"
    assert "airflow pools set train_slots" in train.doc_md


def test_the_trigger_form_has_exactly_the_typed_params(dags: dict[str, Any]) -> None:
    params = dags["train_agent"].params
    assert set(params.keys()) == set(TrainParams.__annotations__)
    assert params["specs"] == ["kospi200f-1d", "stocks-1d"] and params["total_steps"] is None
    assert params.get_param("seeds").schema["type"] == ["null", "array"]
    assert params.get_param("mode").schema["enum"] == [None, "async", "sync"]


def test_an_asset_triggered_training_trains_the_specs_its_events_name(
    dags: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from krx_assets import REGIMES

    from pipeline.registry import training

    seen: dict[str, Any] = {}
    monkeypatch.setattr(training, "plan_training", lambda *a, **kw: seen.update(args=a) or [])
    prepare = dags["train_agent"].get_task("prepare").python_callable
    run = SimpleNamespace(
        run_after=RUN_AFTER, dag_id="train_agent", run_id="asset__1", run_type="asset_triggered"
    )
    events = {REGIMES: [SimpleNamespace(extra={"specs": ["stocks-1d"], "model_ids": {}})]}
    prepare(
        params={"specs": ["kospi200f-1d"]}, triggering_asset_events=events, logical_date=None, dag_run=run
    )
    specs, _, end, trigger, run_key = seen["args"]
    assert specs == ["stocks-1d"] and end == RUN_AFTER and trigger == "asset_triggered"
    assert run_key == "train_agent/asset__1"
    prepare(params={"specs": ["kospi200f-1d"]}, triggering_asset_events={}, logical_date=None, dag_run=run)
    assert seen["args"][0] == ["kospi200f-1d"]  # the cron or a hand trigger: the form's specs


class OutletEvents:
    """Records what a task emits through its outlets."""

    def __init__(self) -> None:
        self.added: list[tuple[str, object]] = []

    def __getitem__(self, key: object) -> OutletEvents:
        return self

    def add(self, asset: Any, extra: object = None) -> None:
        self.added.append((asset.name, extra))


def _summary(spec: str, status: str) -> RegimesSummary:
    return RegimesSummary(
        spec=spec,
        status=status,
        reason="",
        model_id=f"rg-{spec}",
        run_id="r",
        k=2,
        criterion="bic",
        train_start="",
        train_end="",
        labels=1,
    )


def test_a_regimes_event_is_emitted_only_when_a_spec_was_fitted(dags: dict[str, Any]) -> None:
    announce = dags["cluster_regimes"].get_task("announce").python_callable
    events = OutletEvents()
    announce([_summary("stocks-1d", "fitted"), None], outlet_events=events)
    assert events.added == [("regimes", {"specs": ["stocks-1d"], "model_ids": {"stocks-1d": "rg-stocks-1d"}})]
    nothing = OutletEvents()
    assert announce([None], outlet_events=nothing) is None and nothing.added == []
