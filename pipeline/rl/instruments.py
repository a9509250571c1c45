"""What one traded unit costs in the env: an :class:`InstrumentSpec` per kind (stock, ETF, KOSPI200 futures)
built from the market facts of :mod:`pipeline.market`, with the sell tax in force on each fill's date."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from pipeline.market import (
    FUTURES_MARGIN_RATE,
    FUTURES_MULTIPLIER,
    STOCK_FEE_RATE,
    InstrumentKind,
    fee_rate,
    sell_tax_rate,
    tick_sizes,
)

#: Kinds the env can trade; an index has no tradable unit (trade its futures or an ETF tracking it).
TRADABLE = (InstrumentKind.STOCK, InstrumentKind.ETF, InstrumentKind.FUTURES)


@dataclass(frozen=True)
class InstrumentSpec:
    """What one unit of the traded instrument costs to hold and to trade. Build it with
    :func:`instrument_spec` (or :func:`stock_spec`, :func:`etf_spec`, :func:`kospi200_futures_spec`)."""

    kind: InstrumentKind = InstrumentKind.STOCK
    """``stock`` / ``etf``: long only, whole shares, levels are fractions of equity. ``futures``: long and
    short, whole contracts, levels are contract counts. Strings are accepted and stored as the enum."""

    multiplier: float = 1.0
    """Currency per price point per unit (1 for stocks and ETFs, ``FUTURES_MULTIPLIER`` for futures)."""

    tick_size: float | None = None
    """Price tick used for slippage. ``None``: the KRX tick table of ``kind`` at the fill price."""

    buy_fee: float = STOCK_FEE_RATE
    """Broker fee on bought notional."""

    sell_fee: float = STOCK_FEE_RATE
    """Broker fee on sold notional."""

    sell_tax: float | None = None
    """Transaction tax on sold notional. ``None``: the rate the law sets for ``kind`` on each fill's date
    (:func:`pipeline.market.sell_tax_rate`: stocks 0.30 % before 2019-06-03 … 0.20 % from 2026, ETFs and
    futures none); a number: that rate on every date."""

    margin_rate: float = 1.0
    """Margin held per unit of notional: 1.0 for a cash account, the initial-margin rate for futures."""

    slippage_ticks: float = 1.0
    """Fills are this many ticks worse than the next bar's open (above it for buys, below for sells)."""

    def __post_init__(self) -> None:
        kind = InstrumentKind(self.kind)
        if kind not in TRADABLE:
            raise ValueError(f"kind {kind.value!r} is not tradable: use one of {[k.value for k in TRADABLE]}")
        object.__setattr__(self, "kind", kind)
        rates = {"buy_fee": self.buy_fee, "sell_fee": self.sell_fee, "slippage_ticks": self.slippage_ticks}
        for name, value in {**rates, "sell_tax": self.sell_tax or 0.0}.items():
            if value < 0:
                raise ValueError(f"{name} must be ≥ 0, got {value}")
        if (
            self.multiplier <= 0
            or not 0 < self.margin_rate <= 1
            or (self.tick_size is not None and self.tick_size <= 0)
        ):
            raise ValueError("multiplier and tick_size must be > 0 and margin_rate in (0, 1]")

    @property
    def allow_short(self) -> bool:
        """Whether negative positions are allowed (futures only)."""
        return self.kind.tradable_long_short

    def ticks(self, prices: np.ndarray) -> np.ndarray:
        """Tick size at each price, float64, same shape as ``prices``."""
        if self.tick_size is not None:
            return np.full(np.shape(prices), self.tick_size, dtype=np.float64)
        return tick_sizes(np.asarray(prices, dtype=np.float64), self.kind)

    def sell_taxes(self, days: np.ndarray | None, n: int | None = None) -> np.ndarray:
        """Tax rate on a sell filled on each of ``days`` (datetime64[D] [T], KST dates), float64 [T].

        Without dates (``days=None``, ``n`` rows) only a rate that does not depend on the date can be
        given: a fixed ``sell_tax``, or the kind's when it has no dated tax; a stock raises instead of
        guessing a year."""
        if self.sell_tax is not None or days is None:
            rows = len(days) if days is not None else int(n or 0)
            return np.full(rows, self._undated_tax(), dtype=np.float64)
        unique, inverse = np.unique(np.asarray(days, dtype="datetime64[D]"), return_inverse=True)
        rates = np.array([sell_tax_rate(self.kind, d) for d in unique.astype(dt.date)], dtype=np.float64)
        return rates[inverse.reshape(-1)]

    def _undated_tax(self) -> float:
        if self.sell_tax is not None:
            return self.sell_tax
        if self.kind is InstrumentKind.STOCK:
            raise ValueError(
                "the stock sell tax depends on the date (0.30 % before 2019-06-03 … 0.20 % from 2026): "
                "give the market its bar dates (MarketArrays.index) or set sell_tax explicitly"
            )
        return sell_tax_rate(self.kind)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (kind as its string value) for agent files and MLflow params."""
        return {**asdict(self), "kind": self.kind.value}


def instrument_spec(
    kind: InstrumentKind | str, *, day: dt.date | None = None, **overrides: Any
) -> InstrumentSpec:
    """The spec of ``kind`` from the market facts: fees by kind, KRX ticks, futures multiplier and margin.

    The sell tax follows each fill's date unless ``day`` pins it to the rate in force on that day;
    ``overrides`` replace any field (e.g. ``slippage_ticks``, or a broker's own ``buy_fee``)."""
    k = InstrumentKind(kind)
    futures = k is InstrumentKind.FUTURES
    base = InstrumentSpec(
        kind=k,
        multiplier=FUTURES_MULTIPLIER if futures else 1.0,
        buy_fee=fee_rate(k),
        sell_fee=fee_rate(k),
        sell_tax=None if day is None else sell_tax_rate(k, day),
        margin_rate=FUTURES_MARGIN_RATE if futures else 1.0,
    )
    return replace(base, **overrides)


def stock_spec(day: dt.date | None = None, **overrides: Any) -> InstrumentSpec:
    """A KRX cash stock: long only, whole shares, stock fees, the stock tick table, sell tax by date."""
    return instrument_spec(InstrumentKind.STOCK, day=day, **overrides)


def etf_spec(**overrides: Any) -> InstrumentSpec:
    """A KRX ETF: like a stock but the ETF tick table and no sell tax (listed beneficiary certificates)."""
    return instrument_spec(InstrumentKind.ETF, **overrides)


def kospi200_futures_spec(**overrides: Any) -> InstrumentSpec:
    """KOSPI200 futures: long/short contracts, the futures multiplier, tick, fee and margin, no tax."""
    return instrument_spec(InstrumentKind.FUTURES, **overrides)


def instrument_from_dict(data: dict[str, Any]) -> InstrumentSpec:
    """Inverse of :meth:`InstrumentSpec.to_dict` (also reads specs saved with a fixed ``sell_tax``)."""
    return InstrumentSpec(**data)
