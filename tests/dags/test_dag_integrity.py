"""DagBag integrity: every DAG imports cleanly, is tagged, documented, retried, and cheap to parse."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
DAG_FILES = sorted((ROOT / "dags").glob("*.py"))


@pytest.fixture(scope="module")
def dagbag():  # type: ignore[no-untyped-def]
    from airflow.dag_processing.dagbag import BundleDagBag

    # As the dag-processor and the task runner do: the bundle (dags/) is on sys.path for krx_assets.
    return BundleDagBag(dag_folder=str(ROOT / "dags"), bundle_path=ROOT / "dags")


def test_every_dag_imports_without_errors(dagbag) -> None:  # type: ignore[no-untyped-def]
    assert dagbag.import_errors == {}
    assert {"ingest_bars", "validate_and_featurize"} <= set(dagbag.dag_ids)


def test_dags_follow_the_house_rules(dagbag) -> None:  # type: ignore[no-untyped-def]
    for dag_id, dag in dagbag.dags.items():
        assert dag.tags, f"{dag_id} has no tags"
        assert dag.doc_md and dag_id in dag.doc_md, f"{dag_id} has no doc_md"
        assert dag.start_date is not None and dag.start_date.tzinfo is not None
        assert Path(dag.fileloc).stem == dag_id, "dag_id must equal the file name"
        # The per-minute trade run retries once: the next minute's run is the real retry, and orders are
        # idempotent, so a retry never sends twice.
        least = 1 if dag_id == "trade" else 2
        for t in dag.tasks:
            assert t.retries >= least, f"{dag_id}.{t.task_id} retries {t.retries}"


def test_the_data_dags_are_linked_by_the_one_bars_asset(dagbag) -> None:  # type: ignore[no-untyped-def]
    from krx_assets import BARS, BARS_WRITTEN, FEATURES

    ingest = dagbag.dags["ingest_bars"]
    # Ingest tasks write through an alias: a `bars` event is added only when bars landed.
    assert {o for t in ingest.tasks for o in t.outlets} == {BARS_WRITTEN}
    assert {t.pool for t in ingest.tasks if t.outlets} == {"kis_api"}
    validate = dagbag.dags["validate_and_featurize"]
    assert validate.timetable.asset_condition.objects == (BARS,)
    assert {a for t in validate.tasks for a in t.outlets} == {FEATURES}


def test_the_dags_schedule_on_the_market_time_zone(dagbag) -> None:  # type: ignore[no-untyped-def]
    from krx_assets import TZ_NAME

    from pipeline.market import TZ_NAME as MARKET_TZ

    assert TZ_NAME == MARKET_TZ
    for dag in dagbag.dags.values():
        assert dag.timezone.name == MARKET_TZ, dag.dag_id
    assert f"timezone={MARKET_TZ!r}" in repr(dagbag.dags["ingest_bars"].timetable)


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.stem)
def test_importing_a_dag_file_takes_under_a_second(path: Path) -> None:
    code = (
        "import sys, time, runpy, airflow.sdk, pendulum\n"
        f"sys.path.append({str(path.parent)!r})\n"
        "t = time.perf_counter()\n"
        f"runpy.run_path({str(path)!r})\n"
        "print(time.perf_counter() - t)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert float(proc.stdout.strip().splitlines()[-1]) < 1.0
