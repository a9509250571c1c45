"""Quarantine is idempotent (a natural key, insert-or-ignore) and shares one transaction with the upsert."""

from __future__ import annotations

import multiprocessing as mp

import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pipeline.store import load_bars, move_to_quarantine, quarantine_bars, read_bars, upsert_bars
from tests.factories import bars_frame, count_bars
from tests.store.faults import BOOM, install_failing_trigger


def _quarantined(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.exec_driver_sql("SELECT count(*) FROM bars_quarantine").scalar_one())


def _batch_with_one_bad_row() -> pd.DataFrame:
    bars = bars_frame(symbols=("005930",), n=10)
    bars.loc[4, "close"] = -1.0
    return bars


def test_loading_the_same_bad_row_three_times_quarantines_it_once(store: Engine) -> None:
    bars = _batch_with_one_bad_row()
    results = [load_bars(bars, source="kis", engine=store) for _ in range(3)]
    assert [r.quarantined for r in results] == [1, 1, 1]  # each run accounts for its rows ...
    assert _quarantined(store) == 1  # ... but the store keeps one copy
    assert count_bars(store) == 9


def test_quarantining_the_same_rows_again_adds_nothing(store: Engine) -> None:
    rejected = pd.DataFrame({"symbol": ["005930"], "ts": ["2024-01-02"], "close": ["abc"], "reason": ["bad"]})
    quarantine_bars(rejected, source="unit", engine=store)
    quarantine_bars(rejected, source="unit", engine=store)
    assert _quarantined(store) == 1
    quarantine_bars(rejected, source="another", engine=store)  # another source is another record
    assert _quarantined(store) == 2


def test_moving_the_same_bars_to_quarantine_twice_keeps_one_copy(store: Engine) -> None:
    upsert_bars(bars_frame(symbols=("005930",), n=5), store)
    picked = read_bars("005930", engine=store).iloc[[1]].assign(reason="outside the price limit")
    move_to_quarantine(picked, source="validation", engine=store)
    upsert_bars(picked.drop(columns="reason"), store, source="kis")  # re-ingested, fails again
    move_to_quarantine(picked, source="validation", engine=store)
    assert _quarantined(store) == 1
    assert count_bars(store) == 4


def test_a_failing_upsert_rolls_back_the_quarantine_of_the_same_batch(store: Engine) -> None:
    install_failing_trigger(store)
    bars = pd.concat([_batch_with_one_bad_row(), bars_frame(symbols=(BOOM,), n=2)], ignore_index=True)
    with pytest.raises(sa.exc.DBAPIError, match="simulated crash"):
        load_bars(bars, source="kis", engine=store)
    assert (count_bars(store), _quarantined(store)) == (0, 0)  # rows in = stored + quarantined: 0 = 0 + 0
    with store.begin() as conn:
        conn.exec_driver_sql("DROP TRIGGER boom" + (" ON bars" if store.dialect.name != "sqlite" else ""))
    result = load_bars(bars, source="kis", engine=store)  # the retry lands everything exactly once
    assert (result.rows, result.inserted, result.quarantined) == (12, 11, 1)
    assert (count_bars(store), _quarantined(store)) == (11, 1)


def _loader(url: str, bars: pd.DataFrame, barrier: object) -> None:
    from pipeline.store.db import create_store_engine

    engine = create_store_engine(url)
    barrier.wait()  # type: ignore[attr-defined]
    load_bars(bars, source="kis", engine=engine)
    engine.dispose()


@pytest.mark.integration
def test_two_processes_loading_the_same_bad_batch_quarantine_it_once(store_url: str) -> None:
    bars = _batch_with_one_bad_row()
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_loader, args=(store_url, bars, barrier)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    from pipeline.store.db import create_store_engine

    engine = create_store_engine(store_url)
    assert (count_bars(engine), _quarantined(engine)) == (9, 1)
    engine.dispose()
