"""The pyfunc cuts its input into windows with one sort instead of a groupby and a sort per symbol: the same
windows, bars in the same order, the same positions, whatever the row order, ties and missing symbols."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from pipeline.registry.pyfunc import _bars, _last_values, _split_windows, to_model_input
from tests.registry.factories import market_bars

OHLCV = ["open", "high", "low", "close", "volume"]


def _reference(model_input: pd.DataFrame, column: str, default: float | None) -> list[tuple]:
    # What predict did before: groupby symbol (first appearance), sort each group by ts, the last row's value.
    groups = (
        [(None, model_input)]
        if "symbol" not in model_input.columns
        else [(str(s), f) for s, f in model_input.groupby("symbol", sort=False)]
    )
    out = []
    for symbol, frame in groups:
        window = frame.sort_values("ts").set_index("ts")
        value = window[column].iloc[-1] if column in window.columns else None
        given = value is not None and not (isinstance(value, float) and math.isnan(value))
        out.append((symbol, window[OHLCV], float(value) if given else default))
    return out


def _check(model_input: pd.DataFrame) -> None:
    ts = pd.DatetimeIndex(model_input["ts"])
    windows = _split_windows(model_input, ts)
    bars = _bars(model_input, ts, windows)
    positions = _last_values(model_input, "position", windows, 0.5)
    expected = _reference(model_input, "position", 0.5)
    assert len(windows) == len(expected)
    for (symbol, _), got, position, (want_symbol, want, want_position) in zip(
        windows, bars, positions, expected, strict=True
    ):
        assert symbol == want_symbol and position == want_position
        assert got.index.equals(want.index)
        for column in OHLCV:
            assert np.array_equal(getattr(got, column), want[column].to_numpy()), column


def test_windows_are_cut_and_ordered_as_groupby_and_sort_values_cut_them() -> None:
    bars = market_bars()
    frames = [to_model_input(bars.iloc[40 * k : 40 * k + 250], symbol=f"S{k}") for k in range(4)]
    frames[1]["position"] = np.where(np.arange(250) % 2, 1.0, np.nan)  # the last row's NaN: the default
    frames[2]["position"] = -1.0
    model_input = pd.concat(frames, ignore_index=True).sample(frac=1.0, random_state=3)
    _check(model_input)
    _check(model_input.drop(columns=["symbol"]).iloc[:250])  # no symbol column: one window


def test_ties_and_rows_without_a_symbol_keep_the_old_behaviour() -> None:
    bars = market_bars()
    frame = to_model_input(bars.iloc[:250], symbol="A")
    frame.loc[10, "ts"] = frame.loc[11, "ts"]  # a duplicated timestamp: pandas' own order of the tie
    other = to_model_input(bars.iloc[100:350], symbol="B").assign(position=0.25)
    other.loc[5, "symbol"] = None  # no symbol: dropped, as groupby drops it
    model_input = pd.concat([other, frame], ignore_index=True).sample(frac=1.0, random_state=1)
    _check(model_input)
