"""The kill switch and the audit trail, beyond test_kill_switch.py: who engaged or cleared the switch and why
is on record (events, their detail and the log), a resume is recorded also when nothing was halted, a fresh
account's first reconciliation does not halt it, the state is readable inside the caller's transaction, and a
second writer waits for the first on PostgreSQL (gaps found by mutation testing, ``tools/mutation.py``)."""

from __future__ import annotations

import datetime as dt
import logging

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from pipeline.store.db import create_store_engine, write_transaction
from pipeline.store.schema import trading_events
from pipeline.trading.state import (
    HaltState,
    engage,
    halt_state,
    note_reconciliation,
    recent_events,
    record_event,
    resume,
)


def test_engaging_records_when_and_by_whom_in_the_state_and_the_event(store: Engine) -> None:
    before = dt.datetime.now(dt.UTC)
    state = engage(store, "main", "positions differ for 3 runs", "reconciliation")
    after = dt.datetime.now(dt.UTC)
    assert state.since is not None and before <= state.since <= after
    (event,) = recent_events(store, "main")
    assert event["kind"] == "halted" and event["account"] == "main" and event["symbol"] is None
    assert event["reason"] == "positions differ for 3 runs"
    assert event["detail"] == {"by": "reconciliation"}
    ts = event["ts"] if event["ts"].tzinfo else event["ts"].replace(tzinfo=dt.UTC)
    assert before - dt.timedelta(seconds=1) <= ts <= after + dt.timedelta(seconds=1)


def test_engaging_an_engaged_switch_logs_the_reason_it_did_not_store(
    store: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pipeline.trading.state")
    engage(store, "main", "daily loss limit", "risk:daily_loss_limit")
    engage(store, "main", "operator pressed halt", "cli:alice")
    messages = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "pipeline.trading.state"]
    assert messages == [
        ("WARNING", "kill switch of main engaged by risk:daily_loss_limit: daily loss limit"),
        (
            "INFO",
            "kill switch of main already engaged (daily loss limit); "
            "new reason not stored: operator pressed halt",
        ),
    ]


