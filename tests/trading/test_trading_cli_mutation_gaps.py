"""``krx trading status / halt / resume`` as the operator reads them, beyond test_trading_cli.py: the table
cells and their formats (KST times, thousands separators, used of cap), the futures multiplier of a
position, what "today" and "this account" leave out, the kill switch's lines and what halt and resume
write, exit codes and error texts (gaps found by mutation testing, ``tools/mutation.py``). A hand-filled
SQLite store and the commands in-process: no simulator, no subprocess."""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from rich.console import Console
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from pipeline.config import get_settings, mask_url
from pipeline.market import KST
from pipeline.store.db import create_store_engine, write_transaction
from pipeline.store.migrate import upgrade
from pipeline.store.schema import account_snapshots, orders, positions, trading_events, trading_state
from pipeline.trading import cli
from pipeline.trading.risk import load_limits
from pipeline.trading.state import HaltState, engage, halt_state, recent_events

runner = CliRunner()


def kst(month: int, day: int, hour: int, minute: int = 0, second: int = 0) -> dt.datetime:
    return dt.datetime(2026, month, day, hour, minute, second, tzinfo=KST)


#: 08:30 KST on 1 December is still 30 November in UTC and further west: "today" must be the Korean day.
NOW = kst(12, 1, 8, 30)
DAY_START = kst(12, 1, 0)


