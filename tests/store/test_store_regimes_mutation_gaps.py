"""Regime labels: what a write stores and reports, and what each read filter keeps (mutation gaps)."""

from __future__ import annotations

import datetime as dt
import logging

import numpy as np
import pandas as pd
import pytest
from sqlalchemy.engine import Engine

import pipeline.store.regimes as regimes_module
from pipeline.store import read_regimes, write_regimes
from pipeline.store.regimes import LABEL_COLUMNS

TS = pd.date_range("2024-01-02", periods=4, freq="D", tz="Asia/Seoul")


def _labels(symbols: tuple[str, ...] = ("AA", "BB"), regimes: tuple[int, ...] = (0, 1, 2, 1)) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"symbol": s, "interval": "1d", "ts": t, "regime": np.int64(r)}
            for s in symbols
            for t, r in zip(TS, regimes, strict=True)
        ]
    )


def _computed_at(engine: Engine) -> list[dt.datetime]:
    with engine.connect() as conn:
        values = conn.exec_driver_sql("SELECT computed_at FROM regimes").scalars().all()
    return [
        pd.Timestamp(v).tz_localize("UTC") if pd.Timestamp(v).tzinfo is None else pd.Timestamp(v)
        for v in values
    ]


def test_a_write_stores_every_label_with_its_model_run_and_utc_time(store: Engine) -> None:
    before = pd.Timestamp.now(tz="UTC")
    labels = _labels()
    labels["regime"] = labels["regime"].astype(float)  # a float label is stored as the int it is
    written = write_regimes(labels, "spec", "m1", "run1", store)
    after = pd.Timestamp.now(tz="UTC")
    assert (written.written, written.removed) == (8, 0)
    got = read_regimes("spec", engine=store)
    assert list(got.columns) == LABEL_COLUMNS
    assert list(got["symbol"]) == ["AA"] * 4 + ["BB"] * 4
    assert list(got["ts"]) == list(TS.tz_convert("UTC")) * 2
    assert str(got["ts"].dt.tz) == "UTC"
    assert got["regime"].dtype == np.int64 and list(got["regime"]) == [0, 1, 2, 1] * 2
    assert set(got["spec"]) == {"spec"} and set(got["model_id"]) == {"m1"} and set(got["run_id"]) == {"run1"}
    stamps = _computed_at(store)
    assert len(stamps) == 8 and all(before - pd.Timedelta(seconds=1) <= s <= after for s in stamps)


def test_a_run_id_is_optional(store: Engine) -> None:
    write_regimes(_labels(("AA",)), "spec", "m1", engine=store)
    assert read_regimes("spec", engine=store)["run_id"].isna().all()


def test_a_refit_of_the_same_model_overwrites_regime_and_run(store: Engine) -> None:
    write_regimes(_labels(("AA",)), "spec", "m1", "run1", store)
    first = max(_computed_at(store))
    written = write_regimes(_labels(("AA",), (3, 3, 3, 3)), "spec", "m1", "run2", store)
    assert (written.written, written.removed) == (4, 0)
    got = read_regimes("spec", engine=store)
    assert list(got["regime"]) == [3, 3, 3, 3] and set(got["run_id"]) == {"run2"}
    assert min(_computed_at(store)) >= first


def test_a_new_model_removes_only_the_labels_it_does_not_cover_of_its_own_spec(store: Engine) -> None:
    write_regimes(_labels(("AA", "BB")), "spec", "m1", "run1", store)
    write_regimes(_labels(("AA", "BB")), "other", "m1", "run1", store)
    written = write_regimes(_labels(("AA",)), "spec", "m2", "run2", store)
    assert (written.written, written.removed) == (4, 4)
    got = read_regimes("spec", engine=store)
    assert list(got["symbol"]) == ["AA"] * 4 and set(got["model_id"]) == {"m2"}
    assert len(read_regimes("other", engine=store)) == 8


def test_the_write_is_logged_with_its_counts(store: Engine, caplog: pytest.LogCaptureFixture) -> None:
    write_regimes(_labels(("AA",)), "spec", "m1", "run1", store)
    with caplog.at_level(logging.INFO, logger="pipeline.store.regimes"):
        write_regimes(_labels(("BB",)), "spec", "m2", "run2", store)
    assert "regimes of spec: 4 labels written (model m2), 4 stale removed" in caplog.messages


def test_labels_without_the_key_columns_or_with_a_repeated_key_are_refused(store: Engine) -> None:
    with pytest.raises(ValueError, match=r"labels lack columns \['interval', 'regime'\]"):
        write_regimes(_labels().drop(columns=["regime", "interval"]), "spec", "m1", engine=store)
    labels = _labels(("AA",))
    relabelled = labels.iloc[[0]].assign(regime=5)  # the same bar with another label is still a repeat
    with pytest.raises(ValueError, match=r"^labels repeat a \(symbol, interval, ts\)$"):
        write_regimes(pd.concat([labels, relabelled]), "spec", "m1", engine=store)
    assert read_regimes("spec", engine=store).empty


def test_the_same_time_on_another_symbol_or_interval_is_not_a_repeat(store: Engine) -> None:
    labels = pd.concat([_labels(("AA",)), _labels(("AA",)).assign(interval="1h")], ignore_index=True)
    assert write_regimes(labels, "spec", "m1", engine=store).written == 8


def test_each_read_filter_keeps_only_its_rows(store: Engine) -> None:
    hourly = _labels(("AA",)).assign(interval="1h")
    hourly["ts"] = hourly["ts"] + pd.Timedelta(hours=1)
    labels = pd.concat([_labels(("AA", "BB", "CC")), hourly], ignore_index=True)
    write_regimes(labels, "spec", "m1", engine=store)
    everything = read_regimes("spec", engine=store)
    assert len(everything) == 16
    assert list(everything["interval"].iloc[:8]) == ["1d", "1h"] * 4  # by symbol, then time
    assert set(read_regimes("spec", symbols="BB", engine=store)["symbol"]) == {"BB"}
    assert set(read_regimes("spec", symbols=["AA", "CC"], interval="1d", engine=store)["symbol"]) == {
        "AA",
        "CC",
    }
    assert len(read_regimes("spec", symbols=iter(["CC"]), engine=store)) == 4
    assert set(read_regimes("spec", interval="1h", engine=store)["interval"]) == {"1h"}
    window = read_regimes("spec", symbols="AA", interval="1d", start=TS[1], end=TS[3], engine=store)
    assert list(window["ts"]) == list(TS[1:3].tz_convert("UTC"))  # start included, end excluded
    naive = TS[1].tz_convert("UTC").tz_localize(None)  # a naive bound is UTC
    assert len(read_regimes("spec", symbols="AA", interval="1d", start=naive, engine=store)) == 3
    assert len(read_regimes("spec", symbols="AA", interval="1d", end=str(naive), engine=store)) == 1
    assert read_regimes("nothing", engine=store)["regime"].dtype == np.int64


def test_a_write_in_several_chunks_counts_and_stores_every_label(
    store: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(regimes_module, "_CHUNK_ROWS", 3)
    written = write_regimes(_labels(("AA", "BB")), "spec", "m1", engine=store)
    assert written.written == 8
    assert len(read_regimes("spec", engine=store)) == 8
