"""One trading run against a fake broker and a fake model on a SQLite store, in milliseconds per test: the
order is the target minus the broker's position, a repeated action keeps the position, stale bars / no model /
the kill switch / a working order mean no new risk with the reason recorded, daily specs decide once per
session and minute specs once per closed bar, risk rejections are recorded (gaps found by mutation testing,
``tools/mutation.py``)."""

from __future__ import annotations

import atexit
import datetime as dt
import functools
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pipeline.config import Settings
from pipeline.kis.errors import KisRejectedError, KisTemporaryError
from pipeline.market import KST, InstrumentKind, fee_rate, front_contract, tick_size
from pipeline.store.db import create_store_engine
from pipeline.store.migrate import upgrade
from pipeline.store.schema import decisions, orders, trading_events
from pipeline.trading import state
from pipeline.trading.decider import Decision, ModelUnavailable, WindowRequest
from pipeline.trading.engine import Trader, run_trading, target_quantity
from pipeline.trading.types import AccountState, BrokerOrder, BrokerPosition, ProposedOrder

#: A Tuesday of 2025 (Monday the 14th is the previous session).
DAY = dt.date(2025, 7, 15)
FUT = front_contract(DAY, 3).code
STOCK = "005930"
CLOSE_F, CLOSE_S = 350.0, 50_000.0
BIG_LIMITS = {"max_order_notional": 1e13, "max_gross_exposure": 1e14, "check_price_band": False}


def kst(hh: int, mm: int, ss: float = 0.0, day: dt.date = DAY) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hh, mm), KST) + dt.timedelta(seconds=ss)


class FakeBroker:
    """The broker protocol: minute or daily bars ending at ``last_bar``, an account, a book of orders."""

    mode: ClassVar[str] = "sim"
    sends_orders: ClassVar[bool] = True

    def __init__(self, equity: float = 100_000_000.0) -> None:
        self.equity = equity
        self.positions: dict[str, int] = {}
        self.book: list[BrokerOrder] = []
        self.placed: list[ProposedOrder] = []
        self.bar_calls: list[tuple[str, str, int]] = []
        self.last_bar: dt.datetime | None = None  # None: up to the minute of ``now`` (still forming)
        self.bars_error: Exception | None = None
        self.fill_at: float | None = None  # fill every order at once at this price
        self.clock = kst(10, 0, 30)
        self.band: tuple[float, float] | None = None

    def now(self) -> dt.datetime:
        return self.clock

    def bars(
        self, symbol: str, kind: InstrumentKind, interval: str, now: dt.datetime, history: int
    ) -> pd.DataFrame:
        self.bar_calls.append((symbol, interval, history))
        if self.bars_error is not None:
            raise self.bars_error
        close = CLOSE_F if kind is InstrumentKind.FUTURES else CLOSE_S
        if interval == "1d":
            end = self.last_bar or dt.datetime.combine(now.date(), dt.time(0), KST)
            idx = [end - dt.timedelta(days=i) for i in range(5, -1, -1)]
        else:
            end = self.last_bar or now.replace(second=0, microsecond=0)
            idx = [end - dt.timedelta(minutes=i) for i in range(5, -1, -1)]
        n = len(idx)
        # the decision bar (second to last: the last is still forming) closes at ``close``, the others not
        closes = [close - 10.0] * (n - 2) + [close, close + 10.0]
        return pd.DataFrame(
            {"open": closes, "high": closes, "low": closes, "close": closes, "volume": [1.0] * n},
            index=pd.DatetimeIndex(idx),
        )

    def account(self) -> AccountState:
        pos = {s: BrokerPosition(s, q, 300.0, 300.0) for s, q in self.positions.items() if q}
        return AccountState(self.equity, self.equity, pos)

    def place(self, order: ProposedOrder) -> str:
        self.placed.append(order)
        no = f"{len(self.placed):010d}"
        if self.fill_at is not None:
            self.book.append(
                BrokerOrder(
                    no, order.symbol, order.side, order.quantity, order.quantity, self.fill_at, "filled"
                )
            )
            self.positions[order.symbol] = self.positions.get(order.symbol, 0) + order.signed_quantity
        else:
            self.book.append(BrokerOrder(no, order.symbol, order.side, order.quantity, 0, 0.0, "open"))
        return no

    def cancel(self, order_no: str, symbol: str, kind: InstrumentKind) -> None:
        pass

    def orders_today(self, day: dt.date, kinds: Iterable[InstrumentKind]) -> list[BrokerOrder]:
        return list(self.book)

    def price_band(self, symbol: str, kind: InstrumentKind) -> tuple[float, float] | None:
        return self.band

    def close(self) -> None:
        pass


class DryBroker(FakeBroker):
    mode: ClassVar[str] = "dry"
    sends_orders: ClassVar[bool] = False


