"""What a quarantined row keeps, exactly: raw values, indexed columns, key and source (mutation gaps)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sqlalchemy.engine import Engine

from pipeline.store import move_to_quarantine, quarantine_bars, read_bars, upsert_bars
from pipeline.store.quarantine import row_key
from tests.factories import bars_frame, count_bars


def _rows(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        result = conn.exec_driver_sql(
            "SELECT symbol, interval, ts_raw, raw, reason, source, row_key FROM bars_quarantine ORDER BY id"
        )
        rows = [dict(r._mapping) for r in result]
    for row in rows:  # SQLite hands JSON back as text
        if isinstance(row["raw"], str):
            row["raw"] = json.loads(row["raw"])
    return rows


def test_raw_values_are_kept_as_json_with_non_finite_numbers_spelled_out(store: Engine) -> None:
    rejected = pd.DataFrame(
        {
            "symbol": ["005930"],
            "interval": ["1d"],
            "ts": ["2024-01-02"],
            "close": [float("nan")],
            "high": [float("inf")],
            "low": [float("-inf")],
            "open": [1.5],
            "volume": [7],
            "halted": [True],
            "note": [None],
            "parts": [("a", 2, float("nan"))],
            "when": [pd.Timestamp("2024-01-02 09:00", tz="Asia/Seoul")],
            "reason": ["bad close"],
        }
    )
    assert quarantine_bars(rejected, source="unit", engine=store) == 1
    (row,) = _rows(store)
    assert row["raw"] == {
        "symbol": "005930",
        "interval": "1d",
        "ts": "2024-01-02",
        "close": "nan",
        "high": "inf",
        "low": "-inf",
        "open": 1.5,
        "volume": 7,
        "halted": True,
        "note": None,
        "parts": ["a", 2, "nan"],
        "when": "2024-01-02 09:00:00+09:00",
    }
    assert (row["symbol"], row["interval"], row["ts_raw"]) == ("005930", "1d", "2024-01-02")
    assert (row["reason"], row["source"]) == ("bad close", "unit")
    assert "reason" not in row["raw"]


def test_the_indexed_columns_are_cut_to_their_width_and_nul_is_escaped(store: Engine) -> None:
    rejected = pd.DataFrame(
        {
            "symbol": ["S" * 40],
            "interval": ["I" * 12],
            "when": ["T" * 80],
            "reason": ["a\x00b"],
        }
    )
    quarantine_bars(rejected, source="unit", engine=store, ts_column="when")
    (row,) = _rows(store)
    assert (row["symbol"], row["interval"], row["ts_raw"]) == ("S" * 32, "I" * 8, "T" * 64)
    assert row["reason"] == "a\\x00b"
    assert row["raw"]["symbol"] == "S" * 40  # the raw JSON keeps the whole value


def test_a_row_without_symbol_interval_or_time_is_still_kept(store: Engine) -> None:
    rejected = pd.DataFrame({"close": ["abc"], "reason": ["no key at all"]})
    assert quarantine_bars(rejected, source="unit", engine=store) == 1
    (row,) = _rows(store)
    assert (row["symbol"], row["interval"], row["ts_raw"]) == (None, None, None)
    assert row["raw"] == {"close": "abc"}


def test_the_row_key_is_sha256_of_the_sorted_compact_json_of_the_row() -> None:
    raw = {"b": 1, "a": "x"}
    payload = '["005930","1d","2024-01-02",{"a":"x","b":1}]'
    assert row_key("005930", "1d", "2024-01-02", raw) == hashlib.sha256(payload.encode()).hexdigest()
    assert row_key("005930", "1d", "2024-01-02", {"a": "x", "b": 1}) == row_key(
        "005930", "1d", "2024-01-02", raw
    )  # key order does not matter
    assert row_key("005930", "1d", "2024-01-03", raw) != row_key("005930", "1d", "2024-01-02", raw)


def test_the_stored_row_key_is_the_key_of_what_is_stored(store: Engine) -> None:
    rejected = pd.DataFrame(
        {"symbol": ["005930"], "interval": ["1d"], "ts": ["2024-01-02"], "close": [np.nan], "reason": ["x"]}
    )
    quarantine_bars(rejected, source="unit", engine=store)
    (row,) = _rows(store)
    assert row["row_key"] == row_key("005930", "1d", "2024-01-02", row["raw"])


def test_an_empty_batch_quarantines_nothing(store: Engine) -> None:
    empty = pd.DataFrame({"symbol": [], "reason": []})
    assert quarantine_bars(empty, source="unit", engine=store) == 0
    assert move_to_quarantine(empty, source="unit", engine=store) == 0
    assert _rows(store) == []


def test_a_quarantine_source_may_be_longer_than_a_bars_source_but_not_empty(store: Engine) -> None:
    rejected = pd.DataFrame({"symbol": ["005930"], "reason": ["x"]})
    long_source = "csv:" + "f" * 100  # bars.source holds 32 characters, bars_quarantine.source 255
    assert quarantine_bars(rejected, source=long_source, engine=store) == 1
    with pytest.raises(ValueError, match="255"):
        quarantine_bars(rejected, source="s" * 256, engine=store)
    stored = bars_frame(symbols=("005930",), n=2)
    upsert_bars(stored, store)
    picked = read_bars("005930", engine=store).iloc[[0]].assign(reason="x")
    assert move_to_quarantine(picked, source=long_source, engine=store) == 1
    with pytest.raises(ValueError, match="255"):
        move_to_quarantine(picked, source="s" * 256, engine=store)
    assert [r["source"] for r in _rows(store)] == [long_source, long_source]


def test_moving_bars_keeps_their_utc_time_and_deletes_only_them(store: Engine) -> None:
    upsert_bars(bars_frame(symbols=("005930", "000660"), n=4), store)
    upsert_bars(bars_frame(symbols=("005930",), n=4, interval="1w"), store)  # same times, another interval
    stored = read_bars("005930", interval="1d", engine=store)
    picked = stored.iloc[[1, 2]].assign(reason=["limit", "gap"])
    picked["ts"] = picked["ts"].dt.tz_convert("Asia/Seoul")  # any zone: the key is the instant
    assert move_to_quarantine(picked, source="validation", engine=store) == 2
    assert count_bars(store) == 10
    assert len(read_bars("005930", interval="1w", engine=store)) == 4
    left = read_bars("005930", interval="1d", engine=store)
    assert list(left["ts"]) == [stored["ts"].iloc[0], stored["ts"].iloc[3]]
    assert len(read_bars("000660", engine=store)) == 4
    rows = sorted(_rows(store), key=lambda r: r["ts_raw"])
    expected = [stored["ts"].iloc[i].tz_convert("UTC").isoformat() for i in (1, 2)]
    assert [r["ts_raw"] for r in rows] == expected
    assert [r["reason"] for r in rows] == ["limit", "gap"]
    assert [(r["symbol"], r["interval"]) for r in rows] == [("005930", "1d")] * 2
    assert {r["raw"]["close"] for r in rows} == {
        float(stored["close"].iloc[1]),
        float(stored["close"].iloc[2]),
    }


def test_a_row_key_reads_values_json_cannot_hold_as_their_text() -> None:
    when = pd.Timestamp("2024-01-02 09:00", tz="Asia/Seoul")
    assert row_key("005930", "1d", None, {"ts": when}) == row_key("005930", "1d", None, {"ts": str(when)})
