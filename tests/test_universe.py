"""KRX calendar and KOSPI200 futures: expiries, front month, rolls and back-adjustment."""

from __future__ import annotations

import datetime as dt
import itertools

import numpy as np
import pandas as pd
import pytest

from pipeline.universe import back_adjust, contract, contract_schedule, front_contract, krx_sessions


def test_expiry_is_the_second_thursday_or_the_session_before_a_holiday() -> None:
    assert contract(2025, 9).last_trading_day == dt.date(2025, 9, 11)
    assert contract(2025, 9).code == "101W09"
    assert contract(2024, 6).code == "101V06"
    # 2019-09-12 was Chuseok: the September 2019 contract expired on the 11th.
    assert contract(2019, 9).last_trading_day == dt.date(2019, 9, 11)
    with pytest.raises(ValueError, match="Mar/Jun/Sep/Dec"):
        contract(2025, 5)


def test_sessions_come_from_the_xkrx_calendar() -> None:
    sessions = krx_sessions("2025-10-01", "2025-10-10")
    # 2025: Oct 3 National Foundation Day, Oct 6-8 Chuseok, Oct 9 Hangul Day.
    assert [d.day for d in sessions] == [1, 2, 10]


def test_front_month_rolls_a_configurable_number_of_sessions_before_expiry() -> None:
    assert front_contract(dt.date(2025, 9, 8), roll_days=3).code == "101W09"
    assert front_contract(dt.date(2025, 9, 9), roll_days=3).code == "101W12"
    assert front_contract(dt.date(2025, 9, 11), roll_days=0).code == "101W09"  # held to expiry
    assert front_contract(dt.date(2025, 9, 12), roll_days=0).code == "101W12"
    segments = contract_schedule(dt.date(2025, 1, 1), dt.date(2025, 12, 31), roll_days=3)
    assert [c.code for c, _, _ in segments] == ["101W03", "101W06", "101W09", "101W12", "101X03"]
    for (_, _, last), (_, first, _) in itertools.pairwise(segments):
        assert first == last + dt.timedelta(days=1)  # no gap, no overlap


def _bars(days: list[str], closes: list[float]) -> pd.DataFrame:
    c = np.array(closes, dtype=float)
    return pd.DataFrame(
        {
            "ts": pd.to_datetime(days).tz_localize("Asia/Seoul"),
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
