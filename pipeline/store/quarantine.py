"""Bars that cannot be trusted: kept verbatim with their reason in ``bars_quarantine``, never lost."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pipeline.store.db import get_engine
from pipeline.store.schema import bars, bars_quarantine


def _jsonable(value: Any) -> Any:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return None if value is None else str(value)
    if isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def quarantine_bars(
    rejected: pd.DataFrame, *, source: str, engine: Engine | None = None, ts_column: str = "ts"
) -> int:
    """Store rejected rows verbatim (as JSON) with their ``reason``; returns the number stored.

    ``symbol`` and ``interval`` columns, when present, and ``ts_column`` are copied into indexed columns
    so quarantined rows can be found by instrument and time."""
    if rejected.empty:
        return 0
    engine = engine or get_engine()
    records = []
    for row in rejected.to_dict(orient="records"):
        reason = str(row.pop("reason"))
        raw = {str(k): _jsonable(v) for k, v in row.items()}
        records.append(
            {
                "symbol": _short(raw.get("symbol"), 32),
                "interval": _short(raw.get("interval"), 8),
                "ts_raw": _short(raw.get(ts_column), 64),
                "raw": json.loads(json.dumps(raw)),
                "reason": reason,
                "source": source,
            }
        )
    with engine.begin() as conn:
        conn.execute(sa.insert(bars_quarantine), records)
    return len(records)


def _short(value: Any, size: int) -> str | None:
    return None if value is None else str(value)[:size]


def move_to_quarantine(rows: pd.DataFrame, *, source: str, engine: Engine | None = None) -> int:
    """Take stored bars out of ``bars`` into ``bars_quarantine`` (with ``rows['reason']``), atomically.

    ``rows`` needs symbol, interval, ts (tz-aware) and reason; other columns are kept in the raw JSON."""
    if rows.empty:
        return 0
    engine = engine or get_engine()
    records = []
    keys = []
    for row in rows.to_dict(orient="records"):
        reason = str(row.pop("reason"))
        ts = pd.Timestamp(row["ts"]).tz_convert("UTC")
        raw = {str(k): _jsonable(v) for k, v in row.items()}
        records.append(
            {
                "symbol": row["symbol"],
                "interval": row["interval"],
                "ts_raw": ts.isoformat(),
                "raw": raw,
                "reason": reason,
                "source": source,
            }
        )
        keys.append((row["symbol"], row["interval"], ts.to_pydatetime()))
    with engine.begin() as conn:
        conn.execute(sa.insert(bars_quarantine), records)
        stmt = sa.delete(bars).where(
            bars.c.symbol == sa.bindparam("k_symbol"),
            bars.c.interval == sa.bindparam("k_interval"),
            bars.c.ts == sa.bindparam("k_ts", type_=bars.c.ts.type),
        )
        conn.execute(stmt, [{"k_symbol": s, "k_interval": i, "k_ts": t} for s, i, t in keys])
    return len(records)
