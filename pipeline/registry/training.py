"""One training of a model spec, step by step as the ``train_agent`` DAG runs it: plan (data, parent run,
one trial per configuration and seed) → train a trial (an agent per walk-forward fold, curves logged to
MLflow while it trains) → evaluate it on validation and test against the baselines."""

from __future__ import annotations

import logging
import math
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Metric

from pipeline.config import Settings, get_settings
from pipeline.registry.backtests import FoldBacktests, backtest_agent, baselines_for
from pipeline.registry.contracts import (
    TrainedTrial,
    TrainingPlan,
    TrainParams,
    Trial,
    TrialEvaluation,
)
from pipeline.registry.data import NotEnoughData, SpecData, load_spec_data, spec_bars, spec_data_from
from pipeline.registry.specs import ModelSpec, resolve_spec
from pipeline.registry.tracking import TRAIN_METRIC_NAMES, Tracker, TrainingRun, ensure_experiment
from pipeline.rl.agent import TradingAgent
from pipeline.rl.train import train

log = logging.getLogger(__name__)

#: DAG params that override a spec field of the same name (None: keep the spec's).
SPEC_PARAM_KEYS = (
    "total_steps",
    "max_seconds",
    "seeds",
    "mode",
    "n_workers",
    "n_folds",
    "val_size",
    "test_size",
    "embargo",
    "min_train_size",
    "feature_set",
)
#: Where a trial's artifacts live in its seed run.
FOLD_AGENT = "folds/fold_{k}/agent"
METRICS_CSV, RETURNS_CSV = "evaluation/walkforward_metrics.csv", "evaluation/returns.csv"


class DataChanged(RuntimeError):
    """The stored bars of a training changed between its tasks (a backfill): rerun the training."""


# ---- metrics while training ------------------------------------------------------------------------------
class LiveMetrics:
    """The trainer's ``on_metrics`` callback: logs ``train/*`` and ``losses/*`` points to an MLflow run
    while training runs (batched every ``flush_s`` seconds), so curves grow in the UI. Folds continue one
    curve: each fold's steps are offset by the steps of the folds before it."""

    def __init__(self, client: MlflowClient, run_id: str, flush_s: float = 5.0) -> None:
        self.client, self.run_id, self.flush_s = client, run_id, flush_s
        self.offset, self.points, self.last = 0, 0, time.monotonic()
        self.buffer: list[Metric] = []

    def __call__(self, metrics: dict[str, Any]) -> None:
        step, stamp = self.offset + int(metrics["global_step"]), int(time.time() * 1000)
        for key, value in metrics.items():
            if key.startswith(("losses/", "charts/")) and math.isfinite(float(value)):
                self.buffer.append(Metric(TRAIN_METRIC_NAMES.get(key, key), float(value), stamp, step))
        if time.monotonic() - self.last >= self.flush_s:
            self.flush()

    def next_fold(self, steps: int) -> None:
        """The fold just trained took ``steps``: flush, and start the next fold's curve after it."""
        self.flush()
        self.offset += steps

    def flush(self) -> None:
        """Send the buffered points."""
        for i in range(0, len(self.buffer), 1000):
            self.client.log_batch(self.run_id, metrics=self.buffer[i : i + 1000])
        self.points += len(self.buffer)
        self.buffer, self.last = [], time.monotonic()


# ---- plan ------------------------------------------------------------------------------------------------
def spec_overrides(name: str, params: TrainParams, settings: Settings) -> dict[str, Any]:
    """The spec fields a run's params override; hyper-parameters are merged over the spec's own."""
    given = {k: v for k, v in dict(params).items() if k in SPEC_PARAM_KEYS and v is not None}
    hyper = {**resolve_spec(name, settings).hyperparameters, **(params.get("hyperparameters") or {})}
    if hyper:
        given["hyperparameters"] = hyper
    return given


def trial_spec(
    name: str, spec_params: dict[str, Any], configuration: dict[str, Any], settings: Settings | None = None
) -> ModelSpec:
    """The spec one configuration trains: the run's overrides, its hyper-parameters over theirs."""
    params = dict(spec_params)
    if configuration:
        params["hyperparameters"] = {**(spec_params.get("hyperparameters") or {}), **configuration}
    return resolve_spec(name, settings or get_settings(), params)


