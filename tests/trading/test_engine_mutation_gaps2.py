"""More of one trading run against the fake broker and fake model of ``test_engine_mutation_gaps.py``: a
second account or a second spec on the same store and symbol, a symbol added mid-day, the futures roll, the
run's metrics and log lines, expired orders, and the market of each spec (gaps found by mutation testing,
``tools/mutation.py``)."""

from __future__ import annotations

import datetime as dt
import logging
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pipeline import observability as obs
from pipeline.config import Settings
from pipeline.kis.errors import KisTemporaryError
from pipeline.market import CONTINUOUS_FUTURES, KST, InstrumentKind
from pipeline.store.db import create_store_engine
from pipeline.store.schema import decisions, orders, trading_events
from pipeline.trading import engine as engine_mod
from pipeline.trading import state
from pipeline.trading.decider import Decision, ModelUnavailable, WindowRequest
from pipeline.trading.engine import Trader, TradingRun, instrument_for, target_quantity
from pipeline.trading.types import BrokerOrder, ProposedOrder
from tests.trading.test_engine_mutation_gaps import (
    BIG_LIMITS,
    CLOSE_F,
    CLOSE_S,
    DAY,
    FUT,
    STOCK,
    DryBroker,
    FakeBroker,
    FakeDecider,
    aware,
    kst,
    migrated_store,
    rows,
    settings,
)

LOGGER = "pipeline.trading.engine"


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A fresh, migrated SQLite store in the test's temp folder (a copy of one migrated per process)."""
    shutil.copyfile(migrated_store(), tmp_path / "store.db")
    return f"sqlite:///{tmp_path / 'store.db'}"


@pytest.fixture
def engine(sqlite_url: str) -> Iterator[Engine]:
    eng = create_store_engine(sqlite_url)
    yield eng
    eng.dispose()


@pytest.fixture
def make(isolated_settings: Path, sqlite_url: str, engine: Engine) -> Any:
    def _make(broker: FakeBroker, decider: FakeDecider, **over: Any) -> Trader:
        return Trader(settings(isolated_settings, sqlite_url, **over), broker, decider, engine)  # type: ignore[arg-type]

    return _make


def metrics(trader: Trader) -> obs.TradingMetrics:
    """What the runs so far published (the node-exporter file)."""
    return obs.TradingMetrics.load(obs.metrics_file(trader.settings))


def account_rows(engine: Engine, account: str) -> dict[tuple[str, str, dt.datetime], Any]:
    with engine.connect() as conn:
        got = conn.execute(sa.select(decisions).where(decisions.c.account == account)).all()
    return {(r.spec, r.symbol, aware(r.bar_ts)): r for r in got}


class FlakyBroker(FakeBroker):
    """The first ``lose`` orders are lost on the way (the outcome unknown, and the broker never saw them):
    the engine's order manager expires them at once."""

    def __init__(self, lose: int, equity: float = 100_000_000.0) -> None:
        super().__init__(equity)
        self.lose = lose
        self.fill_at = CLOSE_F

    def place(self, order: ProposedOrder) -> str:
        if self.lose > 0:
            self.lose -= 1
            self.placed.append(order)
            raise KisTemporaryError("connection reset")
        return super().place(order)


# --- instruments ------------------------------------------------------------------------------------


def test_instrument_for_maps_only_the_continuous_futures_series() -> None:
    day = dt.date(2025, 9, 8)  # a Monday 3 sessions before the September expiry (the 11th)
    assert instrument_for(CONTINUOUS_FUTURES, InstrumentKind.FUTURES, day, 3) == "101W09"
    assert instrument_for(CONTINUOUS_FUTURES, InstrumentKind.FUTURES, day, 5) == "101W12"
    assert instrument_for("101W12", InstrumentKind.FUTURES, day, 3) == "101W12"  # a named contract stays
    assert instrument_for(CONTINUOUS_FUTURES, InstrumentKind.STOCK, day, 3) == CONTINUOUS_FUTURES
    assert instrument_for(STOCK, InstrumentKind.STOCK, day, 3) == STOCK


def test_the_configured_roll_days_pick_the_traded_contract(make: Any, engine: Engine) -> None:
    # rolling 5 sessions before expiry, Monday the 8th already trades December; the default 3 would not
    broker, decider = FakeBroker(), FakeDecider(action=4, level=1.0)
    broker.clock = kst(10, 0, 30, day=dt.date(2025, 9, 8))
    run = make(broker, decider, futures_roll_days=5).run()
    [order] = broker.placed
    assert order.symbol == "101W12" and run.decisions[0].instrument == "101W12"
    assert broker.bar_calls == [("101W12", "1m", 1)]
    assert rows(engine)[0].instrument == "101W12" and rows(engine)[0].symbol == CONTINUOUS_FUTURES


# --- a second account on the same store ----------------------------------------------------------------


