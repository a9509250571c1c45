"""The data DAGs' task bodies, called directly: what they emit as `bars` events, which dates they use,
and that the broker client they open is closed."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pendulum
import pytest

from pipeline.ingest import tasks
from pipeline.ingest.contracts import BarsWindowExtra, IngestSummary

DAGS = Path(__file__).parents[2] / "dags"
RUN_AFTER = pendulum.datetime(2025, 9, 10, 7, 40, tz="UTC")  # 16:40 KST


@pytest.fixture(scope="module")
def dags() -> dict[str, Any]:
    from airflow.dag_processing.dagbag import BundleDagBag

    bag = BundleDagBag(dag_folder=str(DAGS), bundle_path=DAGS)
    assert bag.import_errors == {}
    return dict(bag.dags)


class OutletEvents:
    """Records what a task emits through its outlets (stands in for Airflow's accessors)."""

    def __init__(self) -> None:
        self.added: list[tuple[str, object]] = []

    def __getitem__(self, key: object) -> OutletEvents:
        return self

    def add(self, asset: Any, extra: object = None) -> None:
        self.added.append((asset.name, extra))


def _summary(window: BarsWindowExtra | None) -> IngestSummary:
    return IngestSummary(
        session=True,
        day="2025-09-10",
        fetched=0,
        inserted=0,
        updated=0,
        unchanged=0,
        quarantined=0,
        symbols=[],
        intervals=["1d"],
        failed=[],
        empty=[],
        warnings=[],
        window=window,
    )


def _run_ingest_task(dags: dict[str, Any], task_id: str) -> OutletEvents:
    events = OutletEvents()
    callable_ = dags["ingest_bars"].get_task(task_id).python_callable
    callable_(logical_date=None, dag_run=SimpleNamespace(run_after=RUN_AFTER), outlet_events=events)
    return events


@pytest.fixture
def fake_ingest(monkeypatch: pytest.MonkeyPatch) -> list[tuple[dt.date, Any]]:
    """Replace the ingest functions; record (day, source) of each call."""
    calls: list[tuple[dt.date, Any]] = []
    window = BarsWindowExtra(symbols=["005930"], intervals=["1d"], start="2025-09-10", end="2025-09-10")

    def fake(day: dt.date, *, source: Any) -> IngestSummary:
        calls.append((day, source))
        return _summary(window if len(calls) == 1 else None)  # the first call stores bars, later ones none

    monkeypatch.setattr(tasks, "ingest_daily_session", fake)
    monkeypatch.setattr(tasks, "ingest_minute_session", fake)
    return calls


def test_an_ingest_task_emits_its_window_as_a_bars_event_and_nothing_when_empty(
    dags: dict[str, Any], fake_ingest: list[tuple[dt.date, Any]]
) -> None:
    stored = _run_ingest_task(dags, "daily_bars")
    assert stored.added == [
        ("bars", {"symbols": ["005930"], "intervals": ["1d"], "start": "2025-09-10", "end": "2025-09-10"})
    ]
    empty = _run_ingest_task(dags, "minute_bars")  # the second call stored nothing
    assert empty.added == []
    assert [day for day, _ in fake_ingest] == [dt.date(2025, 9, 10)] * 2  # from run_after: no logical date


def test_the_ingest_dag_closes_the_kis_client_it_opens(
    dags: dict[str, Any], fake_ingest: list[tuple[dt.date, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline.kis import KisClient

    closed: list[KisClient] = []
    monkeypatch.setattr(KisClient, "close", lambda self: closed.append(self))
    _run_ingest_task(dags, "daily_bars")
    source = fake_ingest[0][1]
    assert closed == [source.client]


@pytest.fixture
def validation_calls(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """What the validation task passed to ``pipeline.ingest.quality.validate_and_featurize`` (stubbed)."""
    from pipeline.ingest import quality

    seen: dict[str, Any] = {}

    def fake(windows: Any, *, default_end: dt.date) -> dict[str, Any]:
        seen.update(windows=windows, default_end=default_end)
        return {"windows": [], "skipped": []}

    monkeypatch.setattr(quality, "validate_and_featurize", fake)
    return seen


def test_an_asset_triggered_validation_uses_run_after_and_every_event(
    dags: dict[str, Any], validation_calls: dict[str, Any]
) -> None:
    seen = validation_calls
    from krx_assets import BARS

    events = {BARS: [SimpleNamespace(extra={"start": ""}), SimpleNamespace(extra={"start": "2025-09-10"})]}
    task = dags["validate_and_featurize"].get_task("validate_then_featurize")
    task.python_callable(
        triggering_asset_events=events, logical_date=None, dag_run=SimpleNamespace(run_after=RUN_AFTER)
    )
    assert seen == {"windows": [{"start": ""}, {"start": "2025-09-10"}], "default_end": dt.date(2025, 9, 10)}


def test_a_validation_triggered_by_hand_takes_the_windows_of_its_conf(
    dags: dict[str, Any], validation_calls: dict[str, Any]
) -> None:
    seen = validation_calls
    task = dags["validate_and_featurize"].get_task("validate_then_featurize")
    window = {"symbols": [], "intervals": ["1d"], "start": "2022-09-01", "end": "2025-09-10"}
    task.python_callable(
        triggering_asset_events={},
        logical_date=None,
        dag_run=SimpleNamespace(run_after=RUN_AFTER, conf={"windows": [window]}),
    )
    assert seen["windows"] == [window]
    task.python_callable(
        triggering_asset_events={}, logical_date=None, dag_run=SimpleNamespace(run_after=RUN_AFTER)
    )
    assert seen["windows"] is None  # no conf: the ten days up to the run's date


def test_the_minute_task_emits_one_bars_event_covering_the_backfilled_sessions(
    dags: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sqlite_url: str
) -> None:
    from pipeline.config import get_settings
    from pipeline.market import KST
    from tests.dags.conftest import kis_env, running_simulator

    with running_simulator(tmp_path / "sim.db", dt.datetime(2025, 9, 10, 16, 40, tzinfo=KST)) as url:
        env = {**kis_env(url), "KRX_INGEST_MINUTE_SESSIONS": "2", "KRX_DATABASE_URL": sqlite_url}
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        get_settings.cache_clear()
        events = _run_ingest_task(dags, "minute_bars")
    window = {"symbols": ["005930"], "intervals": ["1m"], "start": "2025-09-08", "end": "2025-09-10"}
    assert events.added == [("bars", window)]  # the session and the two before it, validated together
