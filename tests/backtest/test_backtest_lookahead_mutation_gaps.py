"""The look-ahead check itself on hand-built bars: how the future is rewritten, which cut and bar a peeking
computation is caught at (series, frames, integers, NaN, a changed index), and the decisions a policy is
read for."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.backtest.lookahead import LookAhead, find_lookahead, perturb_after, policy_decisions
from pipeline.rl.env import EnvConfig
from pipeline.rl.instruments import stock_spec
from pipeline.rl.market import MarketArrays


def bars_of(n: int = 12) -> pd.DataFrame:
    close = 100.0 + np.arange(n, dtype=float)
    return pd.DataFrame(
        {"open": close - 0.5, "high": close + 1, "low": close - 1, "close": close, "volume": 1000.0},
        index=pd.bdate_range("2024-01-01", periods=n),
    )


def test_the_future_is_rescaled_bar_by_bar_and_the_past_kept() -> None:
    bars = bars_of()
    original = bars.copy()
    changed = perturb_after(bars, 4, seed=7)
    assert bars.equals(original)  # the input is left as it was
    assert changed.iloc[:5].equals(bars.iloc[:5])
    later = changed.iloc[5:]
    factor = later["close"] / bars["close"].iloc[5:]
    for column in ("open", "high", "low"):  # one factor per bar for all its prices
        assert (later[column] / bars[column].iloc[5:]).to_numpy() == pytest.approx(factor.to_numpy())
    assert ((factor >= 0.5) & (factor <= 2.0)).all() and factor.nunique() == len(factor)
    volume = later["volume"].to_numpy()
    assert (volume >= 0).all() and (volume < 10_000_000).all() and (volume == np.round(volume)).all()
    assert (volume != 1000.0).all() and volume.max() > 1000.0 and len(set(volume)) == len(volume)
    assert perturb_after(bars, 4).equals(perturb_after(bars, 4, seed=0))
    assert perturb_after(bars, 4, seed=7).equals(changed)  # the seed fixes the path
    assert not perturb_after(bars, 4, seed=8).equals(changed)


def test_a_computation_that_peeks_one_bar_is_caught_at_every_cut_on_the_cut() -> None:
    bars = bars_of()
    found = find_lookahead(lambda b: b["close"].shift(-1), bars, [3, 7])
    assert found == [LookAhead(bars.index[3], bars.index[3]), LookAhead(bars.index[7], bars.index[7])]


def test_a_causal_computation_with_nan_warm_up_passes() -> None:
    bars = bars_of()
    assert find_lookahead(lambda b: b["close"].rolling(3).mean(), bars, [2, 5, 9]) == []
    frame = lambda b: pd.DataFrame({"c": b["close"].diff(), "n": b["close"].rolling(4).max()})  # noqa: E731
    assert find_lookahead(frame, bars, [1, 6]) == []


def test_the_first_bar_that_moved_is_reported_not_the_cut() -> None:
    bars = bars_of()

    def last_close_from_row_two(b: pd.DataFrame) -> pd.Series:
        out = b["close"].copy()
        out.iloc[2:] = b["close"].iloc[-1]  # rows 2.. read the last bar
        return out

    assert find_lookahead(last_close_from_row_two, bars, [6]) == [LookAhead(bars.index[6], bars.index[2])]


def test_one_peeking_column_of_a_frame_is_enough() -> None:
    bars = bars_of()

    def frame(b: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"causal": b["close"], "peek": b["close"].shift(-2)})

    assert find_lookahead(frame, bars, [5]) == [LookAhead(bars.index[5], bars.index[4])]


def test_integer_outputs_compare_exactly() -> None:
    bars = bars_of()
    up_tomorrow = lambda b: (b["close"].shift(-1) > b["close"] * 1.0).astype(int)  # noqa: E731
    causal = lambda b: (b["close"] > b["close"].shift(1)).astype(int)  # noqa: E731
    assert find_lookahead(causal, bars, [4]) == []
    # A rescaled next bar moves below today's close for some factors: search the seeds for one that does.
    found = find_lookahead(up_tomorrow, bars, [4, 5, 6, 7, 8])
    assert found and all(f.first_changed == f.cut for f in found)


def test_an_output_whose_rows_depend_on_the_future_is_caught_at_the_earliest_differing_row() -> None:
    bars = bars_of()

    def rows_kept_by_the_last_close(b: pd.DataFrame) -> pd.Series:
        # Rows 0 and 2 are kept only while the last bar closes where it did: rows chosen by the future.
        keep = b["close"].iloc[-1] == 111.0
        return b["close"].drop([] if keep else [b.index[0], b.index[2]])

    found = find_lookahead(rows_kept_by_the_last_close, bars, [3, 6])
    assert found == [LookAhead(bars.index[3], bars.index[0]), LookAhead(bars.index[6], bars.index[0])]


def test_each_cut_rewrites_the_future_with_the_seed_plus_the_cut() -> None:
    bars = bars_of()
    given: list[pd.DataFrame] = []

    def record(b: pd.DataFrame) -> pd.Series:
        given.append(b)
        return b["close"]

    assert find_lookahead(record, bars, [3, 6], seed=10) == []
    assert given[0].equals(bars)
    assert given[1].equals(perturb_after(bars, 3, 13)) and given[2].equals(perturb_after(bars, 6, 16))
    given.clear()
    assert find_lookahead(record, bars, [3]) == []  # seed 0 by default: the cut's row seeds its future
    assert given[1].equals(perturb_after(bars, 3, 3))


def test_nan_equals_nan_for_labels_and_mixed_frames_too() -> None:
    bars = bars_of()

    def label(b: pd.DataFrame) -> pd.Series:  # object dtype: NaN over the warm-up, then a causal label
        mean = b["close"].rolling(3).mean()
        return pd.Series(np.where(b["close"] > mean, "up", "down"), index=b.index).where(mean.notna())

    def mixed(b: pd.DataFrame) -> pd.DataFrame:  # a float column with a warm-up and a bool column
        return pd.DataFrame({"mean": b["close"].rolling(3).mean(), "up": b["close"].diff() > 0})

    assert label(bars).to_numpy().dtype == object and mixed(bars).to_numpy().dtype == object
    assert find_lookahead(label, bars, [1, 5]) == []
    assert find_lookahead(mixed, bars, [1, 5]) == []


def test_a_value_that_becomes_nan_or_a_nan_that_becomes_a_value_is_a_change() -> None:
    bars = bars_of()

    def nan_at_row_two_while_the_last_close_stays(b: pd.DataFrame) -> pd.Series:
        out = b["close"].copy()
        if b["close"].iloc[-1] == 111.0:
            out.iloc[2] = np.nan
        else:
            out.iloc[4] = np.nan
        return out

    found = find_lookahead(nan_at_row_two_while_the_last_close_stays, bars, [6])
    assert found == [LookAhead(bars.index[6], bars.index[2])]

    def nan_at_row_three_once_the_last_close_moves(b: pd.DataFrame) -> pd.Series:
        return b["close"].where((b.index != b.index[3]) | (b["close"].iloc[-1] == 111.0))

    found = find_lookahead(nan_at_row_three_once_the_last_close_moves, bars, [6])
    assert found == [LookAhead(bars.index[6], bars.index[3])]


class Script:
    name = "script"

    def reset(self, market: MarketArrays, n_envs: int) -> None:
        pass

    def act(self, obs: np.ndarray, t: np.ndarray) -> np.ndarray:
        return np.array([int(t[0]) % 2])


def test_policy_decisions_are_indexed_by_the_bar_they_were_decided_at() -> None:
    config = EnvConfig(instrument=stock_spec(tick_size=1.0), window=2, episode_length=None, initial_cash=1e6)
    closes = 100.0 + np.arange(6)
    index = pd.bdate_range("2024-01-01", periods=6)
    market = MarketArrays.from_arrays(closes, closes, np.zeros((6, 1), np.float32), index=index)
    decisions = policy_decisions(Script(), market, config)
    # Decisions at bars 1..4 (bar 0 lacks a full window, the last bar only marks): t % 2.
    assert decisions.index.equals(index[1:5]) and decisions.tolist() == [1, 0, 1, 0]
    assert decisions.name == "script"
    undated = MarketArrays.from_arrays(closes, closes, np.zeros((6, 1), np.float32))
    with pytest.raises(ValueError, match=r"^policy_decisions needs a market with timestamps$"):
        policy_decisions(Script(), undated, config)
