"""The minute ingest's backfill of past sessions, against the KIS simulator on loopback: each session
lands inside its hours (futures through that session's front contract), reruns fetch only what is not
stored up to the close, the bars event covers the backfill, and it never reaches past the broker's
minute-bar retention."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pipeline.config import get_settings
from pipeline.ingest.backfill import plan_sessions
from pipeline.ingest.contracts import IngestSummary
from pipeline.ingest.quality import validate_and_featurize
from pipeline.ingest.tasks import ingest_minute_session
from pipeline.kis.endpoints import MINUTE_RETENTION_DAYS
from pipeline.market import KST, TZ_NAME, front_contract, krx_sessions
from pipeline.store import read_bars
from tests.ingest.conftest import SESSION, Broker

#: SESSION and the five sessions before it; the roll to the December contract falls inside.
SIX = [dt.date(2025, 9, d) for d in (3, 4, 5, 8, 9, 10)]


def _ingest(
    broker: Broker, engine: Engine, sessions: int, symbols: tuple[str, ...] = ("005930", "KOSPI200F")
) -> IngestSummary:
    """The minute ingest of SESSION with ``sessions`` past sessions of ``symbols``."""
    settings = get_settings().model_copy(
        update={"intraday_symbols": list(symbols), "ingest_minute_sessions": sessions}
    )
    return ingest_minute_session(SESSION, source=broker.source, settings=settings, engine=engine)


def _per_session(engine: Engine, symbol: str) -> pd.DataFrame:
    """First bar, last bar and bar count per KST session of ``symbol``'s stored 1-minute bars."""
    bars = read_bars(symbol, "1m", engine=engine)
    kst = bars["ts"].dt.tz_convert(TZ_NAME)
    return kst.groupby(kst.dt.date).agg(["min", "max", "count"])


def test_a_first_run_backfills_every_session_inside_its_hours(
    make_broker: Callable[..., Broker], store: Engine
) -> None:
    summary = _ingest(make_broker(), store, sessions=5)

    stock = _per_session(store, "005930")
    assert list(stock.index) == SIX
    assert (stock["min"].dt.time == dt.time(9, 0)).all() and (stock["max"].dt.time == dt.time(15, 29)).all()
    assert (stock["count"] == 390).all()
    futures = _per_session(store, "KOSPI200F")
    assert list(futures.index) == SIX
    assert (futures["min"].dt.time == dt.time(8, 45)).all() and (
        futures["max"].dt.time == dt.time(15, 44)
    ).all()
    for day in SIX:  # each session under its own front contract too (the roll to 101W12 is on 09-09)
        code = front_contract(day, 3).code
        assert _per_session(store, code).loc[day, "count"] == futures.loc[day, "count"], (day, code)
    assert {front_contract(d, 3).code for d in SIX} == {"101W09", "101W12"}
    progress = summary["backfill"]
    assert (progress["fetched"], progress["skipped"], progress["partial"]) == (12, 0, 0)
    assert (progress["first"], progress["last"], progress["requested"]) == ("2025-09-03", "2025-09-10", 5)
    assert progress["empty"] == [] and progress["clamped"] == [] and summary["failed"] == []


def test_a_second_run_fetches_nothing_that_is_stored_completely(
    make_broker: Callable[..., Broker], store: Engine
) -> None:
    broker = make_broker()
    _ingest(broker, store, sessions=5)
    calls, rows = broker.transport.chart_calls, len(read_bars(None, "1m", engine=store))

    again = _ingest(broker, store, sessions=5)

    assert broker.transport.chart_calls == calls  # not one chart request
    assert len(read_bars(None, "1m", engine=store)) == rows
    assert (again["backfill"]["fetched"], again["backfill"]["skipped"]) == (0, 12)
    assert again["fetched"] == 0 and again["window"] is None  # nothing new: no `bars` event


