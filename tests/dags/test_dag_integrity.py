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
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "dags"))


def test_every_dag_imports_without_errors(dagbag) -> None:  # type: ignore[no-untyped-def]
    assert dagbag.import_errors == {}
    assert {"ingest_bars", "validate_and_featurize"} <= set(dagbag.dag_ids)


def test_dags_follow_the_house_rules(dagbag) -> None:  # type: ignore[no-untyped-def]
    for dag_id, dag in dagbag.dags.items():
        assert dag.tags, f"{dag_id} has no tags"
        assert dag.doc_md and dag_id in dag.doc_md, f"{dag_id} has no doc_md"
        assert dag.start_date is not None and dag.start_date.tzinfo is not None
        assert Path(dag.fileloc).stem == dag_id, "dag_id must equal the file name"
        for t in dag.tasks:
            assert t.retries >= 2, f"{dag_id}.{t.task_id} retries {t.retries}"


def test_the_data_dags_are_linked_by_assets(dagbag) -> None:  # type: ignore[no-untyped-def]
    ingest = dagbag.dags["ingest_bars"]
    outlets = {a.name for t in ingest.tasks for a in t.outlets}
    assert outlets == {"bars"}
    assert {t.pool for t in ingest.tasks if t.outlets} == {"kis_api"}
    validate = dagbag.dags["validate_and_featurize"]
    assert {a.name for t in validate.tasks for a in t.outlets} == {"features"}


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.stem)
def test_importing_a_dag_file_takes_under_a_second(path: Path) -> None:
    code = (
        "import time, runpy, airflow.sdk, pendulum\n"
        "t = time.perf_counter()\n"
        f"runpy.run_path({str(path)!r})\n"
        "print(time.perf_counter() - t)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert float(proc.stdout.strip().splitlines()[-1]) < 1.0
