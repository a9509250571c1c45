"""Ingest bars from a broker into the market store, idempotently, quarantining malformed rows."""

from pipeline.ingest.backfill import backfill_minutes
from pipeline.ingest.bars import IngestReport, SymbolIngest, ingest_daily, ingest_minutes, store_fetched
from pipeline.ingest.futures import ingest_futures_daily, ingest_futures_minutes
from pipeline.ingest.sources import BarSource, KisBarSource

__all__ = [
    "BarSource",
    "IngestReport",
    "KisBarSource",
    "SymbolIngest",
    "backfill_minutes",
    "ingest_daily",
    "ingest_futures_daily",
    "ingest_futures_minutes",
    "ingest_minutes",
    "store_fetched",
]
