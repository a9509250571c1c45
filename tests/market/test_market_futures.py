"""KRX calendar and KOSPI200 futures contracts: expiries, codes, front month and rolls."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest

from pipeline.market import contract, contract_schedule, front_contract, krx_sessions


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
