"""Aliases of a registered model: apply the gate's decision, a human's forced promotion, a rollback, and
the version list the CLI shows. Consumers only ever load ``models:/<name>@champion``."""

from __future__ import annotations

import datetime as dt
import getpass
from collections.abc import Iterable
from dataclasses import dataclass, field

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from pipeline.registry.gate import GateDecision, Outcome, decision_record

CHAMPION, CHALLENGER, PREVIOUS_CHAMPION = "champion", "challenger", "previous-champion"
#: Metrics of a version's run shown by ``krx model list``.
HEADLINE_METRICS = ("eval/val/sharpe", "eval/test/sharpe", "eval/test/total_return", "eval/test/max_drawdown")


class PromotionError(RuntimeError):
    """A promotion or rollback that cannot be done as asked (the message says why and what to do)."""


def alias_version(client: MlflowClient, name: str, alias: str) -> str | None:
    """The version ``alias`` points to, or None when it is not set."""
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _move_champion(client: MlflowClient, name: str, version: str) -> str | None:
    """Point ``champion`` at ``version``; the old champion keeps ``previous-champion``. Returns the old."""
    old = alias_version(client, name, CHAMPION)
    if old is not None and old != version:
        client.set_registered_model_alias(name, PREVIOUS_CHAMPION, old)
    client.set_registered_model_alias(name, CHAMPION, version)
    return old


def apply_decision(
    client: MlflowClient,
    name: str,
    version: str | int,
    decision: GateDecision,
    run_ids: Iterable[str] = (),
) -> dict[str, str | None]:
    """Tag the version (and ``run_ids``, e.g. its seed run and the parent) with every rule's outcome, then
    move aliases: ``challenger`` on passing the absolute rules, ``champion`` when it also beat the champion.
    Returns the aliases after the move."""
    v = str(version)
    tags = decision.tags()
    for key, value in tags.items():
        client.set_model_version_tag(name, v, key, value)
    source = client.get_model_version(name, v).run_id
    for run_id in sorted({*run_ids, *([source] if source else [])}):
        for key, value in tags.items():
            client.set_tag(run_id, key, value)
        client.log_dict(run_id, decision_record(decision), f"gate/decision_v{v}.json")
    if decision.outcome is not Outcome.REJECTED:
        client.set_registered_model_alias(name, CHALLENGER, v)
    if decision.outcome is Outcome.CHAMPION:
        _move_champion(client, name, v)
    return {alias: alias_version(client, name, alias) for alias in (CHAMPION, CHALLENGER, PREVIOUS_CHAMPION)}


def promote(
    client: MlflowClient,
    name: str,
    version: str | int,
    *,
    force: bool = False,
    reason: str | None = None,
    user: str | None = None,
) -> str | None:
    """Make ``version`` the champion; returns the previous champion. Without ``force`` the version must have
    passed the gate; ``force`` (a human override) needs a ``reason``, recorded with who and when."""
    v = str(version)
    if force and not (reason and reason.strip()):
        raise PromotionError("--force needs --reason: say why the gate is overridden (it is recorded)")
    try:
        mv = client.get_model_version(name, v)
    except MlflowException:
        raise PromotionError(f"{name} has no version {v}") from None
    decision = mv.tags.get("gate.decision", "none")
    if not force and decision not in (Outcome.CHAMPION.value, Outcome.CHALLENGER.value):
        raise PromotionError(
            f"{name} v{v} did not pass the gate (decision: {decision}); "
            "promote it anyway with --force --reason TEXT"
        )
    old = _move_champion(client, name, v)
    record = {
        "promotion.by": user or getpass.getuser(),
        "promotion.at": _now(),
        "promotion.forced": str(force).lower(),
        "promotion.reason": (reason or "passed the gate").strip(),
        "promotion.previous_champion": old or "none",
    }
    for key, value in record.items():
        client.set_model_version_tag(name, v, key, value)
    return old


def rollback(client: MlflowClient, name: str, *, user: str | None = None, reason: str | None = None) -> str:
    """``champion`` ← ``previous-champion``; the demoted version is tagged, ``previous-champion`` cleared
    (a second rollback would otherwise bring the demoted version back). Returns the new champion."""
    previous = alias_version(client, name, PREVIOUS_CHAMPION)
    if previous is None:
        raise PromotionError(f"{name} has no previous-champion to roll back to")
    demoted = alias_version(client, name, CHAMPION)
    client.set_registered_model_alias(name, CHAMPION, previous)
    client.delete_registered_model_alias(name, PREVIOUS_CHAMPION)
    who, when = user or getpass.getuser(), _now()
    if demoted is not None:
        client.set_model_version_tag(name, demoted, "rollback.demoted_by", who)
        client.set_model_version_tag(name, demoted, "rollback.at", when)
        client.set_model_version_tag(name, demoted, "rollback.reason", reason or "rollback")
    client.set_model_version_tag(name, previous, "promotion.by", who)
    client.set_model_version_tag(name, previous, "promotion.at", when)
    client.set_model_version_tag(name, previous, "promotion.reason", f"rollback from v{demoted}")
    return previous


@dataclass
class VersionRow:
    """One model version as ``krx model list`` shows it."""

    version: str
    aliases: list[str]
    run_id: str
    created: str
    gate: str
    metrics: dict[str, float] = field(default_factory=dict)
    promotion: str = ""


def list_versions(client: MlflowClient, name: str) -> list[VersionRow]:
    """Every version of ``name``, newest first, with aliases, gate decision and headline metrics."""
    try:
        registered = client.get_registered_model(name)
    except MlflowException:
        return []
    aliases: dict[str, list[str]] = {}
    for alias, version in registered.aliases.items():
        aliases.setdefault(str(version), []).append(alias)
    rows = []
    for mv in client.search_model_versions(f"name = '{name}'"):
        metrics: dict[str, float] = {}
        if mv.run_id:
            run_metrics = client.get_run(mv.run_id).data.metrics
            metrics = {k: run_metrics[k] for k in HEADLINE_METRICS if k in run_metrics}
        created = dt.datetime.fromtimestamp(mv.creation_timestamp / 1000, dt.UTC)
        promo = mv.tags.get("promotion.by", "")
        if promo:
            forced = " (forced)" if mv.tags.get("promotion.forced") == "true" else ""
            promo = f"{promo}{forced}: {mv.tags.get('promotion.reason', '')}"
        rows.append(
            VersionRow(
                version=str(mv.version),
                aliases=sorted(aliases.get(str(mv.version), [])),
                run_id=mv.run_id or "",
                created=created.strftime("%m-%d %H:%M"),
                gate=mv.tags.get("gate.decision", "not gated"),
                metrics=metrics,
                promotion=promo,
            )
        )
    return sorted(rows, key=lambda r: int(r.version), reverse=True)
