"""Risk limits as data (``KRX_TRADING_RISK``) and the pure checks every order, bar and equity passes.

Nothing here reads the store or the broker: the trading job gathers the facts into a :class:`RiskContext`
and gets back every rule an order breaks, each as a :class:`Rejection` a person can read. Orders that only
reduce a position are never stopped by the position or exposure limits: the checks must not block the
way out of risk they exist to bound.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Annotated, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipeline.config import Settings
from pipeline.market import CONTINUOUS_FUTURES, KST, is_contract_code, krx_sessions
from pipeline.trading.types import ProposedOrder

#: Rule names, as recorded in ``trading_events.kind``/``decisions.reason`` and shown by ``krx trading``.
POSITION = "max_position"
ORDER_QUANTITY = "max_order_quantity"
ORDER_NOTIONAL = "max_order_notional"
GROSS_EXPOSURE = "max_gross_exposure"
ORDERS_PER_DAY = "max_orders_per_day"
DAILY_LOSS = "daily_loss_limit"
PRICE_BAND = "price_band"
STALE_DATA = "stale_data"
QUANTITY = "quantity"


class RiskLimitsError(ValueError):
    """``KRX_TRADING_RISK`` holds a field that is unknown or of the wrong type (the message names it)."""


class RiskLimits(BaseModel):
    """The limits every order passes. ``None``: no limit of that kind. Amounts are KRW; quantities are
    shares (stocks, ETFs) or contracts (futures). Defaults suit the simulator; mode ``real`` refuses to
    start unless every one of :attr:`HARD_CAPS` is set explicitly."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    HARD_CAPS: ClassVar[tuple[str, ...]] = (
        "max_position",
        "max_order_notional",
        "max_gross_exposure",
        "daily_loss_limit",
    )

    max_position: int | None = Field(None, ge=0)
    """Largest absolute position per symbol after an order (shares or contracts); unset by default (the
    notional and exposure caps bound the simulator), required for mode ``real``."""

    max_position_by_symbol: dict[str, Annotated[int, Field(ge=0)]] = Field(default_factory=dict)
    """Per-symbol overrides of ``max_position``, keyed by the traded symbol (a stock code, a futures
    contract code) or, for any KOSPI200 futures contract, by the continuous series ``KOSPI200F``."""

    max_order_quantity: int | None = Field(50, ge=1)
    """Largest quantity of one order."""

    max_order_notional: float | None = Field(300_000_000.0, gt=0)
    """Largest value of one order, quantity × price × multiplier (KRW)."""

    max_gross_exposure: float | None = Field(1_000_000_000.0, gt=0)
    """Largest sum over symbols of |quantity| × price × multiplier once the order is filled (KRW)."""

    max_orders_per_day: int | None = Field(200, ge=0)
    """Most orders one account sends in a KST day (a guard against a runaway loop)."""

    daily_loss_limit: float | None = Field(5_000_000.0, gt=0)
    """Fall of equity since the day's first account snapshot (KRW) that engages the kill switch."""

    stale_after_intervals: float = Field(2.0, gt=0)
    """Latest bar older than this many intervals: no trade (daily bars count sessions, not days)."""

    check_price_band: bool = True
    """Refuse an order whose price lies outside the symbol's daily limit band."""

    def position_limit(self, symbol: str) -> tuple[int | None, str]:
        """The position limit of ``symbol`` and the setting it comes from: its override in
        ``max_position_by_symbol`` (a futures contract also finds the continuous series' one), else
        ``max_position``."""
        keys = (symbol, CONTINUOUS_FUTURES) if is_contract_code(symbol) else (symbol,)
        for key in keys:
            if key in self.max_position_by_symbol:
                return self.max_position_by_symbol[key], f"max_position_by_symbol[{key}]"
        return self.max_position, "max_position"

    def hard_caps_missing(self, explicit: set[str] | None = None) -> list[str]:
        """The hard caps not configured explicitly (absent from ``explicit``, by default the fields given
        when these limits were built) or set to ``null``: mode ``real`` refuses to start while any is."""
        given = self.model_fields_set if explicit is None else explicit
        return [cap for cap in self.HARD_CAPS if cap not in given or getattr(self, cap) is None]


