"""The persisted kill switch and the trading audit trail (tables ``trading_state`` and ``trading_events``).

The switch is data, one row per account alias: a restart, a new worker or another host sees it engaged
until a person clears it (``krx trading resume``). Engaging is idempotent and keeps the first reason, so
the cause of a halt is not overwritten by the halts that follow it. Every change is also an event row.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from pipeline.store.db import write_transaction
from pipeline.store.schema import trading_events, trading_state

log = logging.getLogger(__name__)

#: ``trading_events.kind`` of the switch's changes.
HALTED = "halted"
RESUMED = "resumed"


@dataclass(frozen=True)
class HaltState:
    """The kill switch of one account as stored."""

    halted: bool
    reason: str | None = None
    """Why it was engaged (the first reason when engaged several times)."""
    since: dt.datetime | None = None
    """When it was engaged (UTC)."""
    by: str | None = None
    """Who engaged it: ``cli:<user>``, ``risk:daily_loss_limit``, ``reconcile``..."""
    mismatch_runs: int = 0
    """Consecutive trading runs whose reconciliation found the store and the broker apart."""


def _state(row: sa.Row[Any] | None) -> HaltState:
    if row is None:
        return HaltState(halted=False)
    return HaltState(
        halted=bool(row.halted),
        reason=row.halt_reason,
        since=row.halted_at,
        by=row.halted_by,
        mismatch_runs=int(row.mismatch_runs),
    )


def _read(conn: Connection, account: str, *, lock: bool = False) -> sa.Row[Any] | None:
    query = sa.select(trading_state).where(trading_state.c.account == account)
    if lock:
        query = query.with_for_update()  # PostgreSQL; SQLite's BEGIN IMMEDIATE already serialises writers
    return conn.execute(query).first()


def _locked_row(conn: Connection, account: str) -> sa.Row[Any]:
    """The account's row, created when missing, locked until the transaction ends."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    now = dt.datetime.now(dt.UTC)
    conn.execute(
        dialect.insert(trading_state)
        .values(account=account, halted=False, mismatch_runs=0, updated_at=now)
        .on_conflict_do_nothing(index_elements=["account"])
    )
    row = _read(conn, account, lock=True)
    assert row is not None
    return row


def halt_state(engine: Engine | Connection, account: str) -> HaltState:
    """The switch of ``account`` (not halted when the account never had a row)."""
    if isinstance(engine, Connection):
        return _state(_read(engine, account))
    with engine.connect() as conn:
        return _state(_read(conn, account))


def record_event(
    conn: Connection,
    account: str,
    kind: str,
    reason: str,
    symbol: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Append one row to ``trading_events`` in the caller's transaction (``detail``: JSON-able)."""
    conn.execute(
        trading_events.insert().values(
            ts=dt.datetime.now(dt.UTC),
            account=account,
            kind=kind,
            symbol=symbol,
            reason=reason,
            detail=detail,
        )
    )


def engage(engine: Engine, account: str, reason: str, by: str) -> HaltState:
    """Halt trading of ``account``; an engaged switch stays as it is (its first reason kept). Returns the
    state afterwards."""
    with write_transaction(engine) as conn:
        row = _locked_row(conn, account)
        if row.halted:
            log.info(
                "kill switch of %s already engaged (%s); new reason not stored: %s",
                account,
                row.halt_reason,
                reason,
            )
            return _state(row)
        now = dt.datetime.now(dt.UTC)
        conn.execute(
            trading_state.update()
            .where(trading_state.c.account == account)
            .values(halted=True, halt_reason=reason, halted_at=now, halted_by=by, updated_at=now)
        )
        record_event(conn, account, HALTED, reason, detail={"by": by})
        state = _state(_read(conn, account))
    log.warning("kill switch of %s engaged by %s: %s", account, by, reason)
    return state


def resume(engine: Engine, account: str, by: str) -> HaltState:
    """Clear the switch of ``account`` and its reconciliation streak; recorded as a ``resumed`` event
    (also when it was not engaged, so every resume a person typed is on record)."""
    with write_transaction(engine) as conn:
        before = _locked_row(conn, account)
        now = dt.datetime.now(dt.UTC)
        conn.execute(
            trading_state.update()
            .where(trading_state.c.account == account)
            .values(
                halted=False,
                halt_reason=None,
                halted_at=None,
                halted_by=None,
                mismatch_runs=0,
                updated_at=now,
            )
        )
        was = f"was halted: {before.halt_reason}" if before.halted else "was not halted"
        record_event(
            conn,
            account,
            RESUMED,
            f"resumed by {by} ({was})",
            detail={"by": by, "halt_reason": before.halt_reason, "mismatch_runs": int(before.mismatch_runs)},
        )
        state = _state(_read(conn, account))
    log.warning("kill switch of %s cleared by %s", account, by)
    return state


def note_reconciliation(conn: Connection, account: str, mismatched: bool) -> int:
    """Count a run whose reconciliation found a difference (``mismatched``) or reset the count after a
    clean one, in the caller's transaction; returns the streak. The caller halts when it reaches
    ``settings.trading_reconcile_halt_runs``."""
    row = _locked_row(conn, account)
    runs = int(row.mismatch_runs) + 1 if mismatched else 0
    if runs != row.mismatch_runs:
        conn.execute(
            trading_state.update()
            .where(trading_state.c.account == account)
            .values(mismatch_runs=runs, updated_at=dt.datetime.now(dt.UTC))
        )
    return runs


def recent_events(engine: Engine | Connection, account: str, limit: int = 10) -> list[dict[str, Any]]:
    """The newest ``limit`` events of ``account``, newest first, as plain dicts."""
    query = (
        sa.select(trading_events)
        .where(trading_events.c.account == account)
        .order_by(trading_events.c.ts.desc(), trading_events.c.id.desc())
        .limit(limit)
    )
    if isinstance(engine, Connection):
        rows = engine.execute(query).mappings().all()
    else:
        with engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
    return [dict(r) for r in rows]
