"""KRX calendar helpers: sessions from exchange_calendars, futures expiry, session hours."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from pipeline.market import InstrumentKind, SessionHours
from pipeline.validation import futures_expiry_dates, krx_sessions, session_bounds


def test_krx_sessions_skip_weekends_and_korean_holidays() -> None:
    sessions = krx_sessions("2024-02-05", pd.Timestamp("2024-02-16", tz="Asia/Seoul"))
    days = {d.strftime("%m-%d") for d in sessions}
    assert {"02-05", "02-08", "02-13", "02-16"} <= days
    assert not days & {"02-09", "02-10", "02-12"}  # Seollal and its substitute holiday, a Saturday
    assert len(krx_sessions("2024-01-01", "2024-12-31")) == 244


def test_futures_expire_on_the_second_thursday_or_the_session_before() -> None:
    sessions = krx_sessions("2024-01-01", "2024-12-31")
    assert [d.strftime("%m-%d") for d in futures_expiry_dates(sessions)] == [
        "03-14",
        "06-13",
        "09-12",
        "12-12",
    ]
    # 2019-09-12, the second Thursday, was Chuseok: the September 2019 contract expired on the 11th.
    assert list(futures_expiry_dates(krx_sessions("2019-09-01", "2019-09-30"))) == [
        pd.Timestamp("2019-09-11")
    ]


def test_session_hours_follow_kind_schedule_and_overrides() -> None:
    days = pd.Series(pd.to_datetime(["2024-03-13", "2024-03-14", "2024-03-14", "2015-06-01"]))
    kinds = pd.Series(["futures", "futures", "stock", "stock"])
    opens, closes = session_bounds(days, kinds)
    assert opens.tolist() == [525, 525, 540, 540]  # 08:45, 08:45, 09:00, 09:00
    assert closes.tolist() == [945, 920, 930, 900]  # 15:45, 15:20 on expiry, 15:30, 15:00 before 2016-08
    fixed = {InstrumentKind.STOCK: SessionHours(dt.time(9, 30), dt.time(16, 0))}
    opens, closes = session_bounds(days, kinds, fixed)
    assert (opens[2:].tolist(), closes[2:].tolist()) == ([570, 570], [960, 960])


def test_etfs_and_indices_follow_the_stock_schedule() -> None:
    days = pd.Series(pd.to_datetime(["2024-01-02", "2024-01-02"]))  # first session of a year: 10:00
    opens, closes = session_bounds(days, pd.Series([InstrumentKind.ETF, InstrumentKind.INDEX]))
    assert (opens.tolist(), closes.tolist()) == ([600, 600], [930, 930])


def test_an_unknown_kind_has_no_session_hours() -> None:
    days = pd.Series(pd.to_datetime(["2024-03-13"]))
    for kind in ("future", "bond"):
        with pytest.raises(ValueError, match=kind):
            session_bounds(days, pd.Series([kind]))
