"""Exactly-once orders.

The order intent, keyed by (account, symbol, decision bar, side), is committed before any HTTP call; only
then is the order sent and the broker's order number recorded. An intent whose outcome is unknown (a crash
between the two, a lost response, a timeout) is resolved by asking the broker for its orders of the day and
matching symbol, side, quantity and time — never by sending again. A second submit of the same key finds
the first row and sends nothing.

States: intent → sent → partial → filled | cancelled | rejected | expired (dry-run: ``dry``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from pipeline import observability as obs
from pipeline.kis.errors import KisError, KisOrderNotSentError, KisRejectedError
from pipeline.market import KST, InstrumentKind, fee_rate, sell_tax_rate
from pipeline.store.db import write_transaction
from pipeline.store.schema import fills, orders, positions
from pipeline.trading import state
from pipeline.trading.brokers import Broker
from pipeline.trading.types import (
    CANCELLED,
    DRY,
    EXPIRED,
    FILLED,
    INTENT,
    PARTIAL,
    REJECTED,
    SENT,
    WORKING_STATES,
    BrokerOrder,
    ProposedOrder,
)

log = logging.getLogger(__name__)
#: The reason an intent carries while the broker may or may not have its order: it is never sent again.
UNKNOWN_OUTCOME = "outcome unknown"

#: Seconds before an intent's time that a broker order may carry (clock skew between us and the broker).
CLOCK_SKEW_S = 5.0

#: Checkpoints a fault hook is called at (tests crash the process there).
CHECKPOINTS = ("after_intent", "after_send", "after_record")


def order_key(account: str, symbol: str, decision_ts: dt.datetime, side: str) -> str:
    """The deterministic idempotency key of the order that carries out one decision."""
    raw = f"{account}|{symbol}|{decision_ts.astimezone(dt.UTC).isoformat()}|{side}"
    return "k" + hashlib.sha256(raw.encode()).hexdigest()[:40]


@dataclass(frozen=True)
class OrderOutcome:
    """What :meth:`OrderManager.submit` did with one proposed order."""

    client_order_id: str
    status: str
    broker_order_no: str | None
    reason: str | None = None
    #: False when the key already existed (a rerun): nothing was sent this time.
    new: bool = True


class OrderManager:
    """Sends, resolves and tracks the orders of one account in one mode."""

    def __init__(
        self,
        engine: Engine,
        broker: Broker,
        account: str,
        *,
        cancel_after_s: float = 120.0,
        resolve_window_s: float = 300.0,
        fault: Callable[[str], None] | None = None,
    ) -> None:
        self.engine, self.broker, self.account = engine, broker, account
        self.cancel_after_s, self.resolve_window_s = cancel_after_s, resolve_window_s
        self._fault = fault

    def _checkpoint(self, name: str) -> None:
        if self._fault is not None:
            self._fault(name)

    # --- submit ------------------------------------------------------------------------------
    def record_intent(self, conn: Connection, order: ProposedOrder, now: dt.datetime) -> tuple[str, bool]:
        """Insert the intent in ``conn``'s transaction; returns (key, True), or (key, False) when it
        existed already."""
        key = order_key(self.account, order.symbol, order.decision_ts, order.side)
        exists = conn.execute(sa.select(orders.c.id).where(orders.c.client_order_id == key)).first()
        if exists is not None:
            return key, False
        conn.execute(
            orders.insert().values(
                client_order_id=key,
                account=self.account,
                spec=order.spec,
                symbol=order.symbol,
                side=order.side,
                quantity=order.quantity,
                order_type=order.order_type,
                limit_price=order.limit_price,
                status=INTENT,
                decision_ts=order.decision_ts,
                decision_price=order.price,
                mode=self.broker.mode,
                created_at=now,
                updated_at=now,
            )
        )
        obs.count_order(INTENT)  # observability
        return key, True

    def send(self, key: str, order: ProposedOrder, now: dt.datetime) -> OrderOutcome:
        """Send the committed intent ``key`` (once: a key past ``intent`` is not sent again)."""
        with obs.log_context(client_order_id=key):  # observability: the order key on every line
            return self._send(key, order, now)

    def _send(self, key: str, order: ProposedOrder, now: dt.datetime) -> OrderOutcome:
        row = self._row(key)
        if row is None:
            raise KeyError(f"no order intent {key}")
        # Past `intent`, or its outcome unknown (the broker may have it: only asking resolves it): not sent.
        if row.status != INTENT or (row.reason or "").startswith(UNKNOWN_OUTCOME):
            return OrderOutcome(key, row.status, row.broker_order_no, row.reason, new=False)
        self._checkpoint("after_intent")
        if not self.broker.sends_orders:
            self._update(key, status=DRY, reason="dry-run: recorded, not sent")
            return OrderOutcome(key, DRY, None, "dry-run: recorded, not sent")
        try:
            order_no = self.broker.place(order)
        except KisOrderNotSentError as exc:
            self._update(key, status=REJECTED, reason=f"not sent: {exc}")
            return OrderOutcome(key, REJECTED, None, f"not sent: {exc}")
        except KisRejectedError as exc:
            obs.count_rejection("broker")  # observability
            self._update(key, status=REJECTED, reason=f"rejected by the broker: {exc}")
            return OrderOutcome(key, REJECTED, None, f"rejected by the broker: {exc}")
        except KisError as exc:  # uncertain: the broker may have it; resolve by asking, never resend
            log.warning("order %s: outcome unknown (%s); resolving with the broker", key, type(exc).__name__)
            self._update(key, reason=f"{UNKNOWN_OUTCOME}: {exc}")
            self._resolve_now(now)
            row = self._row(key)
            assert row is not None
            return OrderOutcome(key, row.status, row.broker_order_no, row.reason)
        self._checkpoint("after_send")
        self._update(key, status=SENT, broker_order_no=order_no, sent_at=now, reason=None)
        self._checkpoint("after_record")
        return OrderOutcome(key, SENT, order_no)

    def _resolve_now(self, now: dt.datetime) -> None:
        try:
            seen = self.broker.orders_today(now.date(), (InstrumentKind.STOCK, InstrumentKind.FUTURES))
        except KisError as exc:
            log.warning(
                "cannot ask the broker for its orders now (%s); next run resolves", type(exc).__name__
            )
            return
        self.resolve_unknown(now, seen)

    # --- resolve -----------------------------------------------------------------------------
    def resolve_unknown(self, now: dt.datetime, seen: list[BrokerOrder]) -> list[str]:
        """Match intents with an unknown outcome (and today's intents expired as never seen) to the broker's
        orders of the day. Returns the keys resolved."""
        day_start = dt.datetime.combine(now.astimezone(KST).date(), dt.time(0), KST)
        with self.engine.connect() as conn:
            pending = conn.execute(
                sa.select(orders)
                .where(orders.c.account == self.account, orders.c.mode == self.broker.mode)
                .where(
                    (orders.c.status == INTENT)
                    | (
                        (orders.c.status == EXPIRED)
                        & orders.c.broker_order_no.is_(None)
                        & (orders.c.created_at >= day_start)
                    )
                )
                .order_by(orders.c.id)
            ).all()
            linked = {
                r[0]
                for r in conn.execute(
                    sa.select(orders.c.broker_order_no).where(
                        orders.c.account == self.account, orders.c.broker_order_no.is_not(None)
                    )
                )
            }
        resolved = []
        candidates = [o for o in seen if not o.original_order_no and o.order_no not in linked]
        for row in pending:
            with obs.log_context(client_order_id=row.client_order_id, symbol=row.symbol):  # observability
                match = self._match(row, candidates)
                if match is not None:
                    candidates.remove(match)
                    linked.add(match.order_no)
                    self._update(
                        row.client_order_id,
                        status=SENT,
                        broker_order_no=match.order_no,
                        sent_at=match.placed_at,
                    )
                    with write_transaction(self.engine) as conn:
                        state.record_event(
                            conn,
                            self.account,
                            "order_resolved",
                            f"order {row.client_order_id} found at the broker as {match.order_no}",
                            symbol=row.symbol,
                            detail={"previous_status": row.status, "broker_status": match.status},
                        )
                    resolved.append(row.client_order_id)
                elif row.status == INTENT:
                    why = "never reached the broker (not in its orders of the day)"
                    self._update(row.client_order_id, status=EXPIRED, reason=why)
                    with write_transaction(self.engine) as conn:
                        state.record_event(
                            conn,
                            self.account,
                            "order_expired",
                            f"order {row.client_order_id}: {why}",
                            symbol=row.symbol,
                        )
        return resolved

    def _match(self, row: Any, candidates: list[BrokerOrder]) -> BrokerOrder | None:
        created = row.created_at
        lo = created - dt.timedelta(seconds=CLOCK_SKEW_S)
        hi = created + dt.timedelta(seconds=self.resolve_window_s)
        for o in candidates:
            if o.symbol != row.symbol or o.side != row.side or o.quantity != row.quantity:
                continue
            # KIS stamps orders to the second: compare at that resolution.
            if o.placed_at is None or lo.replace(microsecond=0) <= o.placed_at <= hi:
                return o
        return None

    # --- track -------------------------------------------------------------------------------
    def track(self, now: dt.datetime, seen: list[BrokerOrder]) -> int:
        """Bring working orders up to date with the broker: new fills (stored once each, applied to
        positions), final states, cancels of orders unfilled after ``cancel_after_s``, past days' orders
        expired. Returns the number of new fills."""
        by_no = {o.order_no: o for o in seen if not o.original_order_no}
        with self.engine.connect() as conn:
            working = conn.execute(
                sa.select(orders).where(
                    orders.c.account == self.account,
                    orders.c.mode == self.broker.mode,
                    orders.c.status.in_(WORKING_STATES),
                )
            ).all()
        new_fills = 0
        for row in working:
            with obs.log_context(client_order_id=row.client_order_id, symbol=row.symbol):  # observability
                got = by_no.get(row.broker_order_no or "")
                if got is None:
                    if row.created_at.astimezone(KST).date() < now.astimezone(KST).date():
                        self._update(
                            row.client_order_id, status=EXPIRED, reason="the day ended with the order open"
                        )
                    continue
                new_fills += self._apply(row, got, now)
                if got.status == "open" and row.sent_at is not None:
                    age = (now - row.sent_at).total_seconds()
                    if age >= self.cancel_after_s:
                        self._cancel(row, got, now)
        return new_fills

    def _apply(self, row: Any, got: BrokerOrder, now: dt.datetime) -> int:
        """Store the fills that ``got`` shows beyond what ``row`` knows; set the state."""
        before = int(row.filled_quantity or 0)
        filled = min(int(got.filled_quantity), int(row.quantity))
        if got.status == "filled" and filled >= row.quantity:
            status = FILLED
        elif got.status == "cancelled":
            status = CANCELLED
        elif got.status == "rejected":
            status = REJECTED
        else:
            status = PARTIAL if filled > 0 else SENT
        delta = filled - before
        if status != row.status:  # observability
            obs.count_order(status)
            if status == REJECTED:
                obs.count_rejection("broker")
        with write_transaction(self.engine) as conn:
            if delta > 0:
                old_avg = float(row.avg_fill_price or 0.0)
                price = (got.avg_price * filled - old_avg * before) / delta
                fill_id = f"{got.order_no}:{filled}"
                exists = conn.execute(
                    sa.select(fills.c.id).where(fills.c.order_id == row.id, fills.c.broker_fill_id == fill_id)
                ).first()
                if exists is None:
                    notional = price * delta * multiplier_of(row.symbol)
                    kind = _kind(row.symbol)
                    tax = notional * sell_tax_rate(kind, now.date()) if row.side == "sell" else 0.0
                    conn.execute(
                        fills.insert().values(
                            order_id=row.id,
                            broker_fill_id=fill_id,
                            symbol=row.symbol,
                            side=row.side,
                            quantity=delta,
                            price=price,
                            fee=notional * fee_rate(kind),
                            tax=tax,
                            ts=now,
                        )
                    )
                    apply_fill(
                        conn, self.account, row.symbol, delta if row.side == "buy" else -delta, price, now
                    )
            conn.execute(
                orders.update()
                .where(orders.c.id == row.id)
                .values(
                    status=status,
                    filled_quantity=max(filled, before),
                    avg_fill_price=got.avg_price if filled else row.avg_fill_price,
                    updated_at=now,
                )
            )
        return 1 if delta > 0 else 0

    def _cancel(self, row: Any, got: BrokerOrder, now: dt.datetime) -> None:
        try:
            self.broker.cancel(got.order_no, row.symbol, InstrumentKind(_kind(row.symbol)))
        except KisRejectedError as exc:  # already filled or gone: the next track sees the final state
            log.info("cancel of %s refused by the broker: %s", got.order_no, exc)
            return
        except KisError as exc:
            log.warning("cancel of %s failed (%s); retried next run", got.order_no, type(exc).__name__)
            return
        self._update(row.client_order_id, reason=f"unfilled after {self.cancel_after_s:.0f} s: cancel sent")

    # --- store helpers -------------------------------------------------------------------------
    def _row(self, key: str) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(orders).where(orders.c.client_order_id == key)).first()

    def _update(self, key: str, **values: Any) -> None:
        values.setdefault("updated_at", dt.datetime.now(dt.UTC))
        if "status" in values:  # observability: every caller passes a status only when it changes
            obs.count_order(values["status"])
        with write_transaction(self.engine) as conn:
            conn.execute(orders.update().where(orders.c.client_order_id == key).values(**values))

    def unresolved_symbols(self) -> set[str]:
        """Symbols with an intent whose outcome is still unknown: no new order for them until resolved."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(orders.c.symbol).where(
                    orders.c.account == self.account,
                    orders.c.mode == self.broker.mode,
                    orders.c.status == INTENT,
                )
            )
            return {r[0] for r in rows}

    def working_symbols(self) -> set[str]:
        """Symbols with an order still working at the broker."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(orders.c.symbol).where(
                    orders.c.account == self.account,
                    orders.c.mode == self.broker.mode,
                    orders.c.status.in_(WORKING_STATES),
                )
            )
            return {r[0] for r in rows}


def _kind(symbol: str) -> str:
    from pipeline.kis.client import asset_of

    return asset_of(symbol).value


def multiplier_of(symbol: str) -> float:
    """Contract multiplier of a broker symbol (``pipeline.market``'s for futures contracts, else 1)."""
    from pipeline.market import FUTURES_MULTIPLIER

    return FUTURES_MULTIPLIER if _kind(symbol) == InstrumentKind.FUTURES.value else 1.0


def apply_fill(
    conn: Connection, account: str, symbol: str, signed_qty: int, price: float, now: dt.datetime
) -> None:
    """Move the stored position of ``symbol`` by a fill (average price kept for the open side)."""
    row = conn.execute(
        sa.select(positions).where(positions.c.account == account, positions.c.symbol == symbol)
    ).first()
    qty, avg = (int(row.quantity), float(row.avg_price)) if row else (0, 0.0)
    new = qty + signed_qty
    if new == 0:
        new_avg = 0.0
    elif qty == 0 or (qty > 0) != (new > 0):
        new_avg = price  # opened, or flipped through zero
    elif abs(new) > abs(qty):
        new_avg = (avg * abs(qty) + price * abs(signed_qty)) / abs(new)
    else:
        new_avg = avg  # reduced: the open part keeps its price
    if row is None:
        conn.execute(
            positions.insert().values(
                account=account, symbol=symbol, quantity=new, avg_price=new_avg, updated_at=now
            )
        )
    else:
        conn.execute(
            positions.update()
            .where(positions.c.account == account, positions.c.symbol == symbol)
            .values(quantity=new, avg_price=new_avg, updated_at=now)
        )


def stored_positions(engine: Engine, account: str) -> dict[str, tuple[int, float]]:
    """The store's positions of ``account``: symbol → (quantity, average price)."""
    with engine.connect() as conn:
        rows = conn.execute(sa.select(positions).where(positions.c.account == account))
        return {r.symbol: (int(r.quantity), float(r.avg_price)) for r in rows if r.quantity}
