"""The end of a training, as the ``train_agent`` DAG runs it: register the best trial on validation, gate
it against the absolute rules and the champion re-evaluated on the same windows, write the HTML report,
end the parent run. Each step is idempotent: a retried task finds what its first try recorded."""

from __future__ import annotations

import json
import logging
import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow import MlflowClient

from pipeline.config import Settings, get_settings
from pipeline.registry.backtests import reevaluate_on
from pipeline.registry.contracts import (
    GateOutcome,
    RegisteredVersion,
    ReportInfo,
    TrainingPlan,
    TrialEvaluation,
)
from pipeline.registry.data import SpecData
from pipeline.registry.gate import GateRules, gate_rules
from pipeline.registry.promotion import CHALLENGER, CHAMPION, PREVIOUS_CHAMPION, alias_version
from pipeline.registry.regimes import (
    criterion_scores,
    plot_regimes,
    regime_labels,
    regime_table,
    window_of,
)
from pipeline.registry.register import champion_agent, gate_version, register_agent
from pipeline.registry.report import ReportData, render_report
from pipeline.registry.specs import ModelSpec
from pipeline.registry.statistics import headline, training_statistics
from pipeline.registry.tracking import Tracker
from pipeline.registry.training import (
    METRICS_CSV,
    RETURNS_CSV,
    load_fold_agent,
    read_artifact_csv,
    trial_data,
)

log = logging.getLogger(__name__)
#: Bars in the registered model's input example.
EXAMPLE_BARS = 250
REPORT_ARTIFACT = "report/report.html"


def _score(value: float | None) -> float:
    return -math.inf if value is None or math.isnan(value) else value


def select_best(plan: TrainingPlan, evaluations: list[TrialEvaluation]) -> TrialEvaluation:
    """The plan's best trial on validation: the configuration with the best mean validation Sharpe over
    its seeds, then its seed with the best validation Sharpe (ties: the lower index). NaN ranks last."""
    mine = [e for e in evaluations if e["trial"]["run"]["run_id"] == plan["run"]["run_id"]]
    if not mine:
        raise RuntimeError(f"{plan['spec']}: no trial of the training was evaluated")
    by_config: dict[int, list[TrialEvaluation]] = {}
    for e in mine:
        by_config.setdefault(e["trial"]["config_index"], []).append(e)
    means = {c: float(np.mean([_score(e["val_sharpe"]) for e in es])) for c, es in by_config.items()}
    config = max(sorted(means), key=lambda c: means[c])
    return max(
        sorted(by_config[config], key=lambda e: e["trial"]["seed"]), key=lambda e: _score(e["val_sharpe"])
    )


def _plan_data(registered: RegisteredVersion, settings: Settings) -> tuple[ModelSpec, SpecData]:
    plan = registered["plan"]
    trial = {
        "spec": plan["spec"],
        "spec_params": plan["spec_params"],
        "configuration": plan["configurations"][registered["config_index"]],
        "data_end": plan["data_end"],
        "data_sha256": plan["data_sha256"],
    }
    return trial_data(trial, settings)  # type: ignore[arg-type]


def _rows(client: MlflowClient, runs: list[str], path: str) -> pd.DataFrame:
    return pd.concat([read_artifact_csv(client, r, path) for r in runs], ignore_index=True)


def register_best(
    plan: TrainingPlan, evaluations: list[TrialEvaluation], settings: Settings | None = None
) -> RegisteredVersion:
    """Register the last fold's agent of the best trial (:func:`select_best`) as a new version (logged in
    its seed run, tagged with the training); log the selected configuration's evaluation on the parent."""
    tracker = Tracker(settings or get_settings())
    client, parent = tracker.client, plan["run"]["run_id"]
    best = select_best(plan, evaluations)["trial"]
    spec, data = trial_data(best, tracker.settings)
    mine = [e["trial"] for e in evaluations if e["trial"]["run"]["run_id"] == parent]
    chosen = [t["seed_run_id"] for t in mine if t["config_index"] == best["config_index"]]
    version = client.get_run(parent).data.tags.get("krx.registered_version")
    if version is None:  # a retry after a successful registration registers nothing new
        agent = load_fold_agent(client, best["seed_run_id"], data.folds[-1].index)
        example = next(iter(data.universe.values())).iloc[-EXAMPLE_BARS:]
        tags = {
            "krx.training_run": parent,
            "krx.seed": str(best["seed"]),
            "krx.config": str(best["config_index"]),
        }
        version = register_agent(agent, spec, tracker, best["seed_run_id"], example, tags)
        for key, value in {"krx.registered_version": version, **tags}.items():
            client.set_tag(parent, key, value)
    tracker.log_evaluation(parent, _rows(client, chosen, METRICS_CSV).drop(columns="config"))
    everything = _rows(client, [t["seed_run_id"] for t in mine], METRICS_CSV)
    client.log_text(parent, everything.to_csv(index=False), "evaluation/all_trials.csv")
    return RegisteredVersion(
        plan=plan,
        version=str(version),
        config_index=best["config_index"],
        seed=best["seed"],
        seed_run_id=best["seed_run_id"],
        trial_runs=chosen,
        all_runs=[t["seed_run_id"] for t in mine],
    )


