"""Gaps found by mutation testing of the store's row checks and bar merges (``tools/mutation.py``).

Each test pins something a user of the store would notice: which rows are refused and the exact reason
naming the field, what a good row becomes, the error text an operator reads, and the counts of an upsert.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pipeline.store import BarValidationError, read_bars, summarize_bars, upsert_bars
from pipeline.store.schema import bars as bars_table
from pipeline.store.validation import (
    COLUMNS,
    INTERVALS,
    check_bars,
    validate_interval,
    validate_label,
)
from tests.factories import bars_frame, count_bars

KNOWN = "1m, 3m, 5m, 10m, 15m, 30m, 60m, 1d, 1w"


def _one_bar(**changes: object) -> pd.DataFrame:
    """Three valid daily bars of 005930 with ``changes`` applied to the middle one (index 1)."""
    frame = bars_frame(symbols=("005930",), n=3).astype(object)
    for column, value in changes.items():
        frame.loc[1, column] = value
    return frame


def _reason(frame: pd.DataFrame) -> str:
    """The reason the middle bar of ``_one_bar`` was refused; the other two must pass."""
    checked = check_bars(frame)
    assert list(checked.rejected.index) == [1]
    assert list(checked.good.index) == [0, 2]
    return str(checked.rejected.loc[1, "reason"])


# --- intervals and labels ----------------------------------------------------------------------------
@pytest.mark.parametrize("interval", INTERVALS)
def test_every_known_interval_is_accepted_as_given(interval: str) -> None:
    assert validate_interval(interval) == interval


@pytest.mark.parametrize("interval", ["2d", "1D", "", None, 1])
def test_an_unknown_interval_is_refused_with_the_known_ones_listed(interval: object) -> None:
    with pytest.raises(ValueError) as caught:
        validate_interval(interval)
    assert str(caught.value) == f"unknown interval {interval!r}: use one of {KNOWN}"


def test_a_label_that_exactly_fills_the_column_is_accepted() -> None:
    assert validate_label("x" * 32) == "x" * 32
    assert validate_label("k") == "k"


def test_a_label_one_character_too_long_is_refused_with_its_length_and_the_column() -> None:
    with pytest.raises(ValueError) as caught:
        validate_label("x" * 33)
    assert str(caught.value) == f"source label {'x' * 33!r} is 33 characters; at most 32 fit bars.source"


def test_a_long_label_is_shown_whole_up_to_40_characters_and_cut_after() -> None:
    with pytest.raises(ValueError) as forty:
        validate_label("a" * 40)
    assert f"{'a' * 40!r} is 40 characters" in str(forty.value)
    long = "b" * 37 + "cdefgh"
    with pytest.raises(ValueError) as cut:
        validate_label(long)
    assert f"{'b' * 37 + '...'!r} is 43 characters" in str(cut.value)


def test_an_empty_label_is_refused_naming_the_column() -> None:
    with pytest.raises(ValueError) as caught:
        validate_label("")
    assert str(caught.value) == "source label must not be empty"


def test_a_label_is_checked_against_the_column_it_is_given() -> None:
    assert validate_label("x" * 8, bars_table.c.interval) == "x" * 8
    with pytest.raises(ValueError) as caught:
        validate_label("x" * 9, bars_table.c.interval)
    assert str(caught.value) == f"interval label {'x' * 9!r} is 9 characters; at most 8 fit bars.interval"
    with pytest.raises(ValueError, match=r"^interval label must not be empty$"):
        validate_label("", bars_table.c.interval)


def test_a_column_without_a_width_takes_a_label_of_any_length() -> None:
    note = sa.Table("notes", sa.MetaData(), sa.Column("note", sa.Text)).c.note
    assert validate_label("n" * 500, note) == "n" * 500


# --- the refusal an operator reads --------------------------------------------------------------------
def test_the_error_lists_each_refused_row_with_its_symbol_time_and_reason() -> None:
    frame = _one_bar(volume=-3)
    with pytest.raises(BarValidationError) as caught:
        upsert_bars(frame, sa.create_engine("sqlite://"))
    err = caught.value
    ts = frame.loc[1, "ts"]
    assert str(err) == f"1 of 3 bars rejected, nothing was written:\n  row 1: 005930 {ts}: volume is negative"
    assert err.total == 3
    assert list(err.rejected.index) == [1]


def test_the_error_lists_the_first_20_refused_rows_and_counts_the_rest() -> None:
    frame = bars_frame(symbols=("005930",), n=30)
    frame.loc[:24, "volume"] = -1  # rows 0..24: 25 refused
    with pytest.raises(BarValidationError) as caught:
        upsert_bars(frame, sa.create_engine("sqlite://"))
    text = str(caught.value)
    assert text.startswith("25 of 30 bars rejected, nothing was written:\n")
    assert "  row 19: " in text and "  row 20: " not in text
    assert text.endswith("\n  ... and 5 more")
    assert text.count("volume is negative") == 20


def test_exactly_20_refused_rows_are_all_listed_with_no_more_line() -> None:
    frame = bars_frame(symbols=("005930",), n=25)
    frame.loc[:19, "volume"] = -1
    with pytest.raises(BarValidationError) as caught:
        upsert_bars(frame, sa.create_engine("sqlite://"))
    text = str(caught.value)
    assert "  row 19: " in text and "more" not in text
    assert text.count("volume is negative") == 20


def test_missing_required_columns_are_named_in_schema_order() -> None:
    frame = bars_frame(n=2).drop(columns=["volume", "open"])
    with pytest.raises(ValueError) as caught:
        check_bars(frame)
    assert str(caught.value) == "bars are missing required column(s): open, volume"


def test_a_naive_datetime_column_is_refused_with_the_zone_to_use() -> None:
    frame = bars_frame(n=2)
    frame["ts"] = frame["ts"].dt.tz_localize(None)
    with pytest.raises(ValueError) as caught:
        check_bars(frame)
    assert str(caught.value) == "column 'ts' is timezone-naive: localise it (e.g. Asia/Seoul) before storing"


# --- one reason per failed rule, joined --------------------------------------------------------------
def test_every_failed_rule_of_a_row_is_given_in_order() -> None:
    reason = _reason(_one_bar(open=np.nan, volume=-1, symbol="", interval=""))
    assert reason == "symbol is empty; interval is empty; open is not a finite number; volume is negative"


@pytest.mark.parametrize("column", ["open", "high", "low", "close"])
def test_a_zero_price_is_refused_naming_the_column(column: str) -> None:
    frame = _one_bar(**{column: 0.0})
    assert column + " is not positive" in _reason(frame)


@pytest.mark.parametrize("column", ["open", "high", "low", "close"])
def test_a_price_that_is_not_a_number_is_refused_naming_the_column(column: str) -> None:
    frame = _one_bar(**{column: "abc"})
    assert column + " is not a finite number" in _reason(frame)


def test_high_and_low_may_equal_the_body_of_the_bar() -> None:
    frame = bars_frame(symbols=("005930",), n=2)
    frame["high"] = frame[["open", "close"]].max(axis=1)
    frame["low"] = frame[["open", "close"]].min(axis=1)
    checked = check_bars(frame)
    assert checked.rejected.empty and len(checked.good) == 2


def test_a_high_just_under_the_close_or_a_low_just_over_the_open_is_refused() -> None:
    frame = bars_frame(symbols=("005930",), n=3)
    frame.loc[1, ["open", "close", "high", "low"]] = [100.0, 110.0, 109.5, 99.0]
    frame.loc[2, ["open", "close", "high", "low"]] = [100.0, 110.0, 111.0, 100.5]
    rejected = check_bars(frame).rejected
    assert rejected.loc[1, "reason"] == "high < max(open, close)"
    assert rejected.loc[2, "reason"] == "low > min(open, close)"
    assert list(rejected.index) == [1, 2]


def test_a_zero_volume_bar_is_stored_as_an_integer() -> None:
    frame = bars_frame(symbols=("005930",), n=3)
    frame["volume"] = [0.0, 5.0, 7.0]
    good = check_bars(frame).good
    assert good["volume"].dtype == "int64"
    assert list(good["volume"]) == [0, 5, 7]


@pytest.mark.parametrize("volume", [np.nan, np.inf, "lots"])
def test_a_volume_that_is_not_a_number_gets_that_one_reason(volume: object) -> None:
    assert _reason(_one_bar(volume=volume)) == "volume is not a finite number"


def test_a_negative_fractional_volume_is_both_negative_and_not_whole() -> None:
    assert _reason(_one_bar(volume=-1.5)) == "volume is negative; volume is not a whole number"


# --- keys --------------------------------------------------------------------------------------------
def test_symbol_and_interval_are_stored_without_surrounding_blanks() -> None:
    frame = _one_bar(symbol=" 005930 ", interval=" 1d\t")
    checked = check_bars(frame)
    assert checked.rejected.empty
    assert list(checked.good["symbol"]) == ["005930"] * 3
    assert list(checked.good["interval"]) == ["1d"] * 3


@pytest.mark.parametrize("value", ["", "   ", None])
def test_a_blank_symbol_is_only_empty_not_also_invalid(value: object) -> None:
    assert _reason(_one_bar(symbol=value)) == "symbol is empty"


@pytest.mark.parametrize("value", ["", "  ", None])
def test_a_blank_interval_is_only_empty_not_also_unknown(value: object) -> None:
    assert _reason(_one_bar(interval=value)) == "interval is empty"


def test_an_unknown_interval_reason_lists_the_known_ones() -> None:
    assert _reason(_one_bar(interval="2d")) == f"unknown interval '2d' (known: {KNOWN})"


def test_each_distinct_bad_symbol_is_named_on_its_own_rows() -> None:
    frame = bars_frame(symbols=("005930",), n=4).astype({"symbol": object})
    frame.loc[[1, 3], "symbol"] = "bad symbol!"
    frame.loc[2, "symbol"] = "삼성"
    rejected = check_bars(frame).rejected
    assert list(rejected.index) == [1, 2, 3]
    assert rejected.loc[1, "reason"].startswith("invalid symbol 'bad symbol!'")
    assert rejected.loc[3, "reason"] == rejected.loc[1, "reason"]
    assert rejected.loc[2, "reason"].startswith("invalid symbol '삼성'")


def test_both_copies_of_a_key_repeated_in_a_batch_are_refused() -> None:
    frame = bars_frame(symbols=("005930",), n=3)
    frame = pd.concat([frame, frame.iloc[[1]]], ignore_index=True)
    rejected = check_bars(frame).rejected
    assert list(rejected.index) == [1, 3]
    assert (rejected["reason"] == "duplicate (symbol, interval, ts) in batch").all()


def test_rows_without_a_time_are_not_also_called_duplicates() -> None:
    frame = bars_frame(symbols=("005930",), n=3).astype({"ts": object})
    frame.loc[[0, 1], "ts"] = None
    rejected = check_bars(frame).rejected
    assert list(rejected.index) == [0, 1]
    assert (rejected["reason"] == "ts is missing or unparsable").all()


# --- timestamps --------------------------------------------------------------------------------------
def test_zoned_times_of_any_form_are_stored_as_utc() -> None:
    frame = bars_frame(symbols=("005930",), n=4).astype({"ts": object})
    frame.loc[0, "ts"] = "2024-01-02T09:00:00+09:00"
    frame.loc[1, "ts"] = pd.Timestamp("2024-01-03 09:00", tz="Asia/Seoul")
    frame.loc[2, "ts"] = dt.datetime(2024, 1, 4, 0, 0, tzinfo=dt.UTC)
    frame.loc[3, "ts"] = " 2024-01-05 00:00:00Z "
    checked = check_bars(frame)
    assert checked.rejected.empty
    assert list(checked.good["ts"]) == [pd.Timestamp(f"2024-01-0{d} 00:00", tz="UTC") for d in (2, 3, 4, 5)]


def test_a_kst_column_is_converted_to_utc() -> None:
    frame = bars_frame(symbols=("005930",), n=1)
    good = check_bars(frame).good
    assert str(good["ts"].dt.tz) == "UTC"
    assert good["ts"].iloc[0] == pd.Timestamp("2024-01-01 15:00", tz="UTC")


@pytest.mark.parametrize(
    "value",
    [dt.datetime(2024, 1, 3, 9, 0), pd.Timestamp("2024-01-03 09:00"), " 2024-01-03 09:00 ", "2024-01-03"],
)
def test_a_time_without_a_zone_is_refused_not_guessed(value: object) -> None:
    assert _reason(_one_bar(ts=value)) == "ts has no time zone"


@pytest.mark.parametrize("value", ["", "   ", "soon", None])
def test_a_missing_or_unreadable_time_is_refused_as_such(value: object) -> None:
    assert _reason(_one_bar(ts=value)) == "ts is missing or unparsable"


@pytest.mark.parametrize("value", [1704153600, 1704153600.0, np.int64(1704153600), 1.7e18])
def test_a_bare_number_is_refused_not_read_as_nanoseconds_since_1970(value: object) -> None:
    # 1704153600 is 2024-01-02 00:00 UTC in epoch seconds; read as nanoseconds it would be 1970-01-01.
    assert _reason(_one_bar(ts=value)) == "ts is a bare number, not a time with a zone"


def test_a_whole_column_of_epoch_numbers_is_refused_row_by_row() -> None:
    frame = bars_frame(symbols=("005930",), n=2)
    frame["ts"] = [1704153600, 1704240000]
    checked = check_bars(frame)
    assert checked.good.empty
    assert checked.rejected["reason"].tolist() == ["ts is a bare number, not a time with a zone"] * 2
    # the same number twice is not read as a time either, so the rows are not also called duplicates
    frame["ts"] = [1704153600, 1704153600]
    twice = check_bars(frame).rejected["reason"].tolist()
    assert twice == ["ts is a bare number, not a time with a zone"] * 2


# --- the good frame ----------------------------------------------------------------------------------
def test_a_good_batch_keeps_its_rows_in_the_store_layout() -> None:
    frame = bars_frame(symbols=("005930",), n=3).drop(columns=["turnover"])
    checked = check_bars(frame, source="kis")
    good = checked.good
    assert list(good.columns) == COLUMNS
    assert list(good.index) == [0, 1, 2]
    assert good["turnover"].isna().all() and good["turnover"].dtype == "float64"
    assert list(good["source"]) == ["kis"] * 3
    assert checked.rejected.empty and "reason" in checked.rejected.columns


def test_a_source_column_wins_over_the_default_and_blanks_take_the_default() -> None:
    frame = bars_frame(symbols=("005930",), n=3)
    frame["source"] = ["csv", None, "kis"]
    frame["turnover"] = ["12.5", "n/a", 3]
    good = check_bars(frame, source="fallback").good
    assert list(good["source"]) == ["csv", "fallback", "kis"]
    assert good["turnover"].iloc[0] == 12.5 and np.isnan(good["turnover"].iloc[1])


def test_a_row_whose_source_is_too_long_is_refused_naming_the_width() -> None:
    frame = bars_frame(symbols=("005930",), n=3)
    frame["source"] = ["x" * 32, "y" * 33, None]
    assert _reason(frame) == "source is longer than 32 characters"


def test_refused_rows_keep_their_raw_values_for_the_quarantine() -> None:
    frame = _one_bar(close="abc", symbol=" 005930")
    rejected = check_bars(frame).rejected
    assert rejected.loc[1, "close"] == "abc"
    assert rejected.loc[1, "symbol"] == " 005930"
    assert list(rejected.columns) == [*frame.columns, "reason"]


def test_refused_bars_reach_neither_backend(store: Engine) -> None:
    frame = bars_frame(symbols=("005930",), n=3).astype({"volume": "float64"})
    frame.loc[1, "volume"] = 0.5
    with pytest.raises(BarValidationError, match=r"row 1: 005930 .*: volume is not a whole number"):
        upsert_bars(frame, store)
    assert count_bars(store) == 0
    assert read_bars("005930", engine=store).empty


# --- the bar store: merges and counts on both backends -------------------------------------------------
def _stored(engine: Engine) -> pd.DataFrame:
    frames = [read_bars(interval=iv, engine=engine) for iv in ("1d", "1m")]
    return pd.concat(frames, ignore_index=True).sort_values(["symbol", "interval", "ts"], ignore_index=True)


@pytest.mark.parametrize("chunk_rows", [1, 2, 3, 100])
def test_counts_add_up_over_every_chunk(store: Engine, chunk_rows: int) -> None:
    first = bars_frame(symbols=("005930", "000660"), n=4)
    upsert_bars(first.iloc[[0, 1, 2, 4, 5, 6]], store)  # row 3 and 7 are new below
    batch = first.copy()
    batch.loc[[1, 5], "close"] = batch.loc[[1, 5], "high"]  # 2 changed
    batch.loc[[1, 5], "close"] -= 1
    batch = pd.concat([batch, bars_frame(symbols=("035420",), n=1)], ignore_index=True)  # 1 more new
    result = upsert_bars(batch, store, chunk_rows=chunk_rows)
    assert (result.inserted, result.updated, result.unchanged) == (3, 2, 4)
    assert result.total == 9
    stored = _stored(store)
    assert len(stored) == 9
    assert set(stored["close"]) == set(batch["close"])


@pytest.mark.parametrize("column", ["open", "high", "low", "close", "volume", "turnover"])
def test_a_change_in_any_one_value_column_is_an_update_that_is_written(store: Engine, column: str) -> None:
    bars = bars_frame(symbols=("005930",), n=3)
    upsert_bars(bars, store, source="kis")
    changed = bars.copy()
    row = changed.loc[1]
    new_value = {"open": row["low"], "high": row["high"] + 1, "low": row["low"] - 1, "close": row["low"]}
    changed.loc[1, column] = new_value.get(column, row[column] - 1)  # volume, turnover: one less
    result = upsert_bars(changed, store, source="fix")
    assert (result.inserted, result.updated, result.unchanged) == (0, 1, 2)
    stored = read_bars("005930", engine=store)
    assert stored.loc[1, column] == changed.loc[1, column]
    assert list(stored["source"]) == ["kis", "fix", "kis"]


def test_a_missing_turnover_is_stored_as_null_and_does_not_count_as_a_change(store: Engine) -> None:
    bars = bars_frame(symbols=("005930",), n=3).drop(columns=["turnover"])
    assert upsert_bars(bars, store).inserted == 3
    again = upsert_bars(bars, store)
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 3)
    assert read_bars("005930", engine=store)["turnover"].isna().all()
    with store.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM bars WHERE turnover IS NULL").scalar_one() == 3


def test_a_turnover_that_appears_or_disappears_is_an_update(store: Engine) -> None:
    bars = bars_frame(symbols=("005930",), n=2)
    without = bars.drop(columns=["turnover"])
    upsert_bars(without, store)
    gained = upsert_bars(bars.iloc[[0]], store)
    assert (gained.updated, gained.unchanged) == (1, 0)
    lost = upsert_bars(without.iloc[[0]], store)
    assert (lost.updated, lost.unchanged) == (1, 0)
    assert read_bars("005930", engine=store)["turnover"].isna().all()


def test_mixed_symbols_intervals_and_sources_each_land_on_their_own_row(store: Engine) -> None:
    daily = bars_frame(symbols=("035420", "000660", "005930"), n=3)
    minute = bars_frame(symbols=("005930", "000660"), n=2, interval="1m", freq="min", seed=1)
    batch = pd.concat([daily, minute], ignore_index=True).sample(frac=1.0, random_state=3)
    batch["source"] = np.where(np.arange(len(batch)) % 2 == 0, "kis", "csv")
    assert upsert_bars(batch, store, chunk_rows=4).inserted == len(batch)
    stored = _stored(store)
    expected = batch.assign(ts=batch["ts"].dt.tz_convert("UTC"))
    expected = expected.sort_values(["symbol", "interval", "ts"], ignore_index=True)
    for column in ["symbol", "interval", "ts", "source", "volume"]:
        assert list(stored[column]) == list(expected[column]), column
    for column in ["open", "high", "low", "close", "turnover"]:
        assert np.allclose(stored[column], expected[column]), column


def _assert_a_new_bar_is_stamped_now(store: Engine) -> None:
    """A bar written now carries ingested_at within a few seconds of the UTC wall clock."""
    before = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
    upsert_bars(bars_frame(symbols=("005930",), n=1), store)
    after = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=5)
    with store.connect() as conn:
        stamp = conn.execute(sa.select(bars_table.c.ingested_at)).scalar_one()
    stamp = stamp if stamp.tzinfo else stamp.replace(tzinfo=dt.UTC)
    assert before <= stamp <= after


def test_a_bar_is_stamped_with_the_time_it_was_written(store: Engine) -> None:
    _assert_a_new_bar_is_stamped_now(store)


def test_an_empty_batch_writes_nothing_and_counts_nothing(store: Engine) -> None:
    result = upsert_bars(bars_frame(n=2).iloc[:0], store)
    assert (result.inserted, result.updated, result.unchanged, result.total) == (0, 0, 0, 0)
    assert count_bars(store) == 0


def test_the_upsert_logs_what_it_did(store: Engine, caplog: pytest.LogCaptureFixture) -> None:
    bars = bars_frame(symbols=("005930",), n=3)
    upsert_bars(bars.iloc[:2], store)
    bars.loc[0, "volume"] += 1
    with caplog.at_level("INFO", logger="pipeline.store.bars"):
        upsert_bars(bars, store)
    assert "upserted 3 bars: 1 inserted, 1 updated, 1 unchanged (" in caplog.text


def test_rows_per_second_is_the_total_over_the_time_taken() -> None:
    from pipeline.store import UpsertResult

    assert UpsertResult(6, 3, 1, 2.0).rows_per_s == 5.0
    assert UpsertResult(6, 3, 1, 0.0).rows_per_s == float("inf")
    assert UpsertResult(0, 0, 0, 0.0).rows_per_s == float("inf")


def test_the_summary_gives_each_symbol_its_count_range_and_last_close(store: Engine) -> None:
    daily = bars_frame(symbols=("005930", "000660"), n=4)
    daily = daily[~((daily["symbol"] == "000660") & (daily.index % 4 == 3))]  # 000660 has 3 bars
    upsert_bars(daily, store)
    upsert_bars(bars_frame(symbols=("035420",), n=2, interval="1m", freq="min"), store)
    summary = summarize_bars("1d", engine=store)
    assert list(summary["symbol"]) == ["000660", "005930"]
    assert list(summary["bars"]) == [3, 4]
    for symbol, row in summary.set_index("symbol").iterrows():
        mine = daily[daily["symbol"] == symbol]
        assert row["first"] == mine["ts"].min().tz_convert("UTC")
        assert row["last"] == mine["ts"].max().tz_convert("UTC")
        assert row["last_close"] == mine.loc[mine["ts"].idxmax(), "close"]
    assert list(summarize_bars("1m", engine=store)["symbol"]) == ["035420"]


def test_reads_take_one_symbol_or_many_and_naive_bounds_as_utc(store: Engine) -> None:
    upsert_bars(bars_frame(symbols=("005930", "000660", "035420"), n=3), store)
    assert set(read_bars("005930", engine=store)["symbol"]) == {"005930"}
    assert set(read_bars(("035420", "000660"), engine=store)["symbol"]) == {"000660", "035420"}
    got = read_bars("005930", start="2024-01-02 15:00", end=dt.datetime(2024, 1, 3, 15, 0), engine=store)
    assert list(got["ts"]) == [pd.Timestamp("2024-01-02 15:00", tz="UTC")]
    assert got["volume"].dtype == "int64" and got["turnover"].dtype == "float64"
    assert read_bars("005930", "1m", engine=store).empty


class _Clock:
    """A stand-in for ``time`` in the bars module: each reading is 2.5 s after the one before."""

    def __init__(self) -> None:
        self.now = 100.0

    def perf_counter(self) -> float:
        self.now += 2.5
        return self.now


def test_an_upsert_reports_the_time_it_took(store: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    import pipeline.store.bars as bars_module

    monkeypatch.setattr(bars_module, "time", _Clock())
    result = upsert_bars(bars_frame(symbols=("005930",), n=5), store)
    assert result.seconds == 2.5
    assert result.rows_per_s == 2.0
    empty = upsert_bars(bars_frame(n=1).iloc[:0], store)
    assert empty.seconds == 2.5


def test_a_write_of_checked_rows_counts_from_the_given_start(store: Engine) -> None:
    from pipeline.store import write_checked

    good = check_bars(bars_frame(symbols=("005930",), n=2)).good
    hour_ago = time.perf_counter() - 3600
    assert 3600 <= write_checked(good, store, started=hour_ago).seconds < 3660
    assert 3600 <= write_checked(good.iloc[:0], store, started=hour_ago).seconds < 3660
    assert write_checked(good, store).seconds < 60


@pytest.fixture
def seoul_clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The process's local time zone set to Asia/Seoul (a host at KRX), restored afterwards."""
    monkeypatch.setenv("TZ", "Asia/Seoul")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_the_write_stamp_is_utc_on_a_host_in_seoul(store: Engine, seoul_clock: None) -> None:
    _assert_a_new_bar_is_stamped_now(store)


