"""The promotion gate: each rule fails a version that violates it and passes one that does not; the first
version is handled explicitly; the decision moves aliases and is recorded on the version and its run."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from pipeline.registry.gate import GateRules, Outcome, evaluate_gate, gate_rules
from pipeline.registry.promotion import (
    CHALLENGER,
    CHAMPION,
    PREVIOUS_CHAMPION,
    alias_version,
    apply_decision,
)
from pipeline.registry.tracking import Tracker
from tests.registry.factories import wf_rows

#: MLflow's own SQLAlchemy mappings warn once per process; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy:DeprecationWarning")

#: Rules loose enough that the default rows pass all of them (each test tightens one).
LOOSE = GateRules(min_dsr_prob=0.5)
GOOD = {"sharpe": 1.5, "max_drawdown": 0.1, "turnover": 5.0}


def _rule(metrics: pd.DataFrame, name: str, rules: GateRules = LOOSE, champion: pd.DataFrame | None = None):
    decision = evaluate_gate(metrics, rules, 252.0, champion)
    return next(r for r in decision.rules if r.name == name), decision


def test_a_good_first_version_becomes_champion_and_says_there_was_none_to_beat() -> None:
    decision = evaluate_gate(wf_rows(GOOD), LOOSE, 252.0, None)
    assert decision.outcome is Outcome.CHAMPION and decision.first_version
    assert all(r.passed for r in decision.rules)
    assert "first version" in decision.summary


@pytest.mark.parametrize(
    ("rule", "bad", "good", "rules"),
    [
        ("sharpe_vs_buy_and_hold", {"sharpe": 0.5}, {"sharpe": 0.8}, LOOSE),
        (
            "sharpe_vs_buy_and_hold",
            {"sharpe": 0.8},
            {"sharpe": 1.2},
            GateRules(sharpe_margin_vs_buy_and_hold=0.5),
        ),
        (
            "max_drawdown",
            {"max_drawdown": 0.4},
            {"max_drawdown": 0.3},
            LOOSE.model_copy(update={"max_drawdown_vs_buy_and_hold": 9}),
        ),
        ("drawdown_vs_buy_and_hold", {"max_drawdown": 0.31}, {"max_drawdown": 0.29}, LOOSE),
        ("turnover", {"turnover": 80.0}, {"turnover": 50.0}, LOOSE),
        ("turnover", {"turnover": 0.0}, {"turnover": 2.0}, LOOSE.model_copy(update={"min_turnover": 1.0})),
        ("no_nan", {"total_return": math.nan}, {"total_return": 0.2}, LOOSE),
    ],
)
def test_each_absolute_rule_rejects_a_violation_and_accepts_a_pass(
    rule: str, bad: dict, good: dict, rules: GateRules
) -> None:
    failed, rejected = _rule(wf_rows({**GOOD, **bad}), rule, rules)
    passed, _ = _rule(wf_rows({**GOOD, **good}), rule, rules)
    assert not failed.passed and passed.passed
    assert rejected.outcome is Outcome.REJECTED and rule in rejected.summary
    assert "no new champion" in rejected.summary


def test_the_deflated_sharpe_rule_counts_seeds_times_configurations_as_trials() -> None:
    rows = wf_rows({**GOOD, "sharpe": 1.0}, seeds=(0, 1, 2), jitter=0.6)
    one = _rule(rows, "deflated_sharpe", GateRules(min_dsr_prob=0.6))[0]
    many = _rule(rows, "deflated_sharpe", GateRules(min_dsr_prob=0.6, n_configurations=50))[0]
    assert one.passed and not many.passed
    assert many.value < one.value and "150 lucky trials" in many.detail


def test_a_version_that_loses_to_the_champion_on_the_same_windows_is_only_a_challenger() -> None:
    candidate = wf_rows(GOOD)
    stronger = wf_rows({**GOOD, "sharpe": 2.0})
    weaker = wf_rows({**GOOD, "sharpe": 1.0})
    lost = evaluate_gate(candidate, LOOSE, 252.0, stronger)
    won = evaluate_gate(candidate, LOOSE, 252.0, weaker)
    assert lost.outcome is Outcome.CHALLENGER and not lost.first_version
    assert won.outcome is Outcome.CHAMPION
    assert "did not beat" in lost.summary


def test_a_nan_champion_sharpe_is_not_beaten_by_default() -> None:
    rule, _ = _rule(wf_rows(GOOD), "beats_champion", champion=wf_rows({"sharpe": math.nan}))
    assert not rule.passed


def test_rules_come_from_settings_and_a_bad_override_names_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.config import get_settings

    monkeypatch.setenv("KRX_PROMOTION_GATE", '{"min_dsr_prob": 0.5, "max_turnover": 12}')
    get_settings.cache_clear()
    assert gate_rules().max_turnover == 12 and gate_rules().min_dsr_prob == 0.5
    monkeypatch.setenv("KRX_PROMOTION_GATE", '{"max_turnouver": 12}')
    get_settings.cache_clear()
    with pytest.raises(ValueError, match="max_turnouver"):
        gate_rules()


def _version(tracker: Tracker, name: str) -> str:
    """A registered version without a real model (aliases and tags behave the same)."""
    client = tracker.client
    if not client.search_registered_models(f"name = '{name}'"):
        client.create_registered_model(name)
    run = client.create_run(client.create_experiment(f"{name}-{len(client.search_experiments())}"))
    return str(client.create_model_version(name, "file:///nowhere", run.info.run_id).version)


def test_the_gate_moves_aliases_and_records_every_rule_on_the_version_and_run(tracker: Tracker) -> None:
    name, client = "krx-a3c-test", tracker.client
    v1, v2, v3, v4 = (_version(tracker, name) for _ in range(4))
    apply_decision(client, name, v1, evaluate_gate(wf_rows(GOOD), LOOSE, 252.0, None))
    assert alias_version(client, name, CHAMPION) == v1
    apply_decision(client, name, v2, evaluate_gate(wf_rows(GOOD), LOOSE, 252.0, wf_rows({"sharpe": 3.0})))
    assert alias_version(client, name, CHALLENGER) == v2 and alias_version(client, name, CHAMPION) == v1
    apply_decision(
        client, name, v3, evaluate_gate(wf_rows({**GOOD, "sharpe": 3.0}), LOOSE, 252.0, wf_rows(GOOD))
    )
    assert (
        alias_version(client, name, CHAMPION) == v3 and alias_version(client, name, PREVIOUS_CHAMPION) == v1
    )
    rejected = evaluate_gate(wf_rows({**GOOD, "turnover": 500.0}), LOOSE, 252.0, wf_rows(GOOD))
    apply_decision(client, name, v4, rejected)
    assert alias_version(client, name, CHAMPION) == v3 and alias_version(client, name, CHALLENGER) == v3
    tags = client.get_model_version(name, v4).tags
    assert tags["gate.decision"] == "rejected" and tags["gate.turnover.passed"] == "false"
    assert tags["gate.turnover.value"] == "500" and tags["gate.turnover.threshold"] == "60"
    assert tags["gate.sharpe_vs_buy_and_hold.passed"] == "true"
    run_tags = client.get_run(client.get_model_version(name, v4).run_id).data.tags
    assert run_tags["gate.decision"] == "rejected" and "failed: turnover" in run_tags["gate.summary"]
