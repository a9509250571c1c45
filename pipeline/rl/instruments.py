"""Instrument specifications (fees, tax, multiplier, tick, margin) for KRX stocks and KOSPI200 futures."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

import numpy as np

# KRX stock price-tick table in force since 2023-01-25: (upper price bound, tick) — price < bound uses tick.
_KRX_TICK_BOUNDS = np.array([2_000, 5_000, 20_000, 50_000, 200_000, 500_000], dtype=np.float64)
_KRX_TICKS = np.array([1, 5, 10, 50, 100, 500, 1_000], dtype=np.float64)

KOSPI200_MULTIPLIER = 250_000.0
"""KRW per index point of one KOSPI200 futures contract."""


def krx_stock_tick(price: np.ndarray) -> np.ndarray:
    """Tick size of a KRX-listed stock at each price (vectorised), KRW."""
    return _KRX_TICKS[np.searchsorted(_KRX_TICK_BOUNDS, price, side="right")]


@dataclass(frozen=True)
class InstrumentSpec:
    """What one unit of the traded instrument costs to hold and to trade."""

    kind: Literal["stock", "futures"] = "stock"
    """``stock``: long only, integer shares, levels are fractions of equity. ``futures``: long and short,
    integer contracts, levels are contract counts."""

    multiplier: float = 1.0
    """Currency per price point per unit (1 for stocks, 250,000 KRW for KOSPI200 futures)."""

    tick_size: float | None = None
    """Price tick used for slippage. ``None``: the KRX stock tick table at the fill price."""

    buy_fee: float = 0.00015
    """Broker fee on bought notional (0.015 %)."""

    sell_fee: float = 0.00015
    """Broker fee on sold notional (0.015 %)."""

    sell_tax: float = 0.0020
    """Transaction tax on sold notional (KRX stocks 0.20 % from 2026; 0 for futures)."""

    margin_rate: float = 1.0
    """Margin held per unit of notional: 1.0 for cash stocks, the initial-margin rate for futures."""

    slippage_ticks: float = 1.0
    """Fills are this many ticks worse than the next bar's open (above it for buys, below for sells)."""

    @property
    def allow_short(self) -> bool:
        """Whether negative positions are allowed (futures only)."""
        return self.kind == "futures"

    def ticks(self, prices: np.ndarray) -> np.ndarray:
        """Tick size at each price, as float64."""
        if self.tick_size is not None:
            return np.full(np.shape(prices), self.tick_size, dtype=np.float64)
        return krx_stock_tick(np.asarray(prices, dtype=np.float64))

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON/MLflow params."""
        return asdict(self)


def stock_spec(**overrides: Any) -> InstrumentSpec:
    """A KRX cash stock: buy fee 0.015 %, sell fee 0.015 % + tax 0.20 %, KRX ticks, 1-tick slippage."""
    return replace(InstrumentSpec(), **overrides)


def kospi200_futures_spec(**overrides: Any) -> InstrumentSpec:
    """KOSPI200 futures: 250,000 KRW per point, tick 0.05, fee 0.003 % per side, no tax, 15 % margin."""
    base = InstrumentSpec(
        kind="futures",
        multiplier=KOSPI200_MULTIPLIER,
        tick_size=0.05,
        buy_fee=0.00003,
        sell_fee=0.00003,
        sell_tax=0.0,
        margin_rate=0.15,
        slippage_ticks=1.0,
    )
    return replace(base, **overrides)


def instrument_from_dict(data: dict[str, Any]) -> InstrumentSpec:
    """Inverse of :meth:`InstrumentSpec.to_dict`."""
    return InstrumentSpec(**data)
