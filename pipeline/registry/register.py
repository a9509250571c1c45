"""Register a trained agent as a new version of its spec's model, and run the promotion gate on it."""

from __future__ import annotations

import logging

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient

from pipeline.registry.gate import GateDecision, GateRules, evaluate_gate, gate_rules
from pipeline.registry.promotion import CHAMPION, alias_version, apply_decision
from pipeline.registry.pyfunc import load_agent, log_agent
from pipeline.registry.specs import ModelSpec
from pipeline.registry.tracking import Tracker, TrainingRun
from pipeline.rl.agent import TradingAgent

log = logging.getLogger(__name__)


def register_agent(
    agent: TradingAgent,
    spec: ModelSpec,
    tracker: Tracker,
    run_id: str | None = None,
    example: pd.DataFrame | None = None,
    tags: dict[str, str] | None = None,
) -> str:
    """Log ``agent`` as the pyfunc ``agent`` in run ``run_id`` (reopened by id; a new run in the spec's
    experiment when None), register it as a new version of ``spec.registered_model_name`` and return
    that version. ``example``: a window of bars recorded as the input example."""
    if run_id is None:
        parent = tracker.start_training(spec, run_name=f"{spec.name}-register")
        run_id = parent["run_id"]
    with mlflow.start_run(run_id=run_id):
        info = log_agent(agent, spec, example)
    version = str(info.registered_model_version)
    client = tracker.client
    version_tags = {"krx.spec": spec.name, "krx.model_id": str(info.model_id), **(tags or {})}
    for key, value in version_tags.items():
        client.set_model_version_tag(spec.registered_model_name, version, key, value)
    client.set_tag(run_id, "krx.registered_version", version)
    log.info("registered %s v%s (run %s)", spec.registered_model_name, version, run_id)
    return version


def champion_agent(client: MlflowClient, spec: ModelSpec) -> TradingAgent | None:
    """The current champion's agent (to re-evaluate it on the candidate's windows), or None."""
    version = alias_version(client, spec.registered_model_name, CHAMPION)
    if version is None:
        return None
    return load_agent(f"models:/{spec.registered_model_name}/{version}")


def gate_version(
    tracker: Tracker,
    spec: ModelSpec,
    version: str,
    metrics: pd.DataFrame,
    champion_metrics: pd.DataFrame | None,
    parent: TrainingRun | None = None,
    rules: GateRules | None = None,
    returns: np.ndarray | None = None,
) -> GateDecision:
    """Judge ``version`` from its walk-forward rows against the champion's rows on the same windows (None:
    no champion yet), record every rule on the version and its runs, and move the aliases."""
    decision = evaluate_gate(
        metrics, rules or gate_rules(tracker.settings), spec.periods_per_year, champion_metrics, returns
    )
    runs = [parent["run_id"]] if parent is not None else []
    aliases = apply_decision(tracker.client, spec.registered_model_name, version, decision, runs)
    log.info("gate %s v%s: %s; aliases %s", spec.registered_model_name, version, decision.summary, aliases)
    return decision