@pytest.fixture
def screen(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    """What the module's console prints, plain text, wide enough that no table cell wraps."""
    buf = io.StringIO()
    monkeypatch.setattr(cli, "console", Console(file=buf, width=200, color_system=None))
    return buf


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    """The module's console as an 80-column colour terminal: shows wrapping and re-colouring."""
    buf = io.StringIO()
    console = Console(file=buf, width=80, force_terminal=True, color_system="standard", legacy_windows=False)
    monkeypatch.setattr(cli, "console", console)
    return buf


@pytest.fixture
def alice(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(cli.getpass, "getuser", lambda: "alice")
    return "cli:alice"


def configure(monkeypatch: pytest.MonkeyPatch, **env: str) -> None:
    for key, value in env.items():
        monkeypatch.setenv(f"KRX_{key.upper()}", value)
    get_settings.cache_clear()


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite file per module, copied for each test (a migration takes most of a second)."""
    path = tmp_path_factory.mktemp("trading-cli") / "template.db"
    engine = create_store_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()
    return path


@pytest.fixture
def db(migrated: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    """A migrated SQLite store of the test's own that the settings point at."""
    url = f"sqlite:///{shutil.copy(migrated, tmp_path / 'store.db')}"
    configure(monkeypatch, database_url=url)
    engine = create_store_engine(url)
    yield engine
    engine.dispose()


def tables(text: str) -> list[dict[str, Any]]:
    """The rich tables in ``text``: title (the line above), header cells and body rows of cells."""
    out: list[dict[str, Any]] = []
    above = None
    for line in text.splitlines():
        s = line.strip()
        cells = [c.strip() for c in re.split(r"[│┃]", s)[1:-1]]
        if s.startswith("┏"):
            out.append({"title": above, "header": [], "rows": []})
        elif s.startswith("┃"):
            out[-1]["header"] = cells
        elif s.startswith("│"):
            out[-1]["rows"].append(cells)
        elif s and not s.startswith(("┡", "└", "├")):
            above = s
    return out


def lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.splitlines() if line.strip()]


# --- a hand-filled day ------------------------------------------------------------------------

ORDER = {"order_type": "market", "mode": "sim", "updated_at": NOW}


def fill_day(engine: Engine, now: dt.datetime = NOW) -> None:
    """Account ``main`` on the KST day of ``now`` (plus the day before and another account's rows)."""
    start = dt.datetime.combine(now.astimezone(KST).date(), dt.time(0), KST)
    with write_transaction(engine) as conn:
        conn.execute(
            positions.insert(),
            [  # not inserted in symbol order
                {"account": "main", "symbol": "KOSPI200FX", "quantity": 1, "avg_price": 400.0,
                 "updated_at": kst(12, 1, 8, 1, 2)},
                {"account": "main", "symbol": "101W06", "quantity": -2, "avg_price": 350.0,
                 "updated_at": kst(12, 1, 8, 5)},
                {"account": "main", "symbol": "005930", "quantity": 1_200, "avg_price": 70_000.5,
                 "updated_at": kst(11, 30, 15, 30)},
                {"account": "main", "symbol": "000660", "quantity": 0, "avg_price": 1.0, "updated_at": now},
                {"account": "other", "symbol": "035420", "quantity": 5, "avg_price": 1.0, "updated_at": now},
            ],
        )  # fmt: skip
        conn.execute(
            orders.insert(),
            [
                {**ORDER, "client_order_id": "b", "account": "main", "spec": "kospi200f-1m",
                 "symbol": "101W06", "side": "sell", "quantity": 3, "status": "partial", "filled_quantity": 2,
                 "avg_fill_price": 350.25, "reason": None, "created_at": now - dt.timedelta(seconds=1)},
                {**ORDER, "client_order_id": "a", "account": "main", "spec": "krx-1d", "symbol": "005930",
                 "side": "buy", "quantity": 1_200, "status": "filled", "filled_quantity": 1_200,
                 "avg_fill_price": 70_000.5, "reason": "signal +1", "created_at": start},
                {**ORDER, "client_order_id": "y", "account": "main", "spec": "krx-1d", "symbol": "005930",
                 "side": "sell", "quantity": 9, "status": "filled", "filled_quantity": 9,
                 "avg_fill_price": 69_000.0, "reason": "yesterday",
                 "created_at": start - dt.timedelta(seconds=1)},
                {**ORDER, "client_order_id": "o", "account": "other", "spec": "krx-1d", "symbol": "035420",
                 "side": "buy", "quantity": 5, "status": "filled", "filled_quantity": 5,
                 "avg_fill_price": 1.0, "reason": "other account",
                 "created_at": now - dt.timedelta(seconds=2)},
            ],
        )  # fmt: skip
        conn.execute(
            account_snapshots.insert(),
            [
                {"account": "main", "ts": start - dt.timedelta(hours=1), "cash": 0, "equity": 90_000_000},
                {"account": "main", "ts": start, "cash": 0, "equity": 100_000_000},
                {"account": "main", "ts": now - dt.timedelta(minutes=30), "cash": 0, "equity": 99_000_000},
                {"account": "main", "ts": now - dt.timedelta(seconds=1), "cash": 0, "equity": 98_765_432.1},
                {"account": "other", "ts": now, "cash": 0, "equity": 1.0},
            ],
        )
        conn.execute(
            trading_state.insert(),
            [
                {"account": "main", "halted": True, "halt_reason": "daily loss limit", "mismatch_runs": 2,
                 "halted_at": kst(12, 1, 8, 10, 5), "halted_by": "risk:daily_loss_limit", "updated_at": now},
                {"account": "other", "halted": False, "halt_reason": None, "mismatch_runs": 0,
                 "halted_at": None, "halted_by": None, "updated_at": now},
            ],
        )  # fmt: skip
        conn.execute(
            trading_events.insert(),
            [
                {"ts": kst(12, 1, 8, 0, i), "account": "main", "kind": "risk_rejected", "symbol": "005930",
                 "reason": f"rejection {i}", "detail": {"n": i}}
                for i in range(8)
            ]
            + [
                {"ts": kst(12, 1, 8, 10, 5), "account": "main", "kind": "halted", "symbol": None,
                 "reason": "daily loss limit", "detail": {"by": "risk:daily_loss_limit"}},
                {"ts": kst(12, 1, 8, 11), "account": "other", "kind": "halted", "symbol": None,
                 "reason": "other account", "detail": None},
            ],
        )  # fmt: skip


RISK = '{"max_orders_per_day": 10, "max_gross_exposure": null, "daily_loss_limit": 2000000}'


@pytest.fixture
def day(db: Engine, monkeypatch: pytest.MonkeyPatch) -> Engine:
    """The hand-filled day, with a futures series of its own name and caps of the operator's choice."""
    configure(monkeypatch, futures_symbol="KOSPI200FX", trading_risk=RISK)
    fill_day(db)
    return db


# --- collect_status: the data behind every view -------------------------------------------------


@pytest.mark.parametrize("machine_tz", ["HST10"], indirect=True)
def test_status_data_holds_this_accounts_positions_and_only_todays_kst_orders_and_snapshots(
    day: Engine, machine_tz: str
) -> None:
    settings = get_settings()
    data = cli.collect_status(day, settings, "main", NOW)
    assert data["mode"] == "sim" and data["account"] == "main" and data["as_of"] == NOW
    assert data["store"] == mask_url(settings.resolved_database_url) and data["store_ready"] is True
    assert data["limits"] == load_limits(settings).model_dump()
    assert data["limits"]["max_gross_exposure"] is None and data["limits"]["max_orders_per_day"] == 10
    assert data["switch"] == {
        "halted": True,
        "reason": "daily loss limit",
        "since": kst(12, 1, 8, 10, 5),
        "by": "risk:daily_loss_limit",
        "mismatch_runs": 2,
    }
    # flat 000660 and the other account's 035420 are left out; sorted by symbol
    assert data["positions"] == [
        {"symbol": "005930", "quantity": 1_200, "avg_price": 70_000.5, "multiplier": 1.0,
         "exposure": 84_000_600.0, "updated_at": kst(11, 30, 15, 30)},
        {"symbol": "101W06", "quantity": -2, "avg_price": 350.0, "multiplier": 250_000.0,
         "exposure": 175_000_000.0, "updated_at": kst(12, 1, 8, 5)},
        {"symbol": "KOSPI200FX", "quantity": 1, "avg_price": 400.0, "multiplier": 250_000.0,
         "exposure": 100_000_000.0, "updated_at": kst(12, 1, 8, 1, 2)},
    ]  # fmt: skip
    # the order at exactly 00:00 KST is today's, the one a second before is yesterday's
    assert data["orders_today"] == [
        {"created_at": DAY_START, "spec": "krx-1d", "symbol": "005930", "side": "buy", "quantity": 1_200,
         "status": "filled", "filled_quantity": 1_200, "avg_fill_price": 70_000.5, "mode": "sim",
         "reason": "signal +1"},
        {"created_at": NOW - dt.timedelta(seconds=1), "spec": "kospi200f-1m", "symbol": "101W06",
         "side": "sell", "quantity": 3, "status": "partial", "filled_quantity": 2, "avg_fill_price": 350.25,
         "mode": "sim", "reason": None},
    ]  # fmt: skip
    # the day's first snapshot is the one at exactly 00:00 KST, not yesterday's 90,000,000
    assert data["used"] == {
        "orders_today": 2,
        "max_orders_per_day": 10,
        "gross_exposure": pytest.approx(359_000_600.0),
        "max_gross_exposure": None,
        "loss_today": pytest.approx(1_234_567.9),
        "start_equity": 100_000_000.0,
        "equity": 98_765_432.1,
        "daily_loss_limit": 2_000_000.0,
    }
    # the newest eight of main's nine events, newest first
    assert [e["reason"] for e in data["events"]] == ["daily loss limit"] + [
        f"rejection {i}" for i in range(7, 0, -1)
    ]
    assert data["events"][0] == {
        "ts": kst(12, 1, 8, 10, 5),
        "kind": "halted",
        "symbol": None,
        "reason": "daily loss limit",
        "detail": {"by": "risk:daily_loss_limit"},
    }
    assert data["events"][1]["symbol"] == "005930" and data["events"][1]["detail"] == {"n": 7}


def test_a_symbol_is_futures_only_under_the_configured_series_name(db: Engine) -> None:
    """Without ``KRX_FUTURES_SYMBOL=KOSPI200FX`` that symbol is not futures: exposure without multiplier."""
    fill_day(db)
    held = {p["symbol"]: p for p in cli.collect_status(db, get_settings(), "main", NOW)["positions"]}
    assert held["KOSPI200FX"]["multiplier"] == 1.0 and held["KOSPI200FX"]["exposure"] == 400.0
    assert held["101W06"]["multiplier"] == 250_000.0  # a contract code is futures under any setting


def test_before_the_days_first_snapshot_the_loss_is_unknown_not_zero(
    db: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    with write_transaction(db) as conn:
        conn.execute(
            account_snapshots.insert(),
            [{"account": "main", "ts": DAY_START - dt.timedelta(seconds=1), "cash": 0, "equity": 1e8}],
        )
    data = cli.collect_status(db, get_settings(), "main", NOW)
    assert data["used"]["loss_today"] is None
    assert data["used"]["start_equity"] is None and data["used"]["equity"] is None
    assert data["used"]["daily_loss_limit"] == 5_000_000.0  # the default cap
    assert data["positions"] == [] and data["orders_today"] == [] and data["events"] == []
    assert data["switch"]["halted"] is False


def test_a_store_without_trading_tables_is_not_ready_and_not_read(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    engine = create_store_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE positions (x INTEGER)")  # not the trading tables
    try:
        data = cli.collect_status(engine, get_settings(), "main", NOW)
    finally:
        engine.dispose()
    assert data["store_ready"] is False and "switch" not in data and "positions" not in data


def test_status_is_as_of_now_when_no_time_is_given(db: Engine) -> None:
    before = dt.datetime.now(dt.UTC)
    data = cli.collect_status(db, get_settings(), "main")
    assert before <= data["as_of"] <= dt.datetime.now(dt.UTC)


# --- what the operator reads ------------------------------------------------------------------


def test_positions_and_orders_tables_show_kst_times_signs_and_thousands_separators(
    day: Engine, screen: io.StringIO
) -> None:
    cli._print_tables(cli.collect_status(day, get_settings(), "main", NOW))
    held, today = tables(screen.getvalue())
    assert held["title"] == "positions (exposure: |quantity| × avg price × multiplier)"
    assert held["header"] == ["symbol", "quantity", "avg price", "exposure (KRW)", "updated (KST)"]
    assert held["rows"] == [
        ["005930", "+1,200", "70,000.50", "84,000,600", "2026-11-30 15:30:00"],
        ["101W06", "-2", "350.00", "175,000,000", "2026-12-01 08:05:00"],
        ["KOSPI200FX", "+1", "400.00", "100,000,000", "2026-12-01 08:01:02"],
    ]
    assert today["title"] == "orders today"
    assert today["header"] == [
        "time (KST)",
        "symbol",
        "side",
        "qty",
        "status",
        "filled",
        "avg price",
        "reason",
    ]
    assert today["rows"] == [
        ["00:00:00", "005930", "buy", "1,200", "filled", "1,200", "70,000.50", "signal +1"],
        ["08:29:59", "101W06", "sell", "3", "partial", "2", "350.25", ""],
    ]


def test_an_order_without_fills_shows_a_dash_for_its_price(db: Engine, screen: io.StringIO) -> None:
    with write_transaction(db) as conn:
        conn.execute(
            orders.insert().values(
                **ORDER, client_order_id="n", account="main", symbol="000660", side="buy", quantity=1,
                status="sent", filled_quantity=0, avg_fill_price=None, reason="x", created_at=NOW,
            )
        )  # fmt: skip
    cli._print_tables(cli.collect_status(db, get_settings(), "main", NOW))
    assert lines(screen.getvalue())[0] == "no positions"
    (today,) = tables(screen.getvalue())
    assert today["rows"] == [["08:30:00", "000660", "buy", "1", "sent", "0", "-", "x"]]


def test_an_empty_day_says_no_positions_no_orders_no_events(db: Engine, screen: io.StringIO) -> None:
    data = cli.collect_status(db, get_settings(), "main", NOW)
    cli._print_tables(data)
    cli._print_events(data["events"])
    assert lines(screen.getvalue()) == ["no positions", "no orders today", "no trading events"]


def test_limits_table_shows_used_of_cap_no_limit_and_the_days_equity(
    day: Engine, screen: io.StringIO
) -> None:
    cli._print_used(cli.collect_status(day, get_settings(), "main", NOW))
    (used,) = tables(screen.getvalue())
    assert used["title"] == "limits today" and used["header"] == ["limit", "used / allowed"]
    assert used["rows"] == [
        ["orders today", "2 / 10"],
        ["gross exposure", "359,000,600 KRW (no limit)"],
        ["loss today", "1,234,568 KRW / 2,000,000 KRW (equity 100,000,000 -> 98,765,432)"],
    ]


def test_limits_without_a_snapshot_name_the_loss_cap_or_none(
    db: Engine, screen: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli._print_used(cli.collect_status(db, get_settings(), "main", NOW))
    configure(monkeypatch, trading_risk='{"daily_loss_limit": null, "max_orders_per_day": null}')
    cli._print_used(cli.collect_status(db, get_settings(), "main", NOW))
    capped, uncapped = tables(screen.getvalue())
    assert capped["rows"] == [
        ["orders today", "0 / 200"],
        ["gross exposure", "0 KRW / 1,000,000,000 KRW"],
        ["loss today", "no account snapshot today (limit 5,000,000 KRW)"],
    ]
    assert uncapped["rows"] == [
        ["orders today", "0 (no limit)"],
        ["gross exposure", "0 KRW / 1,000,000,000 KRW"],
        ["loss today", "no account snapshot today"],
    ]


def test_events_table_shows_kst_times_kinds_symbols_and_reasons(day: Engine, screen: io.StringIO) -> None:
    cli._print_events(cli.collect_status(day, get_settings(), "main", NOW)["events"])
    (events,) = tables(screen.getvalue())
    assert events["title"] == "latest trading events"
    assert events["header"] == ["time (KST)", "kind", "symbol", "reason"]
    assert events["rows"][:2] == [
        ["2026-12-01 08:10:05", "halted", "", "daily loss limit"],
        ["2026-12-01 08:00:07", "risk_rejected", "005930", "rejection 7"],
    ]
    assert len(events["rows"]) == 8


def test_the_switch_line_says_who_halted_when_in_kst_and_how_to_clear_it(screen: io.StringIO) -> None:
    since = dt.datetime(2026, 11, 30, 23, 10, 5, tzinfo=dt.UTC)
    cli._print_switch(HaltState(True, "positions differ", since, "reconcile", 3), "fut")
    cli._print_switch(
        {"halted": False, "reason": None, "since": None, "by": None, "mismatch_runs": 0}, "main"
    )
    cli._print_switch(
        {"halted": True, "reason": "r", "since": None, "by": "cli:bob", "mismatch_runs": 0}, "x"
    )
    assert lines(screen.getvalue()) == [
        "trading HALTED for account fut since 2026-12-01 08:10:05 KST by reconcile: positions differ",
        "clear it with `krx trading resume`",
        "trading running for account main (kill switch clear)",
        "trading HALTED for account x since - KST by cli:bob: r",
        "clear it with `krx trading resume`",
    ]


def test_the_switch_line_is_one_unwrapped_uncoloured_line_in_a_narrow_terminal(terminal: io.StringIO) -> None:
    since = dt.datetime(2026, 11, 30, 23, 10, 5, tzinfo=dt.UTC)
    reason = "positions differ for 3 runs: 005930 store 1,200 broker 1,100 ('main')"
    cli._print_switch(HaltState(True, reason, since, "reconcile", 3), "fut")
    out = terminal.getvalue()
    assert f" since 2026-12-01 08:10:05 KST by reconcile: {reason}\n" in out  # not re-coloured, not wrapped


# --- krx trading status -----------------------------------------------------------------------


def fill_today(engine: Engine) -> None:
    """Rows for the real clock (the command takes no time): one order now and one before today."""
    now = dt.datetime.now(dt.UTC)
    start = dt.datetime.combine(now.astimezone(KST).date(), dt.time(0), KST)
    with write_transaction(engine) as conn:
        conn.execute(
            orders.insert(),
            [
                {**ORDER, "client_order_id": "t", "account": "main", "symbol": "005930", "side": "buy",
                 "quantity": 1_500, "status": "filled", "filled_quantity": 1_500, "avg_fill_price": 1.0,
                 "reason": "today", "created_at": now},
                {**ORDER, "client_order_id": "y", "account": "main", "symbol": "005930", "side": "buy",
                 "quantity": 7, "status": "filled", "filled_quantity": 7, "avg_fill_price": 1.0,
                 "reason": "yesterday",
                 "created_at": start - dt.timedelta(seconds=1)},
            ],
        )  # fmt: skip
        conn.execute(
            positions.insert(),
            [{"account": "main", "symbol": "101W06", "quantity": -2, "avg_price": 350.0, "updated_at": now}],
        )
        conn.execute(
            trading_events.insert(),
            [
                {
                    "ts": now,
                    "account": "main",
                    "kind": "risk_rejected",
                    "symbol": "101W06",
                    "reason": "too big",
                }
            ],
        )


def test_status_prints_the_header_switch_tables_limits_and_events_of_the_default_account(
    db: Engine, screen: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    fill_today(db)
    configure(monkeypatch, trading_risk='{"max_orders_per_day": 10}')
    result = runner.invoke(cli.trading_app, ["status"])
    assert result.exit_code == 0, result.output
    out = screen.getvalue()
    assert lines(out)[:2] == [
        f"mode sim, account main, store {mask_url(get_settings().resolved_database_url)}",
        "trading running for account main (kill switch clear)",
    ]
    found = {t["title"]: t["rows"] for t in tables(out)}
    assert found["positions (exposure: |quantity| × avg price × multiplier)"][0][:4] == [
        "101W06", "-2", "350.00", "175,000,000",
    ]  # fmt: skip
    assert [row[7] for row in found["orders today"]] == ["today"]
    assert found["limits today"][0] == ["orders today", "1 / 10"]
    assert found["latest trading events"][0][1:] == ["risk_rejected", "101W06", "too big"]


def test_status_of_another_account_by_option_and_by_setting(
    day: Engine, screen: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert runner.invoke(cli.trading_app, ["status", "--account", "other"]).exit_code == 0
    configure(monkeypatch, trading_account="other")
    assert runner.invoke(cli.trading_app, ["status"]).exit_code == 0
    first, second = screen.getvalue().split("mode sim, ")[1:]
    for shown in (first, second):
        assert shown.startswith("account other, store ")
        assert "trading running for account other (kill switch clear)" in shown
        assert [r[0] for r in tables(shown)[0]["rows"]] == ["035420"]


def test_status_json_is_the_collected_data_indented(
    day: Engine, screen: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = runner.invoke(cli.trading_app, ["status", "--json", "--account", "main"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith('{\n  "mode": "sim",\n  "account": "main",\n')
    data = json.loads(result.output)
    assert data["store_ready"] is True and data["switch"]["halted"] is True
    assert data["switch"]["since"] == str(kst(12, 1, 8, 10, 5).astimezone(dt.UTC))  # datetimes as text
    assert [p["symbol"] for p in data["positions"]] == ["005930", "101W06", "KOSPI200FX"]
    assert data["used"]["max_gross_exposure"] is None and data["used"]["max_orders_per_day"] == 10
    assert screen.getvalue() == ""  # no tables around the JSON


def test_status_header_is_one_unwrapped_uncoloured_line_in_a_narrow_terminal(
    db: Engine, terminal: io.StringIO
) -> None:
    assert runner.invoke(cli.trading_app, ["status"]).exit_code == 0
    assert f", store {mask_url(get_settings().resolved_database_url)}\n" in terminal.getvalue()


def test_status_of_a_store_without_trading_tables_says_to_upgrade(screen: io.StringIO) -> None:
    result = runner.invoke(cli.trading_app, ["status"])
    assert result.exit_code == 0, result.output
    assert lines(screen.getvalue())[1:] == [
        "no trading tables in the store yet (a new or older store): run `krx db upgrade` first"
    ]


def test_a_bad_risk_setting_stops_status_with_exit_2_and_the_whole_message(
    terminal: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(monkeypatch, trading_risk='{"max_order_qty": 3, "daily_loss_limit": -1}')
    message = None
    try:
        load_limits(get_settings())
    except ValueError as exc:
        message = str(exc)
    assert message is not None and "max_order_qty" in message and "daily_loss_limit" in message
    result = runner.invoke(cli.trading_app, ["status"])
    assert result.exit_code == 2
    out = terminal.getvalue()
    assert f"error\x1b[0m {message}\n" in out and "[red]" not in out  # red "error", the text verbatim


def test_the_options_are_named_and_explained_in_the_help(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("TERMINAL_WIDTH", "200")

    def help_of(command: str) -> str:
        result = runner.invoke(cli.trading_app, [command, "--help"])
        assert result.exit_code == 0, result.output
        return " ".join(re.sub(r"[│╭╮╰╯─]", " ", result.output).split())

    status_help, halt_help = help_of("status"), help_of("halt")
    assert "--json" in status_help and "Print JSON instead of tables." in status_help
    assert "--reason" in halt_help and "Why trading stops (shown until it is resumed)." in halt_help


# --- krx trading halt / resume ----------------------------------------------------------------


def test_halt_migrates_a_new_store_and_engages_only_that_account(
    tmp_path: Path, screen: io.StringIO, alice: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"
    configure(monkeypatch, database_url=url)
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    result = runner.invoke(
        cli.trading_app, ["halt", "--reason", "  broker maintenance  ", "--account", "fut"]
    )
    assert result.exit_code == 0, result.output
    engine = create_store_engine(url)
    try:
        state = halt_state(engine, "fut")
        assert halt_state(engine, "main").halted is False
    finally:
        engine.dispose()
    assert state.halted and state.reason == "broker maintenance" and state.by == alice
    assert state.since is not None and state.since >= before
    assert lines(screen.getvalue()) == [
        f"trading HALTED for account fut since {state.since.astimezone(KST):%Y-%m-%d %H:%M:%S} KST "
        "by cli:alice: broker maintenance",
        "clear it with `krx trading resume`",
    ]


def test_halting_a_halted_account_keeps_the_first_reason_and_says_so(
    db: Engine, screen: io.StringIO, alice: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engage(db, "desk", "first reason", "risk:daily_loss_limit")
    configure(monkeypatch, trading_account="desk")
    result = runner.invoke(cli.trading_app, ["halt", "--reason", "second reason"])
    assert result.exit_code == 0, result.output
    shown = lines(screen.getvalue())
    assert shown[0] == "already halted: the first reason is kept"
    assert shown[1].startswith("trading HALTED for account desk since ")
    assert shown[1].endswith(" KST by risk:daily_loss_limit: first reason")
    assert halt_state(db, "desk").reason == "first reason"


def test_halt_without_a_reason_is_refused_before_the_store_is_touched(
    tmp_path: Path, screen: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'untouched.db'}"
    configure(monkeypatch, database_url=url)
    result = runner.invoke(cli.trading_app, ["halt", "--reason", " \t "])
    assert result.exit_code == 2
    assert lines(screen.getvalue()) == ["error --reason must say why trading stops"]
    assert not (tmp_path / "untouched.db").exists()
    missing = runner.invoke(cli.trading_app, ["halt"])
    assert missing.exit_code == 2 and "--reason" in missing.output


def test_halt_on_a_current_store_does_not_migrate_it(
    db: Engine, screen: io.StringIO, alice: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pipeline.store.migrate as migrate

    def no_upgrade(*args: object, **kwargs: object) -> None:
        raise AssertionError("upgrade called on a store at the newest revision")

    monkeypatch.setattr(migrate, "upgrade", no_upgrade)
    result = runner.invoke(cli.trading_app, ["halt", "--reason", "stop"])
    assert result.exit_code == 0, result.output
    assert halt_state(db, "main").halted is True


@pytest.mark.parametrize("error", [KeyError("getpwuid(): uid not found: 1000"), OSError("no login")])
def test_without_a_login_name_the_switch_is_changed_by_cli_unknown(
    db: Engine, screen: io.StringIO, monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    def getuser() -> str:
        raise error

    monkeypatch.setattr(cli.getpass, "getuser", getuser)
    assert runner.invoke(cli.trading_app, ["halt", "--reason", "stop"]).exit_code == 0
    assert halt_state(db, "main").by == "cli:unknown"
    assert runner.invoke(cli.trading_app, ["resume"]).exit_code == 0
    assert recent_events(db, "main")[0]["detail"]["by"] == "cli:unknown"


def test_resume_clears_the_switch_of_that_account_and_records_who(
    db: Engine, screen: io.StringIO, alice: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engage(db, "fut", "broker maintenance", "cli:bob")
    engage(db, "main", "daily loss limit", "risk:daily_loss_limit")
    configure(monkeypatch, trading_account="fut")
    result = runner.invoke(cli.trading_app, ["resume"])
    assert result.exit_code == 0, result.output
    assert lines(screen.getvalue()) == ["trading running for account fut (kill switch clear)"]
    assert halt_state(db, "fut") == HaltState(halted=False)
    assert halt_state(db, "main").halted is True
    event = recent_events(db, "fut")[0]
    assert event["kind"] == "resumed"
    assert event["reason"] == "resumed by cli:alice (was halted: broker maintenance)"
    assert runner.invoke(cli.trading_app, ["resume", "--account", "main"]).exit_code == 0
    assert halt_state(db, "main").halted is False


def test_resume_migrates_a_new_store(
    tmp_path: Path, screen: io.StringIO, alice: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"
    configure(monkeypatch, database_url=url)
    assert runner.invoke(cli.trading_app, ["resume"]).exit_code == 0
    engine = create_store_engine(url)
    try:
        (event,) = recent_events(engine, "main")
        assert sa.inspect(engine).has_table("trading_state")
    finally:
        engine.dispose()
    assert event["reason"] == "resumed by cli:alice (was not halted)"


@pytest.mark.postgres
def test_postgresql_lists_by_symbol_and_by_time_then_id_not_in_insertion_order(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL hands rows back in any order without ORDER BY (SQLite's keys happen to sort them)."""
    configure(monkeypatch, database_url=pg_url)
    engine = create_store_engine(pg_url)
    same = NOW - dt.timedelta(minutes=5)
    try:
        with write_transaction(engine) as conn:
            conn.execute(
                positions.insert(),
                [
                    {"account": "main", "symbol": s, "quantity": 1, "avg_price": 1.0, "updated_at": NOW}
                    for s in ("101W06", "035420", "005930")
                ],
            )
            conn.execute(
                orders.insert(),
                [
                    {**ORDER, "id": i, "client_order_id": str(i), "account": "main", "symbol": "005930",
                     "side": "buy", "quantity": 1, "status": "sent", "reason": reason, "created_at": ts}
                    for i, reason, ts in [(5, "second", same), (4, "first", same), (6, "midnight", DAY_START)]
                ],
            )  # fmt: skip
            conn.execute(
                account_snapshots.insert(),
                [
                    {"account": "main", "ts": ts, "cash": 0, "equity": equity}
                    for ts, equity in [(same, 99e6), (DAY_START, 100e6), (NOW, 98e6)]
                ],
            )
        data = cli.collect_status(engine, get_settings(), "main", NOW)
    finally:
        engine.dispose()
    assert data["store_ready"] is True  # the table's name as created, lower case
    assert [p["symbol"] for p in data["positions"]] == ["005930", "035420", "101W06"]
    assert [o["reason"] for o in data["orders_today"]] == ["midnight", "first", "second"]
    assert data["used"]["start_equity"] == 100e6 and data["used"]["equity"] == 98e6
