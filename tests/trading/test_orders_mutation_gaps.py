"""Exactly-once orders against a fake broker and a SQLite store, in milliseconds per test: the intent is in
the store before the broker is called, an unknown outcome is resolved by asking the broker and never by
sending again, the matching window (symbol, side, quantity, time), state transitions, fills moving positions
once each, and the cancel of an order left unfilled (gaps found by mutation testing, ``tools/mutation.py``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Iterable, Iterator
from typing import Any, ClassVar

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pipeline import observability as obs
from pipeline.config import get_settings
from pipeline.kis.errors import (
    KisError,
    KisOrderNotSentError,
    KisRejectedError,
    KisTemporaryError,
    KisUncertainOrderError,
)
from pipeline.market import KST, InstrumentKind, fee_rate, sell_tax_rate
from pipeline.market.costs import FUTURES_MULTIPLIER
from pipeline.store.db import create_store_engine, write_transaction
from pipeline.store.schema import fills, orders, positions, trading_events
from pipeline.trading.orders import (
    OrderManager,
    OrderOutcome,
    apply_fill,
    multiplier_of,
    order_key,
    stored_positions,
)
from pipeline.trading.types import BrokerOrder, ProposedOrder
from tests.trading.conftest import MACHINE_ZONES

#: A Tuesday of 2025: the stock sell tax then (0.15 %) is not today's, so the fill's own day is checked.
DAY = dt.date(2025, 7, 15)
STOCK, FUTURE = "005930", "101W09"


def kst(hh: int, mm: int, ss: float = 0.0, day: dt.date = DAY) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hh, mm), KST) + dt.timedelta(seconds=ss)


NOW = kst(10, 0)
DECIDED = kst(9, 59)


class FakeBroker:
    """The broker protocol's order side: a book of the day's orders, numbered from 1; errors on demand.
    Each ``place`` notes what the store held for the order at that moment."""

    mode: ClassVar[str] = "sim"
    sends_orders: ClassVar[bool] = True

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.book: list[BrokerOrder] = []
        self.placed: list[ProposedOrder] = []
        self.stored_at_place: list[Any] = []
        self.asked: list[tuple[dt.date, tuple[InstrumentKind, ...]]] = []
        self.cancels: list[tuple[str, str, InstrumentKind]] = []
        self.place_error: KisError | None = None
        self.keep_on_error = False  # the order reached the broker although ``place`` raised
        self.orders_error: KisError | None = None
        self.cancel_error: KisError | None = None
        #: The log context (``pipeline.observability``) each place / cancel call ran in.
        self.contexts: list[dict[str, Any]] = []

    def place(self, order: ProposedOrder) -> str:
        with self.engine.connect() as conn:
            self.stored_at_place.append(conn.execute(sa.select(orders)).all())
        self.placed.append(order)
        self.contexts.append(obs.current_context())
        order_no = f"{len(self.placed):010d}"
        if self.place_error is None or self.keep_on_error:
            self.book.append(
                BrokerOrder(order_no, order.symbol, order.side, order.quantity, 0, 0.0, "open", NOW)
            )
        if self.place_error is not None:
            raise self.place_error
        return order_no

    def orders_today(self, day: dt.date, kinds: Iterable[InstrumentKind]) -> list[BrokerOrder]:
        self.asked.append((day, tuple(kinds)))
        if self.orders_error is not None:
            raise self.orders_error
        return list(self.book)

    def cancel(self, order_no: str, symbol: str, kind: InstrumentKind) -> None:
        self.cancels.append((order_no, symbol, kind))
        self.contexts.append(obs.current_context())
        if self.cancel_error is not None:
            raise self.cancel_error


class DryBroker(FakeBroker):
    mode: ClassVar[str] = "dry"
    sends_orders: ClassVar[bool] = False


@pytest.fixture
def engine(sqlite_url: str) -> Iterator[Engine]:
    eng = create_store_engine(sqlite_url)
    yield eng
    eng.dispose()


@pytest.fixture
def broker(engine: Engine) -> FakeBroker:
    return FakeBroker(engine)


@pytest.fixture
def manager(engine: Engine, broker: FakeBroker) -> OrderManager:
    return OrderManager(engine, broker, "main")  # type: ignore[arg-type]


def proposed(
    symbol: str = STOCK,
    side: str = "buy",
    quantity: int = 5,
    decision_ts: dt.datetime = DECIDED,
    **kw: Any,
) -> ProposedOrder:
    values: dict[str, Any] = {
        "account": "main",
        "spec": "spec-a",
        "symbol": symbol,
        "kind": "futures" if symbol == FUTURE else "stock",
        "side": side,
        "quantity": quantity,
        "price": 70_000.0,
        "multiplier": 1.0,
        "position_before": 0,
        "decision_ts": decision_ts,
    }
    values.update(kw)
    return ProposedOrder(**values)


def submit(m: OrderManager, order: ProposedOrder, now: dt.datetime = NOW) -> OrderOutcome:
    with write_transaction(m.engine) as conn:
        key, _ = m.record_intent(conn, order, now)
    return m.send(key, order, now)


def intent(m: OrderManager, order: ProposedOrder, now: dt.datetime = NOW) -> str:
    with write_transaction(m.engine) as conn:
        key, new = m.record_intent(conn, order, now)
    assert new
    return key


def rows(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(sa.select(orders).order_by(orders.c.id)))


def row(engine: Engine, key: str) -> Any:
    return next(r for r in rows(engine) if r.client_order_id == key)


def events(engine: Engine, kind: str) -> list[Any]:
    with engine.connect() as conn:
        query = sa.select(trading_events).where(trading_events.c.kind == kind).order_by(trading_events.c.id)
        return list(conn.execute(query))


def fill_rows(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(sa.select(fills).order_by(fills.c.id)))


def at_broker(
    order_no: str,
    symbol: str = STOCK,
    side: str = "buy",
    quantity: int = 5,
    filled: int = 0,
    avg: float = 0.0,
    status: str = "open",
    placed_at: dt.datetime | None = NOW,
    original: str = "",
) -> BrokerOrder:
    return BrokerOrder(order_no, symbol, side, quantity, filled, avg, status, placed_at, None, original)  # type: ignore[arg-type]


# --- the key ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("machine_tz", MACHINE_ZONES, indirect=True)
def test_the_order_key_is_stable_across_releases_and_time_zones(machine_tz: str) -> None:
    """Keys already in the store must still match after an upgrade or on another host, or a rerun would
    send a decision's order again: the formula is part of the store's format."""
    ts = kst(9, 59)
    raw = "main|005930|2025-07-15T00:59:00+00:00|buy"
    expected = "k" + hashlib.sha256(raw.encode()).hexdigest()[:40]
    assert (
        order_key("main", STOCK, ts, "buy")
        == expected
        == order_key("main", STOCK, ts.astimezone(dt.UTC), "buy")
    )
    assert len(expected) == 41
    others = {
        order_key("other", STOCK, ts, "buy"),
        order_key("main", "000660", ts, "buy"),
        order_key("main", STOCK, ts + dt.timedelta(minutes=1), "buy"),
        order_key("main", STOCK, ts, "sell"),
    }
    assert expected not in others and len(others) == 4


# --- submit -------------------------------------------------------------------------------------------
def test_the_intent_is_in_the_store_before_the_broker_is_called_and_the_send_is_recorded(
    engine: Engine, broker: FakeBroker
) -> None:
    seen: list[str] = []
    m = OrderManager(engine, broker, "main", fault=seen.append)  # type: ignore[arg-type]
    order = proposed(order_type="limit", limit_price=69_900.0)
    outcome = submit(m, order)
    key = order_key("main", STOCK, order.decision_ts, "buy")
    assert outcome == OrderOutcome(key, "sent", "0000000001")
    assert outcome.reason is None and outcome.new
    assert seen == ["after_intent", "after_send", "after_record"]
    (before,) = broker.stored_at_place[0]
    assert before.client_order_id == key and before.status == "intent" and before.broker_order_no is None
    assert (before.account, before.spec, before.symbol, before.side) == ("main", "spec-a", STOCK, "buy")
    assert (before.quantity, before.order_type, before.limit_price) == (5, "limit", 69_900.0)
    assert (before.decision_ts, before.decision_price, before.mode) == (order.decision_ts, 70_000.0, "sim")
    assert before.created_at == NOW == before.updated_at
    after = row(engine, key)
    assert (after.status, after.broker_order_no, after.sent_at, after.reason) == (
        "sent",
        "0000000001",
        NOW,
        None,
    )


def test_a_second_submit_of_the_same_decision_sends_nothing(
    manager: OrderManager, broker: FakeBroker
) -> None:
    first = submit(manager, proposed())
    with write_transaction(manager.engine) as conn:
        key, new = manager.record_intent(conn, proposed(quantity=9), NOW)
    assert (key, new) == (first.client_order_id, False)
    again = manager.send(key, proposed(quantity=9), NOW)
    assert again == OrderOutcome(key, "sent", "0000000001", None, new=False)
    assert len(broker.placed) == 1 and len(rows(manager.engine)) == 1
    assert rows(manager.engine)[0].quantity == 5


def test_sending_a_key_without_an_intent_fails(manager: OrderManager, broker: FakeBroker) -> None:
    with pytest.raises(KeyError, match="no order intent knope"):
        manager.send("knope", proposed(), NOW)
    assert broker.placed == []


def test_dry_run_records_the_order_and_sends_nothing(engine: Engine) -> None:
    broker = DryBroker(engine)
    m = OrderManager(engine, broker, "main")  # type: ignore[arg-type]
    outcome = submit(m, proposed())
    key = order_key("main", STOCK, DECIDED, "buy")
    assert outcome == OrderOutcome(key, "dry", None, "dry-run: recorded, not sent")
    r = rows(engine)[0]
    assert (r.status, r.reason, r.mode) == ("dry", "dry-run: recorded, not sent", "dry")
    assert broker.placed == []


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (KisOrderNotSentError("hashkey failed"), "not sent: hashkey failed"),
        (KisRejectedError("insufficient cash"), "rejected by the broker: insufficient cash"),
    ],
)
def test_an_order_the_broker_certainly_does_not_have_is_rejected_with_why(
    manager: OrderManager, broker: FakeBroker, error: KisError, reason: str
) -> None:
    broker.place_error = error
    outcome = submit(manager, proposed())
    key = order_key("main", STOCK, DECIDED, "buy")
    assert outcome == OrderOutcome(key, "rejected", None, reason)
    r = rows(manager.engine)[0]
    assert (r.status, r.reason, r.broker_order_no) == ("rejected", reason, None)
    assert broker.asked == []  # nothing to resolve: the broker said it has no such order


def test_an_uncertain_send_is_resolved_by_asking_the_broker_never_by_sending_again(
    manager: OrderManager, broker: FakeBroker
) -> None:
    broker.place_error, broker.keep_on_error = KisUncertainOrderError("read timed out"), True
    outcome = submit(manager, proposed())
    assert len(broker.placed) == 1
    assert broker.asked == [(DAY, (InstrumentKind.STOCK, InstrumentKind.FUTURES))]
    assert (outcome.status, outcome.broker_order_no) == ("sent", "0000000001")
    assert outcome.reason == "outcome unknown: read timed out" and outcome.new
    r = rows(manager.engine)[0]
    assert (r.status, r.broker_order_no, r.sent_at) == ("sent", "0000000001", NOW)
    (event,) = events(manager.engine, "order_resolved")
    assert event.reason == f"order {outcome.client_order_id} found at the broker as 0000000001"
    assert event.symbol == STOCK and event.account == "main"
    assert event.detail == {"previous_status": "intent", "broker_status": "open"}
    # The next run's resolve finds nothing left to do.
    assert manager.resolve_unknown(NOW, broker.book) == []
    assert manager.unresolved_symbols() == set() and manager.working_symbols() == {STOCK}


def test_an_unresolved_intent_is_never_sent_again_even_when_asked_to(
    manager: OrderManager, broker: FakeBroker
) -> None:
    broker.place_error, broker.keep_on_error = KisUncertainOrderError("read timed out"), True
    broker.orders_error = KisTemporaryError("HTTP 500")
    order = proposed()
    outcome = submit(manager, order)
    assert outcome.status == "intent" and len(broker.placed) == 1
    broker.place_error = broker.orders_error = None  # the broker is reachable again
    again = manager.send(outcome.client_order_id, order, NOW + dt.timedelta(minutes=1))
    assert (again.status, again.reason, again.new) == ("intent", "outcome unknown: read timed out", False)
    assert len(broker.placed) == 1  # only asking the broker resolves it
    assert manager.resolve_unknown(NOW + dt.timedelta(minutes=1), broker.book) == [outcome.client_order_id]


def test_an_uncertain_send_the_broker_never_got_expires(manager: OrderManager, broker: FakeBroker) -> None:
    broker.place_error = KisTemporaryError("connection reset")
    outcome = submit(manager, proposed())
    why = "never reached the broker (not in its orders of the day)"
    assert (outcome.status, outcome.broker_order_no, outcome.reason) == ("expired", None, why)
    (event,) = events(manager.engine, "order_expired")
    assert event.reason == f"order {outcome.client_order_id}: {why}" and event.symbol == STOCK
    assert len(broker.placed) == 1 and manager.unresolved_symbols() == set()


def test_an_uncertain_send_stays_unresolved_while_the_broker_cannot_be_asked(
    manager: OrderManager, broker: FakeBroker
) -> None:
    broker.place_error, broker.keep_on_error = KisUncertainOrderError("read timed out"), True
    broker.orders_error = KisTemporaryError("HTTP 500")
    outcome = submit(manager, proposed())
    assert (outcome.status, outcome.broker_order_no) == ("intent", None)
    assert outcome.reason == "outcome unknown: read timed out"
    assert manager.unresolved_symbols() == {STOCK}  # no new order for it until resolved
    # The next run asks again and links the order: still sent once.
    assert manager.resolve_unknown(NOW + dt.timedelta(minutes=1), broker.book) == [outcome.client_order_id]
    assert rows(manager.engine)[0].broker_order_no == "0000000001" and len(broker.placed) == 1


class Crash(BaseException):
    """The trading process dies at a checkpoint."""


def crash_at(point: str) -> Any:
    def fault(name: str) -> None:
        if name == point:
            raise Crash(name)

    return fault


def test_a_crash_between_send_and_record_is_resolved_from_the_broker(
    engine: Engine, broker: FakeBroker
) -> None:
    m = OrderManager(engine, broker, "main", fault=crash_at("after_send"))  # type: ignore[arg-type]
    with pytest.raises(Crash):
        submit(m, proposed())
    key = rows(engine)[0].client_order_id
    assert rows(engine)[0].status == "intent" and len(broker.book) == 1
    placed = kst(10, 0, 2)
    broker.book[0] = at_broker("0000000001", placed_at=placed)
    restarted = OrderManager(engine, broker, "main")  # type: ignore[arg-type]
    assert restarted.resolve_unknown(kst(10, 1), broker.orders_today(DAY, ())) == [key]
    r = rows(engine)[0]
    assert (r.status, r.broker_order_no, r.sent_at) == ("sent", "0000000001", placed)
    assert restarted.send(key, proposed(), kst(10, 1)).new is False
    assert len(broker.placed) == 1


def test_a_crash_before_the_send_expires_the_intent(engine: Engine, broker: FakeBroker) -> None:
    m = OrderManager(engine, broker, "main", fault=crash_at("after_intent"))  # type: ignore[arg-type]
    with pytest.raises(Crash):
        submit(m, proposed())
    assert broker.placed == []
    assert m.resolve_unknown(kst(10, 1), []) == []
    assert rows(engine)[0].status == "expired"


# --- the matching window ----------------------------------------------------------------------------------
CREATED = kst(10, 0, 0.7)  # created at 10:00:00.7; KIS stamps to the second


@pytest.mark.parametrize(
    ("placed_at", "matched"),
    [
        (kst(9, 59, 55), True),  # 5 s skew, compared at the second
        (kst(9, 59, 54), False),
        (CREATED + dt.timedelta(seconds=300), True),  # the default window's end
        (CREATED + dt.timedelta(seconds=301), False),
        (None, True),  # no time reported: symbol, side and quantity decide
    ],
)
def test_an_unknown_intent_matches_a_broker_order_inside_the_window(
    manager: OrderManager, placed_at: dt.datetime | None, matched: bool
) -> None:
    key = intent(manager, proposed(), CREATED)
    found = manager.resolve_unknown(kst(10, 6), [at_broker("0000000007", placed_at=placed_at)])
    assert found == ([key] if matched else [])
    assert rows(manager.engine)[0].status == ("sent" if matched else "expired")


@pytest.mark.parametrize(
    "other",
    [
        at_broker("0000000007", symbol="000660"),
        at_broker("0000000007", side="sell"),
        at_broker("0000000007", quantity=4),
        at_broker("0000000007", original="0000000003"),  # a cancel record, not an order
    ],
)
def test_an_unknown_intent_does_not_match_another_order(manager: OrderManager, other: BrokerOrder) -> None:
    intent(manager, proposed(), NOW)
    assert manager.resolve_unknown(NOW, [other]) == []
    assert rows(manager.engine)[0].status == "expired"


def test_the_window_is_the_configured_one(engine: Engine, broker: FakeBroker) -> None:
    m = OrderManager(engine, broker, "main", resolve_window_s=60.0)  # type: ignore[arg-type]
    intent(m, proposed(), NOW)
    assert m.resolve_unknown(kst(10, 5), [at_broker("0000000007", placed_at=kst(10, 1, 1))]) == []


def test_a_broker_order_already_linked_is_not_matched_again(
    manager: OrderManager, broker: FakeBroker
) -> None:
    submit(manager, proposed(decision_ts=kst(9, 58)))  # sent and linked to 0000000001
    key = intent(manager, proposed(decision_ts=kst(9, 59)), NOW)
    assert manager.resolve_unknown(NOW, broker.book) == []
    assert row(manager.engine, key).status == "expired"


def test_another_accounts_order_number_is_no_link_here(engine: Engine) -> None:
    """Order numbers are per account: account B's 0000000001 does not hide account A's."""
    other = OrderManager(engine, FakeBroker(engine), "other")  # type: ignore[arg-type]
    submit(other, proposed(account="other"))
    mine = OrderManager(engine, FakeBroker(engine), "main")  # type: ignore[arg-type]
    key = intent(mine, proposed(), NOW)
    assert mine.resolve_unknown(NOW, [at_broker("0000000001")]) == [key]


def test_identical_intents_take_one_broker_order_each_oldest_first(manager: OrderManager) -> None:
    first = intent(manager, proposed(decision_ts=kst(9, 58)), NOW)
    second = intent(manager, proposed(decision_ts=kst(9, 59)), NOW)
    assert manager.resolve_unknown(NOW, [at_broker("0000000001")]) == [first]
    assert row(manager.engine, second).status == "expired"
    found = manager.resolve_unknown(NOW, [at_broker("0000000001"), at_broker("0000000002")])
    assert found == [second] and row(manager.engine, second).broker_order_no == "0000000002"


def test_two_unknown_intents_and_two_broker_orders_pair_up(manager: OrderManager) -> None:
    keys = [intent(manager, proposed(decision_ts=kst(9, m)), NOW) for m in (58, 59)]
    got = manager.resolve_unknown(NOW, [at_broker("0000000001"), at_broker("0000000002")])
    assert got == keys
    assert [row(manager.engine, k).broker_order_no for k in keys] == ["0000000001", "0000000002"]


def test_an_intent_expired_today_is_linked_when_the_broker_lists_it_late(manager: OrderManager) -> None:
    midnight = dt.datetime.combine(DAY, dt.time(0), KST)
    key = intent(manager, proposed(), midnight)  # created at the very start of the KST day
    assert manager.resolve_unknown(kst(9, 0), []) == []
    assert row(manager.engine, key).status == "expired"
    assert manager.resolve_unknown(kst(9, 1), [at_broker("0000000009", placed_at=None)]) == [key]
    assert row(manager.engine, key).status == "sent"
    (event,) = events(manager.engine, "order_resolved")
    assert event.detail["previous_status"] == "expired"
    assert len(events(manager.engine, "order_expired")) == 1  # not expired twice


@pytest.mark.parametrize("machine_tz", MACHINE_ZONES, indirect=True)
def test_an_intent_expired_on_an_earlier_day_stays_expired(manager: OrderManager, machine_tz: str) -> None:
    late = dt.datetime.combine(DAY, dt.time(0), KST) - dt.timedelta(seconds=1)
    key = intent(manager, proposed(), late)
    manager.resolve_unknown(late, [])
    # 08:00 KST is still the previous day in UTC: the KST day decides.
    assert manager.resolve_unknown(kst(8, 0), [at_broker("0000000009", placed_at=None)]) == []
    assert row(manager.engine, key).status == "expired" and row(manager.engine, key).broker_order_no is None


def test_another_account_or_mode_is_not_resolved_here(engine: Engine) -> None:
    other = OrderManager(engine, FakeBroker(engine), "other")  # type: ignore[arg-type]
    dry = OrderManager(engine, DryBroker(engine), "main")  # type: ignore[arg-type]
    mine = OrderManager(engine, FakeBroker(engine), "main")  # type: ignore[arg-type]
    intent(other, proposed(account="other", symbol="000660"), NOW)
    intent(dry, proposed(symbol="035420"), NOW)
    assert mine.resolve_unknown(NOW, []) == []
    assert {r.symbol: r.status for r in rows(engine)} == {"000660": "intent", "035420": "intent"}
    assert other.unresolved_symbols() == {"000660"} and dry.unresolved_symbols() == {"035420"}
    assert mine.unresolved_symbols() == set()


# --- tracking ------------------------------------------------------------------------------------------
def sent(
    m: OrderManager, symbol: str = STOCK, side: str = "buy", quantity: int = 5, now: dt.datetime = NOW
) -> Any:
    outcome = submit(m, proposed(symbol=symbol, side=side, quantity=quantity), now)
    assert outcome.status == "sent"
    return row(m.engine, outcome.client_order_id)


def test_fills_are_stored_once_each_at_their_own_price_and_move_the_position(
    manager: OrderManager,
) -> None:
    r = sent(manager)
    no = r.broker_order_no
    assert manager.track(kst(10, 1), [at_broker(no, filled=2, avg=100.0)]) == 1
    assert row(manager.engine, r.client_order_id).status == "partial"
    assert manager.working_symbols() == {STOCK}
    assert manager.track(kst(10, 1), [at_broker(no, filled=2, avg=100.0)]) == 0  # nothing new
    assert manager.track(kst(10, 2), [at_broker(no, filled=5, avg=106.0, status="filled")]) == 1
    got = row(manager.engine, r.client_order_id)
    assert (got.status, got.filled_quantity, got.avg_fill_price, got.updated_at) == (
        "filled",
        5,
        106.0,
        kst(10, 2),
    )
    assert manager.working_symbols() == set()
    first, second = fill_rows(manager.engine)
    assert (first.broker_fill_id, first.quantity, first.price, first.ts) == (f"{no}:2", 2, 100.0, kst(10, 1))
    assert (second.broker_fill_id, second.quantity, second.price) == (f"{no}:5", 3, pytest.approx(110.0))
    assert (second.order_id, second.symbol, second.side) == (r.id, STOCK, "buy")
    assert first.fee == pytest.approx(200.0 * fee_rate("stock")) and first.tax == 0.0
    assert stored_positions(manager.engine, "main") == {STOCK: (5, pytest.approx(106.0))}


def test_a_stock_sell_pays_the_tax_of_its_day_and_a_futures_fill_counts_the_multiplier(
    manager: OrderManager,
) -> None:
    s = sent(manager, side="sell", quantity=2)
    f = sent(manager, symbol=FUTURE, side="sell", quantity=1)
    book = [
        at_broker(s.broker_order_no, side="sell", quantity=2, filled=2, avg=1000.0, status="filled"),
        at_broker(
            f.broker_order_no, symbol=FUTURE, side="sell", quantity=1, filled=1, avg=400.0, status="filled"
        ),
    ]
    assert manager.track(kst(10, 1), book) == 2
    stock_fill, fut_fill = fill_rows(manager.engine)
    assert stock_fill.tax == pytest.approx(2000.0 * sell_tax_rate("stock", DAY)) and stock_fill.tax > 0
    assert sell_tax_rate("stock", DAY) != sell_tax_rate("stock")  # the day matters, not today's rate
    assert stock_fill.fee == pytest.approx(2000.0 * fee_rate("stock"))
    notional = 400.0 * FUTURES_MULTIPLIER
    assert fut_fill.fee == pytest.approx(notional * fee_rate("futures")) and fut_fill.tax == 0.0
    assert stored_positions(manager.engine, "main") == {STOCK: (-2, 1000.0), FUTURE: (-1, 400.0)}


def test_final_states_come_from_the_broker(manager: OrderManager) -> None:
    orders_ = {st: sent(manager, symbol=sym) for st, sym in (("cancelled", "000660"), ("rejected", "035420"))}
    short = sent(manager, symbol="051910")
    book = [at_broker(r.broker_order_no, symbol=r.symbol, status=st) for st, r in orders_.items()]
    # KIS reports "filled" when the unfilled rest was cancelled: 3 of 5 is a partial fill, not a filled order.
    book.append(at_broker(short.broker_order_no, symbol="051910", filled=3, avg=50.0, status="filled"))
    assert manager.track(kst(10, 1), book) == 1
    states = {r.symbol: (r.status, r.filled_quantity) for r in rows(manager.engine)}
    assert states == {"000660": ("cancelled", 0), "035420": ("rejected", 0), "051910": ("partial", 3)}
    assert fill_rows(manager.engine)[0].quantity == 3


def test_a_broker_reporting_more_than_ordered_fills_the_order_only(manager: OrderManager) -> None:
    r = sent(manager, quantity=5)
    assert manager.track(kst(10, 1), [at_broker(r.broker_order_no, filled=7, avg=10.0, status="filled")]) == 1
    assert row(manager.engine, r.client_order_id).filled_quantity == 5
    assert stored_positions(manager.engine, "main") == {STOCK: (5, 10.0)}


def test_a_fill_count_going_back_does_not_undo_fills(manager: OrderManager) -> None:
    r = sent(manager)
    manager.track(kst(10, 1), [at_broker(r.broker_order_no, filled=3, avg=10.0)])
    assert manager.track(kst(10, 2), [at_broker(r.broker_order_no, filled=0, avg=0.0)]) == 0
    got = row(manager.engine, r.client_order_id)
    assert (got.filled_quantity, got.avg_fill_price) == (3, 10.0)
    assert stored_positions(manager.engine, "main") == {STOCK: (3, 10.0)}


def test_the_same_order_number_in_two_accounts_fills_both(engine: Engine) -> None:
    a = OrderManager(engine, FakeBroker(engine), "main")  # type: ignore[arg-type]
    b = OrderManager(engine, FakeBroker(engine), "other")  # type: ignore[arg-type]
    ra, rb = sent(a), row(engine, submit(b, proposed(account="other")).client_order_id)
    assert ra.broker_order_no == rb.broker_order_no
    filled = [at_broker(ra.broker_order_no, filled=5, avg=10.0, status="filled")]
    assert a.track(kst(10, 1), filled) == 1 and b.track(kst(10, 1), filled) == 1
    assert stored_positions(engine, "main") == {STOCK: (5, 10.0)} == stored_positions(engine, "other")


def test_a_cancel_record_is_not_mistaken_for_the_order(manager: OrderManager) -> None:
    r = sent(manager)
    book = [
        at_broker(r.broker_order_no, filled=2, avg=10.0),
        at_broker("0000000099", quantity=3, status="filled", original=r.broker_order_no),
    ]
    assert manager.track(kst(10, 1), book) == 1
    assert row(manager.engine, r.client_order_id).filled_quantity == 2


@pytest.mark.parametrize(("age_s", "cancelled"), [(119.0, False), (120.0, True)])
def test_an_order_left_open_is_cancelled_after_the_default_time(
    manager: OrderManager, broker: FakeBroker, age_s: float, cancelled: bool
) -> None:
    r = sent(manager, symbol=FUTURE, quantity=1)
    manager.track(
        NOW + dt.timedelta(seconds=age_s), [at_broker(r.broker_order_no, symbol=FUTURE, quantity=1)]
    )
    assert broker.cancels == ([(r.broker_order_no, FUTURE, InstrumentKind.FUTURES)] if cancelled else [])
    got = row(manager.engine, r.client_order_id)
    assert got.reason == ("unfilled after 120 s: cancel sent" if cancelled else None)
    assert got.status == "sent"  # the next track sees the broker's final state


def test_the_cancel_time_is_the_configured_one(engine: Engine, broker: FakeBroker) -> None:
    m = OrderManager(engine, broker, "main", cancel_after_s=30.0)  # type: ignore[arg-type]
    r = sent(m)
    m.track(NOW + dt.timedelta(seconds=30), [at_broker(r.broker_order_no)])
    assert broker.cancels == [(r.broker_order_no, STOCK, InstrumentKind.STOCK)]
    assert row(engine, r.client_order_id).reason == "unfilled after 30 s: cancel sent"


@pytest.mark.parametrize("error", [KisRejectedError("already filled"), KisTemporaryError("HTTP 500")])
def test_a_failed_cancel_is_not_recorded_as_sent(
    manager: OrderManager, broker: FakeBroker, error: KisError
) -> None:
    r = sent(manager)
    broker.cancel_error = error
    manager.track(NOW + dt.timedelta(minutes=5), [at_broker(r.broker_order_no)])
    assert len(broker.cancels) == 1 and row(manager.engine, r.client_order_id).reason is None


def test_only_an_open_order_with_a_send_time_is_cancelled(manager: OrderManager, broker: FakeBroker) -> None:
    r = sent(manager)
    late = NOW + dt.timedelta(minutes=5)
    manager.track(late, [at_broker(r.broker_order_no, filled=5, avg=1.0, status="filled")])
    assert broker.cancels == []
    # An order resolved from a broker listing without a time has no send time: it is not cancelled.
    key = intent(manager, proposed(symbol="000660"), NOW)
    manager.resolve_unknown(NOW, [at_broker("0000000050", symbol="000660", placed_at=None)])
    assert row(manager.engine, key).sent_at is None
    manager.track(late, [at_broker("0000000050", symbol="000660")])
    assert broker.cancels == []


def test_an_order_missing_at_the_broker_expires_only_after_its_kst_day(manager: OrderManager) -> None:
    # 08:30 KST is still the previous day in UTC: the order is of today.
    r = sent(manager, now=kst(8, 30))
    assert manager.track(kst(15, 0), []) == 0
    assert row(manager.engine, r.client_order_id).status == "sent"
    assert manager.track(kst(8, 0, day=DAY + dt.timedelta(days=1)), []) == 0
    got = row(manager.engine, r.client_order_id)
    assert (got.status, got.reason) == ("expired", "the day ended with the order open")


def test_another_accounts_or_modes_working_orders_are_not_tracked(engine: Engine) -> None:
    other = OrderManager(engine, FakeBroker(engine), "other")  # type: ignore[arg-type]
    r = row(engine, submit(other, proposed(account="other")).client_order_id)
    mine = OrderManager(engine, FakeBroker(engine), "main")  # type: ignore[arg-type]
    assert mine.track(kst(10, 1), [at_broker(r.broker_order_no, filled=5, avg=1.0, status="filled")]) == 0
    assert row(engine, r.client_order_id).status == "sent" and mine.working_symbols() == set()
    assert other.working_symbols() == {STOCK}
    dry = OrderManager(engine, DryBroker(engine), "other")  # type: ignore[arg-type]
    assert dry.track(kst(10, 1), [at_broker(r.broker_order_no, filled=5, avg=1.0, status="filled")]) == 0
    assert dry.working_symbols() == set()


# --- positions -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("moves", "expected"),
    [
        ([(3, 100.0)], (3, 100.0)),  # opened
        ([(2, 100.0), (3, 110.0)], (5, 106.0)),  # added: weighted average
        ([(1, 100.0), (1, 110.0)], (2, 105.0)),  # a one-lot position added to
        ([(5, 100.0), (-2, 120.0)], (3, 100.0)),  # reduced: the open part keeps its price
        ([(-2, 100.0), (-3, 110.0)], (-5, 106.0)),  # a short added to
        ([(2, 100.0), (-3, 90.0)], (-1, 90.0)),  # flipped through zero
        ([(-2, 100.0), (3, 90.0)], (1, 90.0)),
        ([(2, 100.0), (-2, 90.0), (1, 80.0)], (1, 80.0)),  # closed, then opened again
    ],
)
def test_fills_move_the_position_and_its_average_price(
    engine: Engine, moves: list[tuple[int, float]], expected: tuple[int, float]
) -> None:
    for qty, price in moves:
        with write_transaction(engine) as conn:
            apply_fill(conn, "main", STOCK, qty, price, NOW)
    qty, avg = stored_positions(engine, "main")[STOCK]
    assert (qty, avg) == (expected[0], pytest.approx(expected[1]))


def test_a_fill_moves_only_its_accounts_symbol_and_a_closed_position_is_not_listed(engine: Engine) -> None:
    with write_transaction(engine) as conn:
        apply_fill(conn, "other", STOCK, 1, 50.0, kst(9, 0))
        apply_fill(conn, "main", "000660", 4, 20.0, kst(9, 0))
        apply_fill(conn, "main", STOCK, 2, 100.0, NOW)
    with engine.connect() as conn:
        opened = conn.execute(
            sa.select(positions).where(positions.c.account == "main", positions.c.symbol == STOCK)
        ).one()
    assert opened.updated_at == NOW
    with write_transaction(engine) as conn:
        apply_fill(conn, "main", STOCK, -2, 90.0, kst(10, 5))
    with engine.connect() as conn:
        kept = conn.execute(
            sa.select(positions).where(positions.c.account == "main", positions.c.symbol == STOCK)
        ).one()
    assert (kept.quantity, kept.avg_price, kept.updated_at) == (0, 0.0, kst(10, 5))
    assert stored_positions(engine, "main") == {"000660": (4, 20.0)}
    assert stored_positions(engine, "other") == {STOCK: (1, 50.0)}


def test_the_multiplier_is_the_futures_contracts_only() -> None:
    assert multiplier_of(FUTURE) == FUTURES_MULTIPLIER and multiplier_of(STOCK) == 1.0


# --- what the first mutation run let through -------------------------------------------------------------
def test_a_resubmit_reports_why_the_first_send_failed(manager: OrderManager, broker: FakeBroker) -> None:
    broker.place_error = KisRejectedError("insufficient cash")
    first = submit(manager, proposed())
    again = manager.send(first.client_order_id, proposed(), kst(10, 1))
    assert again == OrderOutcome(first.client_order_id, "rejected", None, first.reason, new=False)
    assert again.reason == "rejected by the broker: insufficient cash" and len(broker.placed) == 1


def test_an_unknown_outcome_and_an_unreachable_broker_are_logged(
    manager: OrderManager, broker: FakeBroker, caplog: pytest.LogCaptureFixture
) -> None:
    broker.place_error = KisUncertainOrderError("read timed out")
    broker.orders_error = KisTemporaryError("HTTP 500")
    with caplog.at_level(logging.WARNING, logger="pipeline.trading.orders"):
        outcome = submit(manager, proposed())
    assert [r.getMessage() for r in caplog.records] == [
        f"order {outcome.client_order_id}: outcome unknown (KisUncertainOrderError);"
        " resolving with the broker",
        "cannot ask the broker for its orders now (KisTemporaryError); next run resolves",
    ]


def test_a_failed_cancel_is_logged_with_the_order_number_and_why(
    manager: OrderManager, broker: FakeBroker, caplog: pytest.LogCaptureFixture
) -> None:
    r = sent(manager)
    late = NOW + dt.timedelta(minutes=5)
    with caplog.at_level(logging.INFO, logger="pipeline.trading.orders"):
        broker.cancel_error = KisRejectedError("already filled")
        manager.track(late, [at_broker(r.broker_order_no)])
        broker.cancel_error = KisTemporaryError("HTTP 500")
        manager.track(late, [at_broker(r.broker_order_no)])
    got = [(rec.levelname, rec.getMessage()) for rec in caplog.records]
    assert got == [
        ("INFO", f"cancel of {r.broker_order_no} refused by the broker: already filled"),
        ("WARNING", f"cancel of {r.broker_order_no} failed (KisTemporaryError); retried next run"),
    ]


def test_lines_logged_while_sending_or_cancelling_carry_the_order_key(
    manager: OrderManager, broker: FakeBroker
) -> None:
    r = sent(manager, symbol=FUTURE, quantity=1)
    manager.track(NOW + dt.timedelta(minutes=5), [at_broker(r.broker_order_no, symbol=FUTURE, quantity=1)])
    placing, cancelling = broker.contexts
    assert placing["client_order_id"] == r.client_order_id
    assert (cancelling["client_order_id"], cancelling["symbol"]) == (r.client_order_id, FUTURE)


def test_the_matching_order_is_found_behind_others(manager: OrderManager) -> None:
    key = intent(manager, proposed(), NOW)
    book = [at_broker("0000000001", symbol="000660"), at_broker("0000000002")]
    assert manager.resolve_unknown(NOW, book) == [key]
    assert row(manager.engine, key).broker_order_no == "0000000002"


def test_an_order_missing_at_the_broker_does_not_stop_tracking_the_others(manager: OrderManager) -> None:
    missing = sent(manager, symbol="000660")
    filled = sent(manager)
    book = [at_broker(filled.broker_order_no, filled=5, avg=10.0, status="filled")]
    assert manager.track(kst(10, 1), book) == 1
    assert row(manager.engine, missing.client_order_id).status == "sent"
    assert row(manager.engine, filled.client_order_id).status == "filled"


def test_a_final_order_is_left_as_it_is_on_later_days(manager: OrderManager, broker: FakeBroker) -> None:
    broker.place_error = KisRejectedError("insufficient cash")
    rejected = submit(manager, proposed())
    assert manager.track(kst(9, 0, day=DAY + dt.timedelta(days=1)), []) == 0
    got = row(manager.engine, rejected.client_order_id)
    assert (got.status, got.reason) == ("rejected", "rejected by the broker: insufficient cash")


def test_one_lot_filled_of_several_is_a_partial_fill(manager: OrderManager) -> None:
    r = sent(manager)
    assert manager.track(kst(10, 1), [at_broker(r.broker_order_no, filled=1, avg=10.0)]) == 1
    got = row(manager.engine, r.client_order_id)
    assert (got.status, got.filled_quantity) == ("partial", 1)


def test_a_fill_another_run_already_stored_is_not_stored_or_applied_again(manager: OrderManager) -> None:
    """Two overlapping runs read the order before either stored the fill: the fill lands once."""
    r = sent(manager)
    got = at_broker(r.broker_order_no, filled=5, avg=10.0, status="filled")
    assert manager._apply(r, got, kst(10, 1)) == 1
    manager._apply(r, got, kst(10, 1))  # the second run, with the same (stale) row
    assert len(fill_rows(manager.engine)) == 1
    assert stored_positions(manager.engine, "main") == {STOCK: (5, 10.0)}


def test_every_state_change_is_counted_once_in_the_run_metrics(
    manager: OrderManager, broker: FakeBroker
) -> None:
    with obs.trading_run(get_settings(), "main") as metrics:
        a = sent(manager)
        broker.place_error = KisRejectedError("insufficient cash")
        submit(manager, proposed(symbol="000660"))
        broker.place_error = None
        c = sent(manager, symbol="035420")
        manager.track(kst(10, 1), [at_broker(a.broker_order_no, filled=1, avg=10.0)])
        manager.track(kst(10, 1), [at_broker(a.broker_order_no, filled=1, avg=10.0)])  # nothing changed
        book = [
            at_broker(a.broker_order_no, filled=5, avg=10.0, status="filled"),
            at_broker(c.broker_order_no, symbol="035420", status="rejected"),
        ]
        manager.track(kst(10, 2), book)
    assert dict(metrics.orders) == {"intent": 3, "sent": 2, "rejected": 2, "partial": 1, "filled": 1}
    assert dict(metrics.rejections) == {"broker": 2}


def test_the_oldest_unknown_intent_gets_the_broker_order_on_each_store(store: Engine) -> None:
    """Also when the older row was written last (PostgreSQL then returns it last without an ORDER BY)."""
    broker = FakeBroker(store)
    m = OrderManager(store, broker, "main")  # type: ignore[arg-type]
    older = intent(m, proposed(decision_ts=kst(9, 58)), NOW)
    newer = intent(m, proposed(decision_ts=kst(9, 59)), NOW)
    broker.place_error, broker.orders_error = KisUncertainOrderError("timeout"), KisTemporaryError("500")
    m.send(older, proposed(decision_ts=kst(9, 58)), NOW)  # the older row is updated after the newer
    assert m.resolve_unknown(NOW, [at_broker("0000000005")]) == [older]
    assert row(store, newer).status == "expired"
