"""A simulated trading session for the tests: the KIS simulator on a loopback port with its clock driven
minute by minute, the model server with a tiny champion, and a store; each run builds a fresh Trader (a
restart) unless told otherwise."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pipeline.config import Settings
from pipeline.kis.simulator.server import SimServer
from pipeline.market import KST
from pipeline.store.schema import decisions, fills, orders, positions
from pipeline.trading.brokers import KisBroker, make_broker
from pipeline.trading.decider import HttpDecider
from pipeline.trading.engine import Trader, TradingRun

#: A Tuesday far from a futures expiry: both markets trade.
DAY = dt.date(2025, 7, 15)


def kst(day: dt.date, hh: int, mm: int, ss: float = 0.0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hh, mm), KST) + dt.timedelta(seconds=ss)


@dataclass
class Session:
    """Drives one simulated session: ``run(when)`` sets the simulator's clock to ``when`` and trades once."""

    sim: SimServer
    settings: Settings
    engine: Engine
    broker: KisBroker = field(init=False)
    decider: HttpDecider = field(init=False)

    def __post_init__(self) -> None:
        self.broker = make_broker(self.settings)  # type: ignore[assignment]
        self.decider = HttpDecider(self.settings)

    def close(self) -> None:
        self.broker.close()
        self.decider.close()

    def set_clock(self, when: dt.datetime, speed: float = 1.0) -> None:
        resp = httpx.post(
            f"{self.sim.base_url}/sim/admin/clock", json={"now": when.isoformat(), "speed": speed}
        )
        resp.raise_for_status()

    def faults(self, **knobs: Any) -> None:
        httpx.post(f"{self.sim.base_url}/sim/admin/faults", json=knobs).raise_for_status()

    def trader(self, fault: Callable[[str], None] | None = None, **overrides: Any) -> Trader:
        settings = self.settings.model_copy(update=overrides) if overrides else self.settings
        decider = HttpDecider(settings) if "trading_server_url" in overrides else self.decider
        return Trader(settings, self.broker, decider, self.engine, fault=fault)

    def run(
        self, when: dt.datetime, fault: Callable[[str], None] | None = None, **overrides: Any
    ) -> TradingRun:
        self.set_clock(when)
        return self.trader(fault, **overrides).run()

    # --- what the store and the broker say ------------------------------------------------------
    def orders(self) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(sa.select(orders).order_by(orders.c.id)))

    def fills(self) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(sa.select(fills).order_by(fills.c.id)))

    def decisions(self) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(sa.select(decisions).order_by(decisions.c.bar_ts)))

    def positions(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            return {r.symbol: int(r.quantity) for r in conn.execute(sa.select(positions)) if r.quantity}

    def broker_positions(self) -> dict[str, int]:
        return {s: p.quantity for s, p in self.broker.account().positions.items() if p.quantity}

    def broker_orders(self) -> list[Any]:
        """The simulator's own ledger rows (not through the KIS API)."""
        return [o for o in self.sim.state.ledger.orders() if not o.orgn_odno]
