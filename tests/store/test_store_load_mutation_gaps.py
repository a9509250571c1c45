"""One untrusted batch into the store: counts, reasons, the raw rows quarantined, labels (mutation gaps)."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import pytest
from sqlalchemy.engine import Engine

from pipeline.store import load_bars
from tests.factories import bars_frame, count_bars


def _quarantined(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        result = conn.exec_driver_sql(
            "SELECT symbol, interval, ts_raw, raw, reason, source FROM bars_quarantine"
        )
        rows = [dict(r._mapping) for r in result]
    for row in rows:
        if isinstance(row["raw"], str):
            row["raw"] = json.loads(row["raw"])
    return rows


def _sources(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.exec_driver_sql("SELECT DISTINCT source FROM bars").scalars())


def test_a_batch_is_counted_as_inserted_updated_unchanged_and_quarantined(store: Engine) -> None:
    bars = bars_frame(symbols=("005930",), n=6)
    first = load_bars(bars.iloc[:4], source="kis", engine=store)
    assert (first.rows, first.inserted, first.updated, first.unchanged, first.quarantined) == (4, 4, 0, 0, 0)
    assert first.reasons.empty
    again = bars.copy()
    again.loc[1, "close"] = again.loc[1, "close"] + 1  # a corrected close: an update
    again.loc[1, "high"] = max(again.loc[1, "high"], again.loc[1, "close"])
    again.loc[5, "close"] = -1.0
    result = load_bars(again, source="kis", engine=store)
    assert (result.rows, result.inserted, result.updated, result.unchanged, result.quarantined) == (
        6,
        1,
        1,
        3,
        1,
    )
    assert list(result.reasons.index) == [5] and "close" in result.reasons.loc[5]
    assert count_bars(store) == 5 and len(_quarantined(store)) == 1


def test_the_raw_row_is_quarantined_with_the_symbol_and_interval_it_was_loaded_as(store: Engine) -> None:
    bars = bars_frame(symbols=("005930",), n=3)
    bars.loc[2, "close"] = -1.0
    raw = pd.DataFrame({"date": ["20240102", "20240103", "20240104"], "stck_clpr": ["1", "2", "-1"]})
    result = load_bars(bars, source="kis", engine=store, raw=raw, ts_column="date")
    assert (result.inserted, result.quarantined) == (2, 1)
    (row,) = _quarantined(store)
    assert row["raw"] == {"date": "20240104", "stck_clpr": "-1", "symbol": "005930", "interval": "1d"}
    assert (row["symbol"], row["interval"], row["ts_raw"]) == ("005930", "1d", "20240104")
    assert row["reason"] == result.reasons.loc[2] and row["source"] == "kis"


def test_without_raw_the_checked_row_is_quarantined_and_ts_is_its_time_column(store: Engine) -> None:
    bars = bars_frame(symbols=("005930",), n=3)
    bars.loc[0, "close"] = -1.0
    load_bars(bars, source="kis", engine=store)
    (row,) = _quarantined(store)
    assert row["ts_raw"] == str(bars.loc[0, "ts"]) and row["raw"]["close"] == -1.0


def test_the_quarantine_may_be_labelled_apart_from_the_bars(store: Engine) -> None:
    bars = bars_frame(symbols=("005930",), n=3)
    bars.loc[1, "close"] = -1.0
    load_bars(bars, source="kis", engine=store, quarantine_source="csv:" + "x" * 60)
    assert [r["source"] for r in _quarantined(store)] == ["csv:" + "x" * 60]
    assert _sources(store) == {"kis"}


def test_labels_that_do_not_fit_are_refused_before_anything_is_written(store: Engine) -> None:
    bars = bars_frame(symbols=("005930",), n=3)
    bars.loc[1, "close"] = -1.0
    with pytest.raises(ValueError, match="32"):
        load_bars(bars, source="k" * 33, engine=store, quarantine_source="kis")
    with pytest.raises(ValueError, match="255"):
        load_bars(bars, source="kis", engine=store, quarantine_source="q" * 256)
    with pytest.raises(ValueError, match="empty"):
        load_bars(bars, source="", engine=store, quarantine_source="kis")
    assert (count_bars(store), len(_quarantined(store))) == (0, 0)


def test_a_load_inside_the_callers_transaction_is_undone_with_it(store: Engine) -> None:
    bars = bars_frame(symbols=("005930",), n=3)
    bars.loc[1, "close"] = -1.0
    with pytest.raises(RuntimeError, match="caller"), store.begin() as conn:
        result = load_bars(bars, source="kis", engine=conn)
        assert (result.inserted, result.quarantined) == (2, 1)
        raise RuntimeError("the caller fails later")
    assert (count_bars(store), len(_quarantined(store))) == (0, 0)