def _aliases(client: MlflowClient, name: str) -> dict[str, str | None]:
    return {a: alias_version(client, name, a) for a in (CHAMPION, CHALLENGER, PREVIOUS_CHAMPION)}


def _rules(settings: Settings, n_configurations: int) -> GateRules:
    # Configurations tried in this run multiply those the settings say were tried before it.
    rules = gate_rules(settings)
    return rules.model_copy(update={"n_configurations": rules.n_configurations * n_configurations})


def gate_registered(registered: RegisteredVersion, settings: Settings | None = None) -> GateOutcome:
    """Judge the registered version on the selected configuration's rows (every seed) against the
    champion re-evaluated on the same windows; the gate tags the version and runs and moves the aliases.
    A version already gated (a retried task) keeps its decision."""
    tracker = Tracker(settings or get_settings())
    client, plan = tracker.client, registered["plan"]
    spec, data = _plan_data(registered, tracker.settings)
    name, version = spec.registered_model_name, registered["version"]
    tags = client.get_model_version(name, version).tags
    if "gate.decision" in tags:
        return GateOutcome(
            registered=registered,
            outcome=tags["gate.decision"],
            summary=tags.get("gate.summary", ""),
            aliases=_aliases(client, name),
        )
    rows = _rows(client, registered["trial_runs"], METRICS_CSV)
    returns = _rows(client, registered["trial_runs"], RETURNS_CSV)
    val = returns.loc[returns["split"] == "val", "ret"].to_numpy(np.float64)
    champion_version = alias_version(client, name, CHAMPION)
    champion_rows = None
    if champion_version is not None and champion_version != version:
        champion = champion_agent(client, spec)
        champion_rows = reevaluate_on(champion, data) if champion is not None else None
    parent = plan["run"]["run_id"]
    if champion_rows is not None:
        client.log_text(parent, champion_rows.to_csv(index=False), "evaluation/champion_metrics.csv")
        client.set_tag(parent, "krx.champion_compared", champion_version or "")
    rules = _rules(tracker.settings, len(plan["configurations"]))
    decision = gate_version(tracker, spec, version, rows, champion_rows, plan["run"], rules, val)
    return GateOutcome(
        registered=registered,
        outcome=decision.outcome.value,
        summary=decision.summary,
        aliases=_aliases(client, name),
    )


def _trials_table(evaluations: pd.DataFrame, registered: RegisteredVersion) -> pd.DataFrame:
    agent = evaluations[evaluations["strategy"] == "agent"]
    table = agent.groupby(["config", "seed", "split"])["sharpe"].mean().unstack("split").reset_index()
    table = table.rename(columns={"val": "val_sharpe", "test": "test_sharpe"})
    table["selected"] = (table["config"] == registered["config_index"]) & (
        table["seed"] == registered["seed"]
    )
    return table


def _regime_part(
    client: MlflowClient, registered: RegisteredVersion, data: SpecData, out: Path
) -> tuple[pd.DataFrame | None, str, Path | None]:
    """The registered agent's regime table on its training window, a note on K, and its regime chart."""
    agent = load_fold_agent(client, registered["seed_run_id"], data.folds[-1].index)
    model = agent.regime_model
    if model is None:
        return None, "the agent was trained without regimes", None
    first, last = data.dates(data.folds[-1])["train"]
    table = regime_table(model, window_of(data.universe, first, last), data.spec.periods_per_year)
    better = "higher" if model.config.criterion == "silhouette" else "lower"
    scores = ", ".join(f"K={k}: {v:.4g}" for k, v in sorted(criterion_scores(model).items()))
    note = (
        f"The registered agent's regime model: K = {model.n_regimes} chosen by {model.config.criterion} "
        f"({scores}; {better} is better) on its training window {first} – {last}, which the table covers."
    )
    labels = regime_labels(model, data.universe, data.spec.interval)
    chart = plot_regimes(
        data.universe, labels, out / "regimes.png", f"{data.spec.name} regimes", (first, last)
    )
    return table, note, chart


