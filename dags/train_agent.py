"""
### train_agent

Trains, evaluates, registers and gates the A3C agent of one or more model specs, tracked in MLflow.
Runs when `cluster_regimes` updates the Asset `regimes` (training the specs its events name) or on Saturdays
at 06:00 KST (the specs in param `specs`); trigger it by hand with the form to change any param.

1. **prepare** — per spec: resolve the spec with the run's params (a bad value fails here, naming the
   field), read its bars (up to the run's time), cut its walk-forward folds and open the parent MLflow
   run (params, resolved config, data range and sha256, feature set). A spec without enough bars is
   skipped with a warning in the log. **open_trials** opens a nested run per trial (configuration × seed).
2. **train_seed** (dynamic task mapping, one per trial, pool `train_slots`) — one agent per fold on the
   fold's training window; `train/*` and `losses/*` curves reach MLflow while it trains; each fold's agent
   is an artifact of the trial's run. A3C workers are `fork`ed from the task process (targets live in the
   installed `pipeline` package, never in this file).
3. **evaluate_seed** (mapped) — each fold's agent and buy-and-hold, SMA crossover, momentum and random on
   the fold's validation and test windows (costs on, decisions fill at the next open): `eval/<split>/*`
   metrics, the rows, per-bar returns and equity / drawdown / position figures.
4. **register** — the trial with the best validation Sharpe (best configuration by its mean over seeds,
   then its best seed) registers its last fold's agent as a new version of `krx-a3c-<spec>`: one pyfunc
   with the features, regimes, scaling and policy.
5. **gate** — the promotion rules (`KRX_PROMOTION_GATE`) on the selected configuration's validation rows
   against buy-and-hold, the deflated Sharpe (trials = seeds × configurations), drawdown and turnover
   bounds, and the current champion re-evaluated on the same windows; the outcome and every rule are tags
   on the version and runs; `challenger` / `champion` move accordingly (nothing moves on a rejection).
6. **report** — a self-contained HTML report (agent vs baselines per split, gate, deflated Sharpe, PBO
   when several configurations were tried, bootstrap intervals over seeds and folds, regime summary,
   figures) under `<KRX_VAR_DIR>/reports/<spec>/` and as artifact `report/report.html` of the runs.
7. **end_run** — ends the parent run: `FINISHED` once gated, `FAILED` if any step failed.

**Pool.** Every `train_seed` takes a slot of `train_slots`; size it to the cores divided by the A3C
workers per seed (`n_workers`, default 2), e.g. on 16 cores:
`airflow pools set train_slots 8 "A3C training seeds"`.

**Params** (null keeps the spec's value): `specs`; budgets `total_steps` / `max_seconds` per fold and seed
(whichever is reached first); `seeds`; `mode` (`async` A3C processes or `sync`); `n_workers`; folds
`n_folds`, `val_size`, `test_size`, `embargo`, `min_train_size`; `feature_set`; `hyperparameters` (TrainConfig
overrides by dotted name, e.g. `{"learning_rate": 0.0005, "env.window": 32}`); `configurations` (a list of
such overrides, each tried with every seed).
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any, cast

import pendulum
from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, Param, dag, task
from krx_assets import REGIMES, TZ_NAME

if TYPE_CHECKING:
    from pipeline.registry.contracts import (
        GateOutcome,
        RegisteredVersion,
        ReportInfo,
        TrainedTrial,
        TrainingPlan,
        TrainParams,
        Trial,
        TrialEvaluation,
    )


#: How a mapped trial is labelled in the UI: ``<spec> c<configuration> seed <seed>``.
TRIAL_LABEL = (
    "{{ task.op_kwargs['trial']['spec'] }} c{{ task.op_kwargs['trial']['config_index'] }}"
    " seed {{ task.op_kwargs['trial']['seed'] }}"
)


def _optional(kind: str, description: str, **schema: Any) -> Param:
    return Param(None, type=["null", kind], description=description, **schema)


#: The trigger form; the keys are ``pipeline.registry.contracts.TrainParams``.
PARAMS = {
    "specs": Param(
        ["kospi200f-1d", "stocks-1d"],
        type="array",
        items={"type": "string"},
        description="Model specs to train (an asset-triggered run trains those its regimes events name).",
    ),
    "total_steps": _optional("integer", "Env steps per fold and seed.", minimum=1),
    "max_seconds": _optional("number", "Wall-clock seconds per fold and seed.", exclusiveMinimum=0),
    "seeds": _optional("array", "Agent seeds, e.g. [0, 1, 2, 3, 4].", items={"type": "integer"}),
    "mode": _optional(
        "string",
        "async: A3C worker processes; sync: one process, deterministic.",
        enum=[None, "async", "sync"],
    ),
    "n_workers": _optional("integer", "A3C worker processes per seed.", minimum=1),
    "n_folds": _optional("integer", "Walk-forward folds.", minimum=1),
    "val_size": _optional("integer", "Bars per validation window.", minimum=2),
    "test_size": _optional("integer", "Bars per test window.", minimum=2),
    "embargo": _optional("integer", "Bars dropped between train, validation and test.", minimum=0),
    "min_train_size": _optional("integer", "Fewest training bars of a fold.", minimum=10),
    "feature_set": _optional("string", "Feature builder, e.g. ta-v1."),
    "hyperparameters": Param(
        {}, type="object", description='TrainConfig overrides, e.g. {"learning_rate": 0.0005}.'
    ),
    "configurations": Param(
        [], type="array", items={"type": "object"}, description="Override sets to compare (each × seeds)."
    ),
}


@dag(
    dag_id="train_agent",
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("0 6 * * 6", timezone=TZ_NAME), assets=[REGIMES]
    ),
    start_date=pendulum.datetime(2025, 1, 1, tz=TZ_NAME),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=2)},
    tags=["krx", "ml", "training", "mlflow"],
    doc_md=__doc__,
    params=PARAMS,
)
def train_agent() -> None:
    @task
    def prepare(
        *,
        params: Any = None,
        triggering_asset_events: Any = None,
        logical_date: Any = None,
        dag_run: Any = None,
    ) -> list[TrainingPlan]:
        from pipeline.registry.contracts import specs_in
        from pipeline.registry.training import plan_training

        events = (triggering_asset_events or {}).get(REGIMES, [])
        specs = specs_in(e.extra for e in events) or list(params["specs"])
        end = logical_date or dag_run.run_after  # asset-triggered runs have no logical date
        run_key = f"{dag_run.dag_id}/{dag_run.run_id}"
        return plan_training(specs, cast("TrainParams", dict(params)), end, str(dag_run.run_type), run_key)

    @task
    def open_trials(plans: Any) -> list[Trial]:
        from pipeline.registry.training import open_trials

        return open_trials(plans)

    @task(pool="train_slots", map_index_template=TRIAL_LABEL)
    def train_seed(trial: Trial) -> TrainedTrial:
        from pipeline.registry.training import train_trial

        return train_trial(trial)

    @task
    def evaluate_seed(trained: TrainedTrial) -> TrialEvaluation:
        from pipeline.registry.training import evaluate_trial

        return evaluate_trial(trained)

    @task
    def register(plan: TrainingPlan, evaluations: Any) -> RegisteredVersion:
        from pipeline.registry.lifecycle import register_best

        # A slice reads every mapped XCom in one request (iterating probes past the end, logging a 404).
        return register_best(plan, list(evaluations[:]))

    @task
    def gate(registered: RegisteredVersion) -> GateOutcome:
        from pipeline.registry.lifecycle import gate_registered

        return gate_registered(registered)

    @task
    def report(gated: GateOutcome) -> ReportInfo:
        from pipeline.registry.lifecycle import write_report

        return write_report(gated)

    @task(trigger_rule="all_done")
    def end_run(plan: TrainingPlan) -> str:
        from pipeline.registry.lifecycle import finish_plan

        return finish_plan(plan)

    plans = prepare()
    evaluated = evaluate_seed.expand(trained=train_seed.expand(trial=open_trials(plans)))
    registered = register.partial(evaluations=evaluated).expand(plan=plans)
    reported = report.expand(gated=gate.expand(registered=registered))
    reported >> end_run.expand(plan=plans)


train_agent()
