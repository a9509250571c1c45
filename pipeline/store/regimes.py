"""Regime labels per model spec in the ``regimes`` table: an idempotent replace of a spec's labels, reads."""

from __future__ import annotations

import datetime as dt
import itertools
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from pipeline.store.db import get_engine, write_transaction
from pipeline.store.schema import regimes as regimes_table
from pipeline.store.times import to_utc

log = logging.getLogger(__name__)

#: Columns of a labels frame, as :func:`write_regimes` takes and :func:`read_regimes` returns them.
LABEL_COLUMNS = ["symbol", "interval", "ts", "spec", "regime", "model_id", "run_id"]
_KEY = ["symbol", "interval", "ts", "spec"]
_CHUNK_ROWS = 10_000


@dataclass(frozen=True)
class RegimesWritten:
    """What one :func:`write_regimes` did."""

    written: int
    """Rows inserted or overwritten (every labelled bar of the spec)."""
    removed: int
    """Rows of an earlier fit of the spec that the new labels do not cover (deleted)."""


def _records(labels: pd.DataFrame, spec: str, model_id: str, run_id: str | None) -> Iterator[dict[str, Any]]:
    now = dt.datetime.now(dt.UTC)
    ts = pd.to_datetime(labels["ts"], utc=True).dt.to_pydatetime()
    for symbol, interval, when, regime in zip(
        labels["symbol"], labels["interval"], ts, labels["regime"], strict=True
    ):
        yield {
            "symbol": str(symbol),
            "interval": str(interval),
            "ts": when,
            "spec": spec,
            "regime": int(regime),
            "model_id": model_id,
            "run_id": run_id,
            "computed_at": now,
        }


def _upsert_statement(engine: Engine) -> Any:
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(regimes_table)
    updated = {c: stmt.excluded[c] for c in ("regime", "model_id", "run_id", "computed_at")}
    return stmt.on_conflict_do_update(index_elements=_KEY, set_=updated)


def write_regimes(
    labels: pd.DataFrame,
    spec: str,
    model_id: str,
    run_id: str | None = None,
    engine: Engine | None = None,
) -> RegimesWritten:
    """Make ``labels`` (columns symbol, interval, ts tz-aware, regime) the labels of ``spec``, in one
    transaction: upsert keyed by (symbol, interval, ts, spec), then delete the spec's rows that another
    fit (``model_id``) left behind. Writing the same labels again changes nothing; a refit replaces them."""
    engine = engine or get_engine()
    missing = {"symbol", "interval", "ts", "regime"} - set(labels.columns)
    if missing:
        raise ValueError(f"labels lack columns {sorted(missing)}")
    if labels.duplicated(["symbol", "interval", "ts"]).any():
        raise ValueError("labels repeat a (symbol, interval, ts)")
    stmt = _upsert_statement(engine)
    records = _records(labels, spec, model_id, run_id)
    t = regimes_table
    written = 0
    with write_transaction(engine) as conn:
        while batch := list(itertools.islice(records, _CHUNK_ROWS)):
            conn.execute(stmt, batch)
            written += len(batch)
        stale = sa.delete(t).where(t.c.spec == spec, t.c.model_id != model_id)
        removed = int(conn.execute(stale).rowcount or 0)
    log.info(
        "regimes of %s: %d labels written (model %s), %d stale removed", spec, written, model_id, removed
    )
    return RegimesWritten(written=written, removed=removed)


def read_regimes(
    spec: str,
    symbols: str | Iterable[str] | None = None,
    interval: str | None = None,
    start: dt.datetime | pd.Timestamp | str | None = None,
    end: dt.datetime | pd.Timestamp | str | None = None,
    engine: Engine | None = None,
) -> pd.DataFrame:
    """Stored labels of ``spec`` with ``start <= ts < end`` (UTC; None = open), sorted by symbol and ts;
    columns :data:`LABEL_COLUMNS` (``ts`` tz-aware UTC, ``regime`` int64)."""
    engine = engine or get_engine()
    t = regimes_table
    query = sa.select(*[t.c[c] for c in LABEL_COLUMNS]).where(t.c.spec == spec)
    if symbols is not None:
        query = query.where(t.c.symbol.in_([symbols] if isinstance(symbols, str) else list(symbols)))
    if interval is not None:
        query = query.where(t.c.interval == interval)
    if start is not None:
        query = query.where(t.c.ts >= to_utc(start))
    if end is not None:
        query = query.where(t.c.ts < to_utc(end))
    with engine.connect() as conn:
        rows = conn.execute(query.order_by(t.c.symbol, t.c.ts)).all()
    frame = pd.DataFrame(rows, columns=LABEL_COLUMNS)
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    frame["regime"] = frame["regime"].astype("int64")
    return frame
