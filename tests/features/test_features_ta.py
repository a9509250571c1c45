"""build_features: shape and order, warm-up, textbook values, no look-ahead, real S&P 500 data."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from pipeline.features import CONVERGED_BARS, FEATURE_COLUMNS, WARMUP_BARS, build_features


def _features_of(frame: pd.DataFrame, symbol: str) -> pd.DataFrame:
    return frame[frame["symbol"] == symbol].reset_index(drop=True)


def test_one_sorted_float_row_per_bar_whatever_the_input_order(
    make_bars: Callable[..., pd.DataFrame],
) -> None:
    bars = make_bars(symbols=("005930", "000660", "035420"), n=120)
    shuffled = bars.sample(frac=1.0, random_state=7)
    out = build_features(shuffled)
    assert list(out.columns) == ["symbol", "interval", "ts", *FEATURE_COLUMNS]
    assert len(out) == len(bars)
    assert (out[FEATURE_COLUMNS].dtypes == np.float64).all()
    assert out.equals(out.sort_values(["symbol", "ts"], ignore_index=True))
    pd.testing.assert_frame_equal(out, build_features(bars))


def test_nan_exactly_during_the_warm_up_of_each_symbol(make_bars: Callable[..., pd.DataFrame]) -> None:
    out = build_features(make_bars(n=150))
    for _, rows in out.groupby("symbol"):
        values = rows[FEATURE_COLUMNS].to_numpy()
        assert np.isnan(values[: WARMUP_BARS - 1]).all()
        assert np.isfinite(values[WARMUP_BARS - 1 :]).all()


def test_textbook_values_for_returns_sma_bollinger_and_wilder_rsi(
    make_bars: Callable[..., pd.DataFrame],
) -> None:
    bars = make_bars(symbols=("005930",), n=200)
    out = build_features(bars)
    c = bars["close"].to_numpy(dtype=float)
    t = len(c) - 1
    assert out["log_ret_5"].iloc[t] == pytest.approx(np.log(c[t] / c[t - 5]))
    assert out["close_sma_60"].iloc[t] == pytest.approx(c[t] / c[t - 59 : t + 1].mean())
    window = c[t - 19 : t + 1]
    lower, upper = window.mean() - 2 * window.std(), window.mean() + 2 * window.std()
    assert out["bb_pct_b_20"].iloc[t] == pytest.approx((c[t] - lower) / (upper - lower))
    # Wilder's RSI: seed with the mean gain/loss of the first 14 changes, then smooth by 13/14.
    delta = np.diff(c)
    gain, loss = np.clip(delta, 0, None), np.clip(-delta, 0, None)
    avg_gain, avg_loss = gain[:14].mean(), loss[:14].mean()
    for g, lo in zip(gain[14:], loss[14:], strict=True):
        avg_gain, avg_loss = (13 * avg_gain + g) / 14, (13 * avg_loss + lo) / 14
    assert out["rsi_14"].iloc[t] == pytest.approx(100 * avg_gain / (avg_gain + avg_loss))


def _perturb_after(bars: pd.DataFrame, t: int, seed: int) -> pd.DataFrame:
    changed = bars.copy()
    rng = np.random.default_rng(seed)
    later = changed.index > t
    scale = rng.uniform(0.5, 2.0, later.sum())
    for col in ["open", "high", "low", "close"]:
        changed.loc[later, col] = changed.loc[later, col] * scale
    changed.loc[later, "volume"] = rng.integers(0, 10_000_000, later.sum())
    return changed


@pytest.mark.parametrize("t", [0, WARMUP_BARS - 2, WARMUP_BARS - 1, 100, 178])
def test_changing_any_later_bar_never_changes_an_earlier_feature(
    make_bars: Callable[..., pd.DataFrame], t: int
) -> None:
    bars = make_bars(symbols=("005930",), n=180)
    before = build_features(bars)
    after = build_features(_perturb_after(bars, t, seed=t))
    pd.testing.assert_frame_equal(before.iloc[: t + 1], after.iloc[: t + 1])
    if t + 1 < len(bars):
        assert not before.iloc[t + 1 :].equals(after.iloc[t + 1 :])


def test_symbols_and_intervals_do_not_leak_into_each_other(make_bars: Callable[..., pd.DataFrame]) -> None:
    pair = make_bars(symbols=("005930", "000660"), n=100)
    alone = build_features(pair[pair["symbol"] == "005930"])
    together = _features_of(build_features(pair), "005930")
    pd.testing.assert_frame_equal(alone.reset_index(drop=True), together)
    minutes = make_bars(symbols=("005930",), n=100, interval="1m", freq="min")
    mixed = build_features(pd.concat([pair[pair["symbol"] == "005930"], minutes]))
    pd.testing.assert_frame_equal(mixed[mixed["interval"] == "1d"].reset_index(drop=True), together)


def test_flat_prices_and_zero_volume_give_neutral_values_not_nan() -> None:
    n = 80
    bars = pd.DataFrame(
        {
            "symbol": "HALTED",
            "interval": "1d",
            "ts": pd.date_range("2024-01-02", periods=n, freq="B", tz="UTC"),
            "open": 100.0,
            "high": 100.0,
            "low": 100.0,
            "close": 100.0,
            "volume": 0,
        }
    )
    last = build_features(bars).iloc[-1]
    assert np.isfinite(last[FEATURE_COLUMNS].to_numpy(dtype=float)).all()
    assert last["bb_pct_b_20"] == 0.5
    assert last["close_sma_20"] == 1.0
    assert last["volume_z_20"] == 0.0


def test_a_series_shorter_than_the_warm_up_is_all_nan(make_bars: Callable[..., pd.DataFrame]) -> None:
    bars = make_bars(n=10)
    out = build_features(bars)
    assert len(out) == 20
    assert out[FEATURE_COLUMNS].isna().all().all()
    assert list(build_features(bars.iloc[:0]).columns) == list(out.columns)


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda b: b.assign(close=b["close"].where(b.index != 5)),
        lambda b: b.assign(low=b["low"].where(b.index != 5, 0.0)),
        lambda b: pd.concat([b, b.iloc[[3]]]),
    ],
    ids=["nan-close", "zero-low", "duplicate-key"],
)
def test_unvalidated_bars_are_refused(
    make_bars: Callable[..., pd.DataFrame], corrupt: Callable[[pd.DataFrame], pd.DataFrame]
) -> None:
    with pytest.raises(ValueError, match="validate"):
        build_features(corrupt(make_bars(n=70)))


def test_real_sp500_series_has_no_nan_after_warm_up_and_sane_ranges(spx_bars: pd.DataFrame) -> None:
    out = build_features(spx_bars)
    warm = out.iloc[WARMUP_BARS - 1 :]
    assert len(out) == len(spx_bars) == 5031
    assert np.isfinite(warm[FEATURE_COLUMNS].to_numpy()).all()
    assert warm["rsi_14"].between(0, 100).all() and warm["adx_14"].between(0, 100).all()
    assert warm["obv_change_20"].between(-1, 1).all()
    # 2008: the realised volatility of the crash months dwarfs the calm of 2017.
    vol = warm.set_index("ts")["realized_vol_20"]
    assert vol.loc["2008-10"].mean() > 5 * vol.loc["2017"].mean()


@pytest.mark.slow
def test_real_sp500_series_has_no_look_ahead(spx_bars: pd.DataFrame) -> None:
    before = build_features(spx_bars)
    for t in (WARMUP_BARS, 2_000, 4_500):
        after = build_features(_perturb_after(spx_bars, t, seed=t))
        pd.testing.assert_frame_equal(before.iloc[: t + 1], after.iloc[: t + 1])


def test_a_window_of_converged_bars_reproduces_full_history_features(spx_bars: pd.DataFrame) -> None:
    # Serving computes features from a window of raw bars; after CONVERGED_BARS the seeds of the Wilder
    # and EMA recursions no longer matter.
    full = build_features(spx_bars).iloc[-1][FEATURE_COLUMNS].to_numpy(dtype=float)
    window = build_features(spx_bars.iloc[-CONVERGED_BARS:]).iloc[-1][FEATURE_COLUMNS].to_numpy(dtype=float)
    np.testing.assert_allclose(window, full, rtol=1e-5, atol=1e-8)
