"""What the data DAGs' docs promise: ``ingest_bars`` runs at 16:40 KST on weekdays only, and takes its broker
from the Airflow connection ``kis_default`` when one exists, else from the ``KRX_KIS_*`` settings."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pendulum
import pytest

DAGS = Path(__file__).parents[2] / "dags"


def test_ingest_bars_runs_at_1640_kst_on_weekdays_only() -> None:
    from airflow.dag_processing.dagbag import BundleDagBag
    from airflow.timetables.base import TimeRestriction
    from airflow.timetables.trigger import CronTriggerTimetable

    declared = BundleDagBag(dag_folder=str(DAGS), bundle_path=DAGS).dags["ingest_bars"].timetable
    timetable = CronTriggerTimetable(declared.expression, timezone=declared.timezone)  # as the scheduler
    restriction = TimeRestriction(
        earliest=pendulum.datetime(2025, 6, 13, 17, 0, tz="UTC"), latest=None, catchup=True
    )
    info = timetable.next_dagrun_info(last_automated_data_interval=None, restriction=restriction)
    runs = []
    for _ in range(10):
        assert info is not None
        runs.append(info.run_after.in_timezone(str(declared.timezone)))
        info = timetable.next_dagrun_info(
            last_automated_data_interval=info.data_interval, restriction=restriction
        )
    assert {(r.hour, r.minute) for r in runs} == {(16, 40)}
    assert {r.isoweekday() for r in runs} == {1, 2, 3, 4, 5}  # two whole weeks, no Saturday or Sunday
    assert [r.date() for r in runs][:2] == [pendulum.date(2025, 6, 16), pendulum.date(2025, 6, 17)]


@pytest.fixture
def ingest_module(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):  # type: ignore[no-untyped-def]
    monkeypatch.syspath_prepend(str(DAGS))
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow"))
    monkeypatch.setenv("KRX_KIS_TOKEN_CACHE", str(tmp_path / "token.json"))
    monkeypatch.setenv("KRX_KIS_BASE_URL", "http://127.0.0.1:8901")
    from pipeline.config import get_settings

    get_settings.cache_clear()
    module = importlib.import_module("ingest_bars")
    yield module
    sys.modules.pop("ingest_bars", None)
    get_settings.cache_clear()


def test_the_broker_is_the_kis_default_connection_when_it_exists(ingest_module, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    conn = {
        "conn_type": "kis",
        "login": "PSconnectionkey0000000000000000000000",
        "password": "connection-secret",
        "host": "http://127.0.0.1:8902",
        "extra": {"account_no": "12345678", "product_code": "01", "environment": "sim"},
    }
    monkeypatch.setenv("AIRFLOW_CONN_KIS_DEFAULT", json.dumps(conn))
    with ingest_module._kis_client() as client:
        assert client.config.base_url == "http://127.0.0.1:8902"
        assert client.config.accounts(futures=False) == ("12345678", "01")


def test_without_the_connection_the_broker_comes_from_the_settings(ingest_module, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("AIRFLOW_CONN_KIS_DEFAULT", raising=False)
    with ingest_module._kis_client() as client:
        assert client.config.base_url == "http://127.0.0.1:8901"