def test_a_session_stored_before_its_close_is_completed_by_the_next_run(
    make_broker: Callable[..., Broker], store: Engine
) -> None:
    broker = make_broker(dt.datetime(2025, 9, 10, 11, 0, tzinfo=KST))  # `krx data ingest` mid-session
    early = _ingest(broker, store, sessions=2, symbols=("005930",))
    assert _per_session(store, "005930")["count"].tolist() == [390, 390, 121]  # up to the 11:00 bar
    assert early["backfill"]["fetched"] == 3

    broker.set_clock(dt.datetime(2025, 9, 10, 16, 40, tzinfo=KST))
    calls = broker.transport.chart_calls
    later = _ingest(broker, store, sessions=2, symbols=("005930",))

    assert _per_session(store, "005930")["count"].tolist() == [390, 390, 390]
    progress = later["backfill"]
    assert (progress["fetched"], progress["partial"], progress["skipped"]) == (1, 1, 2)
    assert broker.transport.chart_calls - calls == 4  # one session's 390 bars at 120 rows a call
    assert later["inserted"] == 269 and later["updated"] <= 1  # the 11:00 bar was still forming


def test_a_past_session_missing_bars_in_the_store_is_fetched_again(
    make_broker: Callable[..., Broker], store: Engine
) -> None:
    broker = make_broker()
    _ingest(broker, store, sessions=3, symbols=("005930",))
    cut = pd.Timestamp("2025-09-08 13:00", tz=TZ_NAME).tz_convert("UTC").to_pydatetime()
    with store.begin() as conn:  # the afternoon of one session lost
        conn.execute(
            sa.text("DELETE FROM bars WHERE symbol = '005930' AND ts >= :a AND ts < :b"),
            {"a": cut, "b": cut + dt.timedelta(hours=6)},
        )

    again = _ingest(broker, store, sessions=3, symbols=("005930",))

    assert (again["backfill"]["fetched"], again["backfill"]["partial"]) == (1, 1)
    assert _per_session(store, "005930")["count"].tolist() == [390] * 4
    assert again["window"] is not None
    assert (again["window"]["start"], again["window"]["end"]) == ("2025-09-08", "2025-09-08")


def test_the_bars_event_window_covers_the_backfill_and_validates(
    make_broker: Callable[..., Broker], store: Engine
) -> None:
    summary = _ingest(make_broker(), store, sessions=5)
    window = summary["window"]
    assert window is not None
    assert (window["start"], window["end"], window["intervals"]) == ("2025-09-03", "2025-09-10", ["1m"])
    assert set(window["symbols"]) == {"005930", "KOSPI200F", "101W09", "101W12"}

    result = validate_and_featurize([window], settings=get_settings(), engine=store)

    (report,) = result["windows"]
    assert report["passed"] and report["quarantined"] == 0
    assert report["rows_in"] == len(read_bars(None, "1m", engine=store))  # every backfilled bar checked
    assert report["missing_sessions"] == {}
    assert report["features_written"] > 0


def test_a_backfill_past_the_brokers_retention_is_clamped_and_says_so(
    make_broker: Callable[..., Broker], store: Engine
) -> None:
    broker = make_broker(retention_days=10)  # a broker that keeps ten days of minute bars
    summary = _ingest(broker, store, sessions=20)

    kept = [d.date() for d in krx_sessions(SESSION - dt.timedelta(days=10), SESSION)]
    assert list(_per_session(store, "005930").index) == kept
    assert list(_per_session(store, "KOSPI200F").index) == kept
    progress = summary["backfill"]
    assert progress["first"] == kept[0].isoformat() and progress["fetched"] == 2 * len(kept)
    assert progress["empty"] == []  # not one request for a session the broker no longer has
    assert len(progress["clamped"]) == 2 and all("10 days back" in c for c in progress["clamped"])
    assert any("20 past sessions asked" in w and "005930" in w for w in summary["warnings"])


