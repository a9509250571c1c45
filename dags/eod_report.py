"""
### eod_report

The end-of-day report of the trading account (`KRX_TRADING_ACCOUNT`, an alias), at 16:00 KST on weekdays
after the close; days that are not KRX sessions (holidays, from the exchange-calendars XKRX calendar) are
**skipped**, not failed.

1. asks the broker of `KRX_TRADING_MODE` (`pipeline.trading.brokers.make_broker`) for the account's cash,
   equity and holdings, and records them as the day's `eod` row of `account_snapshots` (a rerun updates
   that row, never adds a second). If the broker cannot be reached the report is still made from the store,
   with a warning at its top;
2. reads the day's `orders`, `fills`, `decisions` and `account_snapshots` from the store: daily PnL (equity
   at the end less the last snapshot before the day), orders per status, fills, rejections (broker and
   risk checks), costs (fees + tax), and the **slippage** of every fill against its order's decision price
   (buys fill − decision, sells decision − fill; in KRW and in bps, averaged weighted by quantity);
3. writes `<KRX_VAR_DIR>/reports/trading/<day>/eod-<account>-<day>.html` (self-contained, opens offline)
   and the figure `.png` beside it: equity over the day, drawdown, positions per symbol;
4. logs the run `eod-<account>-<day>` of the MLflow experiment `operations` (metrics `daily_pnl`, `equity`,
   `orders`, `fills`, `rejected`, `avg_slippage_bps`, `costs`, …; the HTML and PNG as artifacts). A rerun
   of the day updates that run instead of adding another.

Run a past day with `airflow dags test eod_report 2025-09-10` (a past day gets no broker snapshot: the
broker's state now says nothing of it).
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pendulum
from airflow.sdk import CronTriggerTimetable, dag, task
from krx_assets import TZ_NAME

if TYPE_CHECKING:
    from pipeline.trading.eod import EodSummary


@dag(
    dag_id="eod_report",
    schedule=CronTriggerTimetable("0 16 * * 1-5", timezone=TZ_NAME),
    start_date=pendulum.datetime(2025, 1, 1, tz=TZ_NAME),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=2)},
    tags=["krx", "trading", "reports", "mlflow"],
    doc_md=__doc__,
)
def eod_report() -> None:
    @task
    def report(*, logical_date: Any = None, dag_run: Any = None) -> EodSummary:
        """The day's report, written and logged; skipped unless the run's date is a KRX session."""
        from airflow.sdk.exceptions import AirflowSkipException

        from pipeline.config import get_settings
        from pipeline.ingest.tasks import session_day
        from pipeline.market import is_session
        from pipeline.trading.eod import broker_account, run_eod

        day = session_day(logical_date or dag_run.run_after)
        if not is_session(day):
            raise AirflowSkipException(f"{day} is not a KRX session: no report")
        settings = get_settings()
        state, now, warning = broker_account(settings)
        return run_eod(settings, day, state, now=now, warnings=[warning] if warning else []).summary()

    report()


eod_report()