def test_the_summary_defaults_to_daily_bars(store: Engine) -> None:
    upsert_bars(bars_frame(symbols=("005930",), n=2), store)
    upsert_bars(bars_frame(symbols=("000660",), n=2, interval="1m", freq="min"), store)
    assert list(summarize_bars(engine=store)["symbol"]) == ["005930"]


# --- more gaps: boundaries the first round left open ---------------------------------------------------
def test_a_41_character_label_is_shown_cut() -> None:
    with pytest.raises(ValueError) as caught:
        validate_label("c" * 41)
    assert f"{'c' * 37 + '...'!r} is 41 characters" in str(caught.value)


def test_21_refused_rows_list_20_and_count_one_more() -> None:
    frame = bars_frame(symbols=("005930",), n=22)
    frame.loc[:20, "volume"] = -1
    with pytest.raises(BarValidationError) as caught:
        upsert_bars(frame, sa.create_engine("sqlite://"))
    lines = str(caught.value).splitlines()
    assert lines[0] == "21 of 22 bars rejected, nothing was written:"
    assert lines[1:21] == [f"  row {i}: 005930 {frame.loc[i, 'ts']}: volume is negative" for i in range(20)]
    assert lines[21:] == ["  ... and 1 more"]


def test_an_empty_batch_of_text_columns_passes_with_nothing_to_store() -> None:
    frame = bars_frame(symbols=("005930",), n=2).iloc[:0].astype(object)  # e.g. a header-only file
    checked = check_bars(frame)
    assert checked.good.empty and checked.rejected.empty


