"""After ingest: windows from asset events, validation moves bad stored bars to quarantine, features land."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pipeline.config import get_settings
from pipeline.ingest import ingest_daily
from pipeline.ingest.quality import ValidationFailed, merge_windows, validate_and_featurize
from pipeline.store import read_bars
from pipeline.store.schema import bars
from tests.ingest.test_ingest_bars import FakeSource

DAY = dt.date(2025, 9, 10)


def test_asset_event_windows_merge_per_interval() -> None:
    merged = merge_windows(
        [
            {"intervals": ["1d"], "symbols": ["005930"], "start": "2025-09-01", "end": "2025-09-05"},
            {"intervals": ["1d", "1m"], "symbols": ["000660"], "start": "2025-09-03", "end": "2025-09-10"},
            {},  # an event without extra (e.g. a manual asset update) is ignored
        ]
    )
    assert merged["1d"] == {"symbols": {"005930", "000660"}, "start": "2025-09-01", "end": "2025-09-10"}
    assert merged["1m"]["start"] == "2025-09-03"


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
