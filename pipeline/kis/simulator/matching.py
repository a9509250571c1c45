"""Order checks and matching against minute bars: next bar's open plus slippage, limits when crossed,
partial fills capped by bar volume, cash/margin accounting for stocks and KOSPI200 futures."""

from __future__ import annotations

import math
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta

from pipeline.kis.simulator import marketgen as mg
from pipeline.kis.simulator.booking import Books
from pipeline.kis.simulator.ledger import CANCELLED, EXPIRED, FILLED, OPEN, ORG_NO, Ledger, Order
from pipeline.kis.simulator.market import MarketData
from pipeline.kis.simulator.simconfig import SimConfig
from pipeline.market import FUTURES_MULTIPLIER, KST, InstrumentKind, tick_size

# Rejection codes. 40580000 and APBK0656 are from the spec (§8, §9); the others are [U] stand-ins in
# KIS's APBK style: the client treats any of them as KisRejectedError carrying msg_cd/msg1.
CLOSED_PAPER = ("40580000", "모의투자 장종료 입니다")
CLOSED_REAL = ("APBK0918", "장운영시간이 아닙니다")
UNKNOWN_SYMBOL = ("APBK0656", "해당 종목정보가 없습니다")
NO_CASH = ("APBK0952", "주문가능금액을 초과 했습니다")
NO_MARGIN = ("APFO0952", "주문가능증거금이 부족합니다")
NO_QTY = ("APBK0400", "주문가능수량을 초과 했습니다")
OUTSIDE_LIMITS = ("APBK0556", "상/하한가 범위를 벗어난 가격입니다")
BAD_TICK = ("APBK0559", "호가단위가 올바르지 않습니다")
BAD_QTY = ("APBK0633", "주문수량을 확인하여 주십시오")
NO_ORDER = ("APBK0506", "정정/취소 가능한 주문이 없습니다")


class Reject(Exception):
    """A business rejection: the route answers rt_cd 1 with these codes."""

    def __init__(self, code: tuple[str, str]) -> None:
        super().__init__(code[0])
        self.msg_cd, self.msg1 = code


@dataclass(frozen=True)
class OrderRequest:
    """A parsed order body."""

    cano: str
    prdt: str
    market: str
    symbol: str
    side: str
    ord_type: str
    qty: int
    price: float
    paper: bool


