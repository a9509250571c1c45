"""`airflow dags test trade` end to end on an accelerated simulated session: the DAG's task trades against
the KIS simulator over HTTP with the served champion and records its decision and order in the store."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from pipeline.kis.simulator.server import SimServer
from pipeline.store.schema import decisions, orders
from tests.dags.conftest import airflow_env, airflow_home, migrated_db, run_airflow  # noqa: F401
from tests.serving.server import API_KEY, Server
from tests.trading.harness import DAY, kst

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def test_a_dag_run_trades_one_minute_of_the_simulated_session(
    airflow_home: Path,  # noqa: F811
    sim: SimServer,
    trading_server: Server,
    tmp_path: Path,
) -> None:
    store = tmp_path / "market.db"
    env = airflow_env(
        airflow_home,
        tmp_path / "var",
        {
            "KRX_KIS_BASE_URL": sim.base_url,
            "KRX_KIS_RATE_LIMIT_SIM": "5000",
            "KRX_KIS_TOKEN_MIN_INTERVAL_S": "0",
            "KRX_DATABASE_URL": f"sqlite:///{store}",
            "KRX_TRADING_SERVER_URL": trading_server.url,
            "KRX_SERVING_API_KEY": API_KEY,
            "KRX_TRADING_SPECS": "kospi200f-1m",
        },
    )
    # The simulator's clock stands at 10:00 KST on the test day: the run decides on the 09:59 bar.
    httpx.post(
        f"{sim.base_url}/sim/admin/clock", json={"now": kst(DAY, 10, 0, 0.5).isoformat(), "speed": 1.0}
    ).raise_for_status()
    run = run_airflow(["dags", "test", "trade", kst(DAY, 10, 0).isoformat()], env, timeout=600)
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    output = run.stdout + run.stderr
    engine = sa.create_engine(f"sqlite:///{store}")
    with engine.connect() as conn:
        rows = list(conn.execute(sa.select(decisions)))
        sent = list(conn.execute(sa.select(orders)))
    engine.dispose()
    assert len(rows) == 1
    assert rows[0].bar_ts == kst(DAY, 9, 59)
    assert rows[0].outcome in {"order", "hold"}, rows[0].reason
    if rows[0].outcome == "order":
        (order,) = sent
        assert order.broker_order_no and order.mode == "sim"
    assert API_KEY not in output  # nothing secret in the task's log
