"""One batch of untrusted bars into the store: check every row, quarantine the bad ones, upsert the rest,
all in one transaction."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
from sqlalchemy.engine import Connection, Engine

from pipeline.store.bars import write_checked
from pipeline.store.db import hold_writers_lock, in_transaction
from pipeline.store.quarantine import quarantine_bars
from pipeline.store.schema import bars_quarantine
from pipeline.store.validation import check_bars, validate_label


@dataclass(frozen=True)
class LoadResult:
    """What happened to a batch: ``rows == inserted + updated + unchanged + quarantined``."""

    rows: int
    inserted: int
    updated: int
    unchanged: int
    quarantined: int
    reasons: pd.Series = field(default_factory=lambda: pd.Series(dtype=object), repr=False, compare=False)
    """Why each quarantined row was refused, indexed like the batch."""


def load_bars(
    frame: pd.DataFrame,
    *,
    source: str,
    engine: Engine | Connection,
    raw: pd.DataFrame | None = None,
    quarantine_source: str | None = None,
    ts_column: str = "ts",
) -> LoadResult:
    """Unlike :func:`upsert_bars` (all-or-nothing), keep going past bad rows: each goes to
    ``bars_quarantine`` with its reason. ``raw``, when given, is the batch as received (same index as
    ``frame``) and is what gets quarantined, with the symbol and interval it was loaded as.

    The quarantine and the upsert share one transaction (``engine``'s own when it is a connection): if
    either fails, neither is written, so rows in = stored + quarantined holds after every outcome. A
    rerun quarantines nothing twice (see :mod:`pipeline.store.quarantine`)."""
    validate_label(source)
    validate_label(quarantine_source or source, bars_quarantine.c.source)
    checked = check_bars(frame, source=source)
    bad = checked.rejected
    if raw is not None and len(bad):
        idx = bad.index
        bad = raw.loc[idx].assign(
            symbol=frame.loc[idx, "symbol"], interval=frame.loc[idx, "interval"], reason=bad["reason"]
        )
    with in_transaction(engine) as conn:
        hold_writers_lock(conn)
        quarantined = quarantine_bars(
            bad, source=quarantine_source or source, engine=conn, ts_column=ts_column
        )
        result = write_checked(checked.good, conn)
    return LoadResult(
        len(frame), result.inserted, result.updated, result.unchanged, quarantined, bad["reason"].copy()
    )
