"""Reconciliation against the simulator: the broker wins, every difference is recorded, and a mismatch that
persists for KRX_TRADING_RECONCILE_HALT_RUNS runs halts trading."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from pipeline.store.schema import trading_events
from pipeline.trading import state
from tests.trading.harness import DAY, Session, kst

pytestmark = pytest.mark.slow


def _differences(session: Session) -> list[sa.Row]:
    with session.engine.connect() as conn:
        return list(conn.execute(sa.select(trading_events).where(trading_events.c.kind == "reconcile")))


def test_a_manual_trade_is_adopted_and_a_persistent_mismatch_halts_trading(session: Session) -> None:
    stock = "005930"  # the job trades the futures spec; a person buys this stock by hand
    client = session.broker.client
    when = kst(DAY, 11, 0, 0.5)
    session.run(when)
    assert _differences(session) == []
    # Someone trades the account by hand between two runs: the broker wins, the difference is recorded.
    client.stock_order(stock, "buy", 1)
    when += dt.timedelta(minutes=1)
    first = session.run(when)
    assert first.reconciliation == [f"{stock}: store +0, broker +1 (broker wins)"]
    assert session.positions() == session.broker_positions() and session.positions()[stock] == 1
    assert not state.halt_state(session.engine, "main").halted
    # One matching run clears the streak.
    when += dt.timedelta(minutes=1)
    assert session.run(when).reconciliation == []
    assert state.halt_state(session.engine, "main").mismatch_runs == 0
    # Differences in three runs in a row (KRX_TRADING_RECONCILE_HALT_RUNS=3) halt trading.
    for k in range(3):
        client.stock_order(stock, "buy", 1)
        when += dt.timedelta(minutes=1)
        run = session.run(when)
        assert run.reconciliation, k
    halt = state.halt_state(session.engine, "main")
    assert halt.halted and halt.by == "reconciliation" and "3 runs in a row" in (halt.reason or "")
    assert len(_differences(session)) == 4
    assert session.positions() == session.broker_positions() and session.positions()[stock] == 4
    # halted: the job sends nothing more
    sent = len(session.broker_orders())
    for _ in range(5):
        when += dt.timedelta(minutes=1)
        session.run(when)
    assert len(session.broker_orders()) == sent