def plan_spec(
    name: str, params: TrainParams, end: str, tracker: Tracker, trigger: str, run_key: str, engine: Any = None
) -> TrainingPlan:
    """One spec's plan: resolve it (every configuration checked now), read its bars (``ts < end``) and
    open the parent run with the data's fingerprint — or find the one a first try opened under the same
    ``run_key`` (a retried task opens no second run). Raises ``NotEnoughData``."""
    settings = tracker.settings
    spec_params = spec_overrides(name, params, settings)
    spec = resolve_spec(name, settings, spec_params)
    configurations = list(params.get("configurations") or [{}])
    for configuration in configurations:
        trial_spec(name, spec_params, configuration, settings)
    long = spec_bars(spec, end, engine)
    data = spec_data_from(spec, long)
    run = _existing_parent(tracker, spec, run_key)
    if run is None:
        tags = {"krx.trigger": trigger, "krx.data_end": end, "krx.kind": "training", "krx.run_key": run_key}
        run = tracker.start_training(spec, long, tags=tags)
        params_logged = {"run.n_configurations": len(configurations), "run.data_end": end}
        tracker.log_params(run["run_id"], params_logged)
        tracker.client.log_dict(
            run["run_id"], {"configurations": configurations}, "config/configurations.json"
        )
    return TrainingPlan(
        spec=name,
        spec_params=spec_params,
        configurations=configurations,
        run=run,
        data_end=end,
        data_sha256=str(data.fingerprint["sha256"]),
        n_bars=int(data.fingerprint["rows"]),
        n_folds=len(data.folds),
        seeds=list(spec.seeds),
    )


def _existing_parent(tracker: Tracker, spec: ModelSpec, run_key: str) -> TrainingRun | None:
    experiment = ensure_experiment(tracker.client, spec.registered_model_name, tracker.settings)
    query = f"tags.`krx.run_key` = '{run_key}' and tags.`krx.kind` = 'training'"
    found = tracker.client.search_runs([experiment], query, max_results=1) if run_key else []
    if not found:
        return None
    return TrainingRun(
        experiment_id=experiment,
        run_id=found[0].info.run_id,
        spec=spec.name,
        registered_model_name=spec.registered_model_name,
    )


def plan_training(
    specs: Sequence[str],
    params: TrainParams,
    end: Any,
    trigger: str = "manual",
    run_key: str = "",
    settings: Settings | None = None,
    engine: Any = None,
) -> list[TrainingPlan]:
    """A plan per spec in ``specs``, on the bars before ``end`` (a timestamp; naive = UTC). Every spec and
    configuration is resolved before any run opens (a bad param fails the whole run, naming the field);
    a spec without enough bars is skipped with a warning; none trainable is an error. ``run_key``
    identifies the training (e.g. the DAG run) so that a retry finds the parent runs it opened."""
    tracker = Tracker(settings or get_settings())
    cut = pd.Timestamp(end)
    cut = (cut.tz_localize("UTC") if cut.tzinfo is None else cut.tz_convert("UTC")).isoformat()
    for name in specs:  # fail on a bad spec or param before opening any run
        for configuration in params.get("configurations") or [{}]:
            trial_spec(name, spec_overrides(name, params, tracker.settings), configuration, tracker.settings)
    plans, skipped = [], []
    for name in specs:
        try:
            plans.append(plan_spec(name, params, cut, tracker, trigger, run_key, engine))
        except NotEnoughData as exc:
            log.warning("training of %s skipped: %s", name, exc)
            skipped.append(f"{name}: {exc}")
    if not plans:
        raise NotEnoughData(f"no spec can be trained: {'; '.join(skipped) or 'no spec given'}")
    return plans


def open_trials(plans: Sequence[TrainingPlan], settings: Settings | None = None) -> list[Trial]:
    """One trial per configuration and seed of each plan, each with its run nested under the plan's
    parent (found again, not duplicated, when a retried task opened it already)."""
    tracker = Tracker(settings or get_settings())
    trials: list[Trial] = []
    for plan in plans:
        parent = plan["run"]
        children = tracker.client.search_runs(
            [parent["experiment_id"]], f"tags.mlflow.parentRunId = '{parent['run_id']}'"
        )
        opened = {
            (r.data.tags.get("krx.config"), r.data.tags.get("krx.seed")): r.info.run_id for r in children
        }
        for index, configuration in enumerate(plan["configurations"]):
            spec = trial_spec(plan["spec"], plan["spec_params"], configuration, tracker.settings)
            for i, seed in enumerate(spec.seeds):
                run_id = opened.get((str(index), str(seed))) or _seed_run(tracker, plan, spec, index, seed)
                trials.append(
                    Trial(
                        spec=plan["spec"],
                        spec_params=plan["spec_params"],
                        config_index=index,
                        configuration=configuration,
                        seed=seed,
                        first_seed=i == 0,
                        run=parent,
                        seed_run_id=run_id,
                        data_end=plan["data_end"],
                        data_sha256=plan["data_sha256"],
                    )
                )
    return trials


def _seed_run(tracker: Tracker, plan: TrainingPlan, spec: ModelSpec, index: int, seed: int) -> str:
    run_id = tracker.start_seed_run(plan["run"], seed, spec)
    tracker.client.set_tag(run_id, "krx.config", str(index))
    if len(plan["configurations"]) > 1:
        tracker.client.set_tag(run_id, "mlflow.runName", f"{spec.name}-c{index}-seed{seed}")
    return run_id