def test_a_second_account_decides_and_trades_on_its_own(
    isolated_settings: Path, sqlite_url: str, engine: Engine
) -> None:
    main_broker, alt_broker = FakeBroker(), FakeBroker()
    for b in (main_broker, alt_broker):
        b.fill_at = CLOSE_F
    limits = {**BIG_LIMITS, "max_orders_per_day": 1}
    main = Trader(
        settings(isolated_settings, sqlite_url, trading_risk=limits),
        main_broker,
        FakeDecider(action=4, level=1.0),  # type: ignore[arg-type]
        engine,
    )
    alt_decider = FakeDecider(action=4, level=2.0)
    alt = Trader(
        settings(isolated_settings, sqlite_url, trading_risk=limits, trading_account="alt"),
        alt_broker,
        alt_decider,  # type: ignore[arg-type]
        engine,
    )
    main.run()  # main: action 4 at 9:59, one contract, its day's one order
    run = alt.run()  # the same bar: main's decision, order and action are not alt's
    [d] = run.decisions
    assert (d.outcome, d.action, d.target_quantity, d.order_status) == ("order", 4, 2, "sent")
    assert [o.quantity for o in alt_broker.placed] == [2] and alt_broker.placed[0].account == "alt"
    [[w]] = alt_decider.calls
    assert w.position is None  # alt's first decision of the session: the model replays the session
    got_main, got_alt = account_rows(engine, "main"), account_rows(engine, "alt")
    key = ("kospi200f-1m", CONTINUOUS_FUTURES, kst(9, 59))
    assert set(got_main) == set(got_alt) == {key}
    assert (got_main[key].target_quantity, got_alt[key].target_quantity) == (1, 2)
    assert got_alt[key].client_order_id == d.client_order_id != got_main[key].client_order_id


def test_a_dry_account_marks_only_its_own_decision_dry(
    isolated_settings: Path, sqlite_url: str, engine: Engine
) -> None:
    main_broker = FakeBroker()
    main = Trader(
        settings(isolated_settings, sqlite_url),
        main_broker,
        FakeDecider(action=4, level=1.0),  # type: ignore[arg-type]
        engine,
    )
    dry = Trader(
        settings(isolated_settings, sqlite_url, trading_account="paper"),
        DryBroker(),
        FakeDecider(action=4, level=1.0),  # type: ignore[arg-type]
        engine,
    )
    main.run()
    [d] = dry.run().decisions
    assert d.outcome == "dry"
    key = ("kospi200f-1m", CONTINUOUS_FUTURES, kst(9, 59))
    assert account_rows(engine, "main")[key].outcome == "order"
    assert account_rows(engine, "paper")[key].outcome == "dry"


def test_another_accounts_earlier_action_does_not_keep_this_ones_position(
    isolated_settings: Path, sqlite_url: str, engine: Engine
) -> None:
    main_broker = FakeBroker()
    main_broker.fill_at = CLOSE_F
    main = Trader(
        settings(isolated_settings, sqlite_url),
        main_broker,
        FakeDecider(action=4, level=1.0),  # type: ignore[arg-type]
        engine,
    )
    main.run()  # main: action 4 at 9:59
    alt_broker = FakeBroker()
    alt_broker.clock = kst(10, 1, 30)
    alt = Trader(
        settings(isolated_settings, sqlite_url, trading_account="alt"),
        alt_broker,
        FakeDecider(action=4, level=2.0),  # type: ignore[arg-type]
        engine,
    )
    [d] = alt.run().decisions  # alt's first action 4 (at 10:00): a new action for alt, to its level
    assert (d.outcome, d.target_quantity) == ("order", 2)
    assert [o.quantity for o in alt_broker.placed] == [2]


# --- a second spec on the same symbol, a symbol added mid-day --------------------------------------------


def test_a_second_spec_on_the_same_symbol_decides_on_its_own(make: Any, engine: Engine) -> None:
    broker, decider = FakeBroker(), FakeDecider(action=3, level=1.0)
    broker.fill_at = CLOSE_F
    t = make(broker, decider, trading_specs=["kospi200f-1m"])
    t.run()  # the minute spec: action 3, one contract
    t2 = make(broker, decider, trading_specs=["kospi200f-1m", "kospi200f-1d"])
    decider.level = 2.0
    run = t2.run()  # same time: the minute bar is decided; the daily spec's first decision
    [d] = run.decisions
    assert (d.spec, d.bar_ts, d.action) == ("kospi200f-1d", dt.datetime(2025, 7, 14, tzinfo=KST), 3)
    # the minute spec's action 3 is not the daily spec's: it trades to its own level (2 contracts,
    # less the one held)
    assert d.outcome == "order" and d.target_quantity == 2
    assert [(o.spec, o.quantity) for o in broker.placed] == [("kospi200f-1m", 1), ("kospi200f-1d", 1)]
    got = {(r.spec, aware(r.bar_ts)) for r in rows(engine)}
    assert got == {("kospi200f-1m", kst(9, 59)), ("kospi200f-1d", dt.datetime(2025, 7, 14, tzinfo=KST))}


def test_a_second_spec_starts_its_session_with_a_replay(make: Any) -> None:
    broker, decider = FakeBroker(), FakeDecider(action=2, level=0.0)
    make(broker, decider, trading_specs=["kospi200f-1m"]).run()
    spec = {"kospi200f-1mb": {"interval": "1m", "kind": "futures", "symbols": [CONTINUOUS_FUTURES]}}
    broker.clock = kst(10, 1, 30)
    make(broker, decider, trading_specs=["kospi200f-1m", "kospi200f-1mb"], model_specs=spec).run()
    by_spec = {w.spec: w for w in decider.calls[1]}
    assert by_spec["kospi200f-1m"].position == 0.0  # its second decision of the session
    assert by_spec["kospi200f-1mb"].position is None  # its first: replayed


