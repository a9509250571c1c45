"""The market store: schema, migrations, idempotent bar upserts and reads (SQLite or PostgreSQL)."""

from pipeline.store.bars import UpsertResult, read_bars, summarize_bars, upsert_bars
from pipeline.store.db import create_store_engine, get_engine
from pipeline.store.load import LoadResult, load_bars
from pipeline.store.quarantine import move_to_quarantine, quarantine_bars
from pipeline.store.validation import BarValidationError, CheckedBars, check_bars

__all__ = [
    "BarValidationError",
    "CheckedBars",
    "LoadResult",
    "UpsertResult",
    "check_bars",
    "create_store_engine",
    "get_engine",
    "load_bars",
    "move_to_quarantine",
    "quarantine_bars",
    "read_bars",
    "summarize_bars",
    "upsert_bars",
]