# ---- train and evaluate one trial --------------------------------------------------------------------
def trial_data(
    trial: Trial, settings: Settings | None = None, engine: Any = None
) -> tuple[ModelSpec, SpecData]:
    """The trial's spec and exactly the bars its plan fixed (raises :class:`DataChanged` otherwise)."""
    spec = trial_spec(trial["spec"], trial["spec_params"], trial["configuration"], settings)
    data = load_spec_data(spec, trial["data_end"], engine)
    if data.fingerprint["sha256"] != trial["data_sha256"]:
        raise DataChanged(
            f"{trial['spec']}: the stored bars before {trial['data_end']} changed since the training was "
            "planned (a backfill or correction); start a new training"
        )
    return spec, data


def train_trial(trial: Trial, settings: Settings | None = None, engine: Any = None) -> TrainedTrial:
    """Train one agent per fold on the fold's training window (seed ``trial['seed']``), logging curves
    while training runs; each fold's agent goes to the seed run as artifact ``folds/fold_<k>/agent``."""
    tracker = Tracker(settings or get_settings())
    spec, data = trial_data(trial, tracker.settings, engine)
    config = spec.train_config(trial["seed"])
    live = LiveMetrics(tracker.client, trial["seed_run_id"])
    steps, seconds = 0, 0.0
    with tempfile.TemporaryDirectory(prefix="krx-trial-") as tmp:
        for fold in data.folds:
            result = train(config, data.train_data(fold), on_metrics=live)
            live.next_fold(result.steps)
            steps, seconds = steps + result.steps, seconds + result.seconds
            saved = result.agent.save(Path(tmp) / f"fold_{fold.index}")
            tracker.client.log_artifacts(trial["seed_run_id"], str(saved), FOLD_AGENT.format(k=fold.index))
            log.info(
                "%s seed %d fold %d: %d steps in %.1f s",
                spec.name,
                trial["seed"],
                fold.index,
                result.steps,
                result.seconds,
            )
    tracker.log_metrics(trial["seed_run_id"], {"train/total_steps": steps, "train/total_seconds": seconds})
    return TrainedTrial(trial=trial, folds=len(data.folds), steps=steps, seconds=seconds)


def load_fold_agent(client: MlflowClient, run_id: str, fold: int) -> TradingAgent:
    """Fold ``fold``'s agent of a trial, from its seed run's artifacts."""
    with tempfile.TemporaryDirectory(prefix="krx-agent-") as tmp:
        local = client.download_artifacts(run_id, FOLD_AGENT.format(k=fold), tmp)
        return TradingAgent.load(local)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _agent_mean(metrics: pd.DataFrame, split: str, column: str = "sharpe") -> float:
    rows = metrics[(metrics["strategy"] == "agent") & (metrics["split"] == split)]
    return float(rows[column].mean()) if len(rows) else math.nan


def evaluate_trial(
    trained: TrainedTrial, settings: Settings | None = None, engine: Any = None
) -> TrialEvaluation:
    """Backtest each fold's agent and the baselines on the fold's validation and test windows; log
    ``eval/<split>/<metric>`` and the rows, returns and figures to the seed run, then end it."""
    trial = trained["trial"]
    tracker = Tracker(settings or get_settings())
    _, data = trial_data(trial, tracker.settings, engine)
    run_id = trial["seed_run_id"]
    out = FoldBacktests()
    with tempfile.TemporaryDirectory(prefix="krx-eval-") as tmp:
        for fold in data.folds:
            agent = load_fold_agent(tracker.client, run_id, fold.index)
            found = backtest_agent(
                agent, data, fold, trial["seed"], baselines_for(trial["first_seed"]), Path(tmp)
            )
            out.rows += found.rows
            out.returns += found.returns
            out.figures += found.figures
        tracker.log_evaluation(run_id, out.metrics(), seed=trial["seed"])
        metrics = out.metrics().assign(config=trial["config_index"])
        tracker.client.log_text(run_id, metrics.to_csv(index=False), METRICS_CSV)
        returns = out.returns_frame().assign(seed=trial["seed"], config=trial["config_index"])
        tracker.client.log_text(run_id, returns.to_csv(index=False), RETURNS_CSV)
        tracker.log_files(run_id, out.figures, "figures")
    tracker.end_run(run_id)
    return TrialEvaluation(
        trial=trial,
        val_sharpe=_finite(_agent_mean(metrics, "val")),
        test_sharpe=_finite(_agent_mean(metrics, "test")),
        rows=len(metrics),
    )


def read_artifact_csv(client: MlflowClient, run_id: str, path: str) -> pd.DataFrame:
    """A CSV artifact of a run as a frame."""
    with tempfile.TemporaryDirectory(prefix="krx-csv-") as tmp:
        return pd.read_csv(client.download_artifacts(run_id, path, tmp))
