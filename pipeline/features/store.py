"""Idempotent upsert and wide reads of versioned feature rows in the ``features`` table."""

from __future__ import annotations

import datetime as dt
import itertools
import logging
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from pipeline.features.ta import FEATURE_COLUMNS, FEATURE_SET_VERSION
from pipeline.store.schema import features as features_table
from pipeline.store.times import to_utc

log = logging.getLogger(__name__)

_KEY = ["symbol", "interval", "ts"]
# Rows handed to the driver per call, which bounds the memory of serialised JSON values.
_CHUNK_ROWS = 10_000


def _feature_columns(frame: pd.DataFrame) -> list[str]:
    known = [c for c in FEATURE_COLUMNS if c in frame.columns]
    extra = [c for c in frame.columns if c not in _KEY and c not in known]
    return known + extra


def _records(frame: pd.DataFrame, columns: list[str], feature_set: str) -> Iterator[dict[str, Any]]:
    now = dt.datetime.now(dt.UTC)
    values = frame[columns].to_numpy(dtype=np.float64).tolist()
    ts = pd.to_datetime(frame["ts"], utc=True).dt.to_pydatetime()
    for symbol, interval, when, row in zip(frame["symbol"], frame["interval"], ts, values, strict=True):
        yield {
            "symbol": str(symbol),
            "interval": str(interval),
            "ts": when,
            "feature_set": feature_set,
            "values": dict(zip(columns, row, strict=True)),
            "computed_at": now,
        }


def _upsert_statement(engine: Engine) -> Any:
    """One cached INSERT ... ON CONFLICT DO UPDATE; executed with many rows, SQLAlchemy's insertmanyvalues
    batches them into multi-row VALUES without recompiling per chunk."""
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(features_table)
    return stmt.on_conflict_do_update(
        index_elements=[*_KEY, "feature_set"],
        set_={"values": stmt.excluded["values"], "computed_at": stmt.excluded["computed_at"]},
    )


def upsert_features(features: pd.DataFrame, engine: Engine, feature_set: str = FEATURE_SET_VERSION) -> int:
    """Write the rows of ``features`` past the warm-up (every feature finite) keyed by (symbol, interval,
    ts, feature_set); existing keys are overwritten, so recomputing is idempotent. Returns rows written."""
    if engine.dialect.name not in ("sqlite", "postgresql"):
        raise ValueError(f"unsupported database backend {engine.dialect.name!r}")
    columns = _feature_columns(features)
    complete = np.isfinite(features[columns].to_numpy(dtype=np.float64)).all(axis=1)
    ready = features.loc[complete]
    stmt = _upsert_statement(engine)
    records = _records(ready, columns, feature_set)
    written = 0
    with engine.begin() as conn:
        while batch := list(itertools.islice(records, _CHUNK_ROWS)):
            conn.execute(stmt, batch)
            written += len(batch)
    log.info(
        "upserted %d feature rows (%s), skipped %d warm-up rows", written, feature_set, (~complete).sum()
    )
    return written


def read_features(
    symbols: str | Iterable[str] | None,
    interval: str,
    start: dt.datetime | pd.Timestamp | str | None,
    end: dt.datetime | pd.Timestamp | str | None,
    engine: Engine,
    feature_set: str = FEATURE_SET_VERSION,
) -> pd.DataFrame:
    """Stored features with ``start <= ts < end`` (UTC; None = open), wide: symbol, interval, ts + one
    float64 column per feature, sorted by symbol and ts."""
    t = features_table
    query = sa.select(t.c.symbol, t.c.interval, t.c.ts, t.c["values"]).where(
        t.c.interval == interval, t.c.feature_set == feature_set
    )
    if symbols is not None:
        query = query.where(t.c.symbol.in_([symbols] if isinstance(symbols, str) else list(symbols)))
    if start is not None:
        query = query.where(t.c.ts >= to_utc(start))
    if end is not None:
        query = query.where(t.c.ts < to_utc(end))
    with engine.connect() as conn:
        rows = conn.execute(query.order_by(t.c.symbol, t.c.ts)).all()
    keys = pd.DataFrame([r[:3] for r in rows], columns=_KEY)
    keys["ts"] = pd.to_datetime(keys["ts"], utc=True)
    wide = pd.DataFrame.from_records([r[3] for r in rows], index=keys.index)
    names = [c for c in FEATURE_COLUMNS if c in wide.columns] + sorted(
        set(wide.columns) - set(FEATURE_COLUMNS)
    )
    if wide.empty:
        names = list(FEATURE_COLUMNS) if feature_set == FEATURE_SET_VERSION else []
        wide = pd.DataFrame(columns=names, index=keys.index)
    return pd.concat([keys, wide[names].astype("float64")], axis=1)
