"""Idempotent bulk upsert and range reads of OHLCV bars on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from pipeline.store import pgcopy
from pipeline.store.db import get_engine, hold_writers_lock, in_transaction, is_postgres
from pipeline.store.schema import bars
from pipeline.store.times import to_utc
from pipeline.store.validation import COLUMNS, KEY, BarValidationError, check_bars, validate_label

log = logging.getLogger(__name__)

_VALUE_COLS = ["open", "high", "low", "close", "volume", "turnover"]
_SET = ", ".join(f"{c} = excluded.{c}" for c in [*_VALUE_COLS, "source", "ingested_at"])
_CHANGED = " OR ".join(f"b.{c} IS NOT excluded.{c}" for c in _VALUE_COLS)


@dataclass(frozen=True)
class UpsertResult:
    """What one upsert did: rows new to the store, rows that changed, rows already identical."""

    inserted: int
    updated: int
    unchanged: int
    seconds: float

    @property
    def total(self) -> int:
        return self.inserted + self.updated + self.unchanged

    @property
    def rows_per_s(self) -> float:
        return self.total / self.seconds if self.seconds > 0 else float("inf")


def upsert_bars(
    df: pd.DataFrame,
    engine: Engine | Connection | None = None,
    *,
    source: str = "unknown",
    chunk_rows: int | None = None,
) -> UpsertResult:
    """Insert or overwrite bars keyed by (symbol, interval, ts), all-or-nothing.

    ``df`` needs columns symbol, interval, ts (tz-aware), open, high, low, close, volume; turnover and
    source are optional. Any invalid row makes the whole batch fail with :class:`BarValidationError`,
    which lists the offending rows; nothing is written then. Rerunning the same batch changes nothing.
    ``engine`` may be a connection inside the caller's transaction (see ``db.write_transaction``).
    """
    started = time.perf_counter()
    validate_label(source)
    checked = check_bars(df, source=source)
    if len(checked.rejected):
        raise BarValidationError(checked.rejected, len(df))
    return write_checked(checked.good, engine or get_engine(), chunk_rows=chunk_rows, started=started)


def write_checked(
    good: pd.DataFrame,
    bind: Engine | Connection,
    *,
    chunk_rows: int | None = None,
    started: float | None = None,
) -> UpsertResult:
    """Upsert rows that already passed :func:`check_bars` (its ``good`` frame), in ``bind``'s transaction
    when it is a connection, else in a transaction of its own."""
    started = time.perf_counter() if started is None else started
    if good.empty:
        return UpsertResult(0, 0, 0, time.perf_counter() - started)
    if chunk_rows is None:
        from pipeline.config import get_settings

        chunk_rows = get_settings().upsert_chunk_rows
    good = good.sort_values(KEY, kind="stable").reset_index(drop=True)
    with in_transaction(bind) as conn, _wrap_driver_errors(conn):
        # Shared writers' lock first, so a multi-batch writer (write_transaction(exclusive=True)) can keep
        # all others out while its per-symbol locks come in no global order.
        hold_writers_lock(conn)
        writer = _upsert_postgres if is_postgres(conn) else _upsert_sqlite
        inserted, updated = writer(conn, good, chunk_rows)
    result = UpsertResult(inserted, updated, len(good) - inserted - updated, time.perf_counter() - started)
    log.info(
        "upserted %d bars: %d inserted, %d updated, %d unchanged (%.0f rows/s)",
        result.total,
        result.inserted,
        result.updated,
        result.unchanged,
        result.rows_per_s,
    )
    return result


@contextmanager
def _wrap_driver_errors(conn: Connection) -> Iterator[None]:
    """Raw driver cursors bypass SQLAlchemy; re-raise their errors as ``sqlalchemy.exc.DBAPIError`` so
    callers see the same exception types whichever backend is configured."""
    base = conn.dialect.loaded_dbapi.Error
    try:
        yield
    except base as exc:
        raise sa.exc.DBAPIError.instance(None, None, exc, base, dialect=conn.dialect) from exc


def _chunks(df: pd.DataFrame, size: int) -> Iterator[pd.DataFrame]:
    for start in range(0, len(df), size):
        yield df.iloc[start : start + size]


# --- PostgreSQL: binary COPY into a temp table, then per chunk an UPDATE of changed rows and an
# anti-join INSERT of missing ones (no ON CONFLICT, see below) -----------------------------------------
_PG_STAGE = """
CREATE TEMP TABLE IF NOT EXISTS _bars_stage (
    sym int4, iv int4, ts timestamptz, open float8, high float8, low float8, close float8,
    volume int8, turnover float8, src int4
) ON COMMIT DELETE ROWS
"""
# ON CONFLICT's speculative insertion measured 2x slower here than an anti-join INSERT (5.2 s vs 2.5 s per
# 1M new bars), so writers instead serialise per symbol with transaction-scoped advisory locks (taken in
# sorted order, so two writers cannot deadlock) and then UPDATE changed rows and INSERT missing ones.
_PG_LOCK = """
SELECT pg_advisory_xact_lock(hashtextextended('krx.bars:' || sym, 0))
FROM unnest(%(syms)s::text[]) AS sym ORDER BY sym
"""
_PG_KEYED = """
FROM _bars_stage s CROSS JOIN LATERAL (
    SELECT (%(syms)s::text[])[s.sym] AS symbol, (%(ivs)s::text[])[s.iv] AS interval,
           (%(srcs)s::text[])[s.src] AS source, NULLIF(s.turnover, 'NaN'::float8) AS turnover
) k
"""
_PG_UPDATE = f"""
UPDATE bars b SET open = s.open, high = s.high, low = s.low, close = s.close, volume = s.volume,
                  turnover = k.turnover, source = k.source, ingested_at = now()
{_PG_KEYED}
WHERE b.symbol = k.symbol AND b.interval = k.interval AND b.ts = s.ts
  AND (b.open, b.high, b.low, b.close, b.volume, b.turnover)
      IS DISTINCT FROM (s.open, s.high, s.low, s.close, s.volume, k.turnover)
