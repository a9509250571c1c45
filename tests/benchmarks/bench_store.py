"""Benchmark: upsert N bars into PostgreSQL through the store vs pandas ``DataFrame.to_sql(method="multi")``.

Usage: python tests/benchmarks/bench_store.py [--quick] [--rows N] [--url URL]
Ends with one JSON line: store_rows_per_s, to_sql_rows_per_s, ratio, peak_rss_mb (targets: ratio >= 10,
store >= 200k rows/s at 1M rows).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pipeline.store import upsert_bars
from pipeline.store.db import create_store_engine
from pipeline.store.migrate import upgrade

PG_URL = os.environ.get("KRX_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
PSYCOPG_MAX_PARAMS = 65_535  # psycopg 3 refuses statements with more bind parameters


def make_bars(rows: int, symbols: int = 100, seed: int = 0) -> pd.DataFrame:
    """``rows`` one-minute bars spread over ``symbols`` symbols, valid OHLC."""
    rng = np.random.default_rng(seed)
    per = rows // symbols
    ts = pd.date_range("2020-01-02 00:00", periods=per, freq="min", tz="UTC")
    close = 10_000 * np.exp(np.cumsum(rng.normal(0, 1e-3, per * symbols)))
    spread = close * rng.uniform(0, 2e-3, close.size)
    return pd.DataFrame(
        {
            "symbol": np.repeat([f"A{i:05d}" for i in range(symbols)], per),
            "interval": "1m",
            "ts": np.tile(ts, symbols),
            "open": close,
            "high": close + spread,
            "low": close - spread,
            "close": close,
            "volume": rng.integers(0, 100_000, close.size),
            "turnover": close * 100,
            "source": "bench",
        }
    )


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20k rows, for the test suite")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument(
        "--to-sql-rows",
        type=int,
        default=250_000,
        help="rows for the to_sql baseline (its rate is flat in size; 1M rows takes ~5 minutes)",
    )
    parser.add_argument("--url", default=PG_URL, help="PostgreSQL URL (a scratch schema is created)")
    args = parser.parse_args()
    rows = 20_000 if args.quick else args.rows
    baseline_rows = min(rows, 5_000 if args.quick else args.to_sql_rows)

    schema = f"bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(args.url)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    engine = create_store_engine(f"{args.url}?options=-csearch_path%3D{schema}")
    try:
        upgrade(engine)
        bars = make_bars(rows)
        print(f"generated {len(bars):,} bars; upserting through the store ...", flush=True)
        first = upsert_bars(bars, engine, source="bench")
        print(
            f"  store, new keys:      {first.seconds:6.2f} s  {first.rows_per_s:>10,.0f} rows/s", flush=True
        )
        again = upsert_bars(bars, engine, source="bench")
        print(
            f"  store, existing keys: {again.seconds:6.2f} s  {again.rows_per_s:>10,.0f} rows/s", flush=True
        )

        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE bars_to_sql (LIKE bars INCLUDING ALL)")
        frame = bars.iloc[:baseline_rows].assign(ingested_at=pd.Timestamp.now(tz="UTC"))
        chunksize = min(10_000, PSYCOPG_MAX_PARAMS // frame.shape[1])
        print(f"  to_sql(method='multi', chunksize={chunksize:,}) on {baseline_rows:,} rows ...", flush=True)
        started = time.perf_counter()
        frame.to_sql(
            "bars_to_sql", engine, if_exists="append", index=False, method="multi", chunksize=chunksize
        )
        to_sql_s = time.perf_counter() - started
        to_sql_rate = baseline_rows / to_sql_s
        print(f"  to_sql:               {to_sql_s:6.2f} s  {to_sql_rate:>10,.0f} rows/s", flush=True)
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()

    ratio = first.rows_per_s / to_sql_rate
    result = {
        "bench": "store",
        "rows": rows,
        "quick": args.quick,
        "store_rows_per_s": round(first.rows_per_s),
        "store_existing_rows_per_s": round(again.rows_per_s),
        "to_sql_rows_per_s": round(to_sql_rate),
        "to_sql_rows": baseline_rows,
        "to_sql_chunksize": chunksize,
        "ratio": round(ratio, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "targets_met": bool(ratio >= 10 and first.rows_per_s >= 200_000),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
