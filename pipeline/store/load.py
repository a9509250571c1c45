"""One batch of untrusted bars into the store: check every row, quarantine the bad ones, upsert the rest."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from sqlalchemy.engine import Engine

from pipeline.store.bars import upsert_bars
from pipeline.store.quarantine import quarantine_bars
from pipeline.store.validation import check_bars


@dataclass(frozen=True)
class LoadResult:
    """What happened to a batch: ``rows == inserted + updated + unchanged + quarantined``."""

    rows: int
    inserted: int
    updated: int
    unchanged: int
    quarantined: int


def load_bars(
    frame: pd.DataFrame,
    *,
    source: str,
    engine: Engine,
    raw: pd.DataFrame | None = None,
    quarantine_source: str | None = None,
    ts_column: str = "ts",
) -> LoadResult:
    """Unlike :func:`upsert_bars` (all-or-nothing), keep going past bad rows: each goes to
    ``bars_quarantine`` with its reason. ``raw``, when given, is the batch as received (same index as
    ``frame``) and is what gets quarantined, with the symbol and interval it was loaded as."""
    checked = check_bars(frame, source=source)
    bad = checked.rejected
    if raw is not None and len(bad):
        idx = bad.index
        bad = raw.loc[idx].assign(
            symbol=frame.loc[idx, "symbol"], interval=frame.loc[idx, "interval"], reason=bad["reason"]
        )
    quarantined = quarantine_bars(bad, source=quarantine_source or source, engine=engine, ts_column=ts_column)
    result = upsert_bars(checked.good, engine, source=source)
    return LoadResult(len(frame), result.inserted, result.updated, result.unchanged, quarantined)
