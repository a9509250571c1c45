"""One broker protocol, one class per mode, chosen once from settings (:func:`make_broker`).

``sim`` trades against the local KIS simulator, ``vts`` against KIS paper trading, ``real`` against KIS with
real money (refused without the explicit opt-in and hard risk caps), ``dry-run`` reads the market and the
account like the KIS environment it is pointed at but sends nothing: the order manager records what it would
have sent. The trading code never branches on the mode: it asks the broker (``sends_orders``, ``now``).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from typing import ClassVar, Protocol

import httpx
import pandas as pd

from pipeline.config import Settings, get_settings
from pipeline.kis import KisClient
from pipeline.kis.client import bars_frame
from pipeline.kis.errors import KisConfigurationError
from pipeline.kis.models import FuturesOrder, StockOrder
from pipeline.market import KST, InstrumentKind
from pipeline.trading.types import AccountState, BrokerOrder, BrokerPosition, ProposedOrder

log = logging.getLogger(__name__)


class TradingConfigurationError(RuntimeError):
    """The trading job cannot start with these settings (the message says which and why)."""


class Broker(Protocol):
    """What the trading job needs from a broker. Quantities are signed where positions are concerned."""

    mode: ClassVar[str]
    sends_orders: ClassVar[bool]

    def now(self) -> dt.datetime: ...

    def bars(
        self, symbol: str, kind: InstrumentKind, interval: str, now: dt.datetime, history: int
    ) -> pd.DataFrame: ...

    def account(self) -> AccountState: ...

    def place(self, order: ProposedOrder) -> str: ...

    def cancel(self, order_no: str, symbol: str, kind: InstrumentKind) -> None: ...

    def orders_today(self, day: dt.date, kinds: Iterable[InstrumentKind]) -> list[BrokerOrder]: ...

    def price_band(self, symbol: str, kind: InstrumentKind) -> tuple[float, float] | None: ...

    def close(self) -> None: ...


def _placed_at(day: dt.date | None, hhmmss: str) -> dt.datetime | None:
    if day is None or len(hhmmss.strip()) < 6:
        return None
    clock = dt.datetime.strptime(hhmmss.strip()[:6], "%H%M%S").time()
    return dt.datetime.combine(day, clock, KST)


def _status(quantity: int, filled: int, remaining: int, rejected: int, cancelled: bool) -> str:
    if cancelled:
        return "cancelled"
    if remaining > 0:
        return "open"
    if filled >= quantity and filled > 0:
        return "filled"
    if rejected > 0 and filled == 0:
        return "rejected"
    # The unfilled rest was cancelled (KIS shrinks the original to what filled; the cancel is its own row).
    return "cancelled" if filled == 0 else "filled"


def broker_order(row: StockOrder | FuturesOrder) -> BrokerOrder:
    """A KIS order-inquiry row as a :class:`BrokerOrder`."""
    cancelled = bool(getattr(row, "cancelled", False))
    remaining = row.remaining_qty
    return BrokerOrder(
        order_no=row.order_no,
        symbol=row.symbol,
        side=row.side,
        quantity=row.qty,
        filled_quantity=row.filled_qty,
        avg_price=row.avg_fill_price,
        status=_status(row.qty, row.filled_qty, remaining, row.rejected_qty, cancelled),
        placed_at=_placed_at(row.order_date, row.time),
        limit_price=row.price or None,
        original_order_no=row.original_order_no,
    )


class KisBroker:
    """A KIS account (stock and futures) through :class:`~pipeline.kis.KisClient`."""

    mode: ClassVar[str] = "kis"
    sends_orders: ClassVar[bool] = True

    def __init__(self, client: KisClient) -> None:
        self.client = client
        self._past: dict[tuple[str, dt.date], pd.DataFrame] = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(mode={self.mode!r})"

    def now(self) -> dt.datetime:
        """The market's clock: wall time in KST."""
        return dt.datetime.now(KST)

    def bars(
        self, symbol: str, kind: InstrumentKind, interval: str, now: dt.datetime, history: int
    ) -> pd.DataFrame:
        """Bars of ``symbol`` up to ``now`` (the caller drops any bar still open): daily bars of the last
        ``history`` calendar days, or the 1-minute bars of the last ``history`` sessions (today's
        included)."""
        today = now.astimezone(KST).date()
        if interval == "1d":
            frame = self.client.fetch_daily_bars(symbol, today - dt.timedelta(days=history), today, kind)
        else:
            from pipeline.market.calendar import krx_sessions

            sessions = [d.date() for d in krx_sessions(today - dt.timedelta(days=14 + 2 * history), today)]
            parts = [self._minutes(symbol, day, kind, today) for day in sessions[-history:]]
            frame = pd.concat(parts, ignore_index=True) if parts else bars_frame(symbol, [])
        return frame.set_index("ts").sort_index()[["open", "high", "low", "close", "volume"]]

    def _minutes(self, symbol: str, day: dt.date, kind: InstrumentKind, today: dt.date) -> pd.DataFrame:
        """One session's minute bars; past sessions never change, so they are fetched once."""
        key = (symbol, day)
        if day < today and key in self._past:
            return self._past[key]
        frame = self.client.fetch_minute_bars(symbol, day, kind)
        if day < today:
            self._past[key] = frame
        return frame

    def account(self) -> AccountState:
        """Cash, equity and holdings of the stock account plus the futures account."""
        stock = self.client.stock_balance()
        futures = self.client.futures_balance()
        positions: dict[str, BrokerPosition] = {}
        for h in stock.holdings:
            if h.qty:
                positions[h.symbol] = BrokerPosition(h.symbol, int(h.qty), float(h.avg_price), float(h.price))
        for p in futures.positions:
            if p.qty:
                positions[p.symbol] = BrokerPosition(
                    p.symbol, p.signed_qty, float(p.avg_price), float(p.price)
                )
        s, f = stock.summary, futures.summary
        return AccountState(
            cash=float(s.cash + f.cash),
            equity=float(s.total_value + f.estimated_deposit),
            positions=positions,
            margin_used=float(f.margin_total),
        )

    def place(self, order: ProposedOrder) -> str:
        """Send ``order``; returns the broker's order number. Raises KisRejectedError (a definite no),
        KisOrderNotSentError (certainly never sent) or KisUncertainOrderError (outcome unknown)."""
        price = order.limit_price if order.order_type == "limit" else None
        if order.kind == InstrumentKind.FUTURES.value:
            ack = self.client.futures_order(order.symbol, order.side, order.quantity, price)
        else:
            ack = self.client.stock_order(order.symbol, order.side, order.quantity, price)
        return ack.order_no

    def cancel(self, order_no: str, symbol: str, kind: InstrumentKind) -> None:
        """Cancel the unfilled rest of ``order_no`` (filled quantity stays filled)."""
        org = self._org_no(order_no, kind)
        if kind == InstrumentKind.FUTURES:
            self.client.futures_cancel(org, order_no)
        else:
            self.client.stock_cancel(org, order_no)

    def _org_no(self, order_no: str, kind: InstrumentKind) -> str:
        today = self.now().date()
        for row in self._raw_orders(today, [kind]):
            if row.order_no == order_no:
                return row.org_no
        return ""

    def _raw_orders(self, day: dt.date, kinds: Iterable[InstrumentKind]) -> list[StockOrder | FuturesOrder]:
        rows: list[StockOrder | FuturesOrder] = []
        wanted = set(kinds)
        if InstrumentKind.STOCK in wanted or InstrumentKind.ETF in wanted:
            rows.extend(self.client.stock_orders(day, day))
        if InstrumentKind.FUTURES in wanted:
            rows.extend(self.client.futures_orders(day, day))
        return rows

    def orders_today(self, day: dt.date, kinds: Iterable[InstrumentKind]) -> list[BrokerOrder]:
        """The day's orders of the given kinds (cancel and modify records included: they carry the
        original order number)."""
        return [broker_order(r) for r in self._raw_orders(day, kinds)]

    def price_band(self, symbol: str, kind: InstrumentKind) -> tuple[float, float] | None:
        """Today's (lower, upper) price limits, or None when the quote does not carry them."""
        quote = (
            self.client.futures_price(symbol)
            if kind is InstrumentKind.FUTURES
            else self.client.stock_price(symbol)
        )
        lower, upper = float(quote.lower_limit), float(quote.upper_limit)
        return (lower, upper) if 0 < lower < upper else None

    def close(self) -> None:
        self.client.close()