def load_limits(settings: Settings) -> RiskLimits:
    """The limits of ``settings.trading_risk`` over the defaults; an unknown field or a bad value raises
    :class:`RiskLimitsError` naming the field."""
    try:
        return RiskLimits.model_validate(settings.trading_risk)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = ".".join(str(part) for part in err["loc"]) or "(top level)"
            problems.append(f"{name}: {err['msg']} (got {err.get('input')!r})")
        fields = ", ".join(RiskLimits.model_fields)
        raise RiskLimitsError(f"KRX_TRADING_RISK: {'; '.join(problems)}. Known fields: {fields}") from None


@dataclass(frozen=True)
class Rejection:
    """One broken rule: ``rule`` is a name above, ``reason`` a sentence with the numbers."""

    rule: str
    reason: str

    def __str__(self) -> str:
        return self.reason


@dataclass
class RiskContext:
    """What the checks need to know besides the order, gathered by the trading job."""

    now: dt.datetime
    """The decision time, timezone-aware."""
    orders_today: int = 0
    """Orders this account already sent today (KST), intents included."""
    positions: dict[str, tuple[int, float, float]] = field(default_factory=dict)
    """Every held symbol → (signed quantity, mark price, multiplier), for the gross exposure."""
    price_band: tuple[float, float] | None = None
    """(lower, upper) daily limit prices of the order's symbol; None: unknown (not checked)."""
    latest_bar_end: dt.datetime | None = None
    """When the newest bar of the order's spec ended (see :func:`bar_end`)."""
    interval: str = "1d"
    """Bar interval of the order's spec: ``1d`` or minutes (``1m``, ``5m``...)."""


def _krw(value: float) -> str:
    return f"{value:,.0f} KRW"


def _reduces(order: ProposedOrder) -> bool:
    """True when the order only closes risk: the position shrinks towards zero without crossing it (a flip
    opens a new position on the other side, which the limits judge like any other)."""
    before, after = order.position_before, order.position_before + order.signed_quantity
    return (before > 0 and 0 <= after < before) or (before < 0 and before < after <= 0)


def _order_price(order: ProposedOrder) -> float:
    if order.order_type == "limit" and order.limit_price is not None:
        return order.limit_price
    return order.price


def gross_exposure(positions: dict[str, tuple[int, float, float]]) -> float:
    """Sum over symbols of |quantity| × price × multiplier (KRW)."""
    return sum(abs(qty) * price * mult for qty, price, mult in positions.values())


def _size_rules(limits: RiskLimits, order: ProposedOrder) -> list[Rejection]:
    out = []
    if order.quantity <= 0:
        out.append(Rejection(QUANTITY, f"order quantity {order.quantity} is not positive"))
    if limits.max_order_quantity is not None and order.quantity > limits.max_order_quantity:
        out.append(
            Rejection(
                ORDER_QUANTITY,
                f"order quantity {order.quantity} > max_order_quantity {limits.max_order_quantity}",
            )
        )
    notional = order.quantity * _order_price(order) * order.multiplier
    if limits.max_order_notional is not None and notional > limits.max_order_notional:
        out.append(
            Rejection(
                ORDER_NOTIONAL,
                f"order notional {_krw(notional)} > max_order_notional {_krw(limits.max_order_notional)}",
            )
        )
    return out


def _exposure_rules(limits: RiskLimits, order: ProposedOrder, ctx: RiskContext) -> list[Rejection]:
    if _reduces(order):
        return []
    out = []
    after = order.position_before + order.signed_quantity
    cap, name = limits.position_limit(order.symbol)
    if cap is not None and abs(after) > cap:
        out.append(
            Rejection(
                POSITION,
                f"position after the order {after:+d} {order.symbol}: |{after}| > {name} {cap}",
            )
        )
    if limits.max_gross_exposure is not None:
        held = dict(ctx.positions)
        held[order.symbol] = (after, order.price, order.multiplier)
        gross = gross_exposure(held)
        if gross > limits.max_gross_exposure:
            out.append(
                Rejection(
                    GROSS_EXPOSURE,
                    f"gross exposure after the order {_krw(gross)} > max_gross_exposure "
                    f"{_krw(limits.max_gross_exposure)}",
                )
            )
    return out


