"""Named feature sets for the agent, the OHLCV spelling they accept, and the one volume z-score."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.features import (
    FEATURE_SETS,
    basic_features,
    get_feature_fn,
    normalise_ohlcv,
    series_features,
    volume_zscore,
)
from pipeline.regimes import regime_features


def _series(n: int = 120, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 50_000 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    return pd.DataFrame(
        {
            "Open": close * 1.001,
            "High": close * 1.01,
            "Low": close * 0.99,
            "Close": close,
            "Volume": rng.lognormal(12, 0.3, n),
        },
        index=pd.bdate_range("2024-01-02", periods=n),
    )


def test_volume_zscore_is_the_textbook_population_zscore_and_zero_on_flat_windows() -> None:
    volume = np.array([1.0, 2.0, 3.0, 4.0, 10.0, 5.0, 5.0, 5.0, 5.0])
    z = volume_zscore(volume, window=4)
    assert np.isnan(z[:3]).all()
    window = volume[1:5]
    assert z[4] == pytest.approx((10.0 - window.mean()) / window.std(ddof=0))
    assert z[-1] == 0.0  # four equal volumes: neutral, not a division by zero


def test_the_volume_zscore_of_every_feature_set_and_of_the_regimes_is_one_definition() -> None:
    bars = _series()
    expected = volume_zscore(bars["Volume"].to_numpy(), 20)
    ok = slice(60, None)  # past every warm-up
    np.testing.assert_allclose(series_features(normalise_ohlcv(bars))["volume_z_20"][ok], expected[ok])
    np.testing.assert_allclose(basic_features(bars)["volume_z_20"][ok], expected[ok])
    np.testing.assert_allclose(regime_features(bars)["volume_z"][ok], expected[ok])


def test_feature_sets_are_found_by_name_and_accept_any_column_case() -> None:
    bars = _series()
    assert set(FEATURE_SETS) == {"ta-v1", "basic"}
    for name in FEATURE_SETS:
        out = get_feature_fn(name)(bars)
        assert out.index.equals(bars.index) and np.isfinite(out.iloc[60:].to_numpy()).all()
    with pytest.raises(ValueError, match="unknown feature set"):
        get_feature_fn("ta-v0")


def test_bars_without_prices_are_refused_and_missing_volume_reads_as_zero() -> None:
    bars = _series().drop(columns=["Volume"])
    assert (normalise_ohlcv(bars)["volume"] == 0.0).all()
    with pytest.raises(ValueError, match="lack columns"):
        normalise_ohlcv(bars.drop(columns=["Close"]))