def test_kis_minute_retention_caps_a_long_backfill_at_about_a_year() -> None:
    sessions, note = plan_sessions(SESSION, 400, MINUTE_RETENTION_DAYS)
    assert sessions[-1] == SESSION and sessions[0] >= SESSION - dt.timedelta(days=365)
    assert 240 <= len(sessions) <= 250  # about a year of KRX sessions, not 400
    assert note is not None and "365 days back" in note
    recent, none = plan_sessions(SESSION, 5, MINUTE_RETENTION_DAYS)
    assert recent == SIX and none is None


def test_a_paper_account_backfills_futures_but_only_todays_stock_bars(
    make_broker: Callable[..., Broker], store: Engine
) -> None:
    summary = _ingest(make_broker(paper=True), store, sessions=2)

    assert list(_per_session(store, "005930").index) == [SESSION]  # KIS paper has no past-day stock TR
    assert list(_per_session(store, "KOSPI200F").index) == SIX[-3:]
    (clamp,) = summary["backfill"]["clamped"]
    assert clamp.startswith("005930") and "0 days back" in clamp


@pytest.mark.slow
def test_the_backfill_keeps_to_the_brokers_rate_limit(
    make_broker: Callable[..., Broker], store: Engine
) -> None:
    broker = make_broker(rate_limit=None)  # KIS's 20 calls/s per key; the client paces itself
    summary = _ingest(broker, store, sessions=3)

    assert summary["failed"] == [] and summary["backfill"]["fetched"] == 8
    assert list(_per_session(store, "KOSPI200F").index) == SIX[-4:]
    assert broker.transport.rejected == 0, broker.transport.sent


def test_krx_data_ingest_minute_sessions_overrides_the_setting(
    make_broker: Callable[..., Broker], sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from pipeline.cli import app
    from tests.ingest.conftest import APP_KEY, APP_SECRET

    broker = make_broker(rate_limit=None)
    env = {
        "KRX_KIS_BASE_URL": broker.server.base_url,
        "KRX_KIS_APP_KEY": APP_KEY,
        "KRX_KIS_APP_SECRET": APP_SECRET,
        "KRX_KIS_ACCOUNT_NO": "73310045",
        "KRX_DATABASE_URL": sqlite_url,
        "KRX_STOCK_SYMBOLS": "005930",
        "KRX_INDEX_SYMBOLS": "KOSPI",
        "KRX_INTRADAY_SYMBOLS": "005930",
        "KRX_INGEST_HISTORY_DAYS": "10",
        "KRX_INGEST_MINUTE_SESSIONS": "5",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()

    args = ["data", "ingest", "--day", "2025-09-10", "--minute-sessions", "1"]
    result = CliRunner().invoke(app, args, terminal_width=200)

    assert result.exit_code == 0, result.output
    engine = sa.create_engine(sqlite_url)
    assert list(_per_session(engine, "005930").index) == SIX[-2:]
    assert '"requested": 1' in result.output and '"skipped": 0' in result.output
    engine.dispose()


def test_a_past_session_the_broker_no_longer_serves_is_reported_empty_with_the_reason(
    make_broker: Callable[..., Broker], store: Engine
) -> None:
    # A year later (an Airflow backfill of an old date): the broker's retention now ends on 2025-09-09.
    broker = make_broker(dt.datetime(2026, 9, 9, 16, 40, tzinfo=KST))
    summary = _ingest(broker, store, sessions=2, symbols=("005930",))

    assert list(_per_session(store, "005930").index) == SIX[-2:]
    reason = "the broker returned no 1-minute bar of 005930"
    assert summary["backfill"]["empty"] == [{"symbol": "005930", "day": "2025-09-08", "reason": reason}]
    assert f"005930 1m 2025-09-08: {reason}" in summary["warnings"]
    assert summary["failed"] == [] and summary["window"] is not None
    assert summary["window"]["start"] == "2025-09-09"  # the window is what landed