class FakeDecider:
    """Answers every window with ``answer`` (a Decision template or a ModelUnavailable)."""

    def __init__(self, action: int = 2, level: float = 1.0) -> None:
        self.action, self.level = action, level
        self.unavailable: str | None = None
        self.calls: list[list[WindowRequest]] = []

    def decide(self, requests: list[WindowRequest]) -> list[Decision | ModelUnavailable]:
        self.calls.append(requests)
        if self.unavailable is not None:
            return [ModelUnavailable(self.unavailable) for _ in requests]
        return [Decision(r.spec, self.action, self.level, "v7") for r in requests]


@functools.cache
def migrated_store() -> Path:
    """One migrated SQLite store per process, copied for each test: migrating takes most of a test's time,
    and mutation testing runs these tests for each of about a thousand mutants."""
    folder = Path(tempfile.mkdtemp(prefix="krx-engine-store-"))
    atexit.register(shutil.rmtree, folder, True)
    engine = create_store_engine(f"sqlite:///{folder / 'store.db'}")
    upgrade(engine)
    engine.dispose()
    return folder / "store.db"


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A fresh, migrated SQLite store in the test's temp folder (a copy of :func:`migrated_store`)."""
    shutil.copyfile(migrated_store(), tmp_path / "store.db")
    return f"sqlite:///{tmp_path / 'store.db'}"


@pytest.fixture
def engine(sqlite_url: str) -> Iterator[Engine]:
    eng = create_store_engine(sqlite_url)
    yield eng
    eng.dispose()


def settings(var: Path, url: str, **over: Any) -> Settings:
    values: dict[str, Any] = {
        "var_dir": var,
        "database_url": url,
        "trading_specs": ["kospi200f-1m"],
        "trading_flatten_before_close_min": None,
        "trading_risk": BIG_LIMITS,
        "stock_symbols": [STOCK],
    }
    values.update(over)
    return Settings(**values)


@pytest.fixture
def make(isolated_settings: Path, sqlite_url: str, engine: Engine) -> Any:
    def _make(broker: FakeBroker, decider: FakeDecider, **over: Any) -> Trader:
        return Trader(settings(isolated_settings, sqlite_url, **over), broker, decider, engine)  # type: ignore[arg-type]

    return _make


