"""The trading job's plain data pinned (issue 14, mutation testing of ``pipeline/trading/types.py``): the
order states the store keeps (the engine filters on these exact words), which of them are final or still
working at the broker, what an order has left to fill, a signed order and its notional in won, and the
defaults a broker row or an account gets when KIS leaves a field out."""

from __future__ import annotations

import datetime as dt

import pytest

from pipeline.market import KST
from pipeline.trading import types
from pipeline.trading.types import AccountState, BrokerOrder, BrokerPosition, ProposedOrder

NOW = dt.datetime(2026, 3, 10, 10, 0, tzinfo=KST)


def test_the_order_states_are_the_words_the_store_and_the_engine_use() -> None:
    # engine.py filters orders with the literals ("rejected", "expired", "cancelled"); the store keeps these.
    words = [types.INTENT, types.SENT, types.PARTIAL, types.FILLED, types.CANCELLED, types.REJECTED]
    assert [*words, types.EXPIRED, types.DRY] == [
        "intent",
        "sent",
        "partial",
        "filled",
        "cancelled",
        "rejected",
        "expired",
        "dry",
    ]
    assert {"filled", "cancelled", "rejected", "expired", "dry"} == types.FINAL_STATES
    assert {"sent", "partial"} == types.WORKING_STATES


@pytest.mark.parametrize(("quantity", "filled", "left"), [(5, 2, 3), (5, 5, 0), (5, 7, 0), (3, 0, 3)])
def test_what_a_broker_order_has_left_to_fill(quantity: int, filled: int, left: int) -> None:
    order = BrokerOrder("0000000001", "005930", "buy", quantity, filled, 71500.0, "open")
    assert order.remaining == left


def test_a_broker_row_without_time_limit_or_original_order() -> None:
    order = BrokerOrder("0000000001", "005930", "buy", 1, 0, 0.0, "open")
    assert (order.placed_at, order.limit_price, order.original_order_no) == (None, None, "")
    assert BrokerPosition("005930", 3, 70000.0).price == 0.0


def test_an_account_answers_the_signed_quantity_of_a_symbol_or_zero() -> None:
    account = AccountState(
        cash=1e6,
        equity=2e6,
        positions={"101W06": BrokerPosition("101W06", -2, 350.0), "005930": BrokerPosition("005930", 3, 7e4)},
    )
    assert (account.quantity("101W06"), account.quantity("005930"), account.quantity("000660")) == (-2, 3, 0)
    empty = AccountState(cash=1e6, equity=1e6)
    assert (empty.positions, empty.margin_used, empty.quantity("005930")) == ({}, 0.0, 0)


def order(side: str, quantity: int, **extra: object) -> ProposedOrder:
    return ProposedOrder(
        account="main",
        spec="kospi200f-1m",
        symbol="101W06",
        kind="futures",
        side=side,  # type: ignore[arg-type]
        quantity=quantity,
        price=350.5,
        multiplier=250_000.0,
        position_before=0,
        decision_ts=NOW,
        **extra,  # type: ignore[arg-type]
    )


def test_a_proposed_order_is_signed_by_its_side_and_priced_in_won() -> None:
    assert (order("buy", 2).signed_quantity, order("sell", 2).signed_quantity) == (2, -2)
    assert order("sell", 2).notional == 2 * 350.5 * 250_000.0
    assert order("buy", -3).notional == 3 * 350.5 * 250_000.0  # the size counts, not its sign
    plain = order("buy", 1)
    assert (plain.order_type, plain.limit_price) == ("market", None)
