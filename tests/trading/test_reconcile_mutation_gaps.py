"""Reconciliation, account snapshots and the day's starting equity on a SQLite store, without the simulator:
every difference is recorded and the broker wins, a persistent mismatch halts trading at exactly the
configured streak, a snapshot is kept once per timestamp, and the day starts on the KST calendar (gaps
found by mutation testing, ``tools/mutation.py``)."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pipeline.market import KST
from pipeline.store.db import create_store_engine, write_transaction
from pipeline.store.schema import account_snapshots, positions, trading_events
from pipeline.trading import state
from pipeline.trading.orders import apply_fill, stored_positions
from pipeline.trading.reconcile import Difference, reconcile, snapshot, start_of_day_equity
from pipeline.trading.types import AccountState, BrokerPosition
from tests.trading.conftest import MACHINE_ZONES

DAY = dt.date(2025, 7, 15)
MIDNIGHT = dt.datetime.combine(DAY, dt.time(0), KST)


def kst(hh: int, mm: int, day: dt.date = DAY) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hh, mm), KST)


NOW = kst(10, 0)


@pytest.fixture
def engine(sqlite_url: str) -> Iterator[Engine]:
    eng = create_store_engine(sqlite_url)
    yield eng
    eng.dispose()


def hold(engine: Engine, account: str, **quantities: int) -> None:
    """Store positions as fills would have left them (symbol given as ``s005930=3``)."""
    with write_transaction(engine) as conn:
        for name, qty in quantities.items():
            apply_fill(conn, account, name.removeprefix("s"), qty, 100.0, NOW)


def at_broker(**holdings: tuple[int, float]) -> AccountState:
    pos = {n.removeprefix("s"): BrokerPosition(n.removeprefix("s"), q, p) for n, (q, p) in holdings.items()}
    return AccountState(cash=1_000_000.0, equity=2_000_000.0, positions=pos)


def reconcile_events(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        query = (
            sa.select(trading_events)
            .where(trading_events.c.kind == "reconcile")
            .order_by(trading_events.c.id)
        )
        return list(conn.execute(query))


def test_a_difference_reads_with_signed_quantities() -> None:
    assert str(Difference("101W09", -2, 0)) == "101W09: store -2, broker +0 (broker wins)"


def test_every_difference_is_recorded_and_the_broker_wins(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    hold(engine, "main", s005930=3, s000660=2, s035420=1)
    hold(engine, "other", s005930=7)
    broker = at_broker(s005930=(3, 100.0), s000660=(5, 95.0), s101W09=(-1, 400.0), s051910=(0, 0.0))
    with caplog.at_level(logging.WARNING, logger="pipeline.trading.reconcile"):
        result = reconcile(engine, "main", broker, NOW, halt_after=3)
    expected = [Difference("000660", 2, 5), Difference("035420", 1, 0), Difference("101W09", 0, -1)]
    assert result.differences == expected and result.streak == 1 and not result.halted
    events = reconcile_events(engine)
    assert [(e.account, e.symbol, e.reason, e.detail) for e in events] == [
        ("main", d.symbol, str(d), {"store": d.store, "broker": d.broker}) for d in expected
    ]
    assert [r.getMessage() for r in caplog.records] == [f"reconciliation: {d}" for d in expected]
    assert stored_positions(engine, "main") == {
        "005930": (3, 100.0),
        "000660": (5, 95.0),
        "101W09": (-1, 400.0),
    }
    assert stored_positions(engine, "other") == {"005930": (7, 100.0)}
    with engine.connect() as conn:
        rows = conn.execute(sa.select(positions).where(positions.c.account == "main")).all()
    assert len(rows) == 3 and {r.updated_at for r in rows} == {NOW}  # a flat broker holding is not stored
    assert state.halt_state(engine, "main").mismatch_runs == 1


def test_matching_holdings_record_nothing_and_reset_the_streak(engine: Engine) -> None:
    hold(engine, "main", s005930=3)
    assert reconcile(engine, "main", at_broker(s005930=(4, 100.0)), NOW, halt_after=3).streak == 1
    clean = reconcile(engine, "main", at_broker(s005930=(4, 100.0)), NOW, halt_after=3)
    assert (clean.differences, clean.streak, clean.halted) == ([], 0, False)
    assert len(reconcile_events(engine)) == 1


def test_a_persistent_mismatch_halts_at_exactly_the_configured_streak(engine: Engine) -> None:
    results = []
    for n in range(1, 4):
        results.append(reconcile(engine, "main", at_broker(s005930=(n, 100.0)), NOW, halt_after=3))
        with write_transaction(engine) as conn:  # someone keeps trading by hand: the store is behind again
            conn.execute(positions.delete())
    assert [(r.streak, r.halted) for r in results] == [(1, False), (2, False), (3, True)]
    halt = state.halt_state(engine, "main")
    assert halt.halted and halt.by == "reconciliation"
    assert halt.reason == (
        "positions differ from the broker's for 3 runs in a row (005930: store +0, broker +3 (broker wins))"
    )


def test_several_differences_are_all_named_in_the_halt_reason(engine: Engine) -> None:
    result = reconcile(engine, "main", at_broker(s005930=(1, 1.0), s000660=(2, 1.0)), NOW, halt_after=1)
    assert result.halted
    assert state.halt_state(engine, "main").reason == (
        "positions differ from the broker's for 1 runs in a row "
        "(000660: store +0, broker +2 (broker wins); 005930: store +0, broker +1 (broker wins))"
    )


def test_a_clean_run_never_halts(engine: Engine) -> None:
    result = reconcile(engine, "main", at_broker(), NOW, halt_after=0)
    assert not result.halted and not state.halt_state(engine, "main").halted


# --- snapshots and the day's start ----------------------------------------------------------------------
def snapshots(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(sa.select(account_snapshots).order_by(account_snapshots.c.account)))


def test_a_snapshot_is_recorded_once_per_timestamp(engine: Engine) -> None:
    acct = AccountState(cash=1.0, equity=2.0, margin_used=0.5)
    snapshot(engine, "main", acct, NOW)
    snapshot(engine, "main", AccountState(cash=9.0, equity=9.0), NOW, source="eod")
    snapshot(engine, "other", AccountState(cash=3.0, equity=4.0), NOW, source="eod")
    got = [(r.account, r.ts, r.cash, r.equity, r.margin_used, r.source) for r in snapshots(engine)]
    assert got == [("main", NOW, 1.0, 2.0, 0.5, "run"), ("other", NOW, 3.0, 4.0, 0.0, "eod")]


def equity_at(engine: Engine, account: str, *points: tuple[dt.datetime, float]) -> None:
    for ts, equity in points:
        snapshot(engine, account, AccountState(cash=0.0, equity=equity), ts)


def test_the_day_starts_with_the_last_equity_before_it(engine: Engine) -> None:
    yesterday = DAY - dt.timedelta(days=1)
    equity_at(
        engine, "main", (kst(15, 0, yesterday), 100.0), (kst(15, 30, yesterday), 110.0), (kst(9, 0), 120.0)
    )
    equity_at(engine, "other", (kst(15, 45, yesterday), 999.0))
    assert start_of_day_equity(engine, "main", NOW) == 110.0


def test_without_an_earlier_snapshot_the_days_first_is_the_start(store: Engine) -> None:
    """On each backend: written out of order, the earliest of the day is still the start."""
    # 08:30 KST is 23:30 UTC of the day before: it is this day's snapshot all the same.
    equity_at(store, "main", (kst(9, 30), 130.0), (kst(8, 30), 125.0), (MIDNIGHT, 120.0))
    equity_at(store, "other", (kst(0, 0) - dt.timedelta(hours=1), 999.0))
    assert start_of_day_equity(store, "main", NOW) == 120.0
    assert start_of_day_equity(store, "nobody", NOW) is None


def test_a_snapshot_at_midnight_or_after_belongs_to_the_new_day(engine: Engine) -> None:
    yesterday = DAY - dt.timedelta(days=1)
    equity_at(engine, "main", (kst(15, 30, yesterday), 100.0), (MIDNIGHT, 120.0), (kst(0, 30), 150.0))
    assert start_of_day_equity(engine, "main", NOW) == 100.0


@pytest.mark.parametrize("machine_tz", MACHINE_ZONES, indirect=True)
def test_the_day_is_the_kst_day_whatever_the_machines_zone(engine: Engine, machine_tz: str) -> None:
    # 08:00 KST is still the previous day in UTC (and in UTC-10); in UTC+14 it is the same day.
    equity_at(
        engine,
        "main",
        (kst(15, 30, DAY - dt.timedelta(days=2)), 90.0),
        (kst(15, 30, DAY - dt.timedelta(days=1)), 100.0),
        (kst(7, 0), 120.0),
    )
    assert start_of_day_equity(engine, "main", kst(8, 0)) == 100.0
