"""KRX market facts, defined once: instrument kinds, the KST zone, session hours, calendar, futures
contracts, fees, taxes by date, ticks, price limits. Every layer reads these; none keeps a copy."""

from pipeline.market.calendar import is_session, krx_sessions, xkrx_calendar
from pipeline.market.costs import (
    FUTURES_FEE_RATE,
    FUTURES_MARGIN_RATE,
    FUTURES_MULTIPLIER,
    FUTURES_TICK,
    STOCK_FEE_RATE,
    fee_rate,
    price_limit,
    sell_tax_rate,
    tick_size,
    tick_sizes,
)
from pipeline.market.futures import (
    QUARTER_MONTHS,
    FuturesContract,
    contract,
    contract_code,
    contract_schedule,
    front_contract,
    is_expiry_day,
)
from pipeline.market.hours import FUTURES_SHIFT, SessionHours, session_hours
from pipeline.market.kinds import (
    CONTINUOUS_FUTURES,
    INDEX_CODES,
    KST,
    TZ_NAME,
    InstrumentKind,
    SymbolError,
    classify,
    is_contract_code,
    validate_symbol,
)

__all__ = [
    "CONTINUOUS_FUTURES",
    "FUTURES_FEE_RATE",
    "FUTURES_MARGIN_RATE",
    "FUTURES_MULTIPLIER",
    "FUTURES_SHIFT",
    "FUTURES_TICK",
    "INDEX_CODES",
    "KST",
    "QUARTER_MONTHS",
    "STOCK_FEE_RATE",
    "TZ_NAME",
    "FuturesContract",
    "InstrumentKind",
    "SessionHours",
    "SymbolError",
    "classify",
    "contract",
    "contract_code",
    "contract_schedule",
    "fee_rate",
    "front_contract",
    "is_contract_code",
    "is_expiry_day",
    "is_session",
    "krx_sessions",
    "price_limit",
    "sell_tax_rate",
    "session_hours",
    "tick_size",
    "tick_sizes",
    "validate_symbol",
    "xkrx_calendar",
]
