"""After ingest: windows from asset events, validation moves bad stored bars to quarantine, features land."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pipeline.config import get_settings
from pipeline.ingest import ingest_daily
from pipeline.ingest.quality import (
    MergedWindow,
    ValidationFailed,
    merge_windows,
    parse_windows,
    validate_and_featurize,
)
from pipeline.market import TZ_NAME
from pipeline.store import read_bars
from pipeline.store.schema import bars
from tests.ingest.test_ingest_bars import FakeSource

DAY = dt.date(2025, 9, 10)


def test_asset_event_windows_merge_per_interval() -> None:
    windows, skipped = parse_windows(
        [
            {"intervals": ["1d"], "symbols": ["005930"], "start": "2025-09-01", "end": "2025-09-05"},
            {"intervals": ["1d", "1m"], "symbols": ["000660"], "start": "2025-09-03", "end": "2025-09-10"},
            {"intervals": ["1m"], "symbols": [], "start": "2025-09-10", "end": "2025-09-10"},
            {},  # an event without extra (e.g. a manual asset update) is skipped, with its reason
        ]
    )
    merged = merge_windows(windows)
    assert merged["1d"] == MergedWindow(dt.date(2025, 9, 1), dt.date(2025, 9, 10), {"005930", "000660"})
    assert merged["1m"].start == dt.date(2025, 9, 3) and merged["1m"].every_symbol  # [] means all symbols
    assert [s["reason"] for s in skipped] == ["the event carries no window (empty extra)"]


def _window(days: int = 200) -> list[dict[str, object]]:
    start = (DAY - dt.timedelta(days=days)).isoformat()
    return [{"intervals": ["1d"], "symbols": ["005930"], "start": start, "end": DAY.isoformat()}]


def test_a_price_jump_beyond_the_daily_limit_is_moved_to_quarantine(store: Engine) -> None:
    ingest_daily(FakeSource(), ["005930"], DAY, engine=store, history_days=200)
    before = read_bars("005930", engine=store)
    with store.begin() as conn:  # a stored bar 60% above its neighbours: outside the +-30% limit
        conn.execute(
            sa.update(bars)
            .where(bars.c.ts == before["ts"].iloc[100].to_pydatetime())
            .values(close=bars.c.close * 1.6, high=bars.c.high * 1.6)
        )
    result = validate_and_featurize(_window(), settings=get_settings(), engine=store)
    window = result["windows"][0]
    assert window["quarantined"] >= 1 and window["passed"]
    after = read_bars("005930", engine=store)
    assert before["ts"].iloc[100] not in set(after["ts"])
    with store.connect() as conn:
        reason = conn.execute(sa.text("SELECT reason FROM bars_quarantine")).scalars().first()
        features = conn.execute(sa.text("SELECT count(*) FROM features")).scalar_one()
    assert "max_move_over_limit" in reason  # the daily price-limit expectation
    assert features > 0
    assert window["rows_in"] == window["good"] + window["quarantined"]


def test_too_many_failures_fail_the_run_after_quarantining(store: Engine) -> None:
    ingest_daily(FakeSource(), ["005930"], DAY, engine=store, history_days=30)
    stored = read_bars("005930", engine=store)
    broken = stored["ts"].iloc[::2]  # every other bar gets high below low
    with store.begin() as conn:
        for ts in broken:
            conn.execute(sa.update(bars).where(bars.c.ts == ts.to_pydatetime()).values(high=bars.c.low * 0.5))
    strict = get_settings().model_copy(update={"validation_max_failure_rate": 0.1})
    with pytest.raises(ValidationFailed, match="failure threshold"):
        validate_and_featurize(_window(30), settings=strict, engine=store)
    with store.connect() as conn:  # the failing bars are quarantined even though the run failed
        assert conn.execute(sa.text("SELECT count(*) FROM bars_quarantine")).scalar_one() == len(broken)
        assert conn.execute(sa.text("SELECT count(*) FROM features")).scalar_one() == 0


def test_a_bad_asset_event_is_skipped_with_its_reason_and_the_good_windows_are_validated(
    store: Engine,
) -> None:
    ingest_daily(FakeSource(), ["005930"], DAY, engine=store, history_days=30)
    events: list[dict[str, object]] = [
        {"intervals": ["1d"], "symbols": ["005930"], "start": "", "end": "2025-09-10"},  # an empty ingest
        {"intervals": ["1d"], "symbols": [], "start": "NaT", "end": "NaT"},
        *_window(30),
    ]
    result = validate_and_featurize(events, settings=get_settings(), engine=store)
    assert [(w["interval"], w["start"]) for w in result["windows"]] == [("1d", "2025-08-11")]
    assert result["windows"][0]["rows_in"] > 0 and result["windows"][0]["feature_set"] is not None
    reasons = [s["reason"] for s in result["skipped"]]
    assert len(reasons) == 2 and "start is missing" in reasons[0] and "not an ISO date" in reasons[1]


def test_events_that_all_fail_to_parse_validate_nothing_and_say_why(store: Engine) -> None:
    result = validate_and_featurize([{"start": "2025-09-10", "end": "2025-09-01"}], engine=store)
    assert result["windows"] == []
    assert "after end" in result["skipped"][0]["reason"]


def _break(store: Engine, ts: object, **values: object) -> None:
    with store.begin() as conn:
        conn.execute(sa.update(bars).where(bars.c.ts == ts).values(**values))


def test_look_back_bars_before_the_window_are_not_counted_or_quarantined_again(store: Engine) -> None:
    ingest_daily(FakeSource(), ["005930"], DAY, engine=store, history_days=30)
    stored = read_bars("005930", engine=store)
    kst_days = stored["ts"].dt.tz_convert(TZ_NAME).dt.date
    before = stored["ts"][kst_days == dt.date(2025, 9, 4)].iloc[0]  # the session before the window
    _break(store, before.to_pydatetime(), high=bars.c.low * 0.5)  # high below low: a bad bar
    window = [{"intervals": ["1d"], "symbols": ["005930"], "start": "2025-09-05", "end": "2025-09-10"}]
    report = validate_and_featurize(window, settings=get_settings(), engine=store)["windows"][0]
    assert (report["rows_in"], report["quarantined"]) == (4, 0)  # 09-05, 09-08, 09-09, 09-10 only
    assert before in set(read_bars("005930", engine=store)["ts"])  # not this window's business


def test_the_first_bar_of_a_window_is_checked_against_the_close_before_the_window(store: Engine) -> None:
    ingest_daily(FakeSource(), ["005930"], DAY, engine=store, history_days=30)
    stored = read_bars("005930", engine=store)
    kst_days = stored["ts"].dt.tz_convert(TZ_NAME).dt.date
    first = stored["ts"][kst_days == dt.date(2025, 9, 5)].iloc[0]
    _break(store, first.to_pydatetime(), close=bars.c.close * 1.6, high=bars.c.high * 1.6)
    window = [{"intervals": ["1d"], "symbols": ["005930"], "start": "2025-09-05", "end": "2025-09-10"}]
    lenient = get_settings().model_copy(update={"validation_max_failure_rate": 0.5})  # 1 of 4 bars
    report = validate_and_featurize(window, settings=lenient, engine=store)["windows"][0]
    assert (report["rows_in"], report["quarantined"]) == (4, 1)
    assert first not in set(read_bars("005930", engine=store)["ts"])


def _jump(store: Engine, stored: pd.DataFrame, row: int, move: float) -> pd.Timestamp:
    """Make bar ``row`` close (and peak or trough) ``move`` away from the previous bar's close; its ts."""
    target = stored["close"].iloc[row - 1] * (1 + move)
    ts = stored["ts"].iloc[row]
    extreme = {"high": target} if move > 0 else {"low": target}
    _break(store, ts.to_pydatetime(), close=target, **extreme)
    return ts


def test_a_futures_bar_beyond_its_20_percent_limit_is_quarantined_and_one_within_it_is_kept(
    store: Engine,
) -> None:
    contract = "101W09"  # a KOSPI200 futures contract: daily limit 20 %, not the 30 % of stocks
    ingest_daily(FakeSource(level={contract: 350.0}), [contract], DAY, engine=store, history_days=30)
    stored = read_bars(contract, engine=store)
    over = _jump(store, stored, 5, 0.25)  # beyond the futures limit, inside a stock's
    under = _jump(store, stored, 20, -0.25)
    within = _jump(store, stored, 12, 0.19)
    window = [{"intervals": ["1d"], "symbols": [contract], "start": "2025-08-11", "end": DAY.isoformat()}]
    lenient = get_settings().model_copy(update={"validation_max_failure_rate": 0.5})
    report = validate_and_featurize(window, settings=lenient, engine=store)["windows"][0]
    assert report["quarantined"] == 2
    kept = set(read_bars(contract, engine=store)["ts"])
    assert over not in kept and under not in kept and within in kept
    with store.connect() as conn:
        reasons = conn.execute(sa.text("SELECT reason FROM bars_quarantine")).scalars().all()
    assert all("max_move_over_limit" in r for r in reasons)
