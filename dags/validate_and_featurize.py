"""
### validate_and_featurize

Runs whenever `ingest_bars` updates the Asset `bars`. For the window the ingest covered (carried in the
asset event) it:

1. validates the stored bars with the Great Expectations suite (`pipeline/validation`): schema and
   types, non-null, OHLC consistency, volume >= 0, unique (symbol, ts), timestamps inside the session,
   returns within the daily price limit; missing sessions versus the XKRX calendar are reported;
2. moves failing bars to `bars_quarantine` with the failed expectations as the reason;
3. builds the TA-Lib features (`pipeline/features`) for the window and stores them with their
   feature-set version (idempotent), then emits the Asset `features`.

Only the window's bars are validated, counted and quarantined; the session before it only supplies the
previous close for the price-limit check. An event whose extra is not a window (no dates, bad dates) is
skipped with its reason in the log and in the task's summary (`skipped`); the other events are validated.
The run fails only when a window's failure rate exceeds `KRX_VALIDATION_MAX_FAILURE_RATE`; the Data Docs
page of every run is written under `<KRX_VAR_DIR>/data_docs/` and its path is in the task log.
Triggered by hand (no asset event), it checks the windows given in the run's conf
(`{"windows": [<bars event extras>]}`, e.g. `airflow dags test validate_and_featurize <day> -c '{...}'`),
or else the ten days up to the run's date.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pendulum
from airflow.sdk import dag, task
from krx_assets import BARS, FEATURES, TZ_NAME

if TYPE_CHECKING:
    from pipeline.ingest.contracts import ValidationSummary


@dag(
    dag_id="validate_and_featurize",
    schedule=[BARS],
    start_date=pendulum.datetime(2025, 1, 1, tz=TZ_NAME),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=1)},
    tags=["krx", "data", "quality"],
    doc_md=__doc__,
)
def validate_and_featurize() -> None:
    @task(outlets=[FEATURES], multiple_outputs=False)
    def validate_then_featurize(
        *, triggering_asset_events: Any = None, logical_date: Any = None, dag_run: Any = None
    ) -> ValidationSummary:
        from pipeline.ingest.quality import validate_and_featurize as run
        from pipeline.ingest.tasks import session_day

        events = (triggering_asset_events or {}).get(BARS, [])
        # A run triggered by hand (or `airflow dags test -c`) may name the windows in its conf instead.
        conf = getattr(dag_run, "conf", None) or {}
        # Asset-triggered runs have no logical date: their day is when they were queued (run_after).
        day = session_day(logical_date or dag_run.run_after)
        return run([e.extra for e in events] or list(conf.get("windows") or []) or None, default_end=day)

    validate_then_featurize()


validate_and_featurize()
