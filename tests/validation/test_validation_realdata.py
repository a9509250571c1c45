"""validate_bars and build_features on a real daily series: S&P 500 1999-2018 shipped by ``arch``."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from pipeline.features import FEATURE_COLUMNS, WARMUP_BARS, build_features
from pipeline.market import TZ_NAME
from pipeline.validation import validate_bars


@pytest.fixture(scope="module")
def nyse_sessions() -> pd.DatetimeIndex:
    import exchange_calendars as xcals

    with warnings.catch_warnings():  # exchange_calendars 4.13 trips a pandas 3.1 deprecation
        warnings.simplefilter("ignore", DeprecationWarning)
        return pd.DatetimeIndex(xcals.get_calendar("XNYS", start="1999-01-01", end="2018-12-31").sessions)


@pytest.mark.slow
def test_the_real_series_passes_on_its_own_calendar_and_feeds_the_features(
    spx_bars: pd.DataFrame, nyse_sessions: pd.DatetimeIndex
) -> None:
    report = validate_bars(spx_bars, sessions=nyse_sessions, price_limit=0.25)
    assert report.passed and report.quarantined.empty and report.missing_sessions == {}
    assert len(report.good) == 5031
    features = build_features(report.good)
    assert np.isfinite(features[FEATURE_COLUMNS].iloc[WARMUP_BARS - 1 :].to_numpy()).all()


@pytest.mark.slow
def test_corrupted_real_rows_are_quarantined_and_gaps_reported(
    spx_bars: pd.DataFrame, nyse_sessions: pd.DatetimeIndex
) -> None:
    bars = spx_bars.astype(object)
    bars.at[100, "close"] = "N/A"
    bars.at[2000, "low"] = 0
    bars.at[3001, "ts"] = bars.at[3000, "ts"]
    bars.at[4000, "close"] = bars.at[3999, "close"] * 1.5
    bars.at[4000, "high"] = bars.at[4000, "close"]
    dropped = bars.drop(index=4500)
    report = validate_bars(dropped, sessions=nyse_sessions, price_limit=0.25)
    assert sorted(report.quarantined.index) == [100, 2000, 3000, 3001, 4000]
    assert report.rows_in == len(report.good) + len(report.quarantined) == 5030
    assert report.passed  # 5 of 5030 is under the 5 % threshold
    gaps = {d.isoformat() for d in report.missing_sessions["SPX"]}
    lost = {pd.Timestamp(spx_bars.at[i, "ts"]).tz_convert(TZ_NAME).date().isoformat() for i in (100, 2000)}
    assert lost | {pd.Timestamp(spx_bars.at[4500, "ts"]).tz_convert(TZ_NAME).date().isoformat()} <= gaps


def test_us_sessions_on_krx_holidays_fall_outside_the_default_krx_calendar(spx_bars: pd.DataFrame) -> None:
    year = spx_bars[spx_bars["ts"].dt.year == 2018].reset_index(drop=True)
    report = validate_bars(year)
    outside = report.quarantined["ts"].dt.tz_convert(TZ_NAME).dt.strftime("%Y-%m-%d").tolist()
    assert {"2018-02-15", "2018-02-16", "2018-09-24", "2018-09-25", "2018-12-31"} <= set(outside)
    assert set(report.quarantined["reason"]) == {"expect_column_values_to_be_in_set(ts_in_session)"}