def test_a_symbol_added_mid_day_is_decided(make: Any, engine: Engine) -> None:
    broker, decider = FakeBroker(equity=10_000_000.0), FakeDecider(action=1, level=0.2)
    broker.fill_at = CLOSE_S
    make(broker, decider, trading_specs=["stocks-1d"], stock_symbols=[STOCK]).run()
    broker.clock = kst(11, 0, 30)
    run = make(broker, decider, trading_specs=["stocks-1d"], stock_symbols=[STOCK, "000660"]).run()
    [d] = run.decisions  # 005930 was decided this session; 000660 is new
    assert (d.symbol, d.outcome) == ("000660", "order")
    # the same action 1 as 005930's, but a new one for 000660: sized to its level of half the equity
    assert d.target_quantity == 19 and broker.placed[-1].symbol == "000660"
    assert sorted(r.symbol for r in rows(engine)) == ["000660", STOCK]


# --- the run's metrics and log lines ---------------------------------------------------------------------


def test_metrics_count_each_runs_outcome(make: Any, engine: Engine) -> None:
    broker, decider = FakeBroker(), FakeDecider(action=2, level=0.0)
    t = make(broker, decider)
    t.run()
    broker.clock = kst(10, 1, 30)
    t.run()
    broker.clock = kst(20, 0)
    t.run()
    assert {k: v for k, v in metrics(t).runs.items() if v} == {"traded": 2.0, "skipped": 1.0}
    state.engage(engine, "main", "operator says stop", "test")
    broker.clock = kst(10, 2, 30)
    t.run()
    got = metrics(t)
    assert {k: v for k, v in got.runs.items() if v} == {"traded": 2.0, "skipped": 1.0, "halted": 1.0}
    assert "krx_trading_kill_switch 1.0" in obs.metrics_file(t.settings).read_text(encoding="utf-8")


def test_metrics_count_rejections_by_rule_and_reconciliation_differences(make: Any) -> None:
    broker, decider = FakeBroker(), FakeDecider(action=4, level=5.0)
    broker.positions["101X12"] = 1  # unknown to the store: one difference
    broker.last_bar = kst(9, 50)  # stale
    t = make(broker, decider, trading_risk={**BIG_LIMITS, "max_order_quantity": 2, "max_position": 3})
    t.run()
    got = metrics(t)
    assert dict(got.rejections) == {"stale_data": 1.0} and got.reconciliation == 1.0
    broker.last_bar = None
    broker.clock = kst(10, 1, 30)
    t.run()
    got = metrics(t)
    assert {k: v for k, v in got.rejections.items() if v} == {
        "stale_data": 1.0,
        "max_order_quantity": 1.0,
        "max_position": 1.0,
    }