"""
_PG_INSERT = f"""
INSERT INTO bars (symbol, interval, ts, open, high, low, close, volume, turnover, source, ingested_at)
SELECT k.symbol, k.interval, s.ts, s.open, s.high, s.low, s.close, s.volume, k.turnover, k.source, now()
{_PG_KEYED}
WHERE NOT EXISTS (SELECT 1 FROM bars x WHERE x.symbol = k.symbol AND x.interval = k.interval AND x.ts = s.ts)
"""


def _codes(values: pd.Series) -> tuple[np.ndarray, list[str]]:
    # Strings travel as 1-based int codes into a fixed-width binary row; the INSERT maps them back
    # through a text[] parameter. Sorted labels keep code order equal to text order.
    codes, labels = pd.factorize(values, sort=True)
    return codes.astype(np.int32) + 1, [str(x) for x in labels]


def _upsert_postgres(conn: Connection, good: pd.DataFrame, chunk_rows: int) -> tuple[int, int]:
    sym, syms = _codes(good["symbol"])
    iv, ivs = _codes(good["interval"])
    src, srcs = _codes(good["source"])
    columns = {
        "sym": sym,
        "iv": iv,
        "ts": pgcopy.timestamps_to_pg(good["ts"]),
        **{c: good[c].to_numpy("float64") for c in ["open", "high", "low", "close"]},
        "volume": good["volume"].to_numpy("int64"),
        "turnover": good["turnover"].to_numpy("float64"),
        "src": src,
    }
    params = {"syms": syms, "ivs": ivs, "srcs": srcs}
    return _pg_merge(conn, columns, params, chunk_rows)


def _pg_merge(
    conn: Connection, columns: dict[str, np.ndarray], params: dict[str, Any], chunk_rows: int
) -> tuple[int, int]:
    n = len(columns["sym"])
    inserted = updated = 0
    raw = conn.connection.driver_connection
    assert raw is not None
    with raw.cursor() as cur:
        cur.execute(_PG_STAGE)
        cur.execute(_PG_LOCK, params)
        for start in range(0, n, chunk_rows):
            part = {k: v[start : start + chunk_rows] for k, v in columns.items()}
            with cur.copy("COPY _bars_stage FROM STDIN (FORMAT BINARY)") as copy:
                for block in pgcopy.encode_rows(pgcopy.STAGE_LAYOUT, part):
                    copy.write(block)
            cur.execute(_PG_UPDATE, params)
            updated += cur.rowcount
            cur.execute(_PG_INSERT, params)
            inserted += cur.rowcount
            cur.execute("TRUNCATE _bars_stage")
    return inserted, updated


# --- SQLite: inside the caller's IMMEDIATE transaction (a second writer process waits on busy_timeout) --
_SQLITE_STAGE = """
CREATE TEMP TABLE IF NOT EXISTS _bars_stage (
    symbol TEXT, interval TEXT, ts TEXT, open REAL, high REAL, low REAL, close REAL,
    volume INTEGER, turnover REAL, source TEXT, ingested_at TEXT
)
"""
_SQLITE_NEW = """
SELECT count(*) FROM _bars_stage s WHERE NOT EXISTS (
    SELECT 1 FROM bars b WHERE b.symbol = s.symbol AND b.interval = s.interval AND b.ts = s.ts)