def check_order(limits: RiskLimits, order: ProposedOrder, ctx: RiskContext) -> list[Rejection]:
    """Every rule ``order`` breaks (empty: send it).

    Checked: quantity and notional of the order, the position and the gross exposure once it is filled
    (skipped for an order that only moves the position towards zero, so de-risking is never blocked, even
    above a limit lowered since), orders sent today and the price against the daily limit band (also for
    a reducing order: the exchange would refuse it anyway)."""
    out = _size_rules(limits, order)
    out += _exposure_rules(limits, order, ctx)
    if limits.max_orders_per_day is not None and ctx.orders_today >= limits.max_orders_per_day:
        out.append(
            Rejection(
                ORDERS_PER_DAY,
                f"{ctx.orders_today} orders today: max_orders_per_day {limits.max_orders_per_day} reached",
            )
        )
    if limits.check_price_band and ctx.price_band is not None:
        lower, upper = ctx.price_band
        price = _order_price(order)
        if not lower <= price <= upper:
            out.append(
                Rejection(
                    PRICE_BAND,
                    f"price {price:,.2f} outside the daily limit band {lower:,.2f}..{upper:,.2f}",
                )
            )
    return out


_MINUTES = re.compile(r"^(\d+)m$")


def bar_end(ts: dt.datetime, interval: str) -> dt.datetime:
    """When the bar stamped ``ts`` ends: ``ts`` + the interval (daily bars are stamped 00:00 KST of their
    session, so theirs ends at the next midnight KST)."""
    if interval == "1d":
        return ts + dt.timedelta(days=1)
    return ts + dt.timedelta(minutes=_minutes(interval))


def _minutes(interval: str) -> int:
    match = _MINUTES.match(interval)
    if not match or int(match.group(1)) <= 0:
        raise ValueError(f"interval {interval!r}: staleness is measured for '1d' and minute intervals ('1m')")
    return int(match.group(1))


def bar_age(latest_bar_end: dt.datetime, interval: str, now: dt.datetime) -> float:
    """Age of the newest bar in intervals.

    Minute bars: wall-clock time since the bar ended, in intervals. Daily bars: sessions from the bar's
    session to today's (today counts when it is a session), so the previous session's bar is 1 interval
    old all through the next session whatever weekends or holidays lie between, and 0 after the day's
    own bar arrived."""
    if latest_bar_end.tzinfo is None or now.tzinfo is None:
        raise ValueError("staleness needs timezone-aware times")
    if interval != "1d":
        return (now - latest_bar_end) / dt.timedelta(minutes=_minutes(interval))
    session = (latest_bar_end - dt.timedelta(microseconds=1)).astimezone(KST).date()
    today = now.astimezone(KST).date()
    if today <= session:
        return 0.0
    return float(len(krx_sessions(session + dt.timedelta(days=1), today)))


def is_stale(
    latest_bar_end: dt.datetime | None, interval: str, now: dt.datetime, limits: RiskLimits
) -> Rejection | None:
    """A rejection when the newest bar is older than ``limits.stale_after_intervals`` intervals (see
    :func:`bar_age`) or there is none; None when the data is fresh enough to trade on."""
    if latest_bar_end is None:
        return Rejection(STALE_DATA, f"no {interval} bar in the store")
    age = bar_age(latest_bar_end, interval, now)
    if age <= limits.stale_after_intervals:
        return None
    unit = "sessions" if interval == "1d" else "intervals"
    ended = latest_bar_end.astimezone(KST).strftime("%Y-%m-%d %H:%M %Z")
    return Rejection(
        STALE_DATA,
        f"latest {interval} bar (ended {ended}) is {age:.1f} {unit} old > stale_after_intervals "
        f"{limits.stale_after_intervals:g}",
    )


def check_daily_loss(limits: RiskLimits, start_equity: float | None, equity: float) -> Rejection | None:
    """A rejection (engage the kill switch) when equity fell by ``daily_loss_limit`` or more since the day's
    first snapshot ``start_equity``; None without a limit or a first snapshot."""
    if limits.daily_loss_limit is None or start_equity is None:
        return None
    loss = start_equity - equity
    if loss < limits.daily_loss_limit:
        return None
    return Rejection(
        DAILY_LOSS,
        f"loss today {_krw(loss)} (equity {_krw(start_equity)} -> {_krw(equity)}) >= daily_loss_limit "
        f"{_krw(limits.daily_loss_limit)}",
    )
