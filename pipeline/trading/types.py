"""Plain data shared by the trading modules: what a broker reports and what an order asks for."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Literal

Side = Literal["buy", "sell"]

# Order states in the store (``orders.status``): intent → sent → partial → filled | cancelled | rejected |
# expired. ``intent`` is committed before any HTTP call; an intent whose outcome is unknown is resolved
# by asking the broker (pipeline.trading.orders), never by sending again.
INTENT = "intent"
SENT = "sent"
PARTIAL = "partial"
FILLED = "filled"
CANCELLED = "cancelled"
REJECTED = "rejected"
EXPIRED = "expired"
#: Recorded by dry-run: the order that would have been sent.
DRY = "dry"
FINAL_STATES = frozenset({FILLED, CANCELLED, REJECTED, EXPIRED, DRY})
WORKING_STATES = frozenset({SENT, PARTIAL})


@dataclass(frozen=True)
class BrokerOrder:
    """One order of the day as the broker reports it."""

    order_no: str
    symbol: str
    side: Side
    quantity: int
    filled_quantity: int
    avg_price: float
    #: open | filled | cancelled | rejected
    status: str
    placed_at: dt.datetime | None = None
    limit_price: float | None = None
    #: Set on the cancel/modify records KIS lists as orders of their own: the order they act on.
    original_order_no: str = ""

    @property
    def remaining(self) -> int:
        return max(self.quantity - self.filled_quantity, 0)


@dataclass(frozen=True)
class BrokerPosition:
    """A holding as the broker reports it; ``quantity`` is signed (negative: short futures)."""

    symbol: str
    quantity: int
    avg_price: float
    price: float = 0.0


@dataclass(frozen=True)
class AccountState:
    """Cash, equity (cash + marked positions, or net assets for futures) and holdings at the broker."""

    cash: float
    equity: float
    positions: dict[str, BrokerPosition] = field(default_factory=dict)
    margin_used: float = 0.0

    def quantity(self, symbol: str) -> int:
        pos = self.positions.get(symbol)
        return pos.quantity if pos else 0


@dataclass(frozen=True)
class ProposedOrder:
    """An order the trading job wants to send, before the risk checks."""

    account: str
    spec: str
    symbol: str  # what the broker trades (a futures contract code, a stock code)
    kind: str  # stock | futures
    side: Side
    quantity: int
    price: float  # reference price: the decision bar's close (or the limit price)
    multiplier: float
    position_before: int
    decision_ts: dt.datetime
    order_type: Literal["market", "limit"] = "market"
    limit_price: float | None = None

    @property
    def signed_quantity(self) -> int:
        return self.quantity if self.side == "buy" else -self.quantity

    @property
    def notional(self) -> float:
        return abs(self.quantity) * self.price * self.multiplier