"""
_SQLITE_CHANGED = f"""
SELECT count(*) FROM _bars_stage excluded JOIN bars b
  ON b.symbol = excluded.symbol AND b.interval = excluded.interval AND b.ts = excluded.ts
WHERE {_CHANGED}
"""
_SQLITE_MERGE = f"""
INSERT INTO bars AS b (symbol, interval, ts, open, high, low, close, volume, turnover, source, ingested_at)
SELECT * FROM _bars_stage WHERE true
ON CONFLICT (symbol, interval, ts) DO UPDATE SET {_SET} WHERE {_CHANGED}
"""


def _sqlite_ts(values: pd.Series) -> list[str]:
    # Same text layout SQLAlchemy uses for DateTime on SQLite, so ORM reads and range filters agree.
    us = values.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy().astype("datetime64[us]")
    return [s.replace("T", " ") for s in np.datetime_as_string(us, unit="us")]


def _sqlite_rows(df: pd.DataFrame, now: str) -> Iterable[tuple[Any, ...]]:
    turnover = [None if np.isnan(x) else x for x in df["turnover"].tolist()]
    return zip(
        df["symbol"].tolist(),
        df["interval"].tolist(),
        _sqlite_ts(df["ts"]),
        df["open"].tolist(),
        df["high"].tolist(),
        df["low"].tolist(),
        df["close"].tolist(),
        df["volume"].tolist(),
        turnover,
        df["source"].tolist(),
        [now] * len(df),
        strict=True,
    )


def _upsert_sqlite(conn: Connection, good: pd.DataFrame, chunk_rows: int) -> tuple[int, int]:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    inserted = updated = 0
    con: Any = conn.connection.driver_connection  # same transaction, without per-row SQLAlchemy cost
    con.execute(_SQLITE_STAGE)
    for part in _chunks(good, chunk_rows):
        con.execute("DELETE FROM _bars_stage")
        con.executemany(f"INSERT INTO _bars_stage VALUES ({', '.join('?' * 11)})", _sqlite_rows(part, now))
        inserted += con.execute(_SQLITE_NEW).fetchone()[0]
        updated += con.execute(_SQLITE_CHANGED).fetchone()[0]
        con.execute(_SQLITE_MERGE)
    con.execute("DELETE FROM _bars_stage")
    return inserted, updated


# --- reads ---------------------------------------------------------------------------------------
def read_bars(
    symbols: str | Iterable[str] | None = None,
    interval: str = "1d",
    start: dt.datetime | pd.Timestamp | str | None = None,
    end: dt.datetime | pd.Timestamp | str | None = None,
    engine: Engine | None = None,
) -> pd.DataFrame:
    """Bars with ``start <= ts < end`` (UTC; naive bounds are read as UTC), sorted by symbol and ts.

    Returns columns symbol, interval, ts (tz-aware UTC), open, high, low, close, volume, turnover, source.
    """
    engine = engine or get_engine()
    query = sa.select(*[bars.c[c] for c in COLUMNS]).where(bars.c.interval == interval)
    if symbols is not None:
        wanted = [symbols] if isinstance(symbols, str) else list(symbols)
        query = query.where(bars.c.symbol.in_(wanted))
    if start is not None:
        query = query.where(bars.c.ts >= to_utc(start))
    if end is not None:
        query = query.where(bars.c.ts < to_utc(end))
    query = query.order_by(bars.c.symbol, bars.c.ts)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    frame = pd.DataFrame(rows, columns=COLUMNS)
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    for col in ["open", "high", "low", "close", "turnover"]:
        frame[col] = frame[col].astype("float64")
    frame["volume"] = frame["volume"].astype("int64")
    return frame


def summarize_bars(interval: str = "1d", engine: Engine | None = None) -> pd.DataFrame:
    """Per symbol (computed in the database): bar count, first and last ts, and the last close."""
    engine = engine or get_engine()
    agg = (
        sa.select(
            bars.c.symbol,
            sa.func.count().label("bars"),
            sa.func.min(bars.c.ts).label("first"),
            sa.func.max(bars.c.ts).label("last"),
        )
        .where(bars.c.interval == interval)
        .group_by(bars.c.symbol)
        .subquery()
    )
    query = (
        sa.select(agg, bars.c.close.label("last_close"))
        .join(
            bars, (bars.c.symbol == agg.c.symbol) & (bars.c.interval == interval) & (bars.c.ts == agg.c.last)
        )
        .order_by(agg.c.symbol)
    )
    with engine.connect() as conn:
        frame = pd.DataFrame(
            conn.execute(query).all(), columns=["symbol", "bars", "first", "last", "last_close"]
        )
    for col in ("first", "last"):
        frame[col] = pd.to_datetime(frame[col], utc=True)
    return frame
