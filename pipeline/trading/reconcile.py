"""Reconciliation: the broker's holdings against the store's, every run. The broker wins: every difference is
recorded (``trading_events`` kind ``reconcile``) and logged, the store takes the broker's positions, and a
mismatch that persists for ``KRX_TRADING_RECONCILE_HALT_RUNS`` runs engages the kill switch."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pipeline.store.db import write_transaction
from pipeline.store.schema import account_snapshots, positions
from pipeline.trading import state
from pipeline.trading.orders import stored_positions
from pipeline.trading.types import AccountState

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Difference:
    """A symbol whose quantity differs between the store and the broker."""

    symbol: str
    store: int
    broker: int

    def __str__(self) -> str:
        return f"{self.symbol}: store {self.store:+d}, broker {self.broker:+d} (broker wins)"


@dataclass(frozen=True)
class Reconciliation:
    differences: list[Difference]
    streak: int
    halted: bool


def reconcile(
    engine: Engine, account: str, broker: AccountState, now: dt.datetime, halt_after: int
) -> Reconciliation:
    """Compare, record, overwrite with the broker's positions, count the streak, halt when it is long."""
    stored = stored_positions(engine, account)
    symbols = sorted(set(stored) | set(broker.positions))
    diffs = [
        Difference(s, stored.get(s, (0, 0.0))[0], broker.quantity(s))
        for s in symbols
        if stored.get(s, (0, 0.0))[0] != broker.quantity(s)
    ]
    with write_transaction(engine) as conn:
        for d in diffs:
            log.warning("reconciliation: %s", d)
            state.record_event(
                conn,
                account,
                "reconcile",
                str(d),
                symbol=d.symbol,
                detail={"store": d.store, "broker": d.broker},
            )
        conn.execute(positions.delete().where(positions.c.account == account))
        for p in broker.positions.values():
            if p.quantity:
                conn.execute(
                    positions.insert().values(
                        account=account,
                        symbol=p.symbol,
                        quantity=p.quantity,
                        avg_price=p.avg_price,
                        updated_at=now,
                    )
                )
        streak = state.note_reconciliation(conn, account, bool(diffs))
    halted = False
    if diffs and streak >= halt_after:
        state.engage(
            engine,
            account,
            f"positions differ from the broker's for {streak} runs in a row ({'; '.join(map(str, diffs))})",
            "reconciliation",
        )
        halted = True
    return Reconciliation(diffs, streak, halted)


def snapshot(
    engine: Engine, account: str, broker: AccountState, now: dt.datetime, source: str = "run"
) -> None:
    """Record the account's cash and equity at ``now`` (once per timestamp)."""
    with write_transaction(engine) as conn:
        exists = conn.execute(
            sa.select(account_snapshots.c.ts).where(
                account_snapshots.c.account == account, account_snapshots.c.ts == now
            )
        ).first()
        if exists is None:
            conn.execute(
                account_snapshots.insert().values(
                    account=account,
                    ts=now,
                    cash=broker.cash,
                    equity=broker.equity,
                    margin_used=broker.margin_used,
                    source=source,
                )
            )


def start_of_day_equity(engine: Engine, account: str, now: dt.datetime) -> float | None:
    """Equity at the day's start: the last snapshot before the day, else the day's first."""
    from pipeline.market import KST

    day_start = dt.datetime.combine(now.astimezone(KST).date(), dt.time(0), KST)
    with engine.connect() as conn:
        before = conn.execute(
            sa.select(account_snapshots.c.equity)
            .where(account_snapshots.c.account == account, account_snapshots.c.ts < day_start)
            .order_by(account_snapshots.c.ts.desc())
            .limit(1)
        ).first()
        if before is not None:
            return float(before[0])
        first = conn.execute(
            sa.select(account_snapshots.c.equity)
            .where(account_snapshots.c.account == account, account_snapshots.c.ts >= day_start)
            .order_by(account_snapshots.c.ts)
            .limit(1)
        ).first()
        return float(first[0]) if first is not None else None
