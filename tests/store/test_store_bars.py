"""Bars upsert/read behaviour on SQLite and the real PostgreSQL server."""

from __future__ import annotations

import multiprocessing as mp

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pipeline.store import BarValidationError, quarantine_bars, read_bars, upsert_bars
from tests.factories import bars_frame, count_bars
from tests.store.faults import install_failing_trigger


def test_upserting_the_same_bars_twice_keeps_one_copy(store: Engine) -> None:
    bars = bars_frame(n=40)
    first = upsert_bars(bars, store, source="test")
    second = upsert_bars(bars, store, source="test")
    assert (first.inserted, first.updated, first.unchanged) == (80, 0, 0)
    assert (second.inserted, second.updated, second.unchanged) == (0, 0, 80)
    assert count_bars(store) == 80


def test_a_changed_bar_overwrites_the_stored_one(store: Engine) -> None:
    bars = bars_frame(symbols=("005930",), n=10)
    upsert_bars(bars, store)
    changed = bars.iloc[[3]].copy()
    changed["close"] = changed["high"]
    changed["volume"] = 7
    result = upsert_bars(changed, store, source="fix")
    assert (result.inserted, result.updated) == (0, 1)
    stored = read_bars("005930", "1d", engine=store)
    assert len(stored) == 10
    row = stored.iloc[3]
    assert row["close"] == changed["high"].iloc[0]
    assert row["volume"] == 7
    assert row["source"] == "fix"


def test_timestamps_round_trip_tz_aware_utc(store: Engine) -> None:
    bars = bars_frame(symbols=("005930",), n=5, interval="1m", start="2024-03-04 09:00", freq="min")
    bars["ts"] = bars["ts"] + pd.to_timedelta(np.arange(5) * 1234, unit="us")  # keep microseconds
    upsert_bars(bars, store)
    stored = read_bars("005930", "1m", engine=store)
    assert str(stored["ts"].dt.tz) == "UTC"
    assert list(stored["ts"]) == list(bars["ts"].dt.tz_convert("UTC"))
    assert stored["ts"].iloc[0] == pd.Timestamp("2024-03-04 00:00", tz="UTC")  # 09:00 KST


def test_naive_timestamps_are_refused_with_a_clear_error(store: Engine) -> None:
    bars = bars_frame(n=3)
    bars["ts"] = bars["ts"].dt.tz_localize(None)
    with pytest.raises(ValueError, match="timezone-naive"):
        upsert_bars(bars, store)


BAD_ROWS = {
    2: ("close", np.nan, "close is not a finite number"),
    5: ("open", np.inf, "open is not a finite number"),
    7: ("low", 0.0, "low is not positive"),
    9: ("open", -5.0, "open is not positive"),
    11: ("volume", -1, "volume is negative"),
}


def test_invalid_rows_fail_the_whole_batch_and_are_listed(store: Engine) -> None:
    bars = bars_frame(symbols=("005930",), n=20)
    for idx, (col, value, _) in BAD_ROWS.items():
        bars.loc[idx, col] = value
    bars.loc[13, "high"] = bars.loc[13, ["open", "close"]].max() - 1
    bars.loc[15, "low"] = bars.loc[15, ["open", "close"]].min() + 1
    with pytest.raises(BarValidationError) as caught:
        upsert_bars(bars, store)
    err = caught.value
    assert sorted(err.rejected.index) == [2, 5, 7, 9, 11, 13, 15]
    for idx, (_, _, reason) in BAD_ROWS.items():
        assert reason in err.rejected.loc[idx, "reason"]
        assert f"row {idx}:" in str(err)
    assert "high < max(open, close)" in err.rejected.loc[13, "reason"]
    assert "low > min(open, close)" in err.rejected.loc[15, "reason"]
    assert "nothing was written" in str(err)
    assert count_bars(store) == 0  # the 13 valid rows were not written either


def test_duplicate_keys_in_one_batch_are_rejected(store: Engine) -> None:
    bars = bars_frame(symbols=("005930",), n=5)
    bars = pd.concat([bars, bars.iloc[[2]]], ignore_index=True)
    with pytest.raises(BarValidationError, match="duplicate"):
        upsert_bars(bars, store)
    assert count_bars(store) == 0


