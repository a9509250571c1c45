"""`krx demo --quick` end to end, as a user runs it (a subprocess on a fresh KRX_VAR_DIR): the simulator, the
real DAGs under `airflow dags test`, the gate, the model server, one simulated session and the end-of-day
report; then every stage's outputs exist and agree — the store's orders are the simulator's ledger, the
decisions were made by the champion MLflow names, the report's numbers are those stored — and a second
run reuses what the first made and still succeeds."""

from __future__ import annotations

import datetime as dt
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient

from pipeline.market import KST
from pipeline.validation.offline import external_asset_refs

pytestmark = [
    pytest.mark.slow,
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy:DeprecationWarning"),
]

KRX = Path(sys.executable).with_name("krx")
STAGES = (
    "prepare",
    "simulator",
    "ingest_bars",
    "validate_and_featurize",
    "cluster_regimes",
    "train_agent",
    "gate",
    "serve",
    "trade",
    "eod_report",
)
MODEL = "krx-a3c-kospi200f-1m"


def _demo(var: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KRX_", "AIRFLOW"))}
    env |= {"KRX_VAR_DIR": str(var), "COLUMNS": "200", "TERM": "dumb"}
    return subprocess.run(
        [str(KRX), "demo", "--quick"], env=env, cwd=cwd, capture_output=True, text=True, timeout=900
    )


def _rows(db: Path, query: str, *args: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return list(conn.execute(query, args))


def _kst_day(utc_naive: str) -> dt.date:
    return dt.datetime.fromisoformat(utc_naive).replace(tzinfo=dt.UTC).astimezone(KST).date()


def _traded_day(out: str) -> str:
    match = re.search(r"trading session (\d{4}-\d{2}-\d{2})", out)
    assert match, out[-3000:]
    return match.group(1)


def _check_ledger(var: Path) -> int:
    """Every order the store sent is in the simulator's ledger with the same symbol, side, quantity and
    filled quantity, and the ledger has no order the store does not know; returns the number of orders."""
    store = {
        r[0]: r[1:]
        for r in _rows(
            var / "market.db",
            "SELECT broker_order_no, symbol, side, quantity, filled_quantity FROM orders "
            "WHERE broker_order_no IS NOT NULL",
        )
    }
    ledger = {
        r[0]: r[1:]
        for r in _rows(
            var / "kis_sim.db", "SELECT odno, symbol, side, qty, filled_qty FROM orders WHERE orgn_odno = ''"
        )
    }
    assert store == ledger
    store_fills = _rows(
        var / "market.db",
        "SELECT o.broker_order_no, sum(f.quantity) FROM fills f JOIN orders o "
        "ON o.id = f.order_id GROUP BY o.broker_order_no",
    )
    ledger_fills = _rows(var / "kis_sim.db", "SELECT odno, sum(qty) FROM fills GROUP BY odno")
    assert sorted(store_fills) == sorted(ledger_fills)
    return len(store)


def _check_served_champion(var: Path, client: MlflowClient, day: str) -> str:
    """Every decision of the session was made by the version MLflow names champion, and that version's
    promotion is the gate's or a recorded override."""
    champion = client.get_model_version_by_alias(MODEL, "champion")
    decided = _rows(var / "market.db", "SELECT model_version, bar_ts, outcome FROM decisions")
    today = [r for r in decided if _kst_day(r[1]).isoformat() == day]
    assert today, "no decision recorded for the traded session"
    version = str(champion.version)
    # every decision the model made names the champion (a flatten before the close asks no model)
    assert {r[0] for r in today if r[0] is not None} == {version}
    assert all(r[0] == version for r in today if r[2] in {"order", "hold"})
    passed = champion.tags["gate.decision"] in {"champion", "challenger"}
    if not passed:
        assert champion.tags["promotion.forced"] == "true" and "krx demo" in champion.tags["promotion.reason"]
    return version


def _check_eod(var: Path, client: MlflowClient, day: str, out: str) -> None:
    """The end-of-day run in MLflow `operations` holds the store's numbers, and the summary prints them."""
    (run,) = client.search_runs(
        [client.get_experiment_by_name("operations").experiment_id], f"attributes.run_name = 'eod-main-{day}'"
    )
    metrics = run.data.metrics
    orders = [
        r
        for r in _rows(var / "market.db", "SELECT created_at FROM orders")
        if _kst_day(r[0]).isoformat() == day
    ]
    fills = [r for r in _rows(var / "market.db", "SELECT ts FROM fills") if _kst_day(r[0]).isoformat() == day]
    assert metrics["orders"] == len(orders) and metrics["fills"] == len(fills)
    (eod,) = [
        r
        for r in _rows(
            var / "market.db", "SELECT ts, equity, source FROM account_snapshots WHERE source = 'eod'"
        )
        if _kst_day(r[0]).isoformat() == day
    ]
    assert metrics["equity"] == pytest.approx(eod[1])
    assert re.search(rf"PnL \(eod_report\)\s+│ {re.escape(format(metrics['daily_pnl'], ',.0f'))} KRW", out)
    assert (var / "reports" / "trading" / day / f"eod-main-{day}.html").is_file()


def _check_training_summary(client: MlflowClient, version: str, out: str, var: Path) -> None:
    mv = client.get_model_version(MODEL, version)
    parent = client.get_run(mv.tags["krx.training_run"])
    seeds = client.search_runs(
        [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    assert len(seeds) >= 3
    sharpe = parent.data.metrics["eval/test/sharpe"]
    bh = parent.data.metrics["baseline/buy_and_hold/test/sharpe"]
    assert re.search(rf"│ agent\s+│ {sharpe:.2f}\s+│", out), out[-4000:]
    assert re.search(rf"│ buy_and_hold\s+│ {bh:.2f}\s+│", out)
    assert f"the gate on v{version}: {mv.tags['gate.decision']}" in out
    assert (var / "reports" / "kospi200f-1m" / f"{MODEL}-v{version}.html").is_file()


def test_krx_demo_quick_runs_the_chain_and_its_outputs_agree_then_reruns(tmp_path: Path) -> None:
    var = tmp_path / "var"
    first = _demo(var, tmp_path)
    out = first.stdout
    assert first.returncode == 0, (out + first.stderr)[-6000:]
    for i, stage in enumerate(STAGES, 1):
        assert f"[{i}/10] {stage}:" in out
    assert out.count(" ok ") >= len(STAGES) and "krx demo: summary" in out and "krx demo finished" in out
    # library chatter is in the log, not on the console
    log = (var / "logs" / "demo.log").read_text()
    assert "airflow dags test train_agent" in log and "HTTP Request" in log
    assert "HTTP Request" not in out and "alembic" not in out.lower() and "[info" not in out

    pages = [p for p in (var / "data_docs").rglob("*") if p.suffix in (".html", ".css")]
    assert pages and not [r for p in pages for r in external_asset_refs(p.read_text(encoding="utf-8"))]
    day = _traded_day(out)
    uri = f"sqlite:///{var / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)  # never a registry URI left in os.environ
    _check_ledger(var)
    version = _check_served_champion(var, client, day)
    assert re.search(rf"served version\s+│ {version}\s", out)
    _check_eod(var, client, day, out)
    _check_training_summary(client, version, out, var)

    second = _demo(var, tmp_path)
    again = second.stdout
    assert second.returncode == 0, (again + second.stderr)[-6000:]
    assert "reusing" in again and f"reusing {MODEL} v{version}" in again
    assert len(client.search_model_versions(f"name = '{MODEL}'")) == 1  # nothing retrained
    # the bars were upserted again, never duplicated
    assert _rows(var / "market.db", "SELECT count(*) FROM bars") == _rows(
        var / "market.db", "SELECT count(*) FROM (SELECT DISTINCT symbol, interval, ts FROM bars)"
    )
    next_day = _traded_day(again)
    assert next_day > day  # the next session, not the same one twice
    _check_ledger(var)
    assert _check_served_champion(var, client, next_day) == version
    _check_eod(var, client, next_day, again)


def test_a_failed_stage_is_named_and_the_exit_status_is_not_zero(tmp_path: Path) -> None:
    """A stage that cannot run (here the market store's file is a directory) fails the demo there, with
    the stage named and a non-zero status, not with a traceback."""
    var = tmp_path / "var"
    (var / "market.db").mkdir(parents=True)
    run = _demo(var, tmp_path)
    assert run.returncode == 1
    assert "krx demo failed at stage prepare" in run.stdout
    assert "Traceback" not in run.stdout