class Exchange:
    """Places, revises and fills orders; all state lives in the Ledger."""

    def __init__(self, cfg: SimConfig, market: MarketData, ledger: Ledger) -> None:
        self.cfg, self.market, self.ledger = cfg, market, ledger
        self.books = Books(cfg)

    # --- placement ---------------------------------------------------------------------------
    def place(self, req: OrderRequest, now: datetime) -> Order:
        """Validate and record an order (it fills from the next bar on)."""
        kind = self._check_tradable(req.symbol, req.market, now, req.paper)
        self.sync(now)
        if req.qty <= 0:
            raise Reject(BAD_QTY)
        snap = self.market.snapshot(req.symbol, kind, now)
        assert snap is not None
        if req.ord_type == "limit":
            self._check_price(req.price, kind, snap.lower, snap.upper)
        ref = req.price if req.ord_type == "limit" else snap.bar.close
        with self.ledger.transaction() as db:
            self._check_funds(db, req, kind, ref, now)
            return self._insert(db, req, now, "")

    def _check_tradable(self, symbol: str, market: str, now: datetime, paper: bool) -> InstrumentKind:
        kind = self.market.kind_of(symbol)
        if kind is None or kind == "index" or (kind == "futures") != (market == "futures"):
            raise Reject(UNKNOWN_SYMBOL)
        start, end = mg.session_window(kind, now.date())
        day_open = self.market.is_trading_day(now.date())
        if not day_open or not (
            datetime.combine(now.date(), start, KST) <= now < datetime.combine(now.date(), end, KST)
        ):
            raise Reject(CLOSED_PAPER if paper else CLOSED_REAL)
        return kind

    def _check_price(self, price: float, kind: InstrumentKind, lower: float, upper: float) -> None:
        if not lower <= price <= upper:
            raise Reject(OUTSIDE_LIMITS)
        if abs(mg.round_tick(price, kind) - price) > 1e-6:
            raise Reject(BAD_TICK)

    def _open_orders(self, db: sqlite3.Connection, cano: str, prdt: str) -> list[Order]:
        rows = db.execute("SELECT * FROM orders WHERE cano=? AND prdt=? AND status=?", (cano, prdt, OPEN))
        return [Order(**dict(r)) for r in rows]

    def _check_funds(
        self, db: sqlite3.Connection, req: OrderRequest, kind: InstrumentKind, ref: float, now: datetime
    ) -> None:
        if req.market == "futures":
            opening = self.futures_opening_qty(db, req.cano, req.prdt, req.symbol, req.side, req.qty)
            need = opening * ref * FUTURES_MULTIPLIER * self.cfg.futures_margin_rate
            if need > self.futures_available(db, req.cano, req.prdt, now) + 1e-6:
                raise Reject(NO_MARGIN)
            return
        if req.side == "buy":
            if req.qty * ref * (1 + self.cfg.stock_fee_rate) > self.stock_available_cash(
                db, req.cano, req.prdt, now
            ):
                raise Reject(NO_CASH)
            return
        if req.qty > self.stock_sellable(db, req.cano, req.prdt, req.symbol):
            raise Reject(NO_QTY)

    def _insert(
        self,
        db: sqlite3.Connection,
        req: OrderRequest,
        now: datetime,
        orgn: str,
        status: str = OPEN,
        cancelled: int = 0,
    ) -> Order:
        odno = self.ledger.next_order_no(db)
        order = Order(
            odno,
            ORG_NO,
            req.cano,
            req.prdt,
            req.market,
            req.symbol,
            req.side,
            req.ord_type,
            req.qty,
            req.price,
            0,
            0.0,
            status,
            orgn,
            now.isoformat(),
            now.strftime("%Y%m%d"),
            now.strftime("%H%M%S"),
            "",
            cancelled,
            0,
        )
        db.execute(
            "INSERT INTO orders VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", tuple(vars(order).values())
        )
        return order

    # --- modify / cancel ---------------------------------------------------------------------
    def revise(
        self,
        original: str,
        cano: str,
        prdt: str,
        cancel: bool,
        qty: int,
        price: float | None,
        now: datetime,
        paper: bool,
    ) -> Order:
        """Cancel or modify the unfilled part of ``original``; returns the new order record (new ODNO)."""
        self.sync(now)
        order = self.ledger.order(original)
        if order is None or order.cano != cano or order.prdt != prdt or order.remaining <= 0:
            raise Reject(NO_ORDER)
        kind = self._check_tradable(order.symbol, order.market, now, paper)
        moved = order.remaining if qty <= 0 or qty >= order.remaining else qty
        new_type = order.ord_type if cancel else ("market" if price is None else "limit")
        new_price = order.price if cancel else (price or 0.0)
        if not cancel and new_type == "limit":
            snap = self.market.snapshot(order.symbol, kind, now)
            assert snap is not None
            self._check_price(new_price, kind, snap.lower, snap.upper)
        with self.ledger.transaction() as db:
            left = order.qty - moved
            status = order.status if left > order.filled_qty else (FILLED if order.filled_qty else CANCELLED)
            db.execute(
                "UPDATE orders SET qty=?, status=?, cancelled=? WHERE odno=?",
                (left, status, int(cancel and status == CANCELLED), original),
            )
            req = OrderRequest(
                cano, prdt, order.market, order.symbol, order.side, new_type, moved, new_price, paper
            )
            return self._insert(db, req, now, original, CANCELLED if cancel else OPEN, int(cancel))

    # --- matching ----------------------------------------------------------------------------
    def sync(self, now: datetime) -> None:
        """Fill every open order against the bars that have happened by ``now``; expire past days' orders."""
        for order in self.ledger.orders("status=?", (OPEN,)):
            self._match(order, now)

    def _match(self, order: Order, now: datetime) -> None:
        kind = self.market.kind_of(order.symbol)
        day = datetime.fromisoformat(order.placed_at).date()
        bars = self.market.intraday(order.symbol, kind, day) if kind else None
        if bars is None or kind is None:
            return
        placed = datetime.fromisoformat(order.placed_at)
        offset = (placed - bars.starts[0]).total_seconds()
        first = int(offset // 60) + 1  # the next bar after placement
        if order.ord_type == "market" and offset >= 0 and offset - (first - 1) * 60 <= self.cfg.open_grace_s:
            first -= 1  # reached the book with the minute's opening trades: fills at this bar's open
        j = max(first, int(order.last_bar) + 1 if order.last_bar else first)
        snap_prev = self.market.full_day(order.symbol, kind, self.market.previous_day(day))
        lower, upper = mg.price_limits(
            snap_prev.close if snap_prev else bars.open[0], mg.instrument_for(order.symbol, kind)
        )
        remaining, start_j = order.remaining, j
        while j < len(bars.starts) and remaining > 0:
            # A market order's price is known at the bar's open; a limit needs the whole bar's range.
            visible = bars.starts[j] + (timedelta(0) if order.ord_type == "market" else timedelta(minutes=1))
            if now < visible:
                break
            price = self._fill_price(
                order, kind, float(bars.open[j]), float(bars.high[j]), float(bars.low[j]), lower, upper
            )
            if price is not None:
                cap = max(1, int(self.cfg.participation * int(bars.volume[j])))
                remaining -= self._fill(order, kind, min(remaining, cap), price, bars.starts[j], j)
            j += 1
        if j > start_j:
            self._mark(order.odno, j - 1)
        if now.date() > day and remaining > 0:
            self._close(order.odno, EXPIRED)

    def _fill_price(
        self, order: Order, kind: InstrumentKind, o: float, h: float, lo: float, lower: float, upper: float
    ) -> float | None:
        if order.ord_type == "market":
            slip = self.cfg.slippage_ticks * tick_size(o, kind)
            return min(max(o + slip if order.side == "buy" else o - slip, lower), upper)
        if order.side == "buy":
            return o if o <= order.price else (order.price if lo <= order.price else None)
        return o if o >= order.price else (order.price if h >= order.price else None)

    def _mark(self, odno: str, j: int) -> None:
        with self.ledger.transaction() as db:
            db.execute("UPDATE orders SET last_bar=? WHERE odno=?", (str(j), odno))

    def _close(self, odno: str, status: str) -> None:
        with self.ledger.transaction() as db:
            db.execute("UPDATE orders SET status=? WHERE odno=?", (status, odno))

    def _fill(self, order: Order, kind: InstrumentKind, qty: int, price: float, ts: datetime, j: int) -> int:
        """Book one fill; returns the quantity actually filled (cash or holdings may cap it)."""
        with self.ledger.transaction() as db:
            row = db.execute("SELECT * FROM orders WHERE odno=?", (order.odno,)).fetchone()
            current = Order(**dict(row))
            qty = self._affordable(db, current, qty, price)
            if qty <= 0:
                db.execute(
                    "UPDATE orders SET status=?, rejected_qty=? WHERE odno=?",
                    (CANCELLED, current.qty - current.filled_qty, order.odno),
                )
                return current.qty - current.filled_qty
            book = self.books.futures if order.market == "futures" else self.books.stock
            fee = book(db, current, qty, price, kind, ts.date())
            filled = current.filled_qty + qty
            avg = (current.avg_price * current.filled_qty + price * qty) / filled
            db.execute(
                "UPDATE orders SET filled_qty=?, avg_price=?, status=?, last_bar=? WHERE odno=?",
                (filled, avg, FILLED if filled >= current.qty else OPEN, str(j), order.odno),
            )
            db.execute(
                "INSERT INTO fills (odno, ts, qty, price, fee) VALUES (?,?,?,?,?)",
                (order.odno, ts.isoformat(), qty, price, fee),
            )
            return qty

    def _affordable(self, db: sqlite3.Connection, order: Order, qty: int, price: float) -> int:
        if order.market == "futures":
            return qty
        if order.side == "sell":
            row = db.execute(
                "SELECT qty FROM positions WHERE cano=? AND prdt=? AND symbol=?",
                (order.cano, order.prdt, order.symbol),
            ).fetchone()
            return min(qty, int(row["qty"]) if row else 0)
        cash = self.cash(db, order.cano, order.prdt)
        return min(qty, int(cash // (price * (1 + self.cfg.stock_fee_rate))))

    def cash(self, db: sqlite3.Connection, cano: str, prdt: str) -> float:
        """Account cash, opening the account with the initial cash on first use."""
        return self.books.cash(db, cano, prdt)

    def mark_price(self, symbol: str, now: datetime) -> float:
        """Last price of ``symbol`` at ``now`` (0 when unknown)."""
        kind = self.market.kind_of(symbol)
        snap = self.market.snapshot(symbol, kind, now) if kind else None
        return snap.bar.close if snap else 0.0

    def stock_available_cash(self, db: sqlite3.Connection, cano: str, prdt: str, now: datetime) -> float:
        """Cash minus what open buy orders may still spend."""
        reserved = sum(
            o.remaining * (o.price if o.ord_type == "limit" else self.mark_price(o.symbol, now))
            for o in self._open_orders(db, cano, prdt)
            if o.side == "buy"
        )
        return self.cash(db, cano, prdt) - reserved * (1 + self.cfg.stock_fee_rate)

    def stock_sellable(self, db: sqlite3.Connection, cano: str, prdt: str, symbol: str) -> int:
        """Holdings minus shares already offered by open sell orders."""
        row = db.execute(
            "SELECT qty FROM positions WHERE cano=? AND prdt=? AND symbol=?", (cano, prdt, symbol)
        ).fetchone()
        offered = sum(
            o.remaining for o in self._open_orders(db, cano, prdt) if o.side == "sell" and o.symbol == symbol
        )
        return (int(row[0]) if row else 0) - offered

    def futures_opening_qty(
        self, db: sqlite3.Connection, cano: str, prdt: str, symbol: str, side: str, qty: int
    ) -> int:
        """Contracts of a new order that add exposure (closing contracts need no margin)."""
        row = db.execute(
            "SELECT qty FROM positions WHERE cano=? AND prdt=? AND symbol=?", (cano, prdt, symbol)
        ).fetchone()
        pending = sum(
            (o.remaining if o.side == "buy" else -o.remaining)
            for o in self._open_orders(db, cano, prdt)
            if o.symbol == symbol
        )
        effective = (int(row[0]) if row else 0) + pending
        signed = qty if side == "buy" else -qty
        return max(0, abs(effective + signed) - abs(effective))

    def futures_state(
        self, db: sqlite3.Connection, cano: str, prdt: str, now: datetime
    ) -> tuple[float, float, float]:
        """(cash, unrealized P&L, margin in use incl. open orders) of a futures account."""
        cash = self.cash(db, cano, prdt)
        unrealized = margin = 0.0
        for row in db.execute("SELECT * FROM positions WHERE cano=? AND prdt=?", (cano, prdt)):
            price = self.mark_price(row["symbol"], now)
            unrealized += (price - row["avg_price"]) * row["qty"] * FUTURES_MULTIPLIER
            margin += abs(row["qty"]) * price * FUTURES_MULTIPLIER * self.cfg.futures_margin_rate
        for o in self._open_orders(db, cano, prdt):
            ref = o.price if o.ord_type == "limit" else self.mark_price(o.symbol, now)
            margin += o.remaining * ref * FUTURES_MULTIPLIER * self.cfg.futures_margin_rate
        return cash, unrealized, margin

    def futures_available(self, db: sqlite3.Connection, cano: str, prdt: str, now: datetime) -> float:
        """Deposit plus unrealized P&L minus margin in use."""
        cash, unrealized, margin = self.futures_state(db, cano, prdt, now)
        return cash + unrealized - margin

    @staticmethod
    def contracts_for(amount: float, price: float, margin_rate: float) -> int:
        """Whole contracts ``amount`` of margin buys at ``price``."""
        return max(0, math.floor(amount / (price * FUTURES_MULTIPLIER * margin_rate))) if price > 0 else 0
