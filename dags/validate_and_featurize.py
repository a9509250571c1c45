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

The run fails only when a window's failure rate exceeds `KRX_VALIDATION_MAX_FAILURE_RATE`; the Data Docs
page of every run is written under `<KRX_VAR_DIR>/data_docs/` and its path is in the task log.
Triggered by hand (no asset event), it checks the ten days up to the run's logical date.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import Asset, dag, task

BARS = Asset(name="bars", uri="krx://market-store/bars")
FEATURES = Asset(name="features", uri="krx://market-store/features")


@dag(
    dag_id="validate_and_featurize",
    schedule=[BARS],
    start_date=pendulum.datetime(2025, 1, 1, tz="Asia/Seoul"),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=1)},
    tags=["krx", "data", "quality"],
    doc_md=__doc__,
)
def validate_and_featurize() -> None:
    @task(outlets=[FEATURES])
    def validate_then_featurize(
        *, triggering_asset_events: Any = None, logical_date: Any = None
    ) -> dict[str, Any]:
        from pipeline.ingest.quality import validate_and_featurize as run
        from pipeline.ingest.tasks import session_day

        windows = [e.extra for e in (triggering_asset_events or {}).get(BARS, [])]
        return run(windows, default_end=session_day(logical_date))

    validate_then_featurize()


validate_and_featurize()
