"""Bar validation: the Great Expectations suite, quarantine of failing rows, KRX calendar helpers."""

from pipeline.validation.bars import STORE_COLUMNS, BarsValidationReport, validate_bars
from pipeline.validation.calendar import futures_expiry_dates, krx_sessions, session_bounds
from pipeline.validation.suite import build_bars_suite

__all__ = [
    "STORE_COLUMNS",
    "BarsValidationReport",
    "build_bars_suite",
    "futures_expiry_dates",
    "krx_sessions",
    "session_bounds",
    "validate_bars",
]