def test_bars_checked_without_a_source_are_labelled_unknown() -> None:
    good = check_bars(bars_frame(symbols=("005930",), n=2)).good
    assert list(good["source"]) == ["unknown", "unknown"]


def test_a_price_below_one_is_positive_and_accepted() -> None:
    frame = bars_frame(symbols=("005930",), n=2)
    frame.loc[1, ["open", "high", "low", "close"]] = [0.5, 1.0, 0.25, 0.75]
    checked = check_bars(frame)
    assert checked.rejected.empty
    assert list(checked.good.loc[1, ["open", "high", "low", "close"]]) == [0.5, 1.0, 0.25, 0.75]


def test_two_rows_of_one_key_are_refused_even_when_their_prices_differ() -> None:
    frame = bars_frame(symbols=("005930",), n=3)
    other = frame.iloc[[1]].assign(close=frame.loc[1, "low"], volume=1)
    rejected = check_bars(pd.concat([frame, other], ignore_index=True)).rejected
    assert list(rejected.index) == [1, 3]
    assert (rejected["reason"] == "duplicate (symbol, interval, ts) in batch").all()


def test_bars_upserted_without_a_source_are_labelled_unknown(store: Engine) -> None:
    upsert_bars(bars_frame(symbols=("005930",), n=2), store)
    assert list(read_bars("005930", engine=store)["source"]) == ["unknown", "unknown"]


