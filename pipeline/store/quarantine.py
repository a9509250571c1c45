"""Bars that cannot be trusted: kept verbatim with their reason in ``bars_quarantine``, never lost.

Each row is keyed by (source, ``row_key``), a hash of the row as received, and inserted with
insert-or-ignore on both backends: a rerun, a retry or a second concurrent importer of the same rows
adds nothing."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from pipeline.store.db import get_engine, hold_writers_lock, in_transaction
from pipeline.store.schema import bars, bars_quarantine
from pipeline.store.validation import validate_label


def _jsonable(value: Any) -> Any:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return None if value is None else str(value)
    if isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return str(value)


def row_key(symbol: str | None, interval: str | None, ts_raw: str | None, raw: dict[str, Any]) -> str:
    """The natural key of a quarantined row: sha256 over its indexed columns and raw JSON (keys sorted)."""
    payload = json.dumps([symbol, interval, ts_raw, raw], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(payload.encode("utf-8", "backslashreplace")).hexdigest()


def _text(value: Any, size: int | None = None) -> str | None:
    # PostgreSQL text cannot hold NUL; SQLite can. Escape it so both backends store the same string.
    if value is None:
        return None
    text = str(value).replace("\x00", "\\x00")
    return text if size is None else text[:size]


def _record(raw: dict[str, Any], reason: str, source: str, ts_raw: Any) -> dict[str, Any]:
    raw = json.loads(json.dumps(raw, default=str))  # exactly what the JSON column will give back
    symbol, interval, ts = _text(raw.get("symbol"), 32), _text(raw.get("interval"), 8), _text(ts_raw, 64)
    return {
        "symbol": symbol,
        "interval": interval,
        "ts_raw": ts,
        "raw": raw,
        "reason": _text(reason),
        "source": source,
        "row_key": row_key(symbol, interval, ts, raw),
    }


def _insert_or_ignore(conn: Connection, records: list[dict[str, Any]]) -> None:
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(bars_quarantine).on_conflict_do_nothing(index_elements=["source", "row_key"])
    # In key order: two writers inserting overlapping rows wait on each other in one order, never crosswise.
    conn.execute(stmt, sorted(records, key=lambda r: r["row_key"]))


def quarantine_bars(
    rejected: pd.DataFrame,
    *,
    source: str,
    engine: Engine | Connection | None = None,
    ts_column: str = "ts",
) -> int:
    """Store rejected rows verbatim (as JSON) with their ``reason``; returns how many rows were handed
    in (rows already quarantined from the same source are kept once, not added again).

    ``symbol`` and ``interval`` columns, when present, and ``ts_column`` are copied into indexed columns
    so quarantined rows can be found by instrument and time. ``engine`` may be a connection inside the
    caller's transaction."""
    if rejected.empty:
        return 0
    validate_label(source, bars_quarantine.c.source)
    records = []
    for row in rejected.to_dict(orient="records"):
        reason = str(row.pop("reason"))
        raw = {str(k): _jsonable(v) for k, v in row.items()}
        records.append(_record(raw, reason, source, raw.get(ts_column)))
    with in_transaction(engine or get_engine()) as conn:
        _insert_or_ignore(conn, records)
    return len(records)


def move_to_quarantine(rows: pd.DataFrame, *, source: str, engine: Engine | Connection | None = None) -> int:
    """Take stored bars out of ``bars`` into ``bars_quarantine`` (with ``rows['reason']``), atomically.

    ``rows`` needs symbol, interval, ts (tz-aware) and reason; other columns are kept in the raw JSON."""
    if rows.empty:
        return 0
    validate_label(source, bars_quarantine.c.source)
    records = []
    keys = []
    for row in rows.to_dict(orient="records"):
        reason = str(row.pop("reason"))
        ts = pd.Timestamp(row["ts"]).tz_convert("UTC")
        raw = {str(k): _jsonable(v) for k, v in row.items()}
        records.append(_record(raw, reason, source, ts.isoformat()))
        keys.append((row["symbol"], row["interval"], ts.to_pydatetime()))
    with in_transaction(engine or get_engine()) as conn:
        hold_writers_lock(conn)  # it deletes bars: a writer like the others
        _insert_or_ignore(conn, records)
        stmt = sa.delete(bars).where(
            bars.c.symbol == sa.bindparam("k_symbol"),
            bars.c.interval == sa.bindparam("k_interval"),
            bars.c.ts == sa.bindparam("k_ts", type_=bars.c.ts.type),
        )
        conn.execute(stmt, [{"k_symbol": s, "k_interval": i, "k_ts": t} for s, i, t in keys])
    return len(records)
