"""The serving hot path computes features from arrays: every number equals the frame path's (TA-Lib features,
both feature sets, regime inputs and labels), on real KRX and S&P 500 bars, many series at once included."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.features import FEATURE_COLUMNS, build_features, get_feature_fn, series_features
from pipeline.features.sets import FEATURE_SETS, OhlcvArrays, feature_values
from pipeline.features.ta import series_feature_values
from pipeline.regimes import RegimeConfig, RegimeModel, regime_features
from pipeline.regimes.features import regime_feature_values
from tests.factories import sp500_bars
from tests.features.krx_data import KRX_CODES, krx_bars


def _real_series() -> dict[str, pd.DataFrame]:
    spx = sp500_bars().set_index("ts")[["open", "high", "low", "close", "volume"]]
    return {"SPX": spx, **{code: krx_bars(code) for code in KRX_CODES}}


def _same(a: np.ndarray, b: np.ndarray) -> None:
    np.testing.assert_array_equal(a, b)  # NaN where the other has NaN, every other value bit for bit


def test_the_features_of_one_series_are_the_numbers_build_features_gives_it_among_others() -> None:
    series = _real_series()
    long = pd.concat(
        [b.reset_index().assign(symbol=s, interval="1d") for s, b in series.items()], ignore_index=True
    )
    built = build_features(long)
    for symbol, bars in series.items():
        expected = built[built["symbol"] == symbol][FEATURE_COLUMNS].to_numpy()
        got = series_feature_values(*(bars[k].to_numpy() for k in ("open", "high", "low", "close", "volume")))
        _same(got, expected)
        _same(series_features(bars).to_numpy(), expected)


def test_windows_of_any_length_and_refused_bars_behave_as_in_build_features() -> None:
    bars = krx_bars("229200")
    for n in (0, 1, 30, 59, 60, 250):
        window = bars.iloc[:n]
        expected = build_features(window.reset_index().assign(symbol="S", interval="1d"))[FEATURE_COLUMNS]
        _same(series_features(window).to_numpy(), expected.to_numpy())
    broken = bars.iloc[:100].copy()
    broken.iloc[50, 3] = 0.0
    with pytest.raises(ValueError, match="non-positive"):
        series_features(broken)


@pytest.mark.parametrize("name", sorted(FEATURE_SETS))
def test_every_feature_set_gives_the_same_numbers_from_arrays_as_from_a_frame(name: str) -> None:
    bars = krx_bars("091160").iloc[-600:]
    shouting = bars.rename(columns=str.upper)
    no_volume = bars.drop(columns=["volume"])
    for frame in (bars, shouting, no_volume):
        expected = get_feature_fn(name)(frame)
        values, names = feature_values(name, OhlcvArrays.from_frame(frame))
        _same(values, expected.to_numpy())
        assert names == tuple(expected.columns)


def _textbook_regime_features(bars: pd.DataFrame, vol_window: int, trend_window: int) -> pd.DataFrame:
    # The definition before the array path (pandas Series arithmetic), kept here as the reference.
    from pipeline.features import normalise_ohlcv, volume_zscore

    b = normalise_ohlcv(bars)
    log_close = np.log(b["close"].astype(np.float64))
    ret = log_close.diff()
    vol = ret.rolling(vol_window).std()
    trend = log_close.diff(trend_window) / (vol * np.sqrt(trend_window))
    volume_z = pd.Series(volume_zscore(b["volume"].to_numpy(np.float64), vol_window), index=b.index)
    out = pd.DataFrame(
        {"log_vol": np.log(vol.where(vol > 0)), "trend": trend, "volume_z": volume_z.where(vol.notna())},
        index=b.index,
    )
    return out.replace([np.inf, -np.inf], np.nan)


@pytest.mark.parametrize(("vol_window", "trend_window"), [(20, 20), (10, 30)])
def test_regime_inputs_of_many_series_at_once_are_each_series_alone(
    vol_window: int, trend_window: int
) -> None:
    series = list(_real_series().values())
    flat = krx_bars("102970").iloc[:200].assign(close=10_000.0, volume=0.0)  # no volatility, no volume
    windows = [*series, *(b.iloc[s : s + 250] for b in series for s in (0, 777)), flat, series[1].iloc[:5]]
    many = regime_feature_values(
        [w["close"].to_numpy() for w in windows],
        [w["volume"].to_numpy() for w in windows],
        vol_window,
        trend_window,
    )
    for window, values in zip(windows, many, strict=True):
        expected = _textbook_regime_features(window, vol_window, trend_window)
        _same(values, expected.to_numpy())
        pd.testing.assert_frame_equal(regime_features(window, vol_window, trend_window), expected)


@pytest.mark.parametrize(
    "config",
    [RegimeConfig(k_max=4), RegimeConfig(method="kmeans", criterion="silhouette", k_max=3)],
    ids=["gmm", "kmeans"],
)
def test_regime_labels_of_many_windows_are_sklearns_own_labels_of_each(config: RegimeConfig) -> None:
    bars = krx_bars("091180")
    model = RegimeModel(config).fit(bars.iloc[:1500])
    windows = [bars.iloc[s : s + 250] for s in range(1000, 3000, 97)]
    many = model.predict_many([OhlcvArrays.from_frame(w) for w in windows])
    assert model.scaler is not None and model.model is not None
    for window, labels in zip(windows, many, strict=True):
        feats = model.features(window)
        ok = feats.notna().all(axis=1).to_numpy()
        expected = np.full(len(window), -1, np.int64)
        expected[ok] = model.order[model.model.predict(model.scaler.transform(feats.to_numpy()[ok]))]
        _same(labels, expected)
        _same(model.predict(window), expected)
