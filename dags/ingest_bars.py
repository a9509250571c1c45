"""
### ingest_bars

Collects KRX market data from KIS (or the local simulator) after every KRX session:

* **daily bars** of the stock universe (`KRX_STOCK_SYMBOLS`), the indices (`KRX_INDEX_SYMBOLS`) and the
  KOSPI200 front-month futures (each contract under its own code, plus the back-adjusted continuous series
  `KRX_FUTURES_SYMBOL` with its roll log in `futures_rolls`);
* **1-minute bars** of `KRX_INTRADAY_SYMBOLS` for the session.

Runs at 16:40 KST on weekdays; non-sessions (holidays, from exchange-calendars XKRX) are skipped.
Every write is an upsert keyed by (symbol, interval, ts), so reruns and backfills
(`airflow backfill create --dag-id ingest_bars --from-date … --to-date …`) never duplicate.
Malformed broker rows go to `bars_quarantine` with a reason. Broker calls run in the `kis_api` pool.
The broker comes from the Airflow connection `kis_default` when it exists, else from `KRX_KIS_*` settings.
Emits the Asset `bars` (with the covered window) for `validate_and_featurize`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import Asset, CronTriggerTimetable, dag, task

BARS = Asset(name="bars", uri="krx://market-store/bars")

DEFAULT_ARGS = {
    "retries": 3,
    "retry_delay": timedelta(minutes=2),
    "retry_exponential_backoff": True,
    "pool": "kis_api",
}


def _bar_source() -> Any:
    from airflow.sdk.exceptions import AirflowNotFoundException
    from krx_airflow_provider.hooks.kis import KisHook

    from pipeline.ingest.sources import KisBarSource
    from pipeline.ingest.tasks import kis_source

    try:
        return KisBarSource(KisHook().get_conn())
    except AirflowNotFoundException:
        return kis_source()


@dag(
    dag_id="ingest_bars",
    schedule=CronTriggerTimetable("40 16 * * 1-5", timezone="Asia/Seoul"),
    start_date=pendulum.datetime(2025, 1, 1, tz="Asia/Seoul"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["krx", "data", "kis"],
    doc_md=__doc__,
)
def ingest_bars() -> None:
    @task.short_circuit(pool="default_pool")
    def krx_session(*, logical_date: Any = None) -> bool:
        """Skip the run unless its date is a KRX session."""
        from pipeline.ingest.tasks import session_day
        from pipeline.universe import is_session

        return is_session(session_day(logical_date))

    @task(outlets=[BARS])
    def daily_bars(*, logical_date: Any = None, outlet_events: Any = None) -> dict[str, Any]:
        from pipeline.ingest.tasks import ingest_daily_session, session_day

        result = ingest_daily_session(session_day(logical_date), source=_bar_source())
        outlet_events[BARS].extra = {k: result[k] for k in ("symbols", "intervals", "start", "end")}
        return result

    @task(outlets=[BARS])
    def minute_bars(*, logical_date: Any = None, outlet_events: Any = None) -> dict[str, Any]:
        from pipeline.ingest.tasks import ingest_minute_session, session_day

        result = ingest_minute_session(session_day(logical_date), source=_bar_source())
        outlet_events[BARS].extra = {k: result[k] for k in ("symbols", "intervals", "start", "end")}
        return result

    krx_session() >> daily_bars() >> minute_bars()


ingest_bars()
