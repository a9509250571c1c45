"""
### ingest_bars

Collects KRX market data from KIS (or the local simulator) after every KRX session:

* **daily bars** of the stock universe (`KRX_STOCK_SYMBOLS`), the indices (`KRX_INDEX_SYMBOLS`) and the
  KOSPI200 front-month futures (each contract under its own code, plus the back-adjusted continuous series
  `KRX_FUTURES_SYMBOL` with its roll log in `futures_rolls`);
* **1-minute bars** of `KRX_INTRADAY_SYMBOLS` for the session and a backfill of the
  `KRX_INGEST_MINUTE_SESSIONS` (default 20) XKRX sessions before it: a session already stored up to its
  close is skipped, a missing or partial one fetched (futures through that session's front contract, under
  its code and under the continuous symbol), never further back than KIS keeps minute bars (about a year:
  the task clamps and warns). The summary's `backfill` counts sessions fetched / skipped / empty (with
  reasons).

Runs at 16:40 KST on weekdays; non-sessions (holidays, from exchange-calendars XKRX) are skipped.
Every write is an upsert keyed by (symbol, interval, ts), so reruns and backfills
(`airflow backfill create --dag-id ingest_bars --from-date … --to-date …`) never duplicate.
Malformed broker rows go to `bars_quarantine` with a reason. Broker calls run in the `kis_api` pool.
The broker comes from the Airflow connection `kis_default` when it exists, else from `KRX_KIS_*` settings.

A session the broker has no bar for is reported: daily bars fail the task after storing the rest (so it is
retried), missing 1-minute bars are a warning in the task's summary. Each task emits an event of the Asset
`bars` carrying the window it stored (`pipeline.ingest.contracts.BarsWindowExtra`; for minute bars the
oldest to the newest session fetched) for `validate_and_featurize` — and no event when nothing landed.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pendulum
from airflow.sdk import CronTriggerTimetable, dag, task
from krx_assets import BARS, BARS_WRITTEN, TZ_NAME

if TYPE_CHECKING:
    from pipeline.ingest.contracts import IngestSummary
    from pipeline.kis import KisClient

DEFAULT_ARGS = {
    "retries": 3,
    "retry_delay": timedelta(minutes=2),
    "retry_exponential_backoff": True,
    "pool": "kis_api",
}


def _kis_client() -> KisClient:
    """The client of the `kis_default` connection, else of the `KRX_KIS_*` settings; close it after use."""
    from airflow.sdk.exceptions import AirflowNotFoundException
    from krx_airflow_provider.hooks.kis import KisHook

    from pipeline.kis import KisClient

    try:
        return KisHook().get_conn()
    except AirflowNotFoundException:
        return KisClient.from_settings()


def _emit(summary: IngestSummary, outlet_events: Any) -> IngestSummary:
    if summary["window"] is not None:
        outlet_events[BARS_WRITTEN].add(BARS, extra=dict(summary["window"]))
    return summary


@dag(
    dag_id="ingest_bars",
    schedule=CronTriggerTimetable("40 16 * * 1-5", timezone=TZ_NAME),
    start_date=pendulum.datetime(2025, 1, 1, tz=TZ_NAME),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["krx", "data", "kis"],
    doc_md=__doc__,
)
def ingest_bars() -> None:
    @task.short_circuit(pool="default_pool")
    def krx_session(*, logical_date: Any = None, dag_run: Any = None) -> bool:
        """Skip the run unless its date is a KRX session."""
        from pipeline.ingest.tasks import session_day
        from pipeline.market import is_session

        return is_session(session_day(logical_date or dag_run.run_after))

    @task(outlets=[BARS_WRITTEN], multiple_outputs=False)
    def daily_bars(
        *, logical_date: Any = None, dag_run: Any = None, outlet_events: Any = None
    ) -> IngestSummary:
        from pipeline.ingest.sources import KisBarSource
        from pipeline.ingest.tasks import ingest_daily_session, session_day

        with _kis_client() as client:
            summary = ingest_daily_session(
                session_day(logical_date or dag_run.run_after), source=KisBarSource(client)
            )
        return _emit(summary, outlet_events)

    @task(outlets=[BARS_WRITTEN], multiple_outputs=False)
    def minute_bars(
        *, logical_date: Any = None, dag_run: Any = None, outlet_events: Any = None
    ) -> IngestSummary:
        from pipeline.ingest.sources import KisBarSource
        from pipeline.ingest.tasks import ingest_minute_session, session_day

        with _kis_client() as client:
            summary = ingest_minute_session(
                session_day(logical_date or dag_run.run_after), source=KisBarSource(client)
            )
        return _emit(summary, outlet_events)

    krx_session() >> daily_bars() >> minute_bars()


ingest_bars()
