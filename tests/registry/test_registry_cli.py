"""``krx model list / promote / rollback`` and ``krx mlflow ui`` as a user runs them."""

from __future__ import annotations

import getpass
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.cli_model import mlflow_ui_command
from pipeline.registry.gate import GateRules, evaluate_gate
from pipeline.registry.promotion import CHAMPION, PREVIOUS_CHAMPION, alias_version, apply_decision
from pipeline.registry.tracking import Tracker
from tests.registry.factories import wf_rows

#: MLflow's own SQLAlchemy mappings warn once per process; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy:DeprecationWarning")

runner = CliRunner()
NAME = "krx-a3c-kospi200f-1d"
REJECTED = wf_rows({"sharpe": 0.1})  # below buy-and-hold
PASSING = wf_rows({"sharpe": 1.5})


def _krx(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args), terminal_width=200)
    return result.exit_code, result.output


def _gated_version(tracker: Tracker, rows: object) -> str:
    """A registered version of the default futures spec, gated on ``rows`` (no real model needed)."""
    client = tracker.client
    if not client.search_registered_models(f"name = '{NAME}'"):
        client.create_registered_model(NAME)
    experiment = client.get_experiment_by_name("cli") or client.get_experiment(
        client.create_experiment("cli")
    )
    run = client.create_run(experiment.experiment_id)
    client.log_metric(run.info.run_id, "eval/test/sharpe", 1.25)
    version = str(client.create_model_version(NAME, "file:///nowhere", run.info.run_id).version)
    apply_decision(client, NAME, version, evaluate_gate(rows, GateRules(min_dsr_prob=0.5), 252.0))
    return version


def test_listing_with_no_registered_model_says_so_plainly() -> None:
    code, output = _krx("model", "list")
    assert code == 0 and "no registered models yet" in output


def test_list_shows_versions_aliases_metrics_and_gate_outcomes(tracker: Tracker) -> None:
    _gated_version(tracker, PASSING)
    _gated_version(tracker, REJECTED)
    code, output = _krx("model", "list", "--spec", "kospi200f-1d")
    assert code == 0, output
    assert NAME in output and "champion" in output and "rejected" in output and "+1.25" in output


def test_force_without_a_reason_is_refused(tracker: Tracker) -> None:
    good, bad = _gated_version(tracker, PASSING), _gated_version(tracker, REJECTED)
    code, output = _krx("model", "promote", bad, "--spec", "kospi200f-1d", "--force")
    assert code == 2 and "--reason" in output
    assert alias_version(tracker.client, NAME, CHAMPION) == good


def test_a_version_that_failed_the_gate_needs_force(tracker: Tracker) -> None:
    _gated_version(tracker, PASSING)
    bad = _gated_version(tracker, REJECTED)
    code, output = _krx("model", "promote", bad, "--spec", "kospi200f-1d")
    assert code == 1 and "did not pass the gate" in output and "--force" in output


def test_a_forced_promotion_records_who_and_why_and_keeps_the_old_champion(tracker: Tracker) -> None:
    good, bad = _gated_version(tracker, PASSING), _gated_version(tracker, REJECTED)
    code, output = _krx(
        "model", "promote", bad, "--spec", "kospi200f-1d", "--force", "--reason", "regime shift, manual"
    )
    assert code == 0, output
    client = tracker.client
    assert (
        alias_version(client, NAME, CHAMPION) == bad
        and alias_version(client, NAME, PREVIOUS_CHAMPION) == good
    )
    tags = client.get_model_version(NAME, bad).tags
    assert tags["promotion.by"] == getpass.getuser() and tags["promotion.forced"] == "true"
    assert tags["promotion.reason"] == "regime shift, manual" and tags["gate.decision"] == "rejected"
    listed = _krx("model", "list", "--spec", "kospi200f-1d")[1]
    assert f"v{bad} promoted by {getpass.getuser()} (forced): regime shift, manual" in listed


def test_rollback_restores_the_previous_champion_once(tracker: Tracker) -> None:
    good, bad = _gated_version(tracker, PASSING), _gated_version(tracker, REJECTED)
    _krx("model", "promote", bad, "--spec", "kospi200f-1d", "--force", "--reason", "try it")
    code, output = _krx("model", "rollback", "--spec", "kospi200f-1d")
    assert code == 0 and f"from v{bad} to v{good}" in output
    assert alias_version(tracker.client, NAME, CHAMPION) == good
    assert tracker.client.get_model_version(NAME, bad).tags["rollback.demoted_by"] == getpass.getuser()
    again, output = _krx("model", "rollback", "--spec", "kospi200f-1d")
    assert again == 1 and "no previous-champion" in output


def test_an_unknown_spec_is_an_error_naming_the_known_ones() -> None:
    code, output = _krx("model", "rollback", "--spec", "crypto")
    assert code == 2 and "kospi200f-1d" in output


def test_mlflow_ui_points_at_the_embedded_store_and_prints_its_url(isolated_settings: Path) -> None:
    code, output = _krx("mlflow", "ui", "--port", "5077", "--print-only")
    assert code == 0 and "http://127.0.0.1:5077" in output
    assert f"sqlite:///{isolated_settings.resolve()}/mlflow.db" in output
    assert (isolated_settings.resolve() / "mlflow-artifacts").as_uri() in output


@pytest.mark.slow
@pytest.mark.integration
def test_mlflow_ui_serves_the_registered_models(tracker: Tracker) -> None:
    _gated_version(tracker, PASSING)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        mlflow_ui_command("127.0.0.1", port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        body = None
        deadline = time.time() + 90
        while time.time() < deadline and body is None:
            try:
                url = f"http://127.0.0.1:{port}/api/2.0/mlflow/registered-models/get?name={NAME}"
                body = httpx.get(url, timeout=2).json()
            except httpx.HTTPError:
                time.sleep(1)
        assert body is not None, "mlflow ui did not answer"
        aliases = {a["alias"] for a in body["registered_model"]["aliases"]}
        assert "champion" in aliases
    finally:
        proc.terminate()
        proc.wait(timeout=30)