def test_the_reported_time_covers_the_checks_as_well_as_the_write(
    store: Engine, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import pipeline.store.bars as bars_module

    clock = _Clock()
    real_check = bars_module.check_bars

    def slow_check(df: pd.DataFrame, *, source: str) -> object:
        clock.now += 10.0  # the checks of a large batch take a while
        return real_check(df, source=source)

    monkeypatch.setattr(bars_module, "time", clock)
    monkeypatch.setattr(bars_module, "check_bars", slow_check)
    bars = bars_frame(symbols=("005930",), n=25)
    upsert_bars(bars.iloc[:10], store)
    bars.loc[0, "volume"] += 1
    with caplog.at_level("INFO", logger="pipeline.store.bars"):
        result = upsert_bars(bars, store)
    assert result.seconds == 12.5
    messages = [r.getMessage() for r in caplog.records if r.name == "pipeline.store.bars"]
    assert messages == ["upserted 25 bars: 15 inserted, 1 updated, 9 unchanged (2 rows/s)"]


def test_a_batch_is_written_in_chunks_of_the_size_asked_for(
    store: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pipeline.store.bars as bars_module
    from pipeline.store import pgcopy

    sizes: list[int] = []
    real_rows, real_encode = bars_module._sqlite_rows, pgcopy.encode_rows

    def sqlite_rows(df: pd.DataFrame, now: str) -> object:
        sizes.append(len(df))
        return real_rows(df, now)

    def encode_rows(layout: object, columns: dict[str, np.ndarray]) -> object:
        sizes.append(len(columns["sym"]))
        return real_encode(layout, columns)  # type: ignore[arg-type]

    monkeypatch.setattr(bars_module, "_sqlite_rows", sqlite_rows)
    monkeypatch.setattr(pgcopy, "encode_rows", encode_rows)
    result = upsert_bars(bars_frame(symbols=("005930",), n=5), store, chunk_rows=2)
    assert sizes == [2, 2, 1]
    assert result.inserted == 5 and count_bars(store) == 5


def test_reads_are_ordered_by_symbol_then_time_whatever_the_write_order(store: Engine) -> None:
    bars = bars_frame(symbols=("035420", "000660", "005930"), n=4)
    for part in (bars.iloc[[11, 3, 7]], bars.iloc[[10, 2, 6, 9]], bars.iloc[[8, 4, 0, 5, 1]]):
        upsert_bars(part, store)
    got = read_bars(engine=store)
    assert list(got.columns) == COLUMNS
    keys = list(zip(got["symbol"], got["ts"], strict=True))
    assert keys == sorted(keys) and len(keys) == 12
    summary = summarize_bars(engine=store)
    assert list(summary["symbol"]) == ["000660", "005930", "035420"]


def test_an_empty_read_and_summary_keep_their_columns_and_utc_times(store: Engine) -> None:
    got = read_bars("005930", engine=store)
    assert got.empty and list(got.columns) == COLUMNS
    assert str(got["ts"].dt.tz) == "UTC"
    summary = summarize_bars(engine=store)
    assert summary.empty
    assert list(summary.columns) == ["symbol", "bars", "first", "last", "last_close"]
    assert str(summary["first"].dt.tz) == str(summary["last"].dt.tz) == "UTC"
