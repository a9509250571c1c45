"""What the model-lifecycle DAGs pass between tasks and runs, defined once for both sides: the ``regimes``
asset-event extra, the DAG-run params of a training, and the JSON-able handles (XComs) of each step —
plan, trial, trained trial, evaluation, registered version, gate outcome, report.

Everything here is a TypedDict of strings, numbers, lists and dicts: XComs are JSON. Big things (agents,
metrics tables, per-bar returns, figures) travel as MLflow artifacts named by run id, so a task may run
on another machine than the one before it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypedDict

from pipeline.registry.tracking import TrainingRun


class RegimesExtra(TypedDict):
    """The extra of a ``regimes`` asset event: the specs whose regime labels were (re)written."""

    specs: list[str]
    model_ids: dict[str, str]
    """Regime model id per spec."""


class RegimesSummary(TypedDict):
    """What ``cluster_regimes`` did for one spec (its XCom)."""

    spec: str
    status: str
    """``fitted`` or ``skipped`` (then ``reason`` says why: e.g. too few bars for the spec's folds)."""
    reason: str
    model_id: str
    run_id: str
    k: int
    criterion: str
    train_start: str
    """First and last bar of the window the model was fitted on (ISO timestamps, KST)."""
    train_end: str
    labels: int
    """Labels written to the ``regimes`` table."""


class TrainParams(TypedDict, total=False):
    """``train_agent`` DAG-run params (the trigger form). A missing or null value keeps the spec's own."""

    specs: list[str]
    """Model specs to train (an asset-triggered run trains the specs its ``regimes`` events name)."""
    total_steps: int | None
    max_seconds: float | None
    seeds: list[int] | None
    mode: str | None
    n_workers: int | None
    n_folds: int | None
    val_size: int | None
    test_size: int | None
    embargo: int | None
    min_train_size: int | None
    feature_set: str | None
    hyperparameters: dict[str, Any] | None
    """TrainConfig overrides by dotted name, applied to every configuration."""
    configurations: list[dict[str, Any]] | None
    """Hyper-parameter configurations tried (each over ``hyperparameters``); None or ``[]``: one, ``{}``."""


class TrainingPlan(TypedDict):
    """One spec's training, as ``prepare`` fixed it: the parent run, the data, the configurations."""

    spec: str
    spec_params: dict[str, Any]
    """The spec overrides the run resolved (``resolve_spec(spec, settings, spec_params)`` gives the spec)."""
    configurations: list[dict[str, Any]]
    run: TrainingRun
    data_end: str
    """Bars with ``ts < data_end`` (UTC ISO) are the run's data; every task reads exactly these."""
    data_sha256: str
    n_bars: int
    n_folds: int
    seeds: list[int]


class Trial(TypedDict):
    """One mapped ``train_seed``: one configuration and one seed of a plan, with its nested MLflow run."""

    spec: str
    spec_params: dict[str, Any]
    config_index: int
    configuration: dict[str, Any]
    seed: int
    first_seed: bool
    """Whether this is the configuration's first seed (it also backtests the deterministic baselines)."""
    run: TrainingRun
    seed_run_id: str
    data_end: str
    data_sha256: str


class TrainedTrial(TypedDict):
    """A trial whose fold agents are trained and logged as artifacts ``folds/fold_<k>/agent`` of its run."""

    trial: Trial
    folds: int
    steps: int
    seconds: float


class TrialEvaluation(TypedDict):
    """A trial's walk-forward results (artifacts ``evaluation/*`` of its seed run) and headline numbers."""

    trial: Trial
    val_sharpe: float | None
    """Mean validation Sharpe of the agent over folds (and symbols); None when undefined (NaN)."""
    test_sharpe: float | None
    rows: int


class RegisteredVersion(TypedDict):
    """The version registered from the best trial on validation (the last fold's agent)."""

    plan: TrainingPlan
    version: str
    config_index: int
    seed: int
    seed_run_id: str
    trial_runs: list[str]
    """Seed runs of the selected configuration (their rows are what the gate judges)."""
    all_runs: list[str]
    """Seed runs of every trial (configurations × seeds: the trials the statistics count)."""


class GateOutcome(TypedDict):
    """The gate's decision on a registered version and where the aliases stand afterwards."""

    registered: RegisteredVersion
    outcome: str
    summary: str
    aliases: dict[str, str | None]


class ReportInfo(TypedDict):
    """Where the HTML report of a training was written and logged."""

    spec: str
    run_id: str
    version: str
    path: str
    artifact: str


def specs_in(extras: Iterable[object]) -> list[str]:
    """Spec names the ``regimes`` events' extras name, in order, each once. An extra that is not a
    :class:`RegimesExtra` (hand-made, from an older producer) names none."""
    out: list[str] = []
    for extra in extras:
        specs = extra.get("specs") if isinstance(extra, Mapping) else None
        if isinstance(specs, list):
            out += [s for s in specs if isinstance(s, str) and s and s not in out]
    return out
