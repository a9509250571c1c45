"""Back-adjusted continuous futures series: differences, ratios, several rolls."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.ingest.adjust import back_adjust
from pipeline.market import KST


def _bars(days: list[str], closes: list[float]) -> pd.DataFrame:
    c = np.array(closes, dtype=float)
    return pd.DataFrame(
        {
            "ts": pd.to_datetime(days).tz_localize(KST),
            "open": c - 1,
            "high": c + 2,
            "low": c - 2,
            "close": c,
            "volume": 10,
        }
    )


SEGMENTS = [
    ("101W06", _bars(["2025-06-05", "2025-06-09"], [300.0, 310.0])),
    # the Sep contract trades 5 points above June on the roll day (2025-06-09)
    ("101W09", _bars(["2025-06-09", "2025-06-10", "2025-06-11"], [315.0, 320.0, 330.0])),
]


def test_difference_back_adjustment_shifts_older_history_by_the_roll_gap() -> None:
    series, log = back_adjust(SEGMENTS, "difference")
    assert list(series["close"]) == [305.0, 315.0, 320.0, 330.0]
    assert list(series["open"]) == [304.0, 314.0, 319.0, 329.0]
    assert list(series["contract"]) == ["101W06", "101W06", "101W09", "101W09"]
    assert log.to_dict("records")[0] | {"roll_ts": None} == {
        "roll_ts": None,
        "from_contract": "101W06",
        "to_contract": "101W09",
        "from_close": 310.0,
        "to_close": 315.0,
        "method": "difference",
        "adjustment": 5.0,
    }


def test_ratio_back_adjustment_scales_older_history_and_keeps_returns() -> None:
    series, log = back_adjust(SEGMENTS, "ratio")
    assert series["close"].iloc[0] == pytest.approx(300.0 * 315 / 310)
    assert series["close"].iloc[1] == pytest.approx(315.0)
    assert series["close"].iloc[1] / series["close"].iloc[0] == pytest.approx(310 / 300)  # return kept
    assert log["adjustment"].iloc[0] == pytest.approx(315 / 310)


def test_adjustments_compound_over_several_rolls() -> None:
    three = [*SEGMENTS[:1], SEGMENTS[1], ("101W12", _bars(["2025-06-11", "2025-06-12"], [340.0, 345.0]))]
    three[1] = ("101W09", _bars(["2025-06-09", "2025-06-10", "2025-06-11"], [315.0, 320.0, 330.0]))
    series, log = back_adjust(three, "difference")
    # +10 at the Sep->Dec roll, then +5 more at the Jun->Sep roll
    assert list(series["close"]) == [315.0, 325.0, 330.0, 340.0, 345.0]
    assert list(log["adjustment"]) == [5.0, 10.0]