def _decision(client: MlflowClient, run_id: str, version: str, folder: Path) -> dict[str, Any]:
    local = client.download_artifacts(run_id, f"gate/decision_v{version}.json", str(folder))
    return dict(json.loads(Path(local).read_text()))


def report_data(gated: GateOutcome, tracker: Tracker, figures_dir: Path) -> ReportData:
    """Gather what the report shows from the runs' artifacts (rows, returns, figures, decision)."""
    registered, client = gated["registered"], tracker.client
    spec, data = _plan_data(registered, tracker.settings)
    parent = registered["plan"]["run"]["run_id"]
    everything = _rows(client, registered["all_runs"], METRICS_CSV)
    returns = _rows(client, registered["all_runs"], RETURNS_CSV)
    selected = (registered["config_index"], registered["seed"])
    stats = training_statistics(everything, returns, selected, len(registered["plan"]["configurations"]))
    decision = _decision(client, parent, registered["version"], figures_dir)
    tags = client.get_run(parent).data.tags
    champion = (
        read_artifact_csv(client, parent, "evaluation/champion_metrics.csv")
        if "krx.champion_compared" in tags
        else None
    )
    local = Path(client.download_artifacts(registered["seed_run_id"], "figures", str(figures_dir)))
    regimes, note, chart = _regime_part(client, registered, data, figures_dir)
    return ReportData(
        spec=spec.name,
        model_name=spec.registered_model_name,
        version=registered["version"],
        run_id=parent,
        outcome=gated["outcome"],
        summary=gated["summary"],
        rules=decision["rules"],
        metrics=everything[everything["config"] == registered["config_index"]],
        trials=_trials_table(everything, registered),
        statistics=stats,
        champion=champion,
        champion_version=tags.get("krx.champion_compared"),
        regimes=regimes,
        regime_note=note,
        regime_figure=chart,
        figures=sorted(local.glob("*.png")),
        data=data.fingerprint,
        aliases=gated["aliases"],
    )


def write_report(gated: GateOutcome, settings: Settings | None = None) -> ReportInfo:
    """Write the HTML report under ``<var>/reports/<spec>/`` and log it to the parent run and the version's
    run (artifact ``report/report.html``); the statistics are also logged as ``stats/*`` metrics."""
    tracker = Tracker(settings or get_settings())
    registered = gated["registered"]
    parent = registered["plan"]["run"]["run_id"]
    with tempfile.TemporaryDirectory(prefix="krx-report-") as tmp:
        data = report_data(gated, tracker, Path(tmp))
        html = render_report(data)
    out = (
        tracker.settings.var_dir.resolve() / "reports" / data.spec / f"{data.model_name}-v{data.version}.html"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html, encoding="utf-8")
    for run_id in (parent, registered["seed_run_id"]):
        tracker.client.log_text(run_id, html, REPORT_ARTIFACT)
    tracker.log_metrics(parent, headline(data.statistics))
    uri = f"runs:/{parent}/{REPORT_ARTIFACT}"
    tracker.client.set_model_version_tag(data.model_name, data.version, "krx.report", uri)
    tracker.client.set_tag(parent, "krx.report", uri)
    return ReportInfo(
        spec=data.spec, run_id=parent, version=data.version, path=str(out), artifact=REPORT_ARTIFACT
    )


def finish_plan(plan: TrainingPlan, settings: Settings | None = None) -> str:
    """End the training's parent run — ``FINISHED`` once its version was gated and reported, else
    ``FAILED`` — and any of its seed runs a failed task left running (``FAILED``). Returns the status."""
    tracker = Tracker(settings or get_settings())
    client, parent = tracker.client, plan["run"]["run_id"]
    tags = client.get_run(parent).data.tags
    status = "FINISHED" if {"gate.decision", "krx.report"} <= tags.keys() else "FAILED"
    children = client.search_runs([plan["run"]["experiment_id"]], f"tags.mlflow.parentRunId = '{parent}'")
    for child in children:
        if child.info.status == "RUNNING":
            tracker.end_run(child.info.run_id, "FAILED")
    tracker.finish_training(plan["run"], status)
    log.info("training %s of %s ended %s", parent, plan["spec"], status)
    return status
