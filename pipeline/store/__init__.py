"""The market store: schema, migrations, idempotent bar upserts and reads (SQLite or PostgreSQL)."""

from pipeline.store.bars import UpsertResult, read_bars, summarize_bars, upsert_bars, write_checked
from pipeline.store.db import create_store_engine, get_engine, write_transaction
from pipeline.store.load import LoadResult, load_bars
from pipeline.store.quarantine import move_to_quarantine, quarantine_bars
from pipeline.store.regimes import RegimesWritten, read_regimes, write_regimes
from pipeline.store.validation import (
    INTERVALS,
    BarValidationError,
    CheckedBars,
    check_bars,
    validate_interval,
    validate_label,
)

__all__ = [
    "INTERVALS",
    "BarValidationError",
    "CheckedBars",
    "LoadResult",
    "RegimesWritten",
    "UpsertResult",
    "check_bars",
    "create_store_engine",
    "get_engine",
    "load_bars",
    "move_to_quarantine",
    "quarantine_bars",
    "read_bars",
    "read_regimes",
    "summarize_bars",
    "upsert_bars",
    "validate_interval",
    "validate_label",
    "write_checked",
    "write_regimes",
    "write_transaction",
]
