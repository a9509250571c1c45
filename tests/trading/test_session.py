"""A whole simulated session: the trading job runs every minute from the futures open to the close against
the KIS simulator over HTTP and the served champion; orders are placed and filled, and the store ends equal
to the simulator's own ledger. Over the same bars, the positions held bar by bar equal ``run_backtest`` of
the same champion."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.backtest.engine import run_backtest
from pipeline.market import KST
from tests.serving.server import Server
from tests.trading.conftest import minutes
from tests.trading.harness import DAY, Session, kst

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def whole_session(
    tmp_path_factory: pytest.TempPathFactory, trading_server: Server
) -> tuple[Session, list, pd.DataFrame]:
    """Trade DAY from 08:45 to 15:45, one run 0.5 s after each minute starts (module-scoped: run once)."""
    from pipeline.kis.simulator.server import SimServer
    from pipeline.kis.simulator.simconfig import SimConfig
    from pipeline.store.db import create_store_engine
    from pipeline.store.migrate import upgrade
    from tests.trading.conftest import trading_settings

    tmp = tmp_path_factory.mktemp("whole-session")
    cfg = SimConfig(
        db_path=tmp / "sim.db",
        clock_start=kst(DAY, 8, 40),
        rate_limit=5000.0,
        token_interval_s=0.0,
        open_grace_s=5.0,
    )
    sim = SimServer(cfg).__enter__()
    url = f"sqlite:///{tmp / 'market.db'}"
    engine = create_store_engine(url)
    upgrade(engine)
    settings = trading_settings(sim, trading_server, tmp / "var", database_url=url)
    session = Session(sim, settings, engine)
    runs = [session.run(t) for t in minutes(DAY, (8, 45), (15, 46))]
    bars = session.broker.client.fetch_minute_bars(settings_symbol(session), DAY, "futures")
    yield session, runs, bars.set_index("ts")[["open", "high", "low", "close", "volume"]]
    session.close()
    engine.dispose()
    sim.__exit__(None, None, None)


def settings_symbol(session: Session) -> str:
    return session.decisions()[0].instrument


def test_orders_are_placed_and_filled_and_the_store_equals_the_broker(whole_session) -> None:
    session, runs, _ = whole_session
    assert runs[-1].skipped and "close" in runs[-1].skipped  # 15:45: the futures session has ended
    traded = [r for r in runs if not r.skipped]
    assert len(traded) == 420
    orders = session.orders()
    assert len(orders) >= 3, "the champion traded during the session"
    assert {o.status for o in orders} == {"filled"}
    ledger = {o.odno: o for o in session.broker_orders()}
    assert sorted(o.broker_order_no for o in orders) == sorted(ledger), "one broker order per store order"
    for o in orders:
        b = ledger[o.broker_order_no]
        assert (o.symbol, o.side, o.quantity, o.filled_quantity) == (b.symbol, b.side, b.qty, b.filled_qty)
        assert o.avg_fill_price == pytest.approx(b.avg_price)
    fills = session.fills()
    assert sum(f.quantity for f in fills) == sum(o.filled_quantity for o in orders)
    assert session.positions() == session.broker_positions()
    # no reconciliation difference in any run: the store tracked every fill itself
    assert all(not r.reconciliation for r in traded)
    # cash and equity of the last snapshot are the broker's
    acct = session.broker.account()
    snaps = session_snapshots(session)
    assert snaps[-1].cash == pytest.approx(acct.cash) and snaps[-1].equity == pytest.approx(
        acct.equity, rel=1e-3
    )


def session_snapshots(session: Session) -> list:
    import sqlalchemy as sa

    from pipeline.store.schema import account_snapshots

    with session.engine.connect() as conn:
        return list(conn.execute(sa.select(account_snapshots).order_by(account_snapshots.c.ts)))


def test_every_closed_bar_is_decided_once_and_orders_carry_their_decision(whole_session) -> None:
    session, _, _ = whole_session
    rows = session.decisions()
    stamps = [r.bar_ts for r in rows]
    assert len(stamps) == len(set(stamps))
    assert stamps[0].astimezone(KST) == kst(DAY, 8, 44) or stamps[0].astimezone(KST).date() == DAY
    by_key = {r.client_order_id: r for r in rows if r.client_order_id}
    for o in session.orders():
        d = by_key[o.client_order_id]
        assert o.decision_ts == d.bar_ts and o.decision_price == pytest.approx(d.price)
        assert o.quantity == abs(d.target_quantity - d.position_before)


def test_live_positions_equal_the_backtest_of_the_same_champion_bar_by_bar(
    whole_session, trading_server: Server
) -> None:
    session, _, bars = whole_session
    agent = trading_server.agent
    market = agent.market(bars)
    result = run_backtest(agent.policy(), market, agent.config.env)
    backtest = result.frame["position"]  # indexed by the bars' timestamps: the position held in each bar
    backtest.index = pd.DatetimeIndex(backtest.index).tz_convert(KST)
    live = pd.Series(
        {r.bar_ts.astimezone(KST): float(r.position_before) for r in session.decisions()}, dtype=float
    )
    live.index = pd.DatetimeIndex(live.index)
    # The live job's first decision comes one bar after the backtest's (the served model needs two bars of
    # context to decide), so the live position can first equal the backtest's one bar after that.
    first_live_decision = live.index[0]
    compare = backtest.index[backtest.index > first_live_decision + pd.Timedelta(minutes=1)]
    compare = compare[compare.isin(live.index)]
    assert len(compare) >= 300
    mismatch = [(t, live[t], backtest[t]) for t in compare if live[t] != backtest[t]]
    assert not mismatch, f"{len(mismatch)} bars differ, first: {mismatch[:5]}"
    assert np.abs(backtest[compare]).sum() > 0, "the champion held positions during the session"
