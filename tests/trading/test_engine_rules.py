"""What a person relies on when the trading job runs unattended, each checked against the simulator over
HTTP with the served champion: out-of-session minutes and holidays do nothing; risk rejections are
recorded with their reason and send nothing; the loss limit engages a kill switch that survives a restart
until resumed; stale data, a missing model or an unresolved order mean no new risk; dry-run sends
nothing; `real` refuses to start without the opt-in and hard caps; intraday positions are flattened
before the close; unfilled limit orders are cancelled."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
import sqlalchemy as sa

from pipeline.config import Settings
from pipeline.market import KST
from pipeline.store.schema import trading_events
from pipeline.trading import state
from pipeline.trading.brokers import SimBroker, TradingConfigurationError, make_broker
from pipeline.trading.engine import Trader
from pipeline.trading.types import ProposedOrder
from tests.trading.harness import DAY, Session, kst

pytestmark = pytest.mark.slow


def _first_order_minute(
    session: Session, start: tuple[int, int] = (9, 30), **overrides: object
) -> dt.datetime:
    """Run minute by minute from ``start`` until the champion sends an order; returns that minute."""
    when = kst(DAY, *start, 0.5)
    for _ in range(120):
        run = session.run(when, **overrides)
        if any(d.outcome in ("order", "dry") for d in run.decisions):
            return when
        when += dt.timedelta(minutes=1)
    raise AssertionError("the champion sent no order in two hours")


def _events(session: Session, kind: str) -> list[sa.Row]:
    with session.engine.connect() as conn:
        return list(conn.execute(sa.select(trading_events).where(trading_events.c.kind == kind)))


def test_holidays_and_out_of_session_minutes_do_nothing(session: Session) -> None:
    for when in (
        dt.datetime(2025, 10, 3, 10, 0, tzinfo=KST),  # National Foundation Day
        dt.datetime(2025, 7, 19, 10, 0, tzinfo=KST),  # a Saturday
        kst(DAY, 8, 30),  # before the futures open
        kst(DAY, 15, 50),  # after the futures close
    ):
        run = session.run(when)
        assert run.skipped, when
        assert not run.decisions
    assert session.orders() == [] and session.decisions() == [] and session.broker_orders() == []


def test_a_risk_rejection_is_recorded_with_its_reason_and_sends_nothing(session: Session) -> None:
    risk = {"max_orders_per_day": 0}
    when = kst(DAY, 9, 30, 0.5)
    rejected = None
    for _ in range(120):
        run = session.run(when, trading_risk=risk)
        rejected = next((d for d in run.decisions if d.outcome == "rejected"), None)
        if rejected:
            break
        when += dt.timedelta(minutes=1)
    assert rejected is not None and "max_orders_per_day 0" in (rejected.reason or "")
    assert session.broker_orders() == [] and session.orders() == []
    events = _events(session, "risk_rejected")
    assert events and "max_orders_per_day" in events[0].reason
    # the same decision passes once the limit allows it
    when += dt.timedelta(minutes=1)
    for _ in range(120):
        run = session.run(when)
        if any(d.outcome == "order" for d in run.decisions):
            break
        when += dt.timedelta(minutes=1)
    assert len(session.broker_orders()) == 1


def test_the_loss_limit_engages_a_kill_switch_that_survives_a_restart_until_resumed(session: Session) -> None:
    when = _first_order_minute(session)
    # A 1 KRW loss limit: the order's fee alone breaches it once the order has filled.
    tight = {"daily_loss_limit": 1.0}
    for _ in range(3):
        when += dt.timedelta(minutes=1)
        session.run(when, trading_risk=tight)
    halt = state.halt_state(session.engine, session.settings.trading_account)
    assert halt.halted and "daily_loss_limit" in (halt.reason or "") and halt.by == "risk:daily_loss_limit"
    sent = len(session.broker_orders())
    # A restart (a new Trader on the same store, default limits): still halted, nothing sent for an hour.
    for _ in range(60):
        when += dt.timedelta(minutes=1)
        run = session.run(when)
        assert run.halted and all(d.outcome == "halted" for d in run.decisions)
    assert len(session.broker_orders()) == sent
    state.resume(session.engine, session.settings.trading_account, by="test")
    for _ in range(120):
        when += dt.timedelta(minutes=1)
        run = session.run(when)
        if any(d.outcome == "order" for d in run.decisions):
            break
    assert len(session.broker_orders()) == sent + 1


class StaleBars(SimBroker):
    """A data feed stuck five minutes in the past."""

    def bars(self, symbol, kind, interval, now, history):  # type: ignore[no-untyped-def]
        frame = super().bars(symbol, kind, interval, now, history)
        return frame[frame.index <= now - pd.Timedelta(minutes=6)]


def test_stale_data_means_no_trade(session: Session) -> None:
    session.broker = StaleBars(session.broker.client)
    run = session.run(kst(DAY, 10, 0, 0.5))
    (d,) = run.decisions
    assert d.outcome == "rejected" and "stale_after_intervals" in (d.reason or "")
    assert session.broker_orders() == []


def test_no_model_holds_or_flattens_as_configured(session: Session) -> None:
    when = _first_order_minute(session)
    when += dt.timedelta(minutes=2)
    session.run(when)  # the order has filled
    held = session.broker_positions()
    assert held
    dead = {"trading_server_url": "http://127.0.0.1:9"}  # nothing listens there
    when += dt.timedelta(minutes=1)
    (d,) = session.run(when, **dead).decisions
    assert d.outcome == "no_model" and "holding" in (d.reason or "")
    assert session.broker_positions() == held
    when += dt.timedelta(minutes=1)
    (d,) = session.run(when, trading_on_model_failure="flatten", **dead).decisions
    assert d.outcome == "no_model" and d.target_quantity == 0 and d.order_status == "sent"
    when += dt.timedelta(minutes=1)
    session.run(when, **dead)
    assert session.broker_positions() == {}


def test_dry_run_records_the_order_it_would_send_and_sends_nothing(session: Session) -> None:
    session.broker = make_broker(session.settings.model_copy(update={"trading_mode": "dry-run"}))  # type: ignore[assignment]
    assert not session.broker.sends_orders
    _first_order_minute(session)
    (o,) = session.orders()
    assert o.status == "dry" and o.mode == "dry" and o.broker_order_no is None
    assert session.broker_orders() == []


def test_real_refuses_to_start_without_the_opt_in_and_hard_caps(isolated_settings: object) -> None:
    base = {"trading_mode": "real", "kis_env": "real", "kis_allow_real": True}
    with pytest.raises(TradingConfigurationError) as no_opt_in:
        make_broker(Settings(**base))  # type: ignore[arg-type]
    assert "KRX_TRADING_REAL_OPT_IN" in str(no_opt_in.value) and "hard caps missing" in str(no_opt_in.value)
    with pytest.raises(TradingConfigurationError) as no_caps:
        make_broker(Settings(**base, trading_real_opt_in=True))  # type: ignore[arg-type]
    assert "KRX_TRADING_REAL_OPT_IN" not in str(no_caps.value) and "max_order_notional" in str(no_caps.value)
    with pytest.raises(TradingConfigurationError, match="KRX_KIS_ENV"):
        make_broker(Settings(trading_mode="vts", kis_env="sim"))


def test_intraday_positions_are_flattened_before_the_close(session: Session) -> None:
    when = kst(DAY, 15, 10, 0.5)
    for _ in range(20):  # until a position is held
        session.run(when, trading_flatten_before_close_min=None)
        when += dt.timedelta(minutes=1)
        if session.broker_positions():
            break
    assert session.broker_positions(), "the champion took no position before 15:30"
    when = kst(DAY, 15, 40, 0.5)  # 5 minutes to the 15:45 close
    (d,) = session.run(when, trading_flatten_before_close_min=5).decisions
    assert d.outcome == "flatten" and d.target_quantity == 0
    session.run(when + dt.timedelta(minutes=1), trading_flatten_before_close_min=5)
    assert session.broker_positions() == {}


class FarLimit(SimBroker):
    """Limit orders priced 5% away from the market: they rest unfilled."""

    def place(self, order: ProposedOrder) -> str:
        away = 0.95 if order.side == "buy" else 1.05
        price = round(order.price * away / 0.05) * 0.05
        return super().place(ProposedOrder(**{**order.__dict__, "limit_price": price}))


def test_an_unfilled_limit_order_is_cancelled_after_the_configured_time(session: Session) -> None:
    session.broker = FarLimit(session.broker.client)
    limit = {"trading_order_type": "limit", "trading_cancel_after_s": 120.0}
    when = _first_order_minute(session, **limit)
    (o,) = session.orders()
    assert o.order_type == "limit" and o.status == "sent"
    for k in (1, 2):
        session.run(when + dt.timedelta(minutes=k), **limit)
        assert session.orders()[0].status == "sent"  # under 120 s: still working
    session.run(when + dt.timedelta(minutes=3), **limit)  # past 120 s: the cancel is sent
    assert "cancel sent" in (session.orders()[0].reason or "")
    session.run(when + dt.timedelta(minutes=4), **limit)  # the broker's answer recorded
    o = session.orders()[0]
    assert o.status == "cancelled" and o.filled_quantity == 0
    assert session.broker_positions() == {} and session.positions() == {}
    # the cancelled order never reached its target: the repeated action aims for it again
    assert len(session.orders()) == 2 and session.orders()[1].side == o.side


def test_a_rerun_of_the_same_minute_decides_and_sends_nothing_twice(session: Session) -> None:
    when = _first_order_minute(session)
    for k in range(1, 4):
        session.run(when + dt.timedelta(seconds=k))
    assert len(session.orders()) == 1 and len(session.broker_orders()) == 1


def test_a_trader_needs_no_state_of_its_own(session: Session) -> None:
    """Every run builds its Trader from the store: two Traders alternating see the same decisions."""
    a = Trader(session.settings, session.broker, session.decider, session.engine)
    b = Trader(session.settings, session.broker, session.decider, session.engine)
    session.set_clock(kst(DAY, 10, 0, 0.5))
    first = a.run()
    session.set_clock(kst(DAY, 10, 0, 1.5))
    again = b.run()
    assert first.decisions and not again.decisions  # the bar was decided once
