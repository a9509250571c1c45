"""The `trade` DAG: it imports, runs one at a time without catch-up, fires every minute of the futures
session on weekdays only, skips out-of-session runs with the clock's reason, and works the kill switch
from the Airflow Variable `krx_trading_switch`."""

from __future__ import annotations

import datetime as dt
import importlib
import itertools
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pendulum
import pytest
from sqlalchemy.engine import Engine

from pipeline.config import Settings
from pipeline.market import KST, TZ_NAME
from pipeline.trading import state

DAGS = Path(__file__).parents[2] / "dags"


@pytest.fixture(scope="module")
def trade_dag() -> Any:
    from airflow.dag_processing.dagbag import BundleDagBag

    bag = BundleDagBag(dag_folder=str(DAGS), bundle_path=DAGS)
    assert not [path for path in bag.import_errors if Path(path).name == "trade.py"], bag.import_errors
    return bag.dags["trade"]


@pytest.fixture
def trade_module(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    monkeypatch.syspath_prepend(str(DAGS))
    module = importlib.import_module("trade")
    yield module
    sys.modules.pop("trade", None)


def test_one_run_at_a_time_no_catch_up_and_one_quick_retry(trade_dag: Any) -> None:
    assert trade_dag.max_active_runs == 1
    assert trade_dag.catchup is False
    assert [t.task_id for t in trade_dag.tasks] == ["trade"]
    task = trade_dag.tasks[0]
    assert task.retries <= 1 and task.retry_delay <= dt.timedelta(seconds=30)
    assert task.execution_timeout is not None and task.execution_timeout <= dt.timedelta(minutes=5)
    assert "krx_trading_switch" in trade_dag.doc_md and "trading" in trade_dag.tags


def _fire_times(trade_dag: Any, start: dt.datetime, count: int) -> list[dt.datetime]:
    """The next ``count`` run times after ``start``, from the timetable as the scheduler deserialises it."""
    from airflow.serialization.serialized_objects import DagSerialization
    from airflow.timetables.base import TimeRestriction

    timetable = DagSerialization.from_dict(DagSerialization.to_dict(trade_dag)).timetable
    restriction = TimeRestriction(earliest=pendulum.instance(start), latest=None, catchup=True)
    info = timetable.next_dagrun_info(last_automated_data_interval=None, restriction=restriction)
    out = []
    for _ in range(count):
        assert info is not None
        out.append(info.run_after.in_timezone(TZ_NAME))
        info = timetable.next_dagrun_info(
            last_automated_data_interval=info.data_interval, restriction=restriction
        )
    return out


def test_it_fires_every_session_minute_0845_to_1544_kst_on_weekdays_only(trade_dag: Any) -> None:
    per_day = 15 + 6 * 60 + 45  # 08:45-08:59, 09:00-14:59, 15:00-15:44
    # From Friday 2025-06-13 15:40 KST: the rest of Friday, then Monday and Tuesday whole.
    runs = _fire_times(trade_dag, dt.datetime(2025, 6, 13, 15, 40, tzinfo=KST), 5 + 2 * per_day)
    assert [(r.hour, r.minute) for r in runs[:6]] == [
        (15, 40),
        (15, 41),
        (15, 42),
        (15, 43),
        (15, 44),
        (8, 45),
    ]
    assert runs[5].date() == dt.date(2025, 6, 16)  # no Saturday or Sunday run
    by_day: dict[dt.date, list[dt.datetime]] = {}
    for r in runs[5:]:
        by_day.setdefault(r.date(), []).append(r)
    assert sorted(by_day) == [dt.date(2025, 6, 16), dt.date(2025, 6, 17)]
    for day, times in by_day.items():
        assert len(times) == per_day, day
        assert (times[0].hour, times[0].minute) == (8, 45)
        assert (times[-1].hour, times[-1].minute) == (15, 44)
        assert all(b - a == pendulum.duration(minutes=1) for a, b in itertools.pairwise(times))
        assert all(t.second == 0 for t in times)


# --- the kill-switch Variable ----------------------------------------------------------------------------
class FakeVariables:
    """Airflow Variables as a dict: what the helper reads and writes."""

    def __init__(self, **values: str) -> None:
        self.values = dict(values)
        self.writes: list[tuple[str, str]] = []

    def get(self, key: str) -> str | None:
        return self.values.get(key)

    def set(self, key: str, value: str) -> None:
        self.writes.append((key, value))
        self.values[key] = value


def _apply(module: ModuleType, variables: FakeVariables, store: Engine) -> str | None:
    settings = Settings(trading_account="desk1")
    result: str | None = module.apply_switch_variable(settings, variables.get, variables.set, engine=store)
    return result


def test_halt_engages_the_kill_switch_and_clears_the_variable(
    trade_module: ModuleType, store: Engine
) -> None:
    variables = FakeVariables(krx_trading_switch=" HALT ")
    assert _apply(trade_module, variables, store) == "halt"
    switch = state.halt_state(store, "desk1")
    assert switch.halted and switch.reason == "Airflow Variable krx_trading_switch=halt"
    assert variables.values["krx_trading_switch"] == ""
    assert not state.halt_state(store, "main").halted  # only the configured account

    # An empty Variable changes nothing: the switch stays engaged until someone resumes.
    assert _apply(trade_module, variables, store) is None
    assert state.halt_state(store, "desk1").halted
    assert len(variables.writes) == 1


def test_resume_clears_the_kill_switch_and_the_variable(trade_module: ModuleType, store: Engine) -> None:
    state.engage(store, "desk1", reason="daily loss limit", by="risk")
    variables = FakeVariables(krx_trading_switch="resume")
    assert _apply(trade_module, variables, store) == "resume"
    assert not state.halt_state(store, "desk1").halted
    assert variables.values["krx_trading_switch"] == ""
    assert any("airflow" in e["reason"] for e in state.recent_events(store, "desk1"))


def test_an_unknown_command_fails_before_touching_anything(trade_module: ModuleType, store: Engine) -> None:
    state.engage(store, "desk1", reason="daily loss limit", by="risk")
    variables = FakeVariables(krx_trading_switch="resmue")
    with pytest.raises(ValueError, match="'halt', 'resume'"):
        _apply(trade_module, variables, store)
    assert state.halt_state(store, "desk1").halted
    assert variables.writes == []


def test_a_command_that_cannot_be_cleared_fails_every_run(trade_module: ModuleType, store: Engine) -> None:
    class Unclearable(FakeVariables):  # an AIRFLOW_VAR_ environment variable wins over the DB
        def set(self, key: str, value: str) -> None:
            self.writes.append((key, value))

    variables = Unclearable(krx_trading_switch="resume")
    with pytest.raises(RuntimeError, match="cannot be cleared"):
        _apply(trade_module, variables, store)


# --- out of session: skipped with the clock's reason, before any trading ------------------------------------
@pytest.mark.integration
def test_a_holiday_run_is_skipped_with_the_reason(
    trade_dag: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.sdk.exceptions import AirflowSkipException

    from pipeline.config import get_settings
    from tests.dags.conftest import kis_env, running_simulator

    holiday = dt.datetime(2025, 10, 3, 10, 0, tzinfo=KST)  # National Foundation Day, a Friday
    with running_simulator(tmp_path / "sim.db", holiday) as url:
        for key, value in {**kis_env(url), "KRX_TRADING_MODE": "sim"}.items():
            monkeypatch.setenv(key, value)
        monkeypatch.delenv("AIRFLOW_VAR_KRX_TRADING_SWITCH", raising=False)
        get_settings.cache_clear()
        with pytest.raises(AirflowSkipException, match=r"holiday \(2025-10-03 is not a KRX session\)"):
            trade_dag.task_dict["trade"].python_callable()
    get_settings.cache_clear()