class SimBroker(KisBroker):
    """The local KIS simulator: its clock (settable, accelerated) is the market's clock."""

    mode: ClassVar[str] = "sim"

    def now(self) -> dt.datetime:
        """The simulator's clock (``POST /sim/admin/clock`` with no change answers it)."""
        url = f"{self.client.config.base_url}/sim/admin/clock"
        resp = httpx.post(url, json={}, timeout=self.client.config.timeout_s)
        resp.raise_for_status()
        return dt.datetime.fromisoformat(resp.json()["now"]).astimezone(KST)


class VtsBroker(KisBroker):
    """KIS paper trading (VTS): real market data, paper money, 2 calls per second."""

    mode: ClassVar[str] = "vts"


class RealBroker(KisBroker):
    """KIS with real money. Built only by :func:`make_broker` after the opt-in and caps were checked."""

    mode: ClassVar[str] = "real"


class DryRunBroker(KisBroker):
    """Reads the market and the account like the KIS environment of the settings; sends nothing."""

    mode: ClassVar[str] = "dry"
    sends_orders: ClassVar[bool] = False

    def __init__(self, client: KisClient, clock: KisBroker | None = None) -> None:
        super().__init__(client)
        self._clock = clock

    def now(self) -> dt.datetime:
        return self._clock.now() if self._clock is not None else super().now()

    def place(self, order: ProposedOrder) -> str:
        raise TradingConfigurationError("dry-run sends no orders (the order manager records them)")

    def cancel(self, order_no: str, symbol: str, kind: InstrumentKind) -> None:
        raise TradingConfigurationError("dry-run has no orders to cancel")