def test_a_failure_mid_write_leaves_nothing_half_written(store: Engine) -> None:
    good = bars_frame(symbols=("005930", "000660"), n=30)
    upsert_bars(good.iloc[:10], store)  # some bars already stored
    install_failing_trigger(store)
    batch = pd.concat([good, bars_frame(symbols=("BOOM",), n=3)], ignore_index=True)
    changed = batch.copy()
    changed.loc[:9, "volume"] = 1  # updates to existing rows are rolled back too
    with pytest.raises(sa.exc.DBAPIError, match="simulated crash"):
        upsert_bars(changed, store, chunk_rows=7)  # several chunks before the failing one
    stored = read_bars(engine=store)
    assert len(stored) == 10
    assert (stored["volume"] != 1).all()


def _writer(url: str, rows: pd.DataFrame, barrier: object) -> None:
    from pipeline.store.db import create_store_engine

    engine = create_store_engine(url)
    barrier.wait()  # type: ignore[attr-defined]
    for start in range(0, len(rows), 500):
        upsert_bars(rows.iloc[start : start + 500], engine)


@pytest.mark.integration
def test_two_processes_upserting_overlapping_batches_lose_and_duplicate_nothing(store_url: str) -> None:
    bars = bars_frame(symbols=("005930", "000660", "035420"), n=1_000, freq="min", interval="1m")
    bars = bars.sample(frac=1.0, random_state=1).reset_index(drop=True)
    a, b = bars.iloc[:2_000], bars.iloc[1_000:]  # 1,000 bars written by both
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_writer, args=(store_url, part, barrier)) for part in (a, b)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    from pipeline.store.db import create_store_engine

    engine = create_store_engine(store_url)
    stored = read_bars(interval="1m", engine=engine)
    engine.dispose()
    assert len(stored) == 3_000
    assert not stored.duplicated(["symbol", "ts"]).any()
    expected = bars.assign(ts=bars["ts"].dt.tz_convert("UTC")).sort_values(["symbol", "ts"])
    assert np.allclose(stored["close"].to_numpy(), expected["close"].to_numpy())


def test_read_bars_filters_symbols_interval_and_half_open_range(store: Engine) -> None:
    upsert_bars(bars_frame(symbols=("005930", "000660"), n=10, start="2024-01-01", freq="D"), store)
    upsert_bars(bars_frame(symbols=("005930",), n=5, interval="1m", freq="min"), store)
    got = read_bars(["005930"], "1d", start="2024-01-03", end="2024-01-05", engine=store)
    # Daily bars are stamped at 00:00 KST = 15:00 UTC the day before.
    assert list(got["ts"].dt.strftime("%Y-%m-%d %H:%M")) == ["2024-01-03 15:00", "2024-01-04 15:00"]
    exclusive = read_bars(["005930"], "1d", start="2024-01-03 15:00", end="2024-01-04 15:00", engine=store)
    assert len(exclusive) == 1  # start included, end excluded
    assert set(read_bars(interval="1m", engine=store)["symbol"]) == {"005930"}
    assert read_bars(["nope"], engine=store).empty


def test_quarantine_keeps_the_raw_row_and_reason(store: Engine) -> None:
    rejected = pd.DataFrame({"symbol": ["005930"], "ts": ["2024-01-02"], "close": ["abc"], "reason": ["bad"]})
    assert quarantine_bars(rejected, source="unit", engine=store) == 1
    with store.connect() as conn:
        row = conn.execute(sa.text("SELECT symbol, ts_raw, raw, reason, source FROM bars_quarantine")).one()
    raw = row.raw if isinstance(row.raw, dict) else __import__("json").loads(row.raw)
    assert (row.symbol, row.ts_raw, row.reason, row.source) == ("005930", "2024-01-02", "bad", "unit")
    assert raw["close"] == "abc"


