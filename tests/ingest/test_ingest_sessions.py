"""Ingest tasks per session: an empty broker answer is reported, the summary's window is what landed,
and a broker client the task opened is closed."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from sqlalchemy.engine import Engine

from pipeline.config import Settings, get_settings
from pipeline.ingest import tasks
from pipeline.ingest.sources import RAW_COLUMNS
from pipeline.ingest.tasks import IngestFailed, ingest_daily_session, ingest_minute_session, session_day
from pipeline.market import TZ_NAME
from pipeline.store import read_bars
from tests.ingest.test_ingest_bars import FakeSource

DAY = dt.date(2025, 9, 10)


def _settings(**update: object) -> Settings:
    base: dict[str, object] = {
        "stock_symbols": ["005930", "000660"],
        "index_symbols": [],
        "intraday_symbols": ["005930"],
        "ingest_history_days": 20,
        "ingest_minute_sessions": 0,  # one session: the backfill has tests of its own
    }
    return get_settings().model_copy(update={**base, **update})


class NothingOn(FakeSource):
    """A broker that has no bars of ``symbols`` for ``day`` (minute bars: none at all that day)."""

    def __init__(self, day: dt.date, symbols: set[str]) -> None:
        super().__init__()
        self.day, self.symbols = day, symbols
        self.closed = False

    def daily(self, symbol: str, start: dt.date, end: dt.date) -> pd.DataFrame:
        frame = super().daily(symbol, start, end)
        if symbol not in self.symbols:
            return frame
        return frame[[pd.Timestamp(t).date() != self.day for t in frame["ts"]]]

    def minutes(self, symbol: str, day: dt.date) -> pd.DataFrame:
        if symbol in self.symbols and day == self.day:
            return pd.DataFrame(columns=RAW_COLUMNS)
        return super().minutes(symbol, day)

    def close(self) -> None:
        self.closed = True


def test_a_daily_session_the_broker_has_no_bar_for_fails_after_storing_the_rest(store: Engine) -> None:
    source = NothingOn(DAY, {"005930"})
    with pytest.raises(IngestFailed, match=r"no bar for session 2025-09-10.*005930 1d"):
        ingest_daily_session(DAY, source=source, settings=_settings(), engine=store)
    newest = read_bars(engine=store).groupby("symbol")["ts"].max().dt.tz_convert(TZ_NAME).dt.date
    assert newest["000660"] == DAY  # the others landed, so a retry only has the gap left to fetch
    assert newest["005930"] < DAY


def test_minute_bars_missing_for_a_session_are_a_warning_and_no_window(store: Engine) -> None:
    summary = ingest_minute_session(
        DAY, source=NothingOn(DAY, {"005930"}), settings=_settings(), engine=store
    )
    assert summary["empty"] == ["005930 1m"]
    assert any("005930" in w and "no bar" in w for w in summary["warnings"])
    assert summary["window"] is None  # nothing to validate: the DAG emits no `bars` event


def test_the_summary_window_covers_the_days_and_symbols_that_landed(store: Engine) -> None:
    summary = ingest_daily_session(DAY, source=FakeSource(), settings=_settings(), engine=store)
    window = summary["window"]
    assert window is not None
    assert window["intervals"] == ["1d"] and window["end"] == "2025-09-10"
    assert dt.date.fromisoformat(window["start"]) <= DAY - dt.timedelta(days=20)
    assert {"005930", "000660", "KOSPI200F"} <= set(window["symbols"])
    assert summary["warnings"] == [] and summary["empty"] == []


def test_a_holiday_summary_says_no_session_and_has_no_window(store: Engine) -> None:
    summary = ingest_daily_session(dt.date(2025, 10, 3), source=FakeSource(), engine=store)
    assert summary["session"] is False and summary["window"] is None and summary["fetched"] == 0


def test_an_ingest_task_closes_the_broker_client_it_opened(
    store: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[NothingOn] = []

    def kis_source(settings: Settings | None = None) -> NothingOn:
        opened.append(NothingOn(DAY, set()))
        return opened[-1]

    monkeypatch.setattr(tasks, "kis_source", kis_source)
    ingest_minute_session(DAY, settings=_settings(), engine=store)
    assert len(opened) == 1 and opened[0].closed


def test_a_run_without_a_date_is_refused_instead_of_read_as_nat() -> None:
    with pytest.raises(ValueError, match="no date"):
        session_day(None)
    assert session_day(pd.Timestamp("2025-09-10 07:40", tz="UTC")) == DAY