def check_real_allowed(settings: Settings, explicit_risk: set[str]) -> None:
    """Mode ``real`` needs ``KRX_TRADING_REAL_OPT_IN`` and every hard cap set in ``KRX_TRADING_RISK``."""
    from pipeline.trading.risk import load_limits

    problems = []
    if not settings.trading_real_opt_in:
        problems.append("KRX_TRADING_REAL_OPT_IN=true is not set")
    limits = load_limits(settings)
    missing = limits.hard_caps_missing(explicit_risk)
    if missing:
        problems.append(f"hard caps missing from KRX_TRADING_RISK: {', '.join(missing)}")
    if settings.kis_env != "real":
        problems.append(f"KRX_KIS_ENV is {settings.kis_env!r}, not 'real'")
    if problems:
        raise TradingConfigurationError("trading mode 'real' refuses to start: " + "; ".join(problems))


def make_broker(settings: Settings | None = None, client: KisClient | None = None) -> Broker:
    """The broker of ``settings.trading_mode``; refuses ``real`` without the opt-in and caps and any mode
    whose KIS environment does not match it."""
    s = settings or get_settings()
    mode = s.trading_mode
    if mode == "real":
        check_real_allowed(s, set(s.trading_risk))
    expected = {"sim": "sim", "vts": "vts", "real": "real"}.get(mode)
    if expected is not None and s.kis_env != expected:
        raise TradingConfigurationError(
            f"trading mode {mode!r} needs KRX_KIS_ENV={expected} (it is {s.kis_env!r})"
        )
    try:
        kis = client or KisClient.from_settings(s)
    except KisConfigurationError as exc:
        raise TradingConfigurationError(f"trading mode {mode!r}: {exc}") from None
    if mode == "sim":
        return SimBroker(kis)
    if mode == "vts":
        return VtsBroker(kis)
    if mode == "real":
        return RealBroker(kis)
    clock = SimBroker(kis) if s.kis_env == "sim" else None
    return DryRunBroker(kis, clock)
