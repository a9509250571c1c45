"""End to end on SQLite and PostgreSQL: rows in = rows stored + rows quarantined."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
from sqlalchemy.engine import Engine

from pipeline.store import quarantine_bars, upsert_bars
from pipeline.validation import validate_bars
from tests.factories import count_bars


def _count_quarantine(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.exec_driver_sql("SELECT count(*) FROM bars_quarantine").scalar_one())


def test_rows_in_equal_rows_stored_plus_rows_quarantined(
    store: Engine, krx_bars: Callable[..., pd.DataFrame]
) -> None:
    bars = krx_bars(n=30).astype(object)
    bars.at[2, "close"] = "abc"
    bars.at[3, "volume"] = ""
    bars.at[4, "ts"] = bars.at[5, "ts"]
    bars.at[40, "high"] = 0
    report = validate_bars(bars, source="kis-sim")
    upsert_bars(report.good, store)
    quarantine_bars(report.quarantined, source="kis-sim", engine=store)
    assert count_bars(store) + _count_quarantine(store) == report.rows_in == 60
    assert _count_quarantine(store) == 5
    with store.connect() as conn:
        rows = conn.exec_driver_sql("SELECT reason, raw FROM bars_quarantine").all()
    abc = [reason for reason, raw in rows if "abc" in str(raw)]  # the row keeps what was received
    assert len(abc) == 1 and "expect_column_values_to_not_be_null(close)" in abc[0]