def test_resume_records_who_what_was_halted_and_the_streak_it_cleared(
    store: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pipeline.trading.state")
    with write_transaction(store) as conn:
        for _ in range(3):
            note_reconciliation(conn, "main", mismatched=True)
    engage(store, "main", "positions differ for 3 runs", "reconciliation")
    state = resume(store, "main", "cli:bob")
    assert state == HaltState(halted=False)
    newest = recent_events(store, "main")[0]
    assert newest["kind"] == "resumed" and newest["account"] == "main"
    assert newest["reason"] == "resumed by cli:bob (was halted: positions differ for 3 runs)"
    assert newest["detail"] == {
        "by": "cli:bob",
        "halt_reason": "positions differ for 3 runs",
        "mismatch_runs": 3,
    }
    assert ("WARNING", "kill switch of main cleared by cli:bob") in [
        (r.levelname, r.getMessage()) for r in caplog.records
    ]


def test_a_resume_when_nothing_was_halted_is_still_on_record(store: Engine) -> None:
    state = resume(store, "main", "cli:carol")
    assert state == HaltState(halted=False)
    (event,) = recent_events(store, "main")
    assert event["kind"] == "resumed"
    assert event["reason"] == "resumed by cli:carol (was not halted)"
    assert event["detail"] == {"by": "cli:carol", "halt_reason": None, "mismatch_runs": 0}
    # resuming the running account left it able to halt with a reason of its own
    assert engage(store, "main", "manual stop", "cli:carol").reason == "manual stop"


def test_a_resume_clears_every_field_of_the_halt_across_a_restart(store: Engine) -> None:
    url = store.url.render_as_string(hide_password=False)
    engage(store, "main", "manual stop", "cli:alice")
    resume(store, "main", "cli:alice")
    store.dispose()
    restarted = create_store_engine(url)
    try:
        assert halt_state(restarted, "main") == HaltState(halted=False)
    finally:
        restarted.dispose()


def test_a_fresh_accounts_first_reconciliation_does_not_halt_it(store: Engine) -> None:
    with write_transaction(store) as conn:
        assert note_reconciliation(conn, "main", mismatched=False) == 0
    with write_transaction(store) as conn:
        assert note_reconciliation(conn, "other", mismatched=True) == 1
    assert halt_state(store, "main") == HaltState(halted=False)
    assert halt_state(store, "other") == HaltState(halted=False, mismatch_runs=1)
    # ... nor does it stand in the way of the first halt
    assert engage(store, "main", "manual stop", "cli:alice").halted


def test_the_state_and_the_events_are_readable_inside_the_callers_transaction(store: Engine) -> None:
    with write_transaction(store) as conn:
        note_reconciliation(conn, "main", mismatched=True)
        record_event(conn, "main", "reconcile", "005930: store 3, broker 4", symbol="005930")
        # the caller sees its own, not yet committed, writes
        assert halt_state(conn, "main") == HaltState(halted=False, mismatch_runs=1)
        (event,) = recent_events(conn, "main")
        assert event["reason"] == "005930: store 3, broker 4"
    assert halt_state(store, "main").mismatch_runs == 1
    with store.connect() as conn:
        assert halt_state(conn, "never-traded") == HaltState(halted=False)
        assert halt_state(conn, "never-traded").halted is False
    assert halt_state(store, "never-traded").halted is False


def test_recent_events_are_the_newest_ten_by_default_ties_broken_by_arrival(store: Engine) -> None:
    same = dt.datetime(2025, 10, 2, 1, 0, tzinfo=dt.UTC)
    with write_transaction(store) as conn:
        for i in range(12):
            record_event(conn, "main", "note", f"event {i}")
        # The same stamp: the higher id is the newer event, whatever order the rows were stored in
        # (concurrent writers take their ids before either commits).
        for name, row_id in (("second", 100_001), ("first", 100_000)):
            conn.execute(
                trading_events.insert().values(id=row_id, ts=same, account="tie", kind="note", reason=name)
            )
    newest = recent_events(store, "main")
    assert [e["reason"] for e in newest] == [f"event {i}" for i in range(11, 1, -1)]
    assert [e["reason"] for e in recent_events(store, "main", limit=3)] == ["event 11", "event 10", "event 9"]
    assert [e["reason"] for e in recent_events(store, "tie")] == ["second", "first"]


def test_recent_events_go_by_time_even_when_a_row_arrives_out_of_order(store: Engine) -> None:
    with write_transaction(store) as conn:
        for name, hour in (("late", 5), ("early", 1)):  # e.g. the host's clock stepped back
            stamp = dt.datetime(2025, 10, 2, hour, tzinfo=dt.UTC)
            conn.execute(trading_events.insert().values(ts=stamp, account="main", kind="note", reason=name))
    assert [e["reason"] for e in recent_events(store, "main")] == ["late", "early"]


@pytest.mark.postgres
def test_a_second_writer_waits_for_the_first_to_commit_on_postgres(pg_url: str) -> None:
    """Two trading runs counting mismatches at once must not both read 0 and write 1: the first one's row
    lock (taken also when it writes nothing) makes the second wait."""
    engine = create_store_engine(pg_url)
    try:
        with write_transaction(engine) as conn:
            note_reconciliation(conn, "main", mismatched=False)  # the row exists, streak 0
        with write_transaction(engine) as first:
            assert note_reconciliation(first, "main", mismatched=False) == 0  # reads, locks, writes nothing
            with pytest.raises(OperationalError, match="lock"), write_transaction(engine) as second:
                second.execute(sa.text("SET LOCAL lock_timeout = '200ms'"))
                note_reconciliation(second, "main", mismatched=True)
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_the_switch_can_be_read_while_a_trading_run_holds_it_on_postgres(pg_url: str) -> None:
    """``krx trading status`` does not wait for a trading run's transaction: it reads the committed state."""
    engine = create_store_engine(pg_url)
    try:
        engage(engine, "main", "manual stop", "cli:alice")
        with write_transaction(engine) as run:
            note_reconciliation(run, "main", mismatched=False)  # holds the row's lock until it commits
            with engine.connect() as reader:
                reader.execute(sa.text("SET lock_timeout = '200ms'"))
                state = halt_state(reader, "main")
                assert state.halted and state.reason == "manual stop"
                assert [e["kind"] for e in recent_events(reader, "main")] == ["halted"]
    finally:
        engine.dispose()
