"""The kill switch is data: engaged, it stays engaged (first reason kept) across restarts until resumed."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pipeline.store.db import create_store_engine, write_transaction
from pipeline.store.schema import trading_events, trading_state
from pipeline.trading.state import (
    engage,
    halt_state,
    note_reconciliation,
    recent_events,
    record_event,
    resume,
)


def _events(engine: Engine, account: str) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(trading_events.c.kind, trading_events.c.reason)
            .where(trading_events.c.account == account)
            .order_by(trading_events.c.id)
        )
        return [(r.kind, r.reason) for r in rows]


def test_an_account_never_halted_is_running(store: Engine) -> None:
    state = halt_state(store, "main")
    assert not state.halted and state.reason is None and state.mismatch_runs == 0


def test_engage_halts_with_its_reason_and_records_the_event(store: Engine) -> None:
    state = engage(store, "main", "loss today 6,000,000 KRW >= daily_loss_limit", "risk:daily_loss_limit")
    assert state.halted and state.by == "risk:daily_loss_limit"
    assert state.reason == "loss today 6,000,000 KRW >= daily_loss_limit"
    assert state.since is not None and state.since.tzinfo is not None
    assert halt_state(store, "main") == state
    assert _events(store, "main") == [("halted", state.reason)]
    assert not halt_state(store, "other").halted  # per account


def test_engaging_again_keeps_the_first_reason(store: Engine) -> None:
    first = engage(store, "main", "reconciliation mismatch for 3 runs", "reconciliation")
    again = engage(store, "main", "operator pressed halt", "cli:alice")
    assert again == first
    assert halt_state(store, "main").reason == "reconciliation mismatch for 3 runs"
    assert [kind for kind, _ in _events(store, "main")] == ["halted"]


def test_the_switch_survives_a_restart(store: Engine) -> None:
    url = store.url.render_as_string(hide_password=False)
    engage(store, "main", "manual stop before the FOMC", "cli:alice")
    store.dispose()
    restarted = create_store_engine(url)
    try:
        state = halt_state(restarted, "main")
        assert state.halted and state.reason == "manual stop before the FOMC" and state.by == "cli:alice"
    finally:
        restarted.dispose()


def test_resume_clears_the_switch_and_the_streak_and_records_it(store: Engine) -> None:
    with write_transaction(store) as conn:
        note_reconciliation(conn, "main", mismatched=True)
        note_reconciliation(conn, "main", mismatched=True)
    engage(store, "main", "positions differ for 2 runs", "reconciliation")
    state = resume(store, "main", "cli:bob")
    assert not state.halted and state.reason is None and state.since is None and state.mismatch_runs == 0
    assert halt_state(store, "main") == state
    kinds = _events(store, "main")
    assert [k for k, _ in kinds] == ["halted", "resumed"]
    assert "cli:bob" in kinds[1][1] and "positions differ for 2 runs" in kinds[1][1]
    # engaged again after a resume: the new reason is the one kept
    assert engage(store, "main", "second stop", "cli:bob").reason == "second stop"


def test_the_mismatch_streak_counts_consecutive_runs_and_a_clean_run_resets_it(store: Engine) -> None:
    streaks = []
    for mismatched in (True, True, True, False, True):
        with write_transaction(store) as conn:
            streaks.append(note_reconciliation(conn, "main", mismatched))
    assert streaks == [1, 2, 3, 0, 1]
    assert halt_state(store, "main").mismatch_runs == 1
    with store.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(trading_state)).scalar_one() == 1


def test_record_event_keeps_symbol_and_json_detail_newest_first(store: Engine) -> None:
    with write_transaction(store) as conn:
        why = "order quantity 60 > max_order_quantity 50"
        detail = {"rule": "max_order_quantity", "quantity": 60}
        record_event(conn, "main", "risk_rejected", why, symbol="005930", detail=detail)
        record_event(conn, "main", "reconcile", "005930: store 3, broker 4", symbol="005930")
    newest, older = recent_events(store, "main", limit=2)
    assert newest["kind"] == "reconcile" and newest["detail"] is None
    assert older["detail"] == {"rule": "max_order_quantity", "quantity": 60} and older["symbol"] == "005930"
    assert recent_events(store, "other") == []