def test_moving_stored_bars_to_quarantine_removes_them_atomically(store: Engine) -> None:
    from pipeline.store import move_to_quarantine

    upsert_bars(bars_frame(symbols=("005930",), n=10), store)
    stored = read_bars("005930", engine=store)
    picked = stored.iloc[[2, 5]].assign(reason="return outside the daily price limit")
    assert move_to_quarantine(picked, source="validation", engine=store) == 2
    left = read_bars("005930", engine=store)
    assert len(left) == 8 and not set(picked["ts"]) & set(left["ts"])
    with store.connect() as conn:
        rows = conn.execute(sa.text("SELECT symbol, reason, source FROM bars_quarantine")).all()
    assert rows == [("005930", "return outside the daily price limit", "validation")] * 2


def _stored_row(engine: Engine, symbol: str, ts: pd.Timestamp) -> tuple[object, ...]:
    from pipeline.store.schema import bars as table

    query = sa.select(table.c.source, table.c.ingested_at).where(
        table.c.symbol == symbol, table.c.ts == ts.to_pydatetime()
    )
    with engine.connect() as conn:
        return tuple(conn.execute(query).one())


def test_an_identical_bar_upserted_again_is_not_rewritten_even_from_another_source(store: Engine) -> None:
    bars = bars_frame(symbols=("005930",), n=3)
    upsert_bars(bars, store, source="kis")
    before = _stored_row(store, "005930", bars["ts"].iloc[1])
    again = upsert_bars(bars, store, source="csv")
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 3)
    after = _stored_row(store, "005930", bars["ts"].iloc[1])
    assert after == before  # neither source nor ingested_at was rewritten
    assert set(read_bars("005930", engine=store)["source"]) == {"kis"}


def test_a_fractional_volume_is_rejected_not_rounded(store: Engine) -> None:
    bars = bars_frame(symbols=("005930",), n=3)
    bars["volume"] = bars["volume"].astype("float64")
    bars.loc[1, "volume"] = 1.5
    with pytest.raises(BarValidationError, match="volume is not a whole number"):
        upsert_bars(bars, store)
    assert count_bars(store) == 0


def test_naive_timestamp_strings_are_refused_not_guessed(store: Engine) -> None:
    bars = bars_frame(symbols=("005930",), n=3).astype({"ts": object})
    bars.loc[0, "ts"] = "2024-01-02 00:00:00"  # no zone: could be UTC or KST
    bars.loc[1, "ts"] = "2024-01-03T00:00:00+09:00"
    bars.loc[2, "ts"] = "2024-01-04 00:00"
    with pytest.raises(BarValidationError) as caught:
        upsert_bars(bars, store)
    assert sorted(caught.value.rejected.index) == [0, 2]
    assert (caught.value.rejected["reason"] == "ts has no time zone").all()


@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [
        ("symbol", "S" * 40, "invalid symbol"),
        ("symbol", "삼성전자", "invalid symbol"),
        ("interval", "1minute", "unknown interval '1minute'"),
        ("interval", "2d", "unknown interval '2d'"),
    ],
)
def test_symbols_and_intervals_outside_the_rules_are_rejected_alike_on_both_backends(
    store: Engine, column: str, value: str, reason: str
) -> None:
    bars = bars_frame(symbols=("005930",), n=3)
    bars.loc[1, column] = value
    with pytest.raises(BarValidationError) as caught:
        upsert_bars(bars, store)
    assert list(caught.value.rejected.index) == [1]
    assert reason in caught.value.rejected.loc[1, "reason"]
    assert count_bars(store) == 0


def test_a_source_label_longer_than_the_column_is_a_clear_error_on_both_backends(store: Engine) -> None:
    with pytest.raises(ValueError, match=r"source label .* is 40 characters; at most 32"):
        upsert_bars(bars_frame(n=2), store, source="x" * 40)
    assert count_bars(store) == 0


def test_a_batch_with_a_missing_symbol_names_that_row_and_judges_the_others(store: Engine) -> None:
    bars = bars_frame(symbols=("005930",), n=3).astype({"symbol": object})
    bars.loc[0, "symbol"] = None
    bars.loc[2, "symbol"] = "S" * 40
    with pytest.raises(BarValidationError) as caught:
        upsert_bars(bars, store)
    reasons = caught.value.rejected["reason"]
    assert reasons[0] == "symbol is empty" and "invalid symbol" in reasons[2]
    assert list(reasons.index) == [0, 2]