def rows(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return conn.execute(sa.select(decisions).order_by(decisions.c.bar_ts)).all()


def aware(ts: dt.datetime) -> dt.datetime:
    """A stored stamp in KST (SQLite gives naive UTC back)."""
    return (ts if ts.tzinfo else ts.replace(tzinfo=dt.UTC)).astimezone(KST)


def events(engine: Engine, kind: str) -> list[Any]:
    with engine.connect() as conn:
        return conn.execute(sa.select(trading_events).where(trading_events.c.kind == kind)).all()


# --- sizing ------------------------------------------------------------------------------------


def test_target_quantity_sizes_like_the_backtest() -> None:
    # futures: round(level), capped by the margin equity can post (100M / (350 * 250000 * 0.15) = 7.6 -> 7)
    assert target_quantity(3.4, InstrumentKind.FUTURES, 100e6, 350.0) == 3
    assert target_quantity(-2.6, InstrumentKind.FUTURES, 100e6, 350.0) == -3
    assert target_quantity(10, InstrumentKind.FUTURES, 100e6, 350.0) == 7
    assert target_quantity(-10, InstrumentKind.FUTURES, 100e6, 350.0) == -7
    assert target_quantity(2, InstrumentKind.FUTURES, -5e6, 350.0) == 0  # no equity, no contracts
    # stocks: whole shares of level * equity including the buy fee (2M / 50007.5 = 39.99 -> 39)
    assert target_quantity(0.2, InstrumentKind.STOCK, 10e6, 50_000.0) == 39
    assert target_quantity(0.2, InstrumentKind.STOCK, 10e6, 50_000.0 / (1 + fee_rate("stock"))) == 40
    assert target_quantity(0.5, InstrumentKind.STOCK, -1.0, 50_000.0) == 0


# --- orders: target minus position ---------------------------------------------------------------


def test_order_is_target_minus_broker_position(make: Any, engine: Engine) -> None:
    broker, decider = FakeBroker(), FakeDecider(action=4, level=3.0)
    broker.positions[FUT] = -1
    run = make(broker, decider).run()
    assert run.skipped is None and run.halted is None
    [order] = broker.placed
    assert (order.symbol, order.side, order.quantity, order.position_before) == (FUT, "buy", 4, -1)
    assert order.kind == "futures" and order.multiplier == 250_000.0 and order.order_type == "market"
    assert order.limit_price is None and order.price == CLOSE_F
    assert order.decision_ts == kst(9, 59)
    [d] = run.decisions
    assert (d.outcome, d.position_before, d.target_quantity, d.action) == ("order", -1, 3, 4)
    assert d.order_status == "sent" and d.client_order_id is not None
    [row] = rows(engine)
    assert aware(row.bar_ts) == kst(9, 59)
    assert (row.outcome, row.action, row.target_level, row.model_version) == ("order", 4, 3.0, "v7")
    assert (row.price, row.position_before, row.target_quantity) == (CLOSE_F, -1, 3)
    assert row.instrument == FUT and row.symbol == "KOSPI200F"
    assert row.client_order_id == d.client_order_id
    with engine.connect() as conn:
        [o] = conn.execute(sa.select(orders)).all()
    assert (o.client_order_id, o.quantity, o.side) == (d.client_order_id, 4, "buy")
    assert aware(o.sent_at) == kst(10, 0, 30)
    summary = run.summary()
    assert summary["decisions"][0]["outcome"] == "order" and summary["decisions"][0]["target_quantity"] == 3


def test_sell_order_when_target_below_position(make: Any) -> None:
    broker, decider = FakeBroker(), FakeDecider(action=0, level=-2.0)
    broker.positions[FUT] = 1
    make(broker, decider).run()
    [order] = broker.placed
    assert (order.side, order.quantity, order.position_before) == ("sell", 3, 1)


def test_no_order_when_target_equals_position(make: Any, engine: Engine) -> None:
    broker, decider = FakeBroker(), FakeDecider(action=3, level=2.0)
    broker.positions[FUT] = 2
    run = make(broker, decider).run()
    assert broker.placed == []
    [d] = run.decisions
    assert (d.outcome, d.reason, d.target_quantity) == ("hold", "already at the target", 2)
    [row] = rows(engine)
    assert row.outcome == "hold" and row.client_order_id is None


def test_window_carries_the_position_as_a_level_and_entry_price(make: Any) -> None:
    broker, decider = FakeBroker(), FakeDecider(action=3, level=2.0)
    broker.positions[FUT] = 2
    make(broker, decider, trading_minute_sessions=2).run()
    [[w]] = decider.calls
    assert w.spec == "kospi200f-1m" and w.position == 2.0 and w.entry_price == 300.0
    assert w.bars.index[-1] == kst(9, 59)  # the forming 10:00 bar is not shown to the model
    assert broker.bar_calls == [(FUT, "1m", 2)]


def test_first_minute_decision_of_the_session_replays_when_flat(make: Any) -> None:
    broker, decider = FakeBroker(), FakeDecider(action=2, level=0.0)
    t = make(broker, decider)
    t.run()
    [[w]] = decider.calls
    assert w.position is None and w.entry_price is None
    broker.clock = kst(10, 1, 30)
    t.run()
    assert decider.calls[1][0].position == 0.0  # later decisions send the position held


def test_stock_window_level_is_value_over_allocated_equity(make: Any) -> None:
    broker, decider = FakeBroker(equity=10_000_000.0), FakeDecider(action=1, level=0.0)
    broker.positions[STOCK] = 40
    make(broker, decider, trading_specs=["stocks-1d", "kospi200f-1m"]).run()
    by_spec = {w.spec: w for call in decider.calls for w in call}
    # two specs, one symbol each: 5M each; 40 shares * 50000 = 2M -> level 0.4
    assert by_spec["stocks-1d"].position == pytest.approx(0.4)
    assert broker.bar_calls[0] == (STOCK, "1d", 600)


def test_stock_order_sized_from_level_and_allocated_equity(make: Any, engine: Engine) -> None:
    broker, decider = FakeBroker(equity=10_000_000.0), FakeDecider(action=1, level=0.2)
    run = make(broker, decider, trading_specs=["stocks-1d"]).run()
    [order] = broker.placed
    assert (order.symbol, order.side, order.quantity, order.multiplier) == (STOCK, "buy", 39, 1.0)
    assert order.decision_ts == dt.datetime(2025, 7, 14, tzinfo=KST)
    assert run.decisions[0].bar_ts == dt.datetime(2025, 7, 14, tzinfo=KST)


def test_negative_stock_target_sells_down_to_flat_only(make: Any) -> None:
    broker, decider = FakeBroker(equity=10_000_000.0), FakeDecider(action=0, level=-0.5)
    broker.positions[STOCK] = 10
    run = make(broker, decider, trading_specs=["stocks-1d"]).run()
    [order] = broker.placed
    assert (order.side, order.quantity) == ("sell", 10)
    assert run.decisions[0].target_quantity == 0


def test_limit_orders_are_priced_ticks_through_the_close(make: Any) -> None:
    broker = FakeBroker()
    broker.fill_at = CLOSE_F
    make(broker, FakeDecider(action=4, level=1.0), trading_order_type="limit").run()
    broker.clock = kst(10, 1, 30)
    make(broker, FakeDecider(action=0, level=-1.0), trading_order_type="limit").run()
    buy, sell = broker.placed
    assert buy.order_type == "limit" and buy.limit_price == pytest.approx(CLOSE_F + 2 * 0.05)
    assert sell.side == "sell" and sell.limit_price == pytest.approx(CLOSE_F - 2 * 0.05)


# --- repeated actions ----------------------------------------------------------------------------


def test_repeated_action_keeps_the_position(make: Any, engine: Engine) -> None:
    broker, decider = FakeBroker(), FakeDecider(action=3, level=1.0)
    broker.fill_at = CLOSE_F
    t = make(broker, decider)
    t.run()
    assert broker.positions[FUT] == 1
    broker.clock = kst(10, 1, 30)
    decider.level = 2.0  # same action, another level: the backtest keeps the position
    run = t.run()
    assert len(broker.placed) == 1
    assert run.decisions[0].target_quantity == 1 and run.decisions[0].outcome == "hold"
    broker.clock = kst(10, 2, 30)
    decider.action = 4  # a new action trades to its level
    t.run()
    assert len(broker.placed) == 2 and broker.placed[1].quantity == 1


def test_repeated_action_after_a_rejected_order_aims_again(make: Any, engine: Engine) -> None:
    broker, decider = FakeBroker(), FakeDecider(action=4, level=3.0)
    t = make(broker, decider, trading_risk={**BIG_LIMITS, "max_order_quantity": 2})
    run = t.run()
    assert broker.placed == [] and run.decisions[0].outcome == "rejected"
    broker.clock = kst(10, 1, 30)
    decider.level = 2.0
    t.run()
    [order] = broker.placed
    assert order.quantity == 2  # the earlier rejection never reached its target: aim for it again


def test_previous_action_of_yesterday_still_counts_for_daily(make: Any) -> None:
    broker, decider = FakeBroker(equity=10_000_000.0), FakeDecider(action=1, level=0.2)
    broker.fill_at = CLOSE_S
    t = make(broker, decider, trading_specs=["stocks-1d"])
    t.run()
    assert broker.positions[STOCK] == 39
    broker.clock = kst(10, 0, 30, day=dt.date(2025, 7, 16))
    decider.level = 0.3
    run = t.run()
    assert len(broker.placed) == 1 and run.decisions[0].target_quantity == 39


# --- once per bar / session ------------------------------------------------------------------------


def test_daily_spec_decides_once_per_session(make: Any, engine: Engine) -> None:
    broker, decider = FakeBroker(equity=10_000_000.0), FakeDecider(action=1, level=0.0)
    t = make(broker, decider, trading_specs=["stocks-1d"])
    assert len(t.run().decisions) == 1
    broker.clock = kst(11, 0, 30)
    assert t.run().decisions == []
    broker.clock = kst(10, 0, 30, day=dt.date(2025, 7, 16))
    [d] = t.run().decisions
    assert d.bar_ts == dt.datetime(2025, 7, 15, tzinfo=KST)
    assert len(decider.calls) == 2
    assert [aware(r.bar_ts).date() for r in rows(engine)] == [dt.date(2025, 7, 14), dt.date(2025, 7, 15)]


def test_minute_spec_decides_on_each_new_closed_bar(make: Any, engine: Engine) -> None:
    broker, decider = FakeBroker(), FakeDecider(action=2, level=0.0)
    t = make(broker, decider)
    assert [d.bar_ts for d in t.run().decisions] == [kst(9, 59)]
    broker.clock = kst(10, 0, 50)
    assert t.run().decisions == []
    broker.clock = kst(10, 1, 5)
    assert [d.bar_ts for d in t.run().decisions] == [kst(10, 0)]
    assert len(decider.calls) == 2 and len(rows(engine)) == 2


def test_out_of_session_run_is_skipped(make: Any, engine: Engine) -> None:
    broker, decider = FakeBroker(), FakeDecider()
    broker.clock = kst(20, 0)
    run = make(broker, decider).run()
    assert run.skipped and run.decisions == [] and decider.calls == [] and rows(engine) == []
    assert run.summary()["skipped"] == run.skipped


def test_before_the_first_minute_bar_closes_nothing_is_pending(make: Any) -> None:
    broker, decider = FakeBroker(), FakeDecider()
    broker.clock = kst(8, 45, 30)
    run = make(broker, decider).run()
    assert run.skipped is None and run.decisions == [] and decider.calls == []


# --- no new risk ---------------------------------------------------------------------------------


def test_stale_bars_mean_no_order(make: Any, engine: Engine) -> None:
    broker, decider = FakeBroker(), FakeDecider(action=4, level=3.0)
    broker.last_bar = kst(9, 50)
    run = make(broker, decider).run()
    assert broker.placed == [] and decider.calls == []
    [d] = run.decisions
    assert d.outcome == "rejected"
    assert (
        d.reason
        == "latest 1m bar (ended 2025-07-15 09:51 KST) is 9.5 intervals old > stale_after_intervals 2"
    )
    [row] = rows(engine)
    assert row.outcome == "rejected" and row.reason == d.reason


def test_recent_enough_bars_are_used(make: Any) -> None:
    broker, decider = FakeBroker(), FakeDecider(action=4, level=1.0)
    broker.last_bar = kst(9, 58)  # ends 9:59, 1.5 min before now: within two intervals
    run = make(broker, decider).run()
    assert run.decisions[0].outcome == "order"


def test_no_bars_at_all_mean_no_order(make: Any) -> None:
    broker, decider = FakeBroker(), FakeDecider(action=4, level=1.0)
    broker.last_bar = kst(10, 30)  # only bars after the decision bar: none usable
    run = make(broker, decider).run()
    assert broker.placed == [] and run.decisions[0].outcome == "rejected"


def test_broker_bar_error_means_no_order(make: Any, engine: Engine) -> None:
    broker, decider = FakeBroker(), FakeDecider(action=4, level=1.0)
    broker.bars_error = KisTemporaryError("boom")
    run = make(broker, decider).run()
    [d] = run.decisions
    assert (d.outcome, d.reason) == ("rejected", "no bars from the broker (KisTemporaryError): no new risk")
    assert broker.placed == [] and decider.calls == [] and rows(engine)[0].reason == d.reason


def test_model_unavailable_holds(make: Any, engine: Engine) -> None:
    broker, decider = FakeBroker(), FakeDecider()
    broker.positions[FUT] = 2
    decider.unavailable = "no champion"
    run = make(broker, decider).run()
    assert broker.placed == []
    [d] = run.decisions
    assert (d.outcome, d.reason, d.target_quantity) == ("no_model", "no champion; holding (no new risk)", 2)
    assert rows(engine)[0].outcome == "no_model" and rows(engine)[0].price == CLOSE_F


def test_model_unavailable_flattens_when_configured(make: Any) -> None:
    broker, decider = FakeBroker(), FakeDecider()
    broker.positions[FUT] = 2
    decider.unavailable = "no champion"
    run = make(broker, decider, trading_on_model_failure="flatten").run()
    [order] = broker.placed
    assert (order.side, order.quantity) == ("sell", 2)
    assert run.decisions[0].outcome == "no_model"
    assert run.decisions[0].reason == "no champion; flattening (KRX_TRADING_ON_MODEL_FAILURE=flatten)"


def test_kill_switch_means_no_order_and_no_model_call(make: Any, engine: Engine) -> None:
    broker, decider = FakeBroker(), FakeDecider(action=4, level=1.0)
    t = make(broker, decider)
    state.engage(engine, "main", "operator says stop", "test")
    run = t.run()
    assert run.halted == "operator says stop"
    [d] = run.decisions
    assert (d.outcome, d.reason) == ("halted", "kill switch engaged: operator says stop")
    assert broker.placed == [] and decider.calls == [] and broker.bar_calls == []
    assert rows(engine)[0].price == 0.0  # no bars fetched: no price
    assert run.summary()["halted"] == "operator says stop"


def test_daily_loss_engages_the_kill_switch(make: Any, engine: Engine) -> None:
    broker, decider = FakeBroker(), FakeDecider(action=2, level=0.0)
    t = make(broker, decider)
    assert t.run().halted is None
    broker.equity -= 6_000_000.0  # more than the 5M default limit
    broker.clock = kst(10, 1, 30)
    run = t.run()
    assert run.halted and run.decisions[0].outcome == "halted"
    assert state.halt_state(engine, "main").halted


def test_small_loss_keeps_trading(make: Any, engine: Engine) -> None:
    broker, decider = FakeBroker(), FakeDecider(action=2, level=0.0)
    t = make(broker, decider)
    t.run()
    broker.equity -= 1_000_000.0
    broker.clock = kst(10, 1, 30)
    assert t.run().halted is None and not state.halt_state(engine, "main").halted


def test_working_order_blocks_a_new_one(make: Any, engine: Engine) -> None:
    broker, decider = FakeBroker(), FakeDecider(action=4, level=1.0)
    t = make(broker, decider)
    t.run()
    broker.clock = kst(10, 1, 30)
    decider.action, decider.level = 0, -1.0
    run = t.run()
    assert len(broker.placed) == 1
    [d] = run.decisions
    assert (d.outcome, d.reason) == (
        "rejected",
        "an earlier order of this symbol is still working or unresolved",
    )
    assert run.summary()["decisions"][0]["reason"] == d.reason


def test_risk_rejection_is_recorded(make: Any, engine: Engine) -> None:
    broker, decider = FakeBroker(), FakeDecider(action=4, level=5.0)
    run = make(broker, decider, trading_risk={**BIG_LIMITS, "max_order_quantity": 2, "max_position": 3}).run()
    assert broker.placed == []
    [d] = run.decisions
    assert d.outcome == "rejected" and "; " in d.reason and d.target_quantity == 5
    evs = events(engine, "risk_rejected")
    assert {e.detail["rule"] for e in evs} == {"max_order_quantity", "max_position"}
    assert all(e.symbol == FUT for e in evs)
    assert rows(engine)[0].reason == d.reason


def test_price_band_from_the_broker_rejects(make: Any, engine: Engine) -> None:
    broker, decider = FakeBroker(), FakeDecider(action=4, level=1.0)
    broker.band = (400.0, 500.0)
    run = make(broker, decider, trading_risk={**BIG_LIMITS, "check_price_band": True}).run()
    assert broker.placed == [] and run.decisions[0].outcome == "rejected"
    assert [e.detail["rule"] for e in events(engine, "risk_rejected")] == ["price_band"]


def test_orders_per_day_counts_todays_orders(make: Any) -> None:
    broker, decider = FakeBroker(), FakeDecider(action=4, level=1.0)
    broker.fill_at = CLOSE_F
    t = make(broker, decider, trading_risk={**BIG_LIMITS, "max_orders_per_day": 1})
    t.run()
    broker.clock = kst(10, 1, 30)
    decider.action, decider.level = 0, -1.0
    run = t.run()
    assert len(broker.placed) == 1 and run.decisions[0].outcome == "rejected"


def test_flatten_before_the_close(make: Any) -> None:
    broker, decider = FakeBroker(), FakeDecider(action=4, level=3.0)
    broker.positions[FUT] = 2
    broker.clock = kst(15, 41, 30)  # 3.5 min to the 15:45 close
    run = make(broker, decider, trading_flatten_before_close_min=5).run()
    [order] = broker.placed
    assert (order.side, order.quantity) == ("sell", 2)
    assert run.decisions[0].outcome == "flatten" and "to the close" in run.decisions[0].reason


def test_no_flatten_earlier_in_the_session(make: Any) -> None:
    broker, decider = FakeBroker(), FakeDecider(action=4, level=3.0)
    broker.clock = kst(15, 30, 30)
    run = make(broker, decider, trading_flatten_before_close_min=5).run()
    assert run.decisions[0].outcome == "order" and broker.placed[0].quantity == 3


def test_dry_run_records_without_sending(isolated_settings: Path, sqlite_url: str, engine: Engine) -> None:
    broker, decider = DryBroker(), FakeDecider(action=4, level=2.0)
    s = settings(isolated_settings, sqlite_url)
    run = run_trading(s, broker=broker, decider=decider, engine=engine)  # type: ignore[arg-type]
    assert broker.placed == []
    [d] = run.decisions
    assert d.outcome == "dry" and d.order_status == "dry"
    assert rows(engine)[0].outcome == "dry"
    assert run.mode == "dry" and run.account == "main"


def test_tracked_fill_and_reconciliation_in_the_run(make: Any) -> None:
    broker, decider = FakeBroker(), FakeDecider(action=4, level=2.0)
    broker.fill_at = CLOSE_F
    t = make(broker, decider)
    t.run()
    broker.clock = kst(10, 1, 30)
    decider.action = 2
    decider.level = 2.0
    run = t.run()
    assert run.new_fills == 1 and run.reconciliation == []
    broker.positions["101X12"] = 1  # unknown to the store
    broker.clock = kst(10, 2, 30)
    assert len(t.run().reconciliation) == 1


def test_one_model_call_for_all_pending_symbols(make: Any) -> None:
    broker, decider = FakeBroker(equity=10_000_000.0), FakeDecider(action=2, level=0.0)
    run = make(
        broker, decider, trading_specs=["stocks-1d", "kospi200f-1m"], stock_symbols=[STOCK, "000660"]
    ).run()
    assert len(decider.calls) == 1 and len(decider.calls[0]) == 3
    assert sorted(d.symbol for d in run.decisions) == ["000660", STOCK, "KOSPI200F"]
    assert [d.outcome for d in run.decisions] == ["hold"] * 3


# --- risk context, dry outcome rows, run summary, owned clients ----------------------------------------


class MarkedBroker(FakeBroker):
    """Holds another contract marked at ``mark`` besides whatever the test trades."""

    def __init__(self, mark: float) -> None:
        super().__init__()
        self.mark = mark
        self.closed = 0

    def account(self) -> AccountState:
        pos = {s: BrokerPosition(s, q, 300.0, self.mark) for s, q in self.positions.items() if q}
        return AccountState(self.equity, self.equity, pos)

    def close(self) -> None:
        self.closed += 1


@pytest.mark.parametrize(("limit", "sent"), [(250e6, True), (200e6, False)])
def test_gross_exposure_counts_other_holdings_at_their_mark(make: Any, limit: float, sent: bool) -> None:
    # held: 2 contracts marked at 300 (150M); the order: 1 contract at the close 350 (87.5M) -> 237.5M
    broker, decider = MarkedBroker(300.0), FakeDecider(action=4, level=1.0)
    broker.positions["101X12"] = 2
    run = make(broker, decider, trading_risk={**BIG_LIMITS, "max_gross_exposure": limit}).run()
    assert (len(broker.placed) == 1) is sent
    assert run.decisions[0].outcome == ("order" if sent else "rejected")


def test_gross_exposure_marks_an_unpriced_holding_at_the_close(make: Any) -> None:
    # no mark: the held contracts count at the decision bar's close, 3 * 350 * 250000 = 262.5M > 250M
    broker, decider = MarkedBroker(0.0), FakeDecider(action=4, level=1.0)
    broker.positions["101X12"] = 2
    run = make(broker, decider, trading_risk={**BIG_LIMITS, "max_gross_exposure": 250e6}).run()
    assert broker.placed == [] and run.decisions[0].outcome == "rejected"


def test_dry_outcome_updates_only_its_own_row(
    isolated_settings: Path, sqlite_url: str, engine: Engine
) -> None:
    broker = DryBroker()
    decider = FakeDecider(action=2, level=0.0)
    s = settings(isolated_settings, sqlite_url, trading_specs=["stocks-1d", "kospi200f-1m"])
    t = Trader(s, broker, decider, engine)  # type: ignore[arg-type]
    t.run()  # two hold rows: 005930 (daily) and KOSPI200F at 9:59
    broker.clock = kst(10, 1, 30)
    decider.action, decider.level = 4, 1.0
    [d] = t.run().decisions
    assert d.outcome == "dry"
    got = {(r.symbol, aware(r.bar_ts)): r.outcome for r in rows(engine)}
    assert got == {
        (STOCK, dt.datetime(2025, 7, 14, tzinfo=KST)): "hold",
        ("KOSPI200F", kst(9, 59)): "hold",
        ("KOSPI200F", kst(10, 0)): "dry",
    }


def test_run_summary_reports_what_was_done(make: Any) -> None:
    broker, decider = FakeBroker(), FakeDecider(action=4, level=2.0)
    broker.positions[FUT] = -1
    run = make(broker, decider).run()
    got = run.summary()
    assert got["wall_s"] >= 0 and isinstance(got["wall_s"], float)
    del got["wall_s"]
    assert got == {
        "now": kst(10, 0, 30).isoformat(),
        "mode": "sim",
        "account": "main",
        "skipped": None,
        "halted": None,
        "decisions": [
            {
                "spec": "kospi200f-1m",
                "symbol": "KOSPI200F",
                "instrument": FUT,
                "bar": kst(9, 59).isoformat(),
                "outcome": "order",
                "reason": None,
                "action": 4,
                "position_before": -1,
                "target_quantity": 2,
                "order_status": "sent",
            }
        ],
        "reconciliation": run.reconciliation,
        "new_fills": 0,
        "resolved": [],
    }
    assert len(run.reconciliation) == 1 and FUT in run.reconciliation[0]


def test_run_trading_leaves_a_given_broker_open(
    isolated_settings: Path, sqlite_url: str, engine: Engine
) -> None:
    broker, decider = MarkedBroker(300.0), FakeDecider(action=2, level=0.0)
    s = settings(isolated_settings, sqlite_url)
    run = run_trading(s, kst(10, 0, 30), broker=broker, decider=decider, engine=engine)  # type: ignore[arg-type]
    assert broker.closed == 0 and run.decisions[0].outcome == "hold"
    assert run.now == kst(10, 0, 30)


class RejectingBroker(FakeBroker):
    """Rejects the first ``reject`` orders (the broker said no); fills the rest at once."""

    def __init__(self, reject: int) -> None:
        super().__init__()
        self.reject = reject
        self.fill_at = CLOSE_F

    def place(self, order: ProposedOrder) -> str:
        if self.reject > 0:
            self.reject -= 1
            self.placed.append(order)
            raise KisRejectedError("no margin")
        return super().place(order)


def test_broker_rejected_order_is_aimed_for_again_and_not_counted(make: Any, engine: Engine) -> None:
    broker, decider = RejectingBroker(reject=1), FakeDecider(action=4, level=2.0)
    t = make(broker, decider, trading_risk={**BIG_LIMITS, "max_orders_per_day": 1})
    run = t.run()
    assert run.decisions[0].order_status == "rejected"
    broker.clock = kst(10, 1, 30)
    decider.level = 3.0  # the same action: its order never reached the target, so aim for it again
    run = t.run()
    assert run.decisions[0].outcome == "order" and run.decisions[0].order_status == "sent"
    assert [o.quantity for o in broker.placed] == [2, 3]  # the rejected order does not use up the day's one


def test_cancelled_order_is_aimed_for_again(make: Any, engine: Engine) -> None:
    broker, decider = FakeBroker(), FakeDecider(action=4, level=2.0)
    t = make(broker, decider)
    t.run()
    [open_] = broker.book
    broker.book[0] = BrokerOrder(open_.order_no, FUT, "buy", 2, 0, 0.0, "cancelled")
    broker.clock = kst(10, 1, 30)
    decider.level = 1.0
    run = t.run()
    assert run.decisions[0].outcome == "order"
    assert [o.quantity for o in broker.placed] == [2, 1]


class BandBroker(FakeBroker):
    """Notes what each price band was asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.band_asked: list[tuple[str, InstrumentKind]] = []

    def price_band(self, symbol: str, kind: InstrumentKind) -> tuple[float, float] | None:
        self.band_asked.append((symbol, kind))
        return (300.0, 400.0)


def test_price_band_is_asked_for_the_traded_contract(make: Any) -> None:
    broker = BandBroker()
    run = make(
        broker, FakeDecider(action=4, level=1.0), trading_risk={**BIG_LIMITS, "check_price_band": True}
    ).run()
    assert broker.band_asked == [(FUT, InstrumentKind.FUTURES)] and run.decisions[0].outcome == "order"
    assert broker.placed[0].account == "main" and broker.placed[0].spec == "kospi200f-1m"


def test_stock_limit_price_uses_the_stock_tick(make: Any) -> None:
    broker = FakeBroker(equity=10_000_000.0)
    make(
        broker, FakeDecider(action=1, level=0.2), trading_specs=["stocks-1d"], trading_order_type="limit"
    ).run()
    [order] = broker.placed
    assert order.limit_price == CLOSE_S + 2 * tick_size(CLOSE_S, InstrumentKind.STOCK)


@pytest.mark.parametrize(("equity", "level"), [(0.0, 0.0), (-5.0, 0.0), (0.5, 10 * CLOSE_S / 0.5)])
def test_stock_level_without_equity(make: Any, equity: float, level: float) -> None:
    broker, decider = FakeBroker(equity=equity), FakeDecider(action=1, level=0.0)
    broker.positions[STOCK] = 10
    make(broker, decider, trading_specs=["stocks-1d"]).run()
    [[w]] = decider.calls
    assert w.position == pytest.approx(level)


@pytest.mark.parametrize(("avg", "entry"), [(0.0, None), (0.5, 0.5)])
def test_entry_price_only_when_known(make: Any, avg: float, entry: float | None) -> None:
    class AvgBroker(FakeBroker):
        def account(self) -> AccountState:
            return AccountState(self.equity, self.equity, {FUT: BrokerPosition(FUT, 1, avg, 300.0)})

    broker, decider = AvgBroker(), FakeDecider(action=3, level=1.0)
    make(broker, decider).run()
    assert decider.calls[0][0].entry_price == entry


def test_daily_spec_always_sends_the_position(make: Any) -> None:
    broker, decider = FakeBroker(equity=10_000_000.0), FakeDecider(action=1, level=0.0)
    make(broker, decider, trading_specs=["stocks-1d"]).run()
    assert decider.calls[0][0].position == 0.0


def test_first_minute_decision_of_a_new_session_replays_again(make: Any) -> None:
    broker, decider = FakeBroker(), FakeDecider(action=2, level=0.0)
    broker.clock = kst(8, 51, 30)
    t = make(broker, decider)
    t.run()
    broker.clock = kst(8, 51, 30, day=dt.date(2025, 7, 16))
    t.run()
    first, second = decider.calls
    assert first[0].position is None and second[0].position is None
    assert second[0].spec == "kospi200f-1m" and second[0].bars.index[-1] == kst(
        8, 50, day=dt.date(2025, 7, 16)
    )


def test_only_the_latest_earlier_action_counts(make: Any) -> None:
    broker, decider = FakeBroker(), FakeDecider(action=4, level=1.0)
    broker.fill_at = CLOSE_F
    t = make(broker, decider)
    t.run()  # action 4 -> 1 contract
    broker.clock, decider.action, decider.level = kst(10, 1, 30), 3, 2.0
    t.run()  # action 3 -> 2 contracts
    broker.clock, decider.action, decider.level = kst(10, 2, 30), 4, 1.0
    t.run()  # action 4 again, but the latest was 3: back to 1 contract
    assert [(o.side, o.quantity) for o in broker.placed] == [("buy", 1), ("buy", 1), ("sell", 1)]


def test_flatten_starts_exactly_at_the_configured_minutes(make: Any) -> None:
    broker, decider = FakeBroker(), FakeDecider(action=4, level=3.0)
    broker.positions[FUT] = 2
    broker.clock = kst(15, 40)  # exactly 5 min to the 15:45 close
    run = make(broker, decider, trading_flatten_before_close_min=5).run()
    assert (
        run.decisions[0].outcome == "flatten"
        and run.decisions[0].reason == "5 min to the close: intraday position flattened"
    )
    assert [(o.side, o.quantity) for o in broker.placed] == [("sell", 2)]
