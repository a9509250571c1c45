"""Ingest: malformed broker rows are quarantined with a reason, reruns are idempotent, futures roll."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pipeline.ingest import ingest_daily, ingest_futures_daily, ingest_minutes
from pipeline.market import TZ_NAME, is_contract_code, krx_sessions
from pipeline.store import read_bars
from tests.factories import count_bars


class FakeSource:
    """Serves hand-made raw broker rows (strings, like KIS) and can inject malformed ones."""

    name = "fake"

    def __init__(
        self, bad: dict[str, list[dict[str, object]]] | None = None, level: dict[str, float] | None = None
    ):
        self.bad = bad or {}
        self.level = level or {}
        self.calls: list[tuple[str, str, str]] = []

    def _rows(self, symbol: str, stamps: pd.DatetimeIndex) -> pd.DataFrame:
        base = self.level.get(symbol, 50_000.0)
        close = base + np.arange(len(stamps)) * 10.0
        frame = pd.DataFrame(
            {
                "ts": stamps,
                "open": (close - 5).astype(str),
                "high": (close + 20).astype(str),
                "low": (close - 20).astype(str),
                "close": close.astype(str),
                "volume": "1000",
                "turnover": "",
            }
        )
        extra = pd.DataFrame(self.bad.get(symbol, []))
        frame["ts"] = frame["ts"].astype(object)  # broker rows arrive untyped
        return pd.concat([frame, extra], ignore_index=True) if len(extra) else frame

    def daily(self, symbol: str, start: dt.date, end: dt.date) -> pd.DataFrame:
        self.calls.append((symbol, start.isoformat(), end.isoformat()))
        days = krx_sessions(start, end).tz_localize(TZ_NAME)
        return self._rows(symbol, days)

    def minutes(self, symbol: str, day: dt.date) -> pd.DataFrame:
        self.calls.append((symbol, day.isoformat(), day.isoformat()))
        stamps = pd.date_range(f"{day} 09:00", periods=30, freq="min", tz=TZ_NAME)
        return self._rows(symbol, stamps)

    def minute_history_days(self, symbol: str) -> int:
        return 365


MALFORMED = [
    {"ts": "2025-09-01", "open": "abc", "high": "1", "low": "1", "close": "1", "volume": "1"},
    {"ts": "2025-09-02", "open": "", "high": "", "low": "", "close": "", "volume": ""},
    {"ts": "2025-09-03", "open": "0", "high": "0", "low": "0", "close": "0", "volume": "5"},
    {"ts": None, "open": "1", "high": "1", "low": "1", "close": "1", "volume": "1"},
]


def test_malformed_rows_are_quarantined_with_reasons_and_the_rest_lands(store: Engine) -> None:
    source = FakeSource(bad={"005930": MALFORMED})
    day = dt.date(2025, 9, 10)
    report = ingest_daily(source, ["005930", "000660"], day, engine=store, history_days=30)
    assert not report.failed
    sessions = len(krx_sessions(day - dt.timedelta(days=30), day))
    totals = {k: report.total(k) for k in ("fetched", "inserted", "updated", "unchanged", "quarantined")}
    assert totals["fetched"] == 2 * sessions + len(MALFORMED)
    assert totals["quarantined"] == len(MALFORMED)
    assert (
        totals["fetched"]
        == totals["inserted"] + totals["updated"] + totals["unchanged"] + totals["quarantined"]
    )
    assert count_bars(store) == 2 * sessions
    with store.connect() as conn:
        reasons = [r for (r,) in conn.execute(sa.text("SELECT reason FROM bars_quarantine"))]
    assert len(reasons) == len(MALFORMED)
    for problem in ("open is not a finite number", "close is not a finite number", "close is not positive"):
        assert any(problem in r for r in reasons), (problem, reasons)  # in any order
    assert any("ts is missing" in r for r in reasons), reasons


def test_duplicated_timestamps_from_the_broker_are_quarantined(store: Engine) -> None:
    dup = [
        {
            "ts": pd.Timestamp("2025-09-10", tz=TZ_NAME),
            "open": "1",
            "high": "2",
            "low": "1",
            "close": "2",
            "volume": "1",
        }
    ]
    report = ingest_daily(
        FakeSource(bad={"005930": dup}), ["005930"], dt.date(2025, 9, 10), engine=store, history_days=5
    )
    assert report.total("quarantined") == 2  # both copies: the store cannot tell which one is right
    with store.connect() as conn:
        assert (
            conn.execute(
                sa.text("SELECT count(*) FROM bars_quarantine WHERE reason LIKE '%duplicate%'")
            ).scalar()
            == 2
        )


def test_daily_runs_fetch_only_what_is_missing_and_reruns_change_nothing(store: Engine) -> None:
    source = FakeSource()
    ingest_daily(source, ["005930"], dt.date(2025, 9, 10), engine=store, history_days=20)
    before = count_bars(store)
    rerun = ingest_daily(source, ["005930"], dt.date(2025, 9, 10), engine=store, history_days=20)
    assert count_bars(store) == before
    assert rerun.total("inserted") == 0
    nxt = ingest_daily(source, ["005930"], dt.date(2025, 9, 12), engine=store, history_days=20)
    assert source.calls[-1] == ("005930", "2025-09-11", "2025-09-12")  # only the missing days
    assert nxt.total("inserted") == 2


def test_a_broker_failure_on_one_symbol_is_reported_and_the_others_still_land(store: Engine) -> None:
    class Flaky(FakeSource):
        def daily(self, symbol: str, start: dt.date, end: dt.date) -> pd.DataFrame:
            if symbol == "000660":
                raise TimeoutError("broker timed out")
            return super().daily(symbol, start, end)

    report = ingest_daily(Flaky(), ["005930", "000660"], dt.date(2025, 9, 10), engine=store, history_days=5)
    assert [f.symbol for f in report.failed] == ["000660"]
    assert "broker timed out" in (report.failed[0].error or "")
    assert set(read_bars(engine=store)["symbol"]) == {"005930"}


def test_minute_bars_for_a_session_are_idempotent(store: Engine) -> None:
    day = dt.date(2025, 9, 10)
    first = ingest_minutes(FakeSource(), ["005930"], day, engine=store)
    again = ingest_minutes(FakeSource(), ["005930"], day, engine=store)
    assert first.total("inserted") == 30 and again.total("unchanged") == 30
    bars = read_bars("005930", "1m", engine=store)
    assert bars["ts"].iloc[0] == pd.Timestamp("2025-09-10 00:00", tz="UTC")  # 09:00 KST


@pytest.mark.parametrize("method", ["difference", "ratio"])
def test_futures_continuous_series_is_back_adjusted_across_a_roll(store: Engine, method: str) -> None:
    # June contract around 300, September 20 points higher: the roll day is 2025-06-09 (3 sessions early).
    source = FakeSource(level={"101W06": 300.0, "101W09": 320.0, "101W12": 340.0})
    report = ingest_futures_daily(
        source,
        dt.date(2025, 6, 20),
        engine=store,
        continuous_symbol="KOSPI200F",
        roll_days=3,
        method=method,
        history_days=40,  # type: ignore[arg-type]
    )
    assert not report.failed
    cont = read_bars("KOSPI200F", engine=store)
    june = read_bars("101W06", engine=store)
    assert {"101W06", "101W09"} <= set(read_bars(engine=store)["symbol"])
    with store.connect() as conn:
        rolls = conn.execute(
            sa.text("SELECT from_contract, to_contract, adjustment FROM futures_rolls")
        ).all()
    assert [(r[0], r[1]) for r in rolls] == [("101W06", "101W09")]
    kst = cont["ts"].dt.tz_convert(TZ_NAME).dt.date
    roll_day = cont[kst == dt.date(2025, 6, 9)]["close"].iloc[0]
    after = cont[kst == dt.date(2025, 6, 10)]["close"].iloc[0]
    sep = read_bars("101W09", engine=store)
    sep_kst = sep["ts"].dt.tz_convert(TZ_NAME).dt.date
    sep_on_roll = float(sep[sep_kst == dt.date(2025, 6, 9)]["close"].iloc[0])
    assert roll_day == pytest.approx(sep_on_roll)  # older history moved onto the new contract's level
    raw_june_roll = float(
        june[june["ts"].dt.tz_convert(TZ_NAME).dt.date == dt.date(2025, 6, 9)]["close"].iloc[0]
    )
    if method == "difference":
        assert rolls[0][2] == pytest.approx(sep_on_roll - raw_june_roll)
    else:
        assert rolls[0][2] == pytest.approx(sep_on_roll / raw_june_roll)
    assert after > roll_day  # no artificial jump at the roll
    assert set(cont["source"]) == {f"continuous:{method}"}
    rerun = ingest_futures_daily(
        source,
        dt.date(2025, 6, 20),
        engine=store,
        continuous_symbol="KOSPI200F",
        roll_days=3,
        method=method,  # type: ignore[arg-type]
    )
    assert rerun.total("inserted") == 0


def test_rebuilding_the_continuous_futures_series_reads_only_contract_bars(
    store: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline.ingest import futures

    ingest_daily(FakeSource(), ["005930", "000660"], dt.date(2025, 6, 20), engine=store, history_days=40)
    asked: list[Any] = []
    real = futures.read_bars

    def spy(symbols: object = None, *args: object, **kwargs: object) -> pd.DataFrame:
        asked.append(symbols)
        return real(symbols, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(futures, "read_bars", spy)
    source = FakeSource(level={"101W06": 300.0, "101W09": 320.0})
    ingest_futures_daily(
        source, dt.date(2025, 6, 20), engine=store, continuous_symbol="KOSPI200F", roll_days=3, method="ratio"
    )
    assert asked and all(isinstance(s, list | tuple) for s in asked), asked  # never "every symbol"
    read = {s for symbols in asked for s in symbols}
    assert {"101W06", "101W09"} <= read and all(is_contract_code(s) for s in read)
    assert len(read_bars("KOSPI200F", engine=store)) > 0
