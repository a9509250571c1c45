"""What trading costs and how prices move: fees, the stock transaction tax by date, ticks, price limits,
the KOSPI200 futures multiplier and margin.

Every rate carries its source; ``[U]`` marks an assumption (a broker-specific or exchange-set number that
changes without a law) that users should override from settings for their own account.
"""

from __future__ import annotations

import datetime as dt
from bisect import bisect_right
from dataclasses import dataclass

import numpy as np

from pipeline.market.kinds import InstrumentKind

# --- KOSPI200 futures contract (KRX product specification; KIS_API_SPEC.md §6) ------------------------
#: KRW per index point of one KOSPI200 futures contract.
FUTURES_MULTIPLIER = 250_000.0
#: Price tick of KOSPI200 futures in index points (0.05 pt = KRW 12,500).
FUTURES_TICK = 0.05
#: Tick of index quotes (points).
INDEX_TICK = 0.01
#: Initial (consignment) margin held per unit of notional [U]: KRX sets the base rate and brokers add to it;
#: 15 % is a conservative consignment level. Override per account.
FUTURES_MARGIN_RATE = 0.15

# --- Broker fees [U: KIS online rates, per side, on notional; accounts differ] ----------------------------
STOCK_FEE_RATE = 0.00015
FUTURES_FEE_RATE = 0.00003


@dataclass(frozen=True)
class TaxPeriod:
    """Securities transaction tax on stock sells in force from ``since`` (inclusive), as a fraction."""

    since: dt.date
    rate: float
    source: str


#: Securities transaction tax on KOSPI and KOSDAQ stock sells, including the 0.15 % special tax for rural
#: development on KOSPI sells, so both markets carry the same total. Sources: 증권거래세법 시행령 제5조
#: (law.go.kr, revisions effective 2019-06-03, 2021-01-01, 2023-01-01, 2024-01-01, 2025-01-01) and the
#: Ministry of Economy and Finance 2025 tax-law amendment (KOSPI 0.05 % + 0.15 %, KOSDAQ 0.20 % from
#: 2026-01-01). KONEX (0.10 %) is not traded here.
STOCK_SELL_TAX: tuple[TaxPeriod, ...] = (
    TaxPeriod(dt.date(1900, 1, 1), 0.0030, "증권거래세법 시행령 제5조 (before the 2019 cut)"),
    TaxPeriod(dt.date(2019, 6, 3), 0.0025, "증권거래세법 시행령 제5조, effective 2019-06-03"),
    TaxPeriod(dt.date(2021, 1, 1), 0.0023, "증권거래세법 시행령 제5조, effective 2021-01-01"),
    TaxPeriod(dt.date(2023, 1, 1), 0.0020, "증권거래세법 시행령 제5조, effective 2023-01-01"),
    TaxPeriod(dt.date(2024, 1, 1), 0.0018, "증권거래세법 시행령 제5조, effective 2024-01-01"),
    TaxPeriod(dt.date(2025, 1, 1), 0.0015, "증권거래세법 시행령 제5조, effective 2025-01-01"),
    TaxPeriod(dt.date(2026, 1, 1), 0.0020, "2025 세법개정안 (MOEF, 2025-07-31), effective 2026-01-01"),
)
_TAX_SINCE = [p.since for p in STOCK_SELL_TAX]


def sell_tax_rate(kind: InstrumentKind | str, day: dt.date | None = None) -> float:
    """Transaction tax on sells of ``kind`` on ``day`` (default today). ETFs are exempt (증권거래세법 시행령:
    listed beneficiary certificates), futures and indices carry none."""
    if InstrumentKind(kind) is not InstrumentKind.STOCK:
        return 0.0
    day = day or dt.date.today()
    return STOCK_SELL_TAX[max(bisect_right(_TAX_SINCE, day) - 1, 0)].rate


def fee_rate(kind: InstrumentKind | str) -> float:
    """Broker fee per side for ``kind`` (``[U]``, see module notes)."""
    return FUTURES_FEE_RATE if InstrumentKind(kind) is InstrumentKind.FUTURES else STOCK_FEE_RATE


# --- Price ticks ------------------------------------------------------------------------------------------
#: KRX stock tick table in force since 2023-01-25 (KRX 호가가격단위 개편, same for KOSPI and KOSDAQ):
#: price < bound uses the tick at the same position; at or above the last bound, the last tick.
STOCK_TICK_BOUNDS = (2_000, 5_000, 20_000, 50_000, 200_000, 500_000)
STOCK_TICKS = (1, 5, 10, 50, 100, 500, 1_000)
#: ETF tick (KRX 유가증권시장 업무규정 시행세칙): 1 KRW below 2,000, 5 KRW above.
ETF_TICK_BOUNDS = (2_000,)
ETF_TICKS = (1, 5)
_BOUNDS = np.array(STOCK_TICK_BOUNDS, dtype=np.float64)
_TICKS = np.array(STOCK_TICKS, dtype=np.float64)
_ETF_BOUNDS = np.array(ETF_TICK_BOUNDS, dtype=np.float64)
_ETF_TICKS = np.array(ETF_TICKS, dtype=np.float64)


def tick_sizes(prices: np.ndarray, kind: InstrumentKind | str = InstrumentKind.STOCK) -> np.ndarray:
    """Tick size at each price (vectorised, float64) for ``kind``."""
    kind = InstrumentKind(kind)
    p = np.asarray(prices, dtype=np.float64)
    if kind is InstrumentKind.FUTURES:
        return np.full(p.shape, FUTURES_TICK)
    if kind is InstrumentKind.INDEX:
        return np.full(p.shape, INDEX_TICK)
    if kind is InstrumentKind.ETF:
        return _ETF_TICKS[np.searchsorted(_ETF_BOUNDS, p, side="right")]
    return _TICKS[np.searchsorted(_BOUNDS, p, side="right")]


def tick_size(price: float, kind: InstrumentKind | str = InstrumentKind.STOCK) -> float:
    """Tick size at one price."""
    return float(tick_sizes(np.array([price]), kind)[0])


# --- Daily price limits -----------------------------------------------------------------------------------
#: Largest daily move from the previous close: stocks and ETFs ±30 % (since 2015-06-15, KRX), KOSPI200
#: futures ±20 % at the last of its 8/15/20 % stages (KIS_API_SPEC.md §6). Indices have no limit; the value
#: bounds plausible index moves for validation.
PRICE_LIMIT: dict[InstrumentKind, float] = {
    InstrumentKind.STOCK: 0.30,
    InstrumentKind.ETF: 0.30,
    InstrumentKind.INDEX: 0.30,
    InstrumentKind.FUTURES: 0.20,
}
#: First stage of the futures limit: the simulator halts moves there (KIS_API_SPEC.md §6).
FUTURES_FIRST_STAGE_LIMIT = 0.08


def price_limit(kind: InstrumentKind | str) -> float:
    """The daily price limit of ``kind`` as a fraction of the previous close."""
    return PRICE_LIMIT[InstrumentKind(kind)]
