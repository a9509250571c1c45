"""Booking fills: cash, positions and realized P&L for stocks (fees, the dated sell tax) and futures
(the contract multiplier), every rate read from :mod:`pipeline.market`."""

from __future__ import annotations

import sqlite3
from datetime import date

from pipeline.kis.simulator.ledger import Order
from pipeline.kis.simulator.simconfig import SimConfig
from pipeline.market import FUTURES_MULTIPLIER, InstrumentKind, sell_tax_rate


class Books:
    """Applies one fill to the account and position rows (inside the caller's transaction)."""

    def __init__(self, cfg: SimConfig) -> None:
        self.cfg = cfg

    def cash(self, db: sqlite3.Connection, cano: str, prdt: str) -> float:
        """Account cash, opening the account with the initial cash on first use."""
        db.execute("INSERT OR IGNORE INTO accounts VALUES (?, ?, ?)", (cano, prdt, self.cfg.initial_cash))
        return float(
            db.execute("SELECT cash FROM accounts WHERE cano=? AND prdt=?", (cano, prdt)).fetchone()[0]
        )

    def position(self, db: sqlite3.Connection, order: Order) -> tuple[int, float, float]:
        """(signed qty, average price, realized P&L) of the order's symbol in its account."""
        row = db.execute(
            "SELECT qty, avg_price, realized FROM positions WHERE cano=? AND prdt=? AND symbol=?",
            (order.cano, order.prdt, order.symbol),
        ).fetchone()
        return (int(row[0]), float(row[1]), float(row[2])) if row else (0, 0.0, 0.0)

    def save(
        self, db: sqlite3.Connection, order: Order, qty: int, avg: float, realized: float, cash_delta: float
    ) -> None:
        """Write the position and move cash by ``cash_delta``."""
        db.execute(
            "INSERT OR REPLACE INTO positions VALUES (?,?,?,?,?,?)",
            (order.cano, order.prdt, order.symbol, qty, avg, realized),
        )
        self.cash(db, order.cano, order.prdt)
        db.execute(
            "UPDATE accounts SET cash = cash + ? WHERE cano=? AND prdt=?",
            (cash_delta, order.cano, order.prdt),
        )

    def stock(
        self, db: sqlite3.Connection, order: Order, qty: int, price: float, kind: InstrumentKind, day: date
    ) -> float:
        """Book a stock or ETF fill on ``day``; returns the fee (commission, plus on sells the transaction
        tax in force that day: none for ETFs)."""
        pos, avg, realized = self.position(db, order)
        notional = qty * price
        if order.side == "buy":
            fee = notional * self.cfg.stock_fee_rate
            self.save(db, order, pos + qty, (avg * pos + notional) / (pos + qty), realized, -(notional + fee))
            return fee
        fee = notional * (self.cfg.stock_fee_rate + sell_tax_rate(kind, day))
        realized += (price - avg) * qty - fee
        self.save(db, order, pos - qty, avg if pos - qty else 0.0, realized, notional - fee)
        return fee

    def futures(
        self, db: sqlite3.Connection, order: Order, qty: int, price: float, kind: InstrumentKind, day: date
    ) -> float:
        """Book a futures fill (netting long/short); returns the fee."""
        pos, avg, realized = self.position(db, order)
        signed = qty if order.side == "buy" else -qty
        fee = qty * price * FUTURES_MULTIPLIER * self.cfg.futures_fee_rate
        pnl = 0.0
        if pos == 0 or (pos > 0) == (signed > 0):
            avg = (avg * abs(pos) + price * qty) / (abs(pos) + qty)
        else:
            closing = min(qty, abs(pos))
            pnl = (price - avg) * closing * (1 if pos > 0 else -1) * FUTURES_MULTIPLIER
            if qty > abs(pos):
                avg = price  # the remainder opens a position the other way
        new = pos + signed
        self.save(db, order, new, avg if new else 0.0, realized + pnl - fee, pnl - fee)
        return fee

    # --- account views -----------------------------------------------------------------------
