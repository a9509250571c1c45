"""The trading clock: session bounds per kind (XKRX special days, the futures expiry close), in/out of
session with a reason, the newest closed bar (stamped as the KIS client stamps bars), bar ends and the time
left to the close."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from pipeline.kis import KisClient, KisConfig
from pipeline.kis.simulator.server import SimServer
from pipeline.kis.simulator.simconfig import AppKeyPair, SimConfig
from pipeline.market import KST, front_contract, is_expiry_day
from pipeline.trading.clock import (
    bar_end,
    last_closed_bar,
    minutes_to_close,
    previous_session,
    session_bounds,
    session_status,
    should_run,
)

REGULAR = dt.date(2025, 10, 2)  # a Thursday, regular session
EXPIRY = dt.date(2025, 9, 11)  # second Thursday of September 2025: the 101W09 futures expire
FIRST_OF_YEAR = dt.date(2025, 1, 2)  # the year's first session opens an hour late


def kst(day: dt.date, hour: int, minute: int = 0, second: int = 0) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=KST)


# --- session bounds ------------------------------------------------------------------------------------
def test_regular_sessions_stocks_0900_1530_futures_0845_1545() -> None:
    assert session_bounds(REGULAR, "stock") == (kst(REGULAR, 9), kst(REGULAR, 15, 30))
    assert (
        session_bounds(REGULAR, "etf") == session_bounds(REGULAR, "index") == session_bounds(REGULAR, "stock")
    )
    assert session_bounds(REGULAR, "futures") == (kst(REGULAR, 8, 45), kst(REGULAR, 15, 45))


def test_futures_close_at_1520_on_their_expiry_day_only() -> None:
    assert is_expiry_day(EXPIRY) and front_contract(EXPIRY, roll_days=0).last_trading_day == EXPIRY
    assert session_bounds(EXPIRY, "futures") == (kst(EXPIRY, 8, 45), kst(EXPIRY, 15, 20))
    assert session_bounds(EXPIRY, "stock") == (kst(EXPIRY, 9), kst(EXPIRY, 15, 30))
    day_before = EXPIRY - dt.timedelta(days=1)
    assert session_bounds(day_before, "futures") == (kst(day_before, 8, 45), kst(day_before, 15, 45))

    late = session_status(kst(EXPIRY, 15, 25), "futures")
    assert not late.open and "15:20" in late.reason and "expiry" in late.reason
    assert session_status(kst(EXPIRY, 15, 25), "stock").open


def test_the_first_session_of_a_year_opens_at_10_from_the_xkrx_calendar() -> None:
    assert session_bounds(FIRST_OF_YEAR, "stock") == (kst(FIRST_OF_YEAR, 10), kst(FIRST_OF_YEAR, 15, 30))
    assert session_bounds(FIRST_OF_YEAR, "futures") == (kst(FIRST_OF_YEAR, 9, 45), kst(FIRST_OF_YEAR, 15, 45))
    early = session_status(kst(FIRST_OF_YEAR, 9, 30), "stock")
    assert not early.open and "10:00" in early.reason
    assert last_closed_bar(kst(FIRST_OF_YEAR, 9, 30), "1m", "stock") is None


@pytest.mark.parametrize("day", [dt.date(2025, 10, 3), dt.date(2025, 1, 1), dt.date(2025, 10, 6)])
def test_holidays_have_no_session_and_say_so(day: dt.date) -> None:
    for kind in ("stock", "futures"):
        assert session_bounds(day, kind) is None
        status = session_status(kst(day, 10), kind)
        assert not status.open
        assert status.reason == f"holiday ({day} is not a KRX session)"
        assert minutes_to_close(kst(day, 10), kind) is None
        assert last_closed_bar(kst(day, 10), "1m", kind) is None


def test_weekends_have_no_session() -> None:
    saturday = dt.date(2025, 10, 4)
    assert session_bounds(saturday, "futures") is None
    status = session_status(kst(saturday, 11), "futures")
    assert not status.open and "weekend" in status.reason and "2025-10-04" in status.reason


# --- in session or not ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("hour", "minute", "futures_open", "stock_open"),
    [
        (8, 44, False, False),
        (8, 45, True, False),
        (8, 59, True, False),
        (9, 0, True, True),
        (15, 29, True, True),
        (15, 30, True, False),  # the close itself takes no order
        (15, 44, True, False),
        (15, 45, False, False),
    ],
)
def test_the_session_is_the_half_open_interval_from_open_to_close(
    hour: int, minute: int, futures_open: bool, stock_open: bool
) -> None:
    now = kst(REGULAR, hour, minute)
    assert session_status(now, "futures").open is futures_open
    assert session_status(now, "stock").open is stock_open


def test_reasons_name_the_session_and_the_time() -> None:
    before = session_status(kst(REGULAR, 8, 30), "futures")
    assert before.reason == "before the futures session opens at 08:45 (2025-10-02)"
    after = session_status(kst(REGULAR, 15, 31), "stock")
    assert after.reason == "after the stock session closed at 15:30 (2025-10-02)"
    assert "09:00-15:30" in session_status(kst(REGULAR, 10), "etf").reason


def test_moments_in_other_zones_are_read_in_kst_and_naive_ones_refused() -> None:
    utc = dt.datetime(2025, 10, 2, 0, 30, tzinfo=dt.UTC)  # 09:30 KST
    assert session_status(utc, "stock").open
    assert last_closed_bar(utc, "1m", "stock") == kst(REGULAR, 9, 29)
    with pytest.raises(ValueError, match="tz-aware"):
        session_status(dt.datetime(2025, 10, 2, 10, 0), "stock")


def test_should_run_when_any_kind_trades() -> None:
    kinds = ["stock", "futures"]
    assert should_run(kst(REGULAR, 8, 50), kinds).open  # futures open first
    assert should_run(kst(REGULAR, 15, 40), kinds).open  # ... and close last
    assert not should_run(kst(REGULAR, 8, 50), ["stock", "etf"]).open
    early = should_run(kst(REGULAR, 8, 30), kinds)
    assert not early.open and "08:45" in early.reason and "09:00" in early.reason
    holiday = should_run(kst(dt.date(2025, 10, 3), 10), kinds)
    assert holiday.reason == "holiday (2025-10-03 is not a KRX session)"  # said once, not per kind
    with pytest.raises(ValueError):
        should_run(kst(REGULAR, 10), [])


# --- bars --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("now", "kind", "expected"),
    [
        (kst(REGULAR, 10, 5), "stock", kst(REGULAR, 10, 4)),
        (kst(REGULAR, 10, 5, 30), "stock", kst(REGULAR, 10, 4)),
        (kst(REGULAR, 10, 5, 59), "futures", kst(REGULAR, 10, 4)),
        (kst(REGULAR, 9, 0, 30), "stock", None),  # the 09:00 bar is still forming
        (kst(REGULAR, 9, 1), "stock", kst(REGULAR, 9, 0)),
        (kst(REGULAR, 8, 50), "stock", None),
        (kst(REGULAR, 8, 46), "futures", kst(REGULAR, 8, 45)),
        (kst(REGULAR, 15, 46), "futures", kst(REGULAR, 15, 44)),  # the session's last bar
        (kst(REGULAR, 15, 46), "stock", kst(REGULAR, 15, 29)),
        (kst(REGULAR, 23, 0), "futures", kst(REGULAR, 15, 44)),
        (kst(EXPIRY, 15, 30), "futures", kst(EXPIRY, 15, 19)),
    ],
)
def test_the_last_closed_minute_bar(now: dt.datetime, kind: str, expected: dt.datetime | None) -> None:
    assert last_closed_bar(now, "1m", kind) == expected


@pytest.mark.parametrize(
    ("now", "expected_day"),
    [
        (kst(dt.date(2025, 10, 27), 10), dt.date(2025, 10, 24)),  # Monday -> Friday
        (kst(dt.date(2025, 10, 27), 8, 0), dt.date(2025, 10, 24)),  # before the open too
        (kst(dt.date(2025, 10, 27), 17, 0), dt.date(2025, 10, 24)),  # today's bar waits for tomorrow
        (kst(dt.date(2025, 10, 28), 9, 1), dt.date(2025, 10, 27)),
        (kst(dt.date(2025, 10, 10), 10), dt.date(2025, 10, 2)),  # over Chuseok and Hangul Day
        (kst(dt.date(2025, 10, 13), 10), dt.date(2025, 10, 10)),
        (kst(dt.date(2025, 10, 4), 12), dt.date(2025, 10, 2)),  # a Saturday after a Friday holiday
    ],
)
def test_the_last_closed_daily_bar_is_the_previous_session_at_midnight(
    now: dt.datetime, expected_day: dt.date
) -> None:
    for kind in ("stock", "futures"):
        assert last_closed_bar(now, "1d", kind) == kst(expected_day, 0)
    assert previous_session(now.date()) == expected_day


def test_bar_end() -> None:
    assert bar_end(kst(REGULAR, 10, 4), "1m", "stock") == kst(REGULAR, 10, 5)
    assert bar_end(kst(REGULAR, 0), "1d", "stock") == kst(REGULAR, 15, 30)
    assert bar_end(kst(REGULAR, 0), "1d", "futures") == kst(REGULAR, 15, 45)
    assert bar_end(kst(EXPIRY, 0), "1d", "futures") == kst(EXPIRY, 15, 20)
    with pytest.raises(ValueError, match="not a KRX session"):
        bar_end(kst(dt.date(2025, 10, 3), 0), "1d", "stock")
    with pytest.raises(ValueError, match="interval"):
        bar_end(kst(REGULAR, 10), "5m", "stock")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="interval"):
        last_closed_bar(kst(REGULAR, 10), "1h", "stock")  # type: ignore[arg-type]


def test_a_closed_bar_has_ended_by_now() -> None:
    for minute in range(0, 60 * 8, 7):
        now = kst(REGULAR, 8, 40) + dt.timedelta(minutes=minute, seconds=minute % 60)
        for kind in ("stock", "futures"):
            for interval in ("1m", "1d"):
                bar = last_closed_bar(now, interval, kind)  # type: ignore[arg-type]
                if bar is not None:
                    assert bar_end(bar, interval, kind) <= now  # type: ignore[arg-type]


def test_minutes_to_close() -> None:
    assert minutes_to_close(kst(REGULAR, 15, 0), "stock") == 30.0
    assert minutes_to_close(kst(REGULAR, 15, 0), "futures") == 45.0
    assert minutes_to_close(kst(REGULAR, 15, 29, 30), "stock") == 0.5
    assert minutes_to_close(kst(EXPIRY, 15, 0), "futures") == 20.0
    assert minutes_to_close(kst(REGULAR, 15, 30), "stock") is None
    assert minutes_to_close(kst(REGULAR, 8, 50), "stock") is None


# --- the same stamps as the KIS client --------------------------------------------------------------------
KEY, SECRET = "PSclockTEST0123456789abcdefghijklmno", "SECRETclock" + "z" * 169
#: A Monday after a Friday, mid-session.
SIM_NOW = kst(dt.date(2025, 10, 27), 10, 5, 30)


@pytest.fixture
def sim_client(tmp_path: Path) -> Iterator[KisClient]:
    """A KIS client against a real simulator whose clock stands (almost) still at ``SIM_NOW``."""
    cfg = SimConfig(
        db_path=tmp_path / "sim.db",
        clock_start=SIM_NOW,
        clock_speed=1e-6,
        app_keys=[AppKeyPair(KEY, SECRET, "real")],
        token_interval_s=0.2,
        rate_limit=1000.0,
    )
    with SimServer(cfg) as sim:
        config = KisConfig(
            env="sim",
            base_url=sim.base_url,
            app_key=SecretStr(KEY),
            app_secret=SecretStr(SECRET),
            token_cache=tmp_path / "token.json",
            rate_limit=1000.0,
            token_min_interval_s=0.25,
        )
        with KisClient(config) as client:
            yield client


@pytest.mark.integration
def test_the_stamps_match_the_bars_the_kis_client_returns(sim_client: KisClient) -> None:
    day = SIM_NOW.date()
    minute = last_closed_bar(SIM_NOW, "1m", "stock")
    daily = last_closed_bar(SIM_NOW, "1d", "stock")
    assert (minute, daily) == (kst(day, 10, 4), kst(dt.date(2025, 10, 24), 0))

    minutes = [b.ts for b in sim_client.stock_minute_bars_today("005930")]
    # Every bar up to the closed one is in; the only later one is the minute still forming.
    assert minute in minutes and [ts for ts in minutes if ts > minute] == [kst(day, 10, 5)]
    days = [b.ts for b in sim_client.stock_daily_bars("005930", dt.date(2025, 10, 13), day)]
    assert daily in days and [ts for ts in days if ts > daily] == [kst(day, 0)]  # today's, still partial

    code = front_contract(day).code
    fut_minutes = [b.ts for b in sim_client.futures_minute_bars(code, day)]
    assert last_closed_bar(SIM_NOW, "1m", "futures") in fut_minutes
    assert fut_minutes[0] == kst(day, 8, 45)  # the futures session's first bar
    fut_days = [b.ts for b in sim_client.futures_daily_bars(code, dt.date(2025, 10, 13), day)]
    assert last_closed_bar(SIM_NOW, "1d", "futures") in fut_days