def test_decision_latency_runs_from_the_model_call_to_each_answer(
    make: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    ticks = iter(float(i) * 0.2 for i in range(100))  # each reading of the clock is 0.2 s later
    monkeypatch.setattr(engine_mod, "time", SimpleNamespace(perf_counter=lambda: next(ticks)))
    broker, decider = FakeBroker(equity=10_000_000.0), FakeDecider(action=2, level=0.0)
    t = make(broker, decider, trading_specs=["stocks-1d", "kospi200f-1m"])
    run = t.run()
    # readings: 0.0 run start, 0.2 windows sent, 0.4 and 0.6 after each answer, 0.8 run end
    assert run.wall_s == pytest.approx(0.8)
    got = metrics(t)
    assert got.latency_sum == pytest.approx(0.2 + 0.4)
    bounds = dict(zip(obs.LATENCY_BUCKETS, got.latency_counts, strict=True))
    assert (bounds[0.1], bounds[0.25], bounds[0.5], bounds[1.0]) == (0.0, 1.0, 2.0, 2.0)


def test_no_latency_without_a_model_call(make: Any, engine: Engine) -> None:
    broker, decider = FakeBroker(), FakeDecider(action=4, level=1.0)
    t = make(broker, decider)
    state.engage(engine, "main", "stop", "test")
    t.run()
    got = metrics(t)
    assert got.latency_counts[-1] == 0.0 and got.latency_sum == 0.0


@pytest.fixture
def engine_log(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> Iterator[pytest.LogCaptureFixture]:
    """The engine's log lines (once each), each with its log context (account, spec, symbol...)."""
    logger = logging.getLogger(LOGGER)
    context = obs.ContextFilter()
    caplog.handler.addFilter(context)
    logger.addHandler(caplog.handler)
    monkeypatch.setattr(logger, "propagate", False)
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    try:
        yield caplog
    finally:
        logger.removeHandler(caplog.handler)
        caplog.handler.removeFilter(context)


def engine_lines(caplog: pytest.LogCaptureFixture) -> list[tuple[str, dict[str, Any]]]:
    return [(r.getMessage(), r.krx_context) for r in caplog.records if r.name == LOGGER]  # type: ignore[attr-defined]


def test_log_lines_of_an_order_and_the_run(make: Any, engine_log: pytest.LogCaptureFixture) -> None:
    broker, decider = FakeBroker(), FakeDecider(action=4, level=3.0)
    broker.positions[FUT] = -1
    run = make(broker, decider).run()
    key = run.decisions[0].client_order_id
    run_ctx = {"account": "main", "mode": "sim", "run_at": kst(10, 0, 30).isoformat()}
    sym_ctx = {**run_ctx, "spec": "kospi200f-1m", "symbol": CONTINUOUS_FUTURES, "instrument": FUT}
    lines = engine_lines(engine_log)
    assert lines == [("decision: order buy 4 -> order sent", sym_ctx), ("trading run: traded", run_ctx)]
    [order_line] = [r for r in engine_log.records if r.name == LOGGER and r.msg.startswith("decision")]
    assert order_line.client_order_id == key  # type: ignore[attr-defined]
    assert all(r.levelno == logging.INFO for r in engine_log.records if r.name == LOGGER)


def test_log_lines_of_a_recorded_decision_and_a_skipped_run(
    make: Any, engine_log: pytest.LogCaptureFixture
) -> None:
    broker, decider = FakeBroker(), FakeDecider(action=3, level=2.0)
    broker.positions[FUT] = 2
    t = make(broker, decider)
    t.run()
    broker.clock = kst(20, 0)
    t.run()
    assert [m for m, _ in engine_lines(engine_log)] == [
        "decision: hold (already at the target)",
        "trading run: traded",
        "trading run: skipped",
    ]
    assert engine_lines(engine_log)[0][1]["symbol"] == CONTINUOUS_FUTURES


def test_log_line_of_a_halted_run(make: Any, engine: Engine, engine_log: pytest.LogCaptureFixture) -> None:
    t = make(FakeBroker(), FakeDecider())
    state.engage(engine, "main", "stop", "test")
    t.run()
    assert [m for m, _ in engine_lines(engine_log)] == [
        "decision: halted (kill switch engaged: stop)",
        "trading run: halted",
    ]


# --- the run's clock and summary ---------------------------------------------------------------------


def test_a_run_at_a_given_instant_is_stamped_in_kst(make: Any) -> None:
    broker, decider = FakeBroker(), FakeDecider(action=2, level=0.0)
    run = make(broker, decider).run(kst(10, 0, 30).astimezone(dt.UTC))
    assert run.now == kst(10, 0, 30) and run.now.utcoffset() == dt.timedelta(hours=9)
    assert run.summary()["now"] == "2025-07-15T10:00:30+09:00"
    assert [d.bar_ts for d in run.decisions] == [kst(9, 59)]


def test_summary_rounds_the_wall_time_to_milliseconds() -> None:
    run = TradingRun(kst(10, 0), "sim", "main", wall_s=1.23456)
    assert run.summary()["wall_s"] == 1.235


def test_wall_time_is_measured_from_the_runs_start(make: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    ticks = iter([1000.0, 1000.5, 1001.0, 1002.5, 1003.0])
    monkeypatch.setattr(engine_mod, "time", SimpleNamespace(perf_counter=lambda: next(ticks)))
    broker, decider = FakeBroker(), FakeDecider(action=2, level=0.0)
    run = make(broker, decider).run()
    # started 1000.0, windows sent 1000.5, one answer 1001.0, ended 1002.5
    assert run.wall_s == pytest.approx(2.5)


# --- the market of each spec -------------------------------------------------------------------------


def test_a_spec_whose_market_is_closed_is_not_decided(make: Any, engine: Engine) -> None:
    broker, decider = FakeBroker(equity=10_000_000.0), FakeDecider(action=2, level=0.0)
    broker.clock = kst(8, 51, 30)  # futures trade from 8:45, stocks from 9:00
    run = make(broker, decider, trading_specs=["stocks-1d", "kospi200f-1m"]).run()
    assert [(d.spec, d.bar_ts) for d in run.decisions] == [("kospi200f-1m", kst(8, 50))]
    assert [r.spec for r in rows(engine)] == ["kospi200f-1m"]


def test_daily_spec_is_not_flattened_before_the_close(make: Any) -> None:
    broker, decider = FakeBroker(equity=10_000_000.0), FakeDecider(action=1, level=0.2)
    broker.clock = kst(15, 27, 30)  # 2.5 min to the stock close
    run = make(broker, decider, trading_specs=["stocks-1d"], trading_flatten_before_close_min=5).run()
    [d] = run.decisions
    assert (d.outcome, d.target_quantity) == ("order", 39)


def test_flatten_when_already_flat_keeps_its_reason(make: Any, engine: Engine) -> None:
    broker, decider = FakeBroker(), FakeDecider(action=4, level=3.0)
    broker.clock = kst(15, 41, 30)
    run = make(broker, decider, trading_flatten_before_close_min=5).run()
    [d] = run.decisions
    assert (d.outcome, d.reason, d.target_quantity) == (
        "flatten",
        "4 min to the close: intraday position flattened",
        0,
    )
    assert broker.placed == [] and rows(engine)[0].reason == d.reason


def test_several_minute_sessions_always_send_the_position(make: Any) -> None:
    # with more than one session of history the model is not asked to replay the session
    broker, decider = FakeBroker(), FakeDecider(action=2, level=0.0)
    make(broker, decider, trading_minute_sessions=2).run()
    [[w]] = decider.calls
    assert w.position == 0.0 and w.entry_price is None


# --- expired orders ---------------------------------------------------------------------------------


def test_an_expired_order_is_aimed_for_again_and_not_counted(make: Any, engine: Engine) -> None:
    broker, decider = FlakyBroker(lose=1), FakeDecider(action=4, level=2.0)
    t = make(broker, decider, trading_risk={**BIG_LIMITS, "max_orders_per_day": 1})
    run = t.run()
    assert run.decisions[0].order_status == "expired"
    broker.clock = kst(10, 1, 30)
    decider.level = 3.0  # the same action: its order never reached the broker, so aim for it again
    run = t.run()
    assert run.decisions[0].outcome == "order" and run.decisions[0].order_status == "sent"
    assert [o.quantity for o in broker.placed] == [2, 3]  # the expired order does not use up the day's one


def test_an_order_open_at_the_end_of_the_day_expires_and_is_aimed_for_again(make: Any) -> None:
    broker, decider = FakeBroker(equity=10_000_000.0), FakeDecider(action=1, level=0.2)
    t = make(broker, decider, trading_specs=["stocks-1d"])
    t.run()  # 39 shares, never filled
    broker.book.clear()  # the broker's orders of the next day
    broker.fill_at = CLOSE_S
    broker.clock = kst(10, 0, 30, day=dt.date(2025, 7, 16))
    run = t.run()  # the same action: yesterday's order expired, so aim for the target again
    assert run.decisions[0].outcome == "order"
    assert [o.quantity for o in broker.placed] == [39, 39]


def test_yesterdays_orders_do_not_count_against_todays_limit(make: Any) -> None:
    broker, decider = FakeBroker(equity=10_000_000.0), FakeDecider(action=1, level=0.2)
    broker.fill_at = CLOSE_S
    t = make(
        broker, decider, trading_specs=["stocks-1d"], trading_risk={**BIG_LIMITS, "max_orders_per_day": 1}
    )
    t.run()
    broker.clock = kst(10, 0, 30, day=dt.date(2025, 7, 16))
    decider.action, decider.level = 0, 0.0
    run = t.run()
    assert run.decisions[0].outcome == "order"
    assert [(o.side, o.quantity) for o in broker.placed] == [("buy", 39), ("sell", 39)]


# --- price band, loss limit, reconciliation, order manager settings ---------------------------------


def test_a_price_band_the_broker_cannot_give_does_not_block(make: Any) -> None:
    class NoBandBroker(FakeBroker):
        def price_band(self, symbol: str, kind: InstrumentKind) -> tuple[float, float] | None:
            raise KisTemporaryError("no quote")

    broker = NoBandBroker()
    run = make(
        broker, FakeDecider(action=4, level=1.0), trading_risk={**BIG_LIMITS, "check_price_band": True}
    ).run()
    assert run.decisions[0].outcome == "order" and len(broker.placed) == 1


def test_the_daily_loss_halt_names_its_source(make: Any, engine: Engine) -> None:
    broker, decider = FakeBroker(), FakeDecider(action=2, level=0.0)
    t = make(broker, decider)
    t.run()
    broker.equity -= 6_000_000.0
    broker.clock = kst(10, 1, 30)
    run = t.run()
    halt = state.halt_state(engine, "main")
    assert halt.by == "risk:daily_loss_limit" and halt.reason == run.halted
    assert run.decisions[0].reason == f"kill switch engaged: {halt.reason}"


def test_reconciliation_halts_after_the_configured_runs(make: Any, engine: Engine) -> None:
    broker, decider = FakeBroker(), FakeDecider(action=2, level=0.0)
    broker.positions["101X12"] = 1  # unknown to the store, every run
    t = make(broker, decider, trading_reconcile_halt_runs=1)
    run = t.run()
    assert run.halted is not None and state.halt_state(engine, "main").by == "reconciliation"
    assert run.decisions[0].outcome == "halted"


def test_open_orders_are_cancelled_after_the_configured_time(make: Any, engine: Engine) -> None:
    class CancelBroker(FakeBroker):
        def __init__(self) -> None:
            super().__init__()
            self.cancelled: list[str] = []

        def cancel(self, order_no: str, symbol: str, kind: InstrumentKind) -> None:
            self.cancelled.append(order_no)

    broker, decider = CancelBroker(), FakeDecider(action=4, level=1.0)
    t = make(broker, decider, trading_cancel_after_s=30)
    t.run()  # sent at 10:00:30, never filled
    broker.clock = kst(10, 1, 0)  # 30 s later: past the configured 30 s (the default is 120 s)
    t.run()
    assert broker.cancelled == [broker.book[0].order_no]


def test_a_lost_order_is_matched_within_the_configured_window(make: Any, engine: Engine) -> None:
    class LateBroker(FakeBroker):
        """Loses the answer of the first order, which the broker stamps 400 s after the intent."""

        def place(self, order: ProposedOrder) -> str:
            super().place(order)
            o = self.book[-1]
            self.book[-1] = BrokerOrder(
                o.order_no, o.symbol, o.side, o.quantity, 0, 0.0, "open", placed_at=kst(10, 7, 10)
            )
            raise KisTemporaryError("read timeout")

    broker, decider = LateBroker(), FakeDecider(action=4, level=1.0)
    run = make(broker, decider, trading_resolve_window_s=600).run()
    # 400 s is outside the default 300 s window but inside the configured 600 s
    assert run.decisions[0].order_status == "sent"
    with engine.connect() as conn:
        [o] = conn.execute(sa.select(orders)).all()
    assert o.broker_order_no == broker.book[0].order_no


def test_fault_hook_reaches_the_order_manager(
    isolated_settings: Path, sqlite_url: str, engine: Engine
) -> None:
    seen: list[str] = []
    t = Trader(
        settings(isolated_settings, sqlite_url),
        FakeBroker(),
        FakeDecider(action=4, level=1.0),  # type: ignore[arg-type]
        engine,
        fault=seen.append,
    )
    t.run()
    assert seen == ["after_intent", "after_send", "after_record"]


# --- the dry outcome of one row among rows of the same bar ----------------------------------------------


def test_dry_outcome_leaves_another_specs_row_of_the_same_bar(
    isolated_settings: Path, sqlite_url: str, engine: Engine
) -> None:
    spec = {"kospi200f-1mb": {"interval": "1m", "kind": "futures", "symbols": [CONTINUOUS_FUTURES]}}
    broker, decider = DryBroker(), FakeDecider(action=4, level=1.0)
    s = settings(isolated_settings, sqlite_url, model_specs=spec)
    Trader(s, broker, decider, engine).run()  # type: ignore[arg-type]  # kospi200f-1m: action 4, dry
    broker.clock = kst(10, 1, 30)
    s2 = settings(
        isolated_settings, sqlite_url, model_specs=spec, trading_specs=["kospi200f-1m", "kospi200f-1mb"]
    )
    run = Trader(s2, broker, decider, engine).run()  # type: ignore[arg-type]
    # the 10:00 bar: kospi200f-1m repeats its action (hold), kospi200f-1mb's first action orders (dry)
    assert [(d.spec, d.outcome) for d in run.decisions] == [
        ("kospi200f-1m", "hold"),
        ("kospi200f-1mb", "dry"),
    ]
    got = {(r.spec, aware(r.bar_ts)): r.outcome for r in rows(engine)}
    assert got == {
        ("kospi200f-1m", kst(9, 59)): "dry",
        ("kospi200f-1m", kst(10, 0)): "hold",
        ("kospi200f-1mb", kst(10, 0)): "dry",
    }


def test_dry_outcome_leaves_another_symbols_row_of_the_same_bar(
    isolated_settings: Path, sqlite_url: str, engine: Engine
) -> None:
    broker, decider = DryBroker(equity=10_000_000.0), FakeDecider(action=1, level=0.2)
    broker.positions[STOCK] = 19  # 0.2 of 5M at 50000 (with the fee): already at the target
    s = settings(isolated_settings, sqlite_url, trading_specs=["stocks-1d"], stock_symbols=[STOCK, "000660"])
    run = Trader(s, broker, decider, engine).run()  # type: ignore[arg-type]
    assert [(d.symbol, d.outcome) for d in run.decisions] == [(STOCK, "hold"), ("000660", "dry")]
    assert {r.symbol: r.outcome for r in rows(engine)} == {STOCK: "hold", "000660": "dry"}


# --- run_trading: what it builds from the settings, and closes --------------------------------------------


class OwnedDecider(FakeDecider):
    """Stands in for the HttpDecider that run_trading builds from the settings."""

    built: ClassVar[list[OwnedDecider]] = []

    def __init__(self, settings: Settings) -> None:
        super().__init__(action=2, level=0.0)
        self.settings = settings
        self.closed = 0
        OwnedDecider.built.append(self)

    def close(self) -> None:
        self.closed += 1


class OwnedBroker(FakeBroker):
    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self.settings = settings
        self.closed = 0

    def close(self) -> None:
        self.closed += 1


@pytest.fixture
def owned(monkeypatch: pytest.MonkeyPatch) -> list[OwnedBroker]:
    """run_trading builds fakes (noting the settings it built them from), not KIS and HTTP clients."""
    brokers: list[OwnedBroker] = []

    def make_broker(s: Settings) -> OwnedBroker:
        brokers.append(OwnedBroker(s))
        return brokers[-1]

    monkeypatch.setattr(engine_mod, "make_broker", make_broker)
    monkeypatch.setattr(engine_mod, "HttpDecider", OwnedDecider)
    monkeypatch.setattr(OwnedDecider, "built", [])
    return brokers


def test_run_trading_builds_its_clients_from_the_settings_and_closes_them(
    isolated_settings: Path, sqlite_url: str, engine: Engine, owned: list[OwnedBroker]
) -> None:
    s = settings(isolated_settings, sqlite_url)
    run = engine_mod.run_trading(s, kst(10, 5, 30), engine=engine)
    [broker], [decider] = owned, OwnedDecider.built
    assert broker.settings is s and decider.settings is s
    assert broker.closed == 1 and decider.closed == 1
    assert run.now == kst(10, 5, 30) and [d.bar_ts for d in run.decisions] == [kst(10, 4)]


def test_run_trading_closes_nothing_it_was_given(
    isolated_settings: Path, sqlite_url: str, engine: Engine, owned: list[OwnedBroker]
) -> None:
    s = settings(isolated_settings, sqlite_url)
    broker, decider = OwnedBroker(s), OwnedDecider(s)  # given, though of the kinds it would build
    engine_mod.run_trading(s, broker=broker, decider=decider, engine=engine)
    assert (broker.closed, decider.closed, owned) == (0, 0, [])


def test_run_trading_uses_the_given_settings_over_the_environments(
    isolated_settings: Path, sqlite_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    given = settings(isolated_settings, sqlite_url, trading_account="given")
    env = settings(isolated_settings, sqlite_url, trading_account="env")
    monkeypatch.setattr(engine_mod, "get_settings", lambda: env)
    broker, decider = FakeBroker(), FakeDecider(action=2, level=0.0)
    assert engine_mod.run_trading(given, broker=broker, decider=decider, engine=engine).account == "given"  # type: ignore[arg-type]
    broker.clock = kst(10, 1, 30)
    assert engine_mod.run_trading(broker=broker, decider=decider, engine=engine).account == "env"  # type: ignore[arg-type]


def test_run_trading_opens_and_migrates_the_settings_store(
    isolated_settings: Path, tmp_path: Path, sqlite_url: str, engine: Engine
) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"  # not migrated yet
    s = settings(isolated_settings, url)
    broker, decider = FakeBroker(), FakeDecider(action=2, level=0.0)
    run = engine_mod.run_trading(s, broker=broker, decider=decider)  # type: ignore[arg-type]
    assert run.decisions[0].outcome == "hold"
    fresh = create_store_engine(url)
    try:
        assert [r.outcome for r in rows(fresh)] == ["hold"]
    finally:
        fresh.dispose()
    assert rows(engine) == []  # not the other store


# --- what the run asks the broker, what it reports, what it refuses -----------------------------------


class RecordingBroker(FakeBroker):
    """Notes what the run asked for its orders of the day; with ``lose_next`` the next order reaches the
    broker but its answer is lost, and so is the read of the orders right after it."""

    def __init__(self, equity: float = 100_000_000.0) -> None:
        super().__init__(equity)
        self.orders_asked: list[tuple[dt.date, set[InstrumentKind]]] = []
        self.lose_next = False
        self.busy = False

    def orders_today(self, day: dt.date, kinds: Iterable[InstrumentKind]) -> list[BrokerOrder]:
        self.orders_asked.append((day, set(kinds)))
        if self.busy:
            self.busy = False
            raise KisTemporaryError("busy")
        return super().orders_today(day, kinds)

    def place(self, order: ProposedOrder) -> str:
        no = super().place(order)
        if self.lose_next:
            self.lose_next, self.busy = False, True
            raise KisTemporaryError("read timeout")
        return no


def test_the_run_asks_for_the_orders_of_its_day_and_markets(make: Any) -> None:
    broker = RecordingBroker(equity=10_000_000.0)
    make(broker, FakeDecider(action=2, level=0.0), trading_specs=["stocks-1d", "kospi200f-1m"]).run()
    assert broker.orders_asked == [(DAY, {InstrumentKind.STOCK, InstrumentKind.FUTURES})]


def test_an_order_whose_answer_was_lost_is_resolved_by_the_next_run(make: Any, engine: Engine) -> None:
    broker, decider = RecordingBroker(), FakeDecider(action=4, level=1.0)
    broker.lose_next = True  # and the broker cannot be asked at once: the next run resolves it
    t = make(broker, decider)
    first = t.run()
    key = first.decisions[0].client_order_id
    assert first.decisions[0].order_status == "intent" and first.resolved == []
    broker.clock = kst(10, 1, 30)
    run = t.run()
    assert run.resolved == [key] and run.summary()["resolved"] == [key]
    # the resolved order now works at the broker: no second order for the symbol
    assert run.decisions[0].outcome == "rejected" and len(broker.placed) == 1


def test_a_model_answer_missing_fails_the_run(make: Any) -> None:
    class ShortDecider(FakeDecider):
        def decide(self, requests: list[WindowRequest]) -> list[Decision | ModelUnavailable]:
            return super().decide(requests)[:-1]

    broker = FakeBroker(equity=10_000_000.0)
    t = make(broker, ShortDecider(), trading_specs=["stocks-1d", "kospi200f-1m"])
    with pytest.raises(ValueError, match="zip"):
        t.run()
    assert broker.placed == []
    assert {k: v for k, v in metrics(t).runs.items() if v} == {"failed": 1.0}


def test_the_run_pushes_its_metrics_under_the_account(make: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    pushed: list[dict[str, Any]] = []
    monkeypatch.setattr(obs, "push_to_gateway", lambda url, **kw: pushed.append({"url": url, **kw}))
    t = make(FakeBroker(), FakeDecider(), trading_account="alt", metrics_pushgateway="http://gw:9091")
    t.run()
    [push] = pushed
    assert (push["url"], push["job"], push["grouping_key"]) == (
        "http://gw:9091",
        "krx_trading",
        {"account": "alt"},
    )


def test_a_spec_added_within_a_bar_decides_that_bar(make: Any, engine: Engine) -> None:
    spec = {"kospi200f-1mb": {"interval": "1m", "kind": "futures", "symbols": [CONTINUOUS_FUTURES]}}
    broker, decider = FakeBroker(), FakeDecider(action=2, level=0.0)
    make(broker, decider, model_specs=spec).run()  # kospi200f-1m decides 9:59
    broker.clock = kst(10, 0, 50)
    run = make(broker, decider, trading_specs=["kospi200f-1m", "kospi200f-1mb"], model_specs=spec).run()
    assert [(d.spec, d.bar_ts) for d in run.decisions] == [("kospi200f-1mb", kst(9, 59))]
    assert sorted(r.spec for r in rows(engine)) == ["kospi200f-1m", "kospi200f-1mb"]


def test_another_symbols_earlier_action_does_not_keep_this_ones_position(make: Any) -> None:
    broker, decider = FakeBroker(equity=10_000_000.0), FakeDecider(action=1, level=0.2)
    broker.fill_at = CLOSE_S
    make(broker, decider, trading_specs=["stocks-1d"], stock_symbols=[STOCK]).run()  # 005930: action 1
    broker.clock = kst(10, 0, 30, day=dt.date(2025, 7, 16))
    run = make(broker, decider, trading_specs=["stocks-1d"], stock_symbols=[STOCK, "000660"]).run()
    got = {d.symbol: (d.outcome, d.target_quantity) for d in run.decisions}
    # 005930 repeats its action 1 (keeps its 39 shares); 000660's first action 1 buys to its level
    assert got == {STOCK: ("hold", 39), "000660": ("order", 19)}


def test_risk_rejections_are_recorded_each_with_its_reason(make: Any, engine: Engine) -> None:
    broker, decider = FakeBroker(), FakeDecider(action=4, level=5.0)
    t = make(broker, decider, trading_risk={**BIG_LIMITS, "max_order_quantity": 2, "max_position": 3})
    [d] = t.run().decisions
    with engine.connect() as conn:
        evs = conn.execute(sa.select(trading_events).order_by(trading_events.c.id)).all()
    got = [(e.account, e.kind, e.symbol, e.detail["rule"]) for e in evs]
    assert got == [
        ("main", "risk_rejected", FUT, "max_order_quantity"),
        ("main", "risk_rejected", FUT, "max_position"),
    ]
    assert d.reason == f"{evs[0].reason}; {evs[1].reason}"
    assert "quantity 5" in evs[0].reason and "max_position 3" in evs[1].reason


def test_first_minute_decision_while_holding_sends_the_position(make: Any) -> None:
    broker, decider = FakeBroker(), FakeDecider(action=3, level=2.0)
    broker.positions[FUT] = 2
    make(broker, decider).run()
    [[w]] = decider.calls
    assert w.position == 2.0 and w.entry_price == 300.0  # only a flat start replays the session


def test_no_equity_sizes_nothing_whatever_the_price() -> None:
    # not even one cheap share or one cheap contract: the equity left is nothing, not one won
    assert target_quantity(1.0, InstrumentKind.STOCK, 0.0, 0.9) == 0
    assert target_quantity(1.0, InstrumentKind.STOCK, -3.0, 0.9) == 0
    assert target_quantity(2.0, InstrumentKind.FUTURES, 0.0, 1e-6) == 0
    # the same prices with one won of equity do buy: the sizing itself is not what stops them
    assert target_quantity(1.0, InstrumentKind.STOCK, 1.0, 0.9) == 1
    assert target_quantity(2.0, InstrumentKind.FUTURES, 1.0, 1e-6) == 2


def test_decisions_without_an_action_are_not_the_previous_action(make: Any) -> None:
    broker, decider = FakeBroker(), FakeDecider(action=4, level=1.0)
    broker.fill_at = CLOSE_F
    t = make(broker, decider)
    decider.unavailable = "no champion"
    assert t.run().decisions[0].outcome == "no_model"  # 9:59: no action
    broker.clock, decider.unavailable = kst(10, 1, 30), None
    run = t.run()  # 10:00: the session's first action, so the model replays the session
    assert decider.calls[-1][0].position is None
    assert run.decisions[0].outcome == "order" and [o.quantity for o in broker.placed] == [1]
    broker.clock = kst(10, 2, 30)
    decider.unavailable = "no champion"
    t.run()  # 10:01: no action again
    broker.clock, decider.unavailable, decider.level = kst(10, 3, 30), None, 2.0
    run = t.run()  # 10:02: the latest action (10:00's 4) repeats: the position is kept
    assert (run.decisions[0].outcome, run.decisions[0].target_quantity) == ("hold", 1)
    assert decider.calls[-1][0].position == 1.0


@pytest.mark.parametrize("action", [3, 4])  # 3: hold (already at 2 contracts); 4: an order of 1 more
def test_a_decision_recorded_meanwhile_by_another_run_is_kept(
    make: Any, engine: Engine, monkeypatch: pytest.MonkeyPatch, action: int
) -> None:
    broker, decider = FakeBroker(), FakeDecider(action=action, level=2.0 + (action == 4))
    broker.positions[FUT] = 2
    [first] = make(broker, decider).run().decisions
    other = make(broker, decider)
    # a second run that looked before the first one recorded the 9:59 bar: it decides that bar again
    monkeypatch.setattr(other, "_decided", lambda spec, symbol, bar_ts: False)
    [again] = other.run().decisions
    assert again.bar_ts == first.bar_ts == kst(9, 59)
    [row] = rows(engine)  # the first run's row stays the only one
    assert row.outcome == first.outcome
    assert len(broker.placed) == (1 if action == 4 else 0)  # and its order is not sent twice
