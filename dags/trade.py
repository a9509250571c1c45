"""
### trade

The trading job: every minute of the KRX session, one run of `pipeline.trading.engine.run_trading` for the
model specs in `KRX_TRADING_SPECS`, with the broker of `KRX_TRADING_MODE` (`sim`, `vts`, `real`,
`dry-run`) and the account alias `KRX_TRADING_ACCOUNT`.

**Schedule.** Every minute from 08:45 to 15:44 KST, Monday to Friday (the futures session, 08:45-15:45;
the stock session 09:00-15:30 lies inside it). At 15:45 the futures session has closed, so no run is
scheduled then. Holidays, a year's later first open (10:00) and the futures expiry-day close (15:20) come
from the XKRX calendar through `pipeline.trading.clock`: a run outside every traded kind's session does
nothing and ends **skipped** with the reason (e.g. `holiday (2025-10-03 is not a KRX session)`), never
failed. In `sim` mode the session is judged on the simulator's clock, not on Airflow's (the schedule still
fires on KST wall-clock minutes: to trade an accelerated simulated session at another hour, trigger runs
by hand or with `airflow dags test trade`). Late closes that the calendar knows (exam days before 2021,
16:30) are not scheduled past 15:44.

**A run** (see the engine for details): resolves orders in an unknown state by asking the broker, tracks
working orders and fills, reconciles the broker's balance with the database (the broker wins; a difference
that persists engages the kill switch), and — for each spec whose bar interval has a newly closed bar —
asks the model server for a target, turns it into an order, checks the risk limits and sends it. The
task returns a summary (decisions, fills, reconciliation differences) as its XCom.

**Kill switch from Airflow.** The Variable `krx_trading_switch` is read at the start of every run:
`halt` engages the kill switch of the account (as `krx trading halt` does; reason
"Airflow Variable krx_trading_switch=halt"), `resume` clears it (as `krx trading resume`). Both are
commands: once carried out, the task sets the Variable back to empty, so that the switch itself — shown by
`krx trading status` — is the one state, and a resume typed on the CLI is not undone by a Variable left at
`halt`. Any other non-empty value fails the run before trading, naming the accepted values. Set the
Variable in the UI or with `airflow variables set krx_trading_switch halt`, not as an `AIRFLOW_VAR_…`
environment variable: that one cannot be cleared, so the run fails (and trades nothing) until it is
removed. The switch is persisted in the store: a halted account stays halted across restarts until
someone resumes it.

**Retries: one, after 5 s; `max_active_runs=1`, no catch-up.** Retrying is safe: every order intent is
committed with a deterministic key before it is sent, and a retry first resolves unknown intents with the
broker instead of sending again. More retries would not help: the next minute's run does the same work,
and a run that retries for long holds back the next one (only one run at a time; minutes missed while a
run is busy are not caught up — the next run starts at the latest minute). A run is stopped after
`execution_timeout` (2 min) so that a hung call cannot block trading for the rest of the session.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pendulum
from airflow.sdk import MultipleCronTriggerTimetable, dag, task
from krx_assets import TZ_NAME

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from pipeline.config import Settings

#: The Airflow Variable a person sets to ``halt`` or ``resume`` to work the kill switch from the UI.
SWITCH_VARIABLE = "krx_trading_switch"
SWITCH_COMMANDS = ("halt", "resume")

#: Every minute of the futures session 08:45-15:44 on weekdays (the stock session lies inside).
SESSION_CRONS = ("45-59 8 * * 1-5", "* 9-14 * * 1-5", "0-44 15 * * 1-5")

DEFAULT_ARGS = {
    "retries": 1,
    "retry_delay": timedelta(seconds=5),
    "execution_timeout": timedelta(minutes=2),
}


def apply_switch_variable(
    settings: Settings,
    get_variable: Callable[[str], str | None] | None = None,
    set_variable: Callable[[str, str], None] | None = None,
    engine: Engine | None = None,
) -> str | None:
    """Carry out the command in the Variable ``krx_trading_switch``: ``halt`` engages the kill switch of
    ``settings.trading_account``, ``resume`` clears it; then the Variable is set back to empty. Returns
    the command carried out (None when the Variable is empty or missing); any other value raises
    ``ValueError`` before anything is traded. ``get_variable`` / ``set_variable`` default to Airflow's."""
    if get_variable is None or set_variable is None:
        from airflow.sdk import Variable

        get_variable = get_variable or (lambda key: Variable.get(key, default=""))
        set_variable = set_variable or (lambda key, value: Variable.set(key, value))
    value = str(get_variable(SWITCH_VARIABLE) or "").strip().lower()
    if not value:
        return None
    if value not in SWITCH_COMMANDS:
        raise ValueError(
            f"Airflow Variable {SWITCH_VARIABLE}={value!r} is not a command: use 'halt', 'resume' or empty"
        )
    from pipeline.trading import state
    from pipeline.trading.engine import store_engine

    engine = engine or store_engine(settings)
    account = settings.trading_account
    if value == "halt":
        state.engage(engine, account, reason=f"Airflow Variable {SWITCH_VARIABLE}=halt", by="airflow")
    else:
        state.resume(engine, account, by="airflow")
    # Cleared only once carried out: a failure in between repeats the (idempotent) command next run.
    set_variable(SWITCH_VARIABLE, "")
    if str(get_variable(SWITCH_VARIABLE) or "").strip():
        # Set in the environment (AIRFLOW_VAR_...) or a secrets backend, which win over the metadata DB:
        # the command would repeat every run (a standing `resume` would defeat the kill switch), so fail.
        raise RuntimeError(
            f"{SWITCH_VARIABLE}={value!r} was carried out but cannot be cleared: it is set outside the "
            "metadata DB (environment or secrets backend); remove it there and set it in the UI instead"
        )
    return value


@dag(
    dag_id="trade",
    schedule=MultipleCronTriggerTimetable(*SESSION_CRONS, timezone=TZ_NAME),
    start_date=pendulum.datetime(2025, 1, 1, tz=TZ_NAME),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["krx", "trading", "kis"],
    doc_md=__doc__,
)
def trade() -> None:
    @task(task_id="trade")
    def trade_once() -> dict[str, Any]:
        """Apply the switch Variable, then one trading run; out of session it ends skipped."""
        from airflow.sdk.exceptions import AirflowSkipException

        from pipeline.config import get_settings
        from pipeline.observability import configure_task_logging
        from pipeline.trading.engine import run_trading

        settings = get_settings()
        configure_task_logging(settings)  # KRX_LOG_FORMAT=json: the trading path's lines as JSON
        apply_switch_variable(settings)
        # The engine picks the moment: the wall clock, or the simulator's clock in `sim` mode.
        result = run_trading(settings)
        if result.skipped:
            raise AirflowSkipException(result.skipped)
        return result.summary()

    trade_once()


trade()
