"""``krx trading``: a person halts, looks and resumes; status shows what the store holds for today."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.market import KST
from pipeline.store.db import create_store_engine, write_transaction
from pipeline.store.schema import account_snapshots, orders, positions
from pipeline.trading.state import record_event

runner = CliRunner()


def _krx(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("krx")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=120, env=env)


def _status_json(*args: str) -> dict:
    result = runner.invoke(app, ["trading", "status", "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


@pytest.mark.integration
def test_halt_then_status_then_resume_as_a_person_runs_them(tmp_path: Path) -> None:
    """The real console script, one process per command: the switch lives in the store, not a process."""
    env = {
        **os.environ,
        "KRX_VAR_DIR": str(tmp_path / "var"),
        "KRX_DATABASE_URL": f"sqlite:///{tmp_path}/t.db",
    }
    env.pop("KRX_TRADING_ACCOUNT", None)
    halted = _krx("trading", "halt", "--reason", "broker maintenance tonight", env=env)
    assert halted.returncode == 0, halted.stderr
    assert "HALTED" in halted.stdout and "broker maintenance tonight" in halted.stdout

    status = _krx("trading", "status", env=env)
    assert status.returncode == 0, status.stderr
    assert "HALTED" in status.stdout and "broker maintenance tonight" in status.stdout
    assert "by cli:" in status.stdout and "krx trading resume" in status.stdout
    assert "mode sim, account main" in status.stdout

    resumed = _krx("trading", "resume", env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert "running" in resumed.stdout and "HALTED" not in resumed.stdout
    status = _krx("trading", "status", env=env)
    assert "running" in status.stdout and "HALTED" not in status.stdout
    assert "resumed" in status.stdout  # the events table shows both changes


def test_halting_again_keeps_the_first_reason_and_says_so() -> None:
    assert runner.invoke(app, ["trading", "halt", "--reason", "first"]).exit_code == 0
    again = runner.invoke(app, ["trading", "halt", "--reason", "second"])
    assert again.exit_code == 0 and "already halted" in again.output and "first" in again.output
    assert _status_json()["switch"]["reason"] == "first"


def test_halt_needs_a_reason() -> None:
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    assert runner.invoke(app, ["trading", "halt"]).exit_code == 2
    blank = runner.invoke(app, ["trading", "halt", "--reason", "  "])
    assert blank.exit_code == 2 and "--reason" in blank.output
    assert _status_json()["switch"]["halted"] is False


def test_the_account_option_halts_only_that_account(monkeypatch: pytest.MonkeyPatch) -> None:
    assert (
        runner.invoke(app, ["trading", "halt", "--reason", "futures only", "--account", "fut"]).exit_code == 0
    )
    assert _status_json("--account", "fut")["switch"]["halted"] is True
    assert _status_json()["switch"]["halted"] is False
    monkeypatch.setenv("KRX_TRADING_ACCOUNT", "fut")
    from pipeline.config import get_settings

    get_settings.cache_clear()
    assert _status_json()["account"] == "fut" and _status_json()["switch"]["halted"] is True


def test_status_on_an_empty_store_says_so() -> None:
    result = runner.invoke(app, ["trading", "status"])
    assert result.exit_code == 0, result.output
    assert "no trading tables in the store yet" in result.output and "krx db upgrade" in result.output
    data = _status_json()
    assert data["store_ready"] is False and data["mode"] == "sim" and data["account"] == "main"

    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    migrated = runner.invoke(app, ["trading", "status"])
    assert migrated.exit_code == 0, migrated.output
    for line in (
        "running",
        "no positions",
        "no orders today",
        "no account snapshot today",
        "no trading events",
    ):
        assert line in migrated.output


def _fill_store(engine: Engine, now: dt.datetime) -> None:
    day_start = dt.datetime.combine(now.astimezone(KST).date(), dt.time(0), KST)
    order = {"account": "main", "order_type": "market", "mode": "sim", "updated_at": now}
    with write_transaction(engine) as conn:
        conn.execute(
            positions.insert(),
            [
                {
                    "account": "main",
                    "symbol": "005930",
                    "quantity": 100,
                    "avg_price": 70_000.0,
                    "updated_at": now,
                },
                {
                    "account": "main",
                    "symbol": "101W06",
                    "quantity": -2,
                    "avg_price": 350.0,
                    "updated_at": now,
                },
                {"account": "other", "symbol": "000660", "quantity": 5, "avg_price": 1.0, "updated_at": now},
            ],
        )
        conn.execute(
            orders.insert(),
            [
                {**order, "client_order_id": "a", "symbol": "005930", "side": "buy", "quantity": 100,
                 "status": "filled", "filled_quantity": 100, "avg_fill_price": 70_000.0, "created_at": now},
                {**order, "client_order_id": "b", "symbol": "101W06", "side": "sell", "quantity": 3,
                 "status": "partial", "filled_quantity": 2, "avg_fill_price": 350.0, "created_at": now},
                {**order, "client_order_id": "old", "symbol": "005930", "side": "sell", "quantity": 9,
                 "status": "filled", "filled_quantity": 9, "avg_fill_price": 69_000.0,
                 "created_at": day_start - dt.timedelta(hours=2)},
            ],
        )  # fmt: skip
        conn.execute(
            account_snapshots.insert(),
            [
                {"account": "main", "ts": day_start - dt.timedelta(hours=1), "cash": 0, "equity": 90_000_000},
                {
                    "account": "main",
                    "ts": day_start + dt.timedelta(seconds=1),
                    "cash": 0,
                    "equity": 100_000_000,
                },
                {"account": "main", "ts": now, "cash": 0, "equity": 98_500_000},
            ],
        )
        record_event(
            conn, "main", "risk_rejected", "order quantity 60 > max_order_quantity 50", symbol="005930"
        )


def test_status_shows_positions_todays_orders_limits_used_and_events(
    isolated_settings: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KRX_TRADING_RISK", '{"max_orders_per_day": 10, "daily_loss_limit": 2000000}')
    from pipeline.config import get_settings

    get_settings.cache_clear()
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    engine = create_store_engine(get_settings().resolved_database_url)
    _fill_store(engine, dt.datetime.now(dt.UTC))
    engine.dispose()

    data = _status_json()
    assert [p["symbol"] for p in data["positions"]] == ["005930", "101W06"]  # account main only
    today = [(o["symbol"], o["side"], o["status"], o["filled_quantity"]) for o in data["orders_today"]]
    assert today == [("005930", "buy", "filled", 100), ("101W06", "sell", "partial", 2)]  # not yesterday's
    used = data["used"]
    assert used["orders_today"] == 2 and used["max_orders_per_day"] == 10
    assert used["gross_exposure"] == pytest.approx(100 * 70_000 + 2 * 350 * 250_000)  # futures multiplier
    assert used["loss_today"] == pytest.approx(1_500_000) and used["daily_loss_limit"] == 2_000_000
    assert data["events"][0]["reason"] == "order quantity 60 > max_order_quantity 50"

    shown = runner.invoke(app, ["trading", "status"])
    assert shown.exit_code == 0, shown.output
    expected = [
        "005930",
        "+100",
        "-2",
        "partial",
        "2 / 10",
        "182,000,000 KRW",
        "1,500,000 KRW / 2,000,000 KRW",
    ]
    for text in [*expected, "risk_rejected", "order quantity 60", "max_order_quantity 50"]:
        assert text in shown.output, text


def test_a_bad_risk_setting_is_an_error_naming_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KRX_TRADING_RISK", '{"max_order_qty": 3}')
    from pipeline.config import get_settings

    get_settings.cache_clear()
    result = runner.invoke(app, ["trading", "status"])
    assert result.exit_code == 2 and "max_order_qty" in result.output
