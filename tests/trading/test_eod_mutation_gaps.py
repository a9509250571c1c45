"""The end-of-day report against a SQLite store filled by hand, in milliseconds per test: the day's edges
(an order, fill, decision or snapshot at the KST midnight that opens the day counts, one at the next
midnight does not), other accounts never mixed in, the numbers on the page (PnL, equity, slippage in KRW
and bps against the decision price, counts, the futures multiplier, holdings and their path), one ``eod``
snapshot per day, the HTML page and the figure's panels, and the MLflow run in a file store of the test's
own (gaps found by mutation testing, ``tools/mutation.py``)."""

from __future__ import annotations

import datetime as dt
import logging
import math
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pipeline.config import Settings
from pipeline.market import FUTURES_MULTIPLIER, KST
from pipeline.store import schema
from pipeline.store.db import create_store_engine
from pipeline.trading import eod
from pipeline.trading.eod import (
    EXPERIMENT,
    ORDER_COLUMNS,
    RUN_TAG,
    EodReport,
    broker_account,
    build_eod,
    day_bounds,
    log_eod_to_mlflow,
    multiplier,
    plot_eod,
    record_snapshot,
    render_eod,
    run_eod,
    with_slippage,
    write_eod_report,
)
from pipeline.trading.types import AccountState, BrokerPosition
from tests.trading.conftest import MACHINE_ZONES

#: MLflow's own SQLAlchemy mappings warn once per process; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy:DeprecationWarning")

#: A Wednesday.
DAY = dt.date(2025, 9, 10)
NEXT = DAY + dt.timedelta(days=1)
BEFORE = DAY - dt.timedelta(days=1)
START = dt.datetime.combine(DAY, dt.time(0), KST)  # the KST midnight that opens the day
END = START + dt.timedelta(days=1)


def kst(hh: int, mm: int, day: dt.date = DAY, ss: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hh, mm, ss), KST)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = create_store_engine(f"sqlite:///{tmp_path / 'store.db'}")
    schema.metadata.create_all(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(var_dir=tmp_path / "var")


# --- filling the store by hand ----------------------------------------------------------------------
def add_order(
    conn: sa.Connection,
    coid: str,
    created: dt.datetime,
    symbol: str = "005930",
    side: str = "buy",
    quantity: int = 10,
    *,
    status: str = "filled",
    decision_price: float | None = 70_000.0,
    account: str = "main",
    spec: str = "stocks-1d",
    fills: tuple[tuple[dt.datetime, int, float, float, float], ...] = (),
    reason: str | None = None,
) -> int:
    """An order and its fills ``(ts, quantity, price, fee, tax)``; returns the order's id."""
    order_id = conn.execute(
        sa.insert(schema.orders).values(
            client_order_id=coid,
            account=account,
            spec=spec,
            symbol=symbol,
            side=side,
            quantity=quantity,
            order_type="market",
            status=status,
            mode="sim",
            filled_quantity=sum(f[1] for f in fills),
            avg_fill_price=fills[0][2] if fills else None,
            decision_ts=created - dt.timedelta(minutes=1),
            decision_price=decision_price,
            created_at=created,
            updated_at=created,
            reason=reason,
        )
    ).inserted_primary_key[0]
    for j, (ts, q, price, fee, tax) in enumerate(fills):
        conn.execute(
            sa.insert(schema.fills).values(
                order_id=order_id,
                broker_fill_id=f"{coid}:{j}",
                symbol=symbol,
                side=side,
                quantity=q,
                price=price,
                fee=fee,
                tax=tax,
                ts=ts,
            )
        )
    return int(order_id)


def add_snapshot(
    conn: sa.Connection,
    ts: dt.datetime,
    equity: float,
    *,
    cash: float | None = None,
    account: str = "main",
    source: str = "broker",
    margin_used: float = 0.0,
) -> None:
    conn.execute(
        sa.insert(schema.account_snapshots).values(
            account=account,
            ts=ts,
            cash=equity / 2 if cash is None else cash,
            equity=equity,
            margin_used=margin_used,
            source=source,
        )
    )


def add_decision(
    conn: sa.Connection,
    symbol: str,
    outcome: str,
    decided: dt.datetime,
    *,
    coid: str | None = None,
    spec: str = "stocks-1d",
    account: str = "main",
    bar_minute: int = 0,
) -> None:
    conn.execute(
        sa.insert(schema.decisions).values(
            account=account,
            spec=spec,
            symbol=symbol,
            bar_ts=kst(8, 0, decided.astimezone(KST).date()) + dt.timedelta(minutes=bar_minute),
            instrument=symbol,
            price=1.0,
            position_before=0,
            client_order_id=coid,
            outcome=outcome,
            decided_at=decided,
        )
    )


def add_position(
    conn: sa.Connection, symbol: str, quantity: int, avg_price: float, account: str = "main"
) -> None:
    conn.execute(
        sa.insert(schema.positions).values(
            account=account, symbol=symbol, quantity=quantity, avg_price=avg_price, updated_at=kst(16, 0)
        )
    )


def snapshots(engine: Engine) -> list[tuple[str, dt.datetime, float, float, float, str]]:
    s = schema.account_snapshots
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(s.c.account, s.c.ts, s.c.cash, s.c.equity, s.c.margin_used, s.c.source).order_by(
                s.c.account, s.c.ts
            )
        ).all()
    return [(a, ts.astimezone(KST), c, e, m, src) for a, ts, c, e, m, src in rows]


# --- a report built by hand ------------------------------------------------------------------------
def fills_frame(rows: list[tuple[Any, ...]]) -> pd.DataFrame:
    """(ts, symbol, side, quantity, price, decision_price, fee, tax) rows through :func:`with_slippage`."""
    cols = ["ts", "symbol", "side", "quantity", "price", "decision_price", "fee", "tax"]
    frame = pd.DataFrame(rows, columns=cols)
    frame["spec"] = "stocks-1d"
    return with_slippage(frame)


def make_report(**kw: Any) -> EodReport:
    values: dict[str, Any] = {
        "account": "main",
        "day": DAY,
        "written_at": kst(16, 0),
        "orders": pd.DataFrame({"status": pd.Series([], dtype=object)}),
        "fills": fills_frame([]),
        "decisions": pd.DataFrame(columns=["spec", "symbol"]),
        "snapshots": pd.DataFrame(columns=["ts", "cash", "equity", "margin_used", "source"]),
        "positions": pd.DataFrame(),
        "position_path": pd.DataFrame(columns=["ts", "symbol", "quantity"]),
        "start_equity": None,
    }
    values.update(kw)
    return EodReport(**values)


def snaps_frame(rows: list[tuple[dt.datetime, float, float]]) -> pd.DataFrame:
    """(ts, cash, equity) rows as the report holds them."""
    frame = pd.DataFrame(rows, columns=["ts", "cash", "equity"])
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True).dt.tz_convert(KST)
    frame["margin_used"], frame["source"] = 0.0, "broker"
    return frame


# --- the report's numbers --------------------------------------------------------------------------
def test_end_equity_is_the_last_snapshot_and_pnl_is_end_less_start() -> None:
    snaps = snaps_frame([(kst(9, 0), 1, 101.0), (kst(12, 0), 2, 95.0), (kst(15, 30), 3, 130.0)])
    report = make_report(snapshots=snaps, start_equity=100.0)
    assert report.end_equity == 130.0
    assert report.daily_pnl == 30.0
    assert make_report(snapshots=snaps, start_equity=150.0).daily_pnl == -20.0


def test_pnl_is_unknown_without_a_start_or_an_end() -> None:
    snaps = snaps_frame([(kst(9, 0), 1, 101.0)])
    assert make_report(snapshots=snaps, start_equity=None).daily_pnl is None
    assert make_report(start_equity=100.0).end_equity is None
    assert make_report(start_equity=100.0).daily_pnl is None


def test_order_counts_are_per_status_sorted_and_rejects_add_the_risk_checks_ones() -> None:
    orders = pd.DataFrame({"status": ["rejected", "filled", "cancelled", "filled", "rejected"]})
    report = make_report(orders=orders, risk_rejected=3)
    assert list(report.order_counts.items()) == [("cancelled", 1), ("filled", 2), ("rejected", 2)]
    assert all(type(v) is int for v in report.order_counts.values())
    assert report.rejected == 5
    assert make_report(orders=orders).rejected == 2


def test_costs_slippage_and_the_quantity_weighted_average_in_bps() -> None:
    fills = fills_frame(
        [
            (kst(9, 1), "005930", "buy", 4, 70_100.0, 70_000.0, 42.0, 0.0),  # +100 a share, 14.2857 bp
            (kst(9, 2), "000660", "sell", 1, 199_000.0, 200_000.0, 30.0, 300.0),  # +1,000, 50 bp
            (kst(9, 3), "035420", "buy", 5, 180_000.0, None, 10.0, 0.0),  # no decision price: left out
        ]
    )
    report = make_report(fills=fills)
    assert report.costs == 382.0
    assert report.slippage_krw == 400.0 + 1_000.0
    assert report.avg_slippage_bps == pytest.approx((100 / 70_000 * 1e4 * 4 + 50.0 * 1) / 5)
    assert make_report(fills=fills.iloc[2:]).avg_slippage_bps is None


def test_metrics_hold_every_known_number_and_leave_out_unknown_or_infinite_ones() -> None:
    fills = fills_frame(
        [
            (kst(9, 1), "005930", "buy", 4, 70_100.0, 70_000.0, 42.0, 0.0),
            (kst(9, 2), "000660", "sell", 1, 199_000.0, 200_000.0, 30.0, 300.0),
        ]
    )
    snaps = snaps_frame([(kst(9, 0), 1, 101.0), (kst(15, 30), 3, 130.0)])
    orders = pd.DataFrame({"status": ["filled", "filled", "rejected"]})
    report = make_report(fills=fills, snapshots=snaps, start_equity=100.0, orders=orders, risk_rejected=1)
    assert report.metrics() == {
        "daily_pnl": 30.0,
        "equity": 130.0,
        "orders": 3.0,
        "fills": 2.0,
        "filled_quantity": 5.0,
        "rejected": 2.0,
        "avg_slippage_bps": pytest.approx((100 / 70_000 * 1e4 * 4 + 50.0) / 5),
        "slippage_krw": 1_400.0,
        "costs": 372.0,
    }
    infinite = fills.assign(slippage_bps=[math.inf, 1.0])
    unknown = make_report(fills=infinite)
    assert "avg_slippage_bps" not in unknown.metrics()
    assert "daily_pnl" not in unknown.metrics() and "equity" not in unknown.metrics()
    assert all(type(v) is float for v in report.metrics().values())


def test_the_summary_is_what_the_dag_task_returns() -> None:
    snaps = snaps_frame([(kst(15, 30), 3, 130.0)])
    report = make_report(
        snapshots=snaps,
        start_equity=100.0,
        orders=pd.DataFrame({"status": ["filled", "rejected"]}),
        fills=fills_frame([(kst(9, 1), "005930", "buy", 4, 70_100.0, 70_000.0, 42.0, 0.0)]),
        warnings=["w1", "w2"],
        html_path=Path("/r/eod.html"),
        png_path=Path("/r/eod.png"),
        mlflow_run_id="abc",
    )
    summary = report.summary()
    assert summary == {
        "account": "main",
        "day": "2025-09-10",
        "html": "/r/eod.html",
        "png": "/r/eod.png",
        "mlflow_run_id": "abc",
        "daily_pnl": 30.0,
        "orders": 2,
        "fills": 1,
        "warnings": ["w1", "w2"],
    }
    summary["warnings"].append("w3")
    assert report.warnings == ["w1", "w2"]  # a copy: the caller cannot change the report
    bare = make_report().summary()
    assert bare["html"] is None and bare["png"] is None and bare["mlflow_run_id"] is None


# --- slippage and the multiplier ---------------------------------------------------------------------
def test_the_day_is_the_kst_calendar_day() -> None:
    assert day_bounds(DAY) == (START, END)
    assert START.utcoffset() == dt.timedelta(hours=9) and START.hour == 0


def test_the_futures_multiplier_applies_to_contracts_and_the_named_continuous_series() -> None:
    assert multiplier("101W09") == FUTURES_MULTIPLIER
    assert multiplier("KOSPI200F") == FUTURES_MULTIPLIER  # the default continuous series
    assert multiplier("005930") == 1.0
    assert multiplier("MYFUT") == 1.0
    assert multiplier("MYFUT", ("MYFUT",)) == FUTURES_MULTIPLIER


def test_slippage_is_signed_per_side_scaled_by_quantity_and_multiplier_and_relative_to_the_decision() -> None:
    frame = pd.DataFrame(
        {
            "symbol": ["005930", "005930", "101W09", "MYFUT", "000660"],
            "side": ["buy", "sell", "sell", "buy", "buy"],
            "quantity": [3, 2, 2, 1, 4],
            "price": [70_100.0, 69_900.0, 349.90, 351.0, 0.6],
            "decision_price": [70_000.0, 70_000.0, 350.0, 350.0, 0.5],
        }
    )
    out = with_slippage(frame, ("MYFUT",))
    assert list(out["slippage"]) == pytest.approx([100.0, 100.0, 0.1, 1.0, 0.1])
    assert list(out["slippage_krw"]) == pytest.approx(
        [300.0, 200.0, 0.1 * 2 * FUTURES_MULTIPLIER, 1.0 * FUTURES_MULTIPLIER, 0.4]
    )
    assert list(out["slippage_bps"]) == pytest.approx(
        [100 / 70_000 * 1e4, 100 / 70_000 * 1e4, 0.1 / 350 * 1e4, 1 / 350 * 1e4, 2_000.0]
    )
    assert list(out.columns[:5]) == list(frame.columns)  # the input is kept, not changed
    assert "slippage" not in frame.columns


def test_a_fill_without_a_usable_decision_price_has_no_bps_and_an_empty_frame_stays_empty() -> None:
    frame = pd.DataFrame(
        {
            "symbol": ["005930", "005930"],
            "side": ["buy", "sell"],
            "quantity": [1, 1],
            "price": [100.0, 100.0],
            "decision_price": [0.0, "n/a"],
        }
    )
    out = with_slippage(frame)
    assert list(out["slippage"].iloc[:1]) == [100.0] and math.isnan(out["slippage"].iloc[1])
    assert out["slippage_bps"].isna().all()
    empty = with_slippage(pd.DataFrame(columns=list(frame.columns)))  # as the store gives a day without fills
    assert len(empty) == 0 and {"slippage", "slippage_krw", "slippage_bps"} <= set(empty.columns)


# --- reading the store ----------------------------------------------------------------------------------
def seed(engine: Engine) -> None:
    """A day with rows on its edges, another account and the days around it."""
    with engine.begin() as conn:
        # created at the opening midnight: in; at the next midnight: out (tomorrow's)
        add_order(conn, "o-late", kst(11, 0), "000660", "sell", 3, decision_price=200_000.0,
                  fills=((kst(11, 1), 3, 199_800.0, 90.0, 900.0),))  # fmt: skip
        add_order(conn, "o-start", START, "005930", "buy", 10, decision_price=70_000.0,
                  fills=((START, 4, 70_100.0, 42.0, 0.0), (kst(9, 2), 6, 70_050.0, 63.0, 0.0)))  # fmt: skip
        add_order(conn, "o-fut", kst(9, 30), "101W09", "buy", 1, spec="kospi200f-1m", decision_price=350.0,
                  fills=((kst(9, 31), 1, 350.05, 2_600.0, 0.0),))  # fmt: skip
        add_order(conn, "o-rej", kst(11, 0), "035420", "buy", 2, status="rejected", decision_price=180_000.0,
                  reason="broker: insufficient cash")  # fmt: skip
        add_order(conn, "o-end", END, "005930", "buy", 5, decision_price=71_000.0,
                  fills=((END, 5, 71_000.0, 10.0, 0.0),))  # fmt: skip
        add_order(conn, "o-next", kst(9, 10, NEXT), "000660", "buy", 1, decision_price=201_000.0,
                  fills=((kst(9, 10, NEXT), 1, 201_000.0, 10.0, 0.0),))  # fmt: skip
        add_order(conn, "o-prev", kst(14, 0, BEFORE), "005930", "buy", 9, decision_price=69_000.0,
                  fills=((kst(14, 0, BEFORE), 9, 69_500.0, 10.0, 0.0),))  # fmt: skip
        # an order of the day before filled on the day: its fill is the day's
        add_order(conn, "o-over", kst(23, 59, BEFORE), "000660", "buy", 2, decision_price=200_000.0,
                  fills=((kst(9, 5), 2, 200_100.0, 20.0, 0.0),))  # fmt: skip
        add_order(conn, "o-other", kst(9, 5), "005930", "buy", 7, account="other", decision_price=70_000.0,
                  fills=((kst(9, 5), 7, 71_000.0, 10.0, 0.0),))  # fmt: skip
        add_decision(conn, "005930", "order", START, coid="o-start")
        add_decision(conn, "035420", "order", kst(11, 0), coid="o-rej")
        add_decision(conn, "035420", "rejected", kst(11, 0), coid="o-rej", bar_minute=1)  # has an order
        add_decision(conn, "000270", "rejected", kst(10, 0))  # the risk checks: no order row
        add_decision(conn, "000270", "rejected", START, bar_minute=4)  # at the opening midnight: today's
        add_decision(conn, "005930", "order", kst(9, 0), spec="stocks-1m")  # same symbol, another spec
        add_decision(conn, "000270", "rejected", kst(10, 1), bar_minute=1, coid="no-such-order")
        add_decision(conn, "KOSPI200F", "hold", kst(9, 30), spec="kospi200f-1m")
        add_decision(conn, "KOSPI200F", "order", kst(9, 31), spec="kospi200f-1m", coid="o-fut", bar_minute=1)
        add_decision(conn, "000270", "rejected", END, bar_minute=2)  # tomorrow's
        add_decision(conn, "000270", "rejected", kst(23, 59, BEFORE), bar_minute=3)  # yesterday's
        add_decision(conn, "000270", "rejected", kst(10, 0), account="other")
        add_snapshot(conn, kst(9, 0, BEFORE), 9_000_000.0)
        add_snapshot(conn, kst(15, 40, BEFORE), 10_000_000.0)
        add_snapshot(conn, START, 10_010_000.0, cash=4_000_000.0)  # on the day: not the start
        add_snapshot(conn, kst(12, 0), 9_940_000.0)
        add_snapshot(conn, kst(15, 35), 10_120_000.0, cash=5_000_000.0)
        add_snapshot(conn, END, 11_000_000.0)  # tomorrow's
        add_snapshot(conn, kst(15, 36), 9e9, account="other")
        add_snapshot(conn, kst(15, 50, BEFORE), 8e9, account="other")
        # held now: the day's close plus the fills after it
        add_position(conn, "005930", 24, 70_000.0)
        add_position(conn, "000660", 6, 200_000.0)
        add_position(conn, "101W09", 1, 350.05)
        add_position(conn, "069500", 7, 30_000.0)  # held all day, never traded
        add_position(conn, "005930", 99, 1.0, account="other")


def test_the_days_orders_are_those_created_from_its_opening_midnight_in_time_order(
    engine: Engine, settings: Settings
) -> None:
    seed(engine)
    report = build_eod(engine, settings, DAY, "main", None, now=kst(16, 0))
    orders = report.orders
    assert list(orders.columns) == ORDER_COLUMNS
    assert list(orders["symbol"]) == ["005930", "101W09", "000660", "035420"]  # by time, then by id
    assert list(orders["created_at"]) == [START, kst(9, 30), kst(11, 0), kst(11, 0)]
    assert str(orders["created_at"].dt.tz) == str(KST)
    assert report.order_counts == {"filled": 3, "rejected": 1}
    assert list(orders["reason"])[-1] == "broker: insufficient cash"


def test_the_days_fills_carry_their_orders_spec_and_decision_price_and_stop_at_midnight(
    engine: Engine, settings: Settings
) -> None:
    seed(engine)
    report = build_eod(engine, settings, DAY, "main", None, now=kst(16, 0))
    fills = report.fills
    rows = list(
        zip(
            fills["ts"],
            fills["symbol"],
            fills["quantity"],
            fills["spec"],
            fills["decision_price"],
            strict=True,
        )
    )
    assert rows == [
        (START, "005930", 4, "stocks-1d", 70_000.0),
        (kst(9, 2), "005930", 6, "stocks-1d", 70_000.0),
        (kst(9, 5), "000660", 2, "stocks-1d", 200_000.0),  # the order is yesterday's, the fill today's
        (kst(9, 31), "101W09", 1, "kospi200f-1m", 350.0),
        (kst(11, 1), "000660", 3, "stocks-1d", 200_000.0),
    ]
    assert str(fills["ts"].dt.tz) == str(KST)
    assert list(fills.columns) == [
        *(c.name for c in schema.fills.columns), "spec", "decision_price", "slippage", "slippage_krw",
        "slippage_bps",
    ]  # fmt: skip
    assert report.costs == 42.0 + 63.0 + 20.0 + 2_600.0 + 90.0 + 900.0
    # KRW: buys fill − decision, the sell decision − fill, the futures contract × 250,000 a point
    assert report.slippage_krw == pytest.approx(400.0 + 300.0 + 200.0 + 0.05 * FUTURES_MULTIPLIER + 600.0)
    assert report.metrics()["filled_quantity"] == 16.0


def test_the_settings_futures_series_gets_the_futures_multiplier(engine: Engine, tmp_path: Path) -> None:
    with engine.begin() as conn:
        add_order(conn, "o-1", kst(9, 0), "MYFUT", "buy", 2, decision_price=350.0,
                  fills=((kst(9, 1), 2, 350.1, 0.0, 0.0),))  # fmt: skip
    settings = Settings(var_dir=tmp_path / "var", futures_symbol="MYFUT")
    report = build_eod(engine, settings, DAY, "main", None, now=kst(16, 0))
    assert report.slippage_krw == pytest.approx(0.1 * 2 * FUTURES_MULTIPLIER)


def test_decisions_are_counted_per_spec_symbol_and_outcome_and_risk_rejects_once(
    engine: Engine, settings: Settings
) -> None:
    seed(engine)
    report = build_eod(engine, settings, DAY, "main", None, now=kst(16, 0))
    decisions = report.decisions
    assert list(decisions.columns) == ["spec", "symbol", "hold", "order", "rejected"]
    rows = [tuple(r) for r in decisions.itertuples(index=False)]
    assert rows == [
        ("kospi200f-1m", "KOSPI200F", 1, 1, 0),
        ("stocks-1d", "000270", 0, 0, 3),
        ("stocks-1d", "005930", 0, 1, 0),
        ("stocks-1d", "035420", 0, 1, 1),
        ("stocks-1m", "005930", 0, 1, 0),
    ]
    assert all(str(decisions[c].dtype) == "int64" for c in ["hold", "order", "rejected"])  # counts
    # the broker's reject (an order row) plus the three risk rejects without an order of their own
    assert report.risk_rejected == 3
    assert report.rejected == 4


def test_a_day_without_decisions_has_an_empty_table(engine: Engine, settings: Settings) -> None:
    report = build_eod(engine, settings, DAY, "main", None, now=kst(16, 0))
    assert list(report.decisions.columns) == ["spec", "symbol"] and report.decisions.empty
    assert report.risk_rejected == 0


def test_equity_starts_at_the_last_snapshot_before_the_day_and_ends_at_its_last(
    engine: Engine, settings: Settings
) -> None:
    seed(engine)
    report = build_eod(engine, settings, DAY, "main", None, now=kst(16, 0))
    assert report.start_equity == 10_000_000.0  # not the one at the opening midnight, not the other's
    assert list(report.snapshots["equity"]) == [10_010_000.0, 9_940_000.0, 10_120_000.0]
    assert list(report.snapshots.columns) == ["ts", "cash", "equity", "margin_used", "source"]
    assert report.snapshots["ts"].iloc[0] == START and str(report.snapshots["ts"].dt.tz) == str(KST)
    assert report.end_equity == 10_120_000.0 and report.daily_pnl == 120_000.0
    assert report.warnings == []


def test_without_an_earlier_snapshot_the_day_starts_at_its_first(engine: Engine, settings: Settings) -> None:
    with engine.begin() as conn:
        add_snapshot(conn, kst(15, 35), 10_120_000.0)
        add_snapshot(conn, kst(9, 0), 10_050_000.0)
        add_snapshot(conn, kst(8, 0, BEFORE), 5.0, account="other")
    report = build_eod(engine, settings, DAY, "main", None, now=kst(16, 0))
    assert report.start_equity == 10_050_000.0
    assert report.daily_pnl == 70_000.0


def test_a_day_without_snapshots_says_equity_and_pnl_are_unknown_after_the_callers_warnings(
    engine: Engine, settings: Settings
) -> None:
    with engine.begin() as conn:
        add_snapshot(conn, kst(15, 40, BEFORE), 10_000_000.0)
    report = build_eod(engine, settings, DAY, "main", None, now=kst(16, 0), warnings=["broker down"])
    assert report.start_equity == 10_000_000.0 and report.daily_pnl is None
    assert report.warnings == ["broker down", "no account snapshot on 2025-09-10: equity and PnL are unknown"]
    assert report.written_at == kst(16, 0)


def test_holdings_at_the_close_undo_the_later_fills_and_their_path_runs_through_the_day(
    engine: Engine, settings: Settings
) -> None:
    seed(engine)
    report = build_eod(engine, settings, DAY, "main", None, now=kst(16, 0))
    held = [tuple(r) for r in report.positions.itertuples(index=False)]
    # 005930: 24 now less 5 bought at the next midnight; 000660: 6 now less 1 bought the next morning
    assert list(report.positions.columns) == ["symbol", "quantity", "avg_price"]
    assert str(report.positions["quantity"].dtype) == "int64"
    assert list(report.position_path.columns) == ["ts", "symbol", "quantity"]
    assert str(report.position_path["quantity"].dtype) == "int64"
    assert sorted(held) == [
        ("000660", 5, 200_000.0),
        ("005930", 19, 70_000.0),
        ("069500", 7, 30_000.0),
        ("101W09", 1, 350.05),
    ]
    path = [(t, s, q) for t, s, q in report.position_path.itertuples(index=False)]
    begin = [(s, q) for t, s, q in path if t is None or pd.isna(t)]
    assert sorted(begin) == [("000660", 6), ("005930", 9), ("069500", 7), ("101W09", 0)]
    moves = [(t, s, q) for t, s, q in path if not (t is None or pd.isna(t))]
    assert moves == [
        (START, "005930", 13),
        (kst(9, 2), "005930", 19),
        (kst(9, 5), "000660", 8),
        (kst(9, 31), "101W09", 1),
        (kst(11, 1), "000660", 5),
    ]


def test_a_position_closed_during_the_day_is_not_held_but_is_on_the_path(
    engine: Engine, settings: Settings
) -> None:
    with engine.begin() as conn:
        add_order(conn, "o-1", kst(9, 0), "000660", "sell", 3, fills=((kst(9, 1), 3, 1.0, 0.0, 0.0),))
        add_position(conn, "000660", 0, 0.0)
        add_position(conn, "005380", 0, 0.0)  # flat all day: nowhere
    report = build_eod(engine, settings, DAY, "main", None, now=kst(16, 0))
    assert report.positions.empty
    path = [(None if pd.isna(t) else t, s, q) for t, s, q in report.position_path.itertuples(index=False)]
    assert path == [(None, "000660", 3), (kst(9, 1), "000660", 0)]


def test_the_brokers_holdings_win_and_only_fills_up_to_its_reading_are_undone(
    engine: Engine, settings: Settings
) -> None:
    seed(engine)
    read = kst(10, 0, NEXT)
    with engine.begin() as conn:
        add_order(conn, "o-after", kst(11, 0, NEXT), "005930", "sell", 4,
                  fills=((kst(11, 0, NEXT), 4, 70_000.0, 0.0, 0.0),))  # fmt: skip
        add_order(conn, "o-at", read, "000660", "sell", 1, fills=((read, 1, 200_000.0, 0.0, 0.0),))
    state = AccountState(
        cash=1.0,
        equity=2.0,
        positions={
            "005930": BrokerPosition("005930", 30, 70_500.0),
            "000660": BrokerPosition("000660", 4, 201_000.0),
        },
    )
    report = build_eod(engine, settings, DAY, "main", state, now=read)
    held = sorted(tuple(r) for r in report.positions.itertuples(index=False))
    # 005930: 30 less the 5 bought at midnight (the 11:00 sell came after the broker's reading);
    # 000660: 4 + 1 sold at the reading − 1 bought the next morning
    assert held == [("000660", 4, 201_000.0), ("005930", 25, 70_500.0)]


def test_the_brokers_state_is_recorded_as_the_days_eod_snapshot_with_its_margin(
    engine: Engine, settings: Settings
) -> None:
    seed(engine)
    state = AccountState(cash=5e6, equity=10_150_000.0, margin_used=1e6)
    report = build_eod(engine, settings, DAY, "main", state, now=kst(15, 50))
    assert ("main", kst(15, 50), 5e6, 10_150_000.0, 1e6, "eod") in snapshots(engine)
    assert report.end_equity == 10_150_000.0 and report.daily_pnl == 150_000.0
    assert report.positions.empty  # the broker holds nothing
    assert report.warnings == []


def test_a_broker_reading_exactly_at_the_opening_midnight_is_the_days(
    engine: Engine, settings: Settings
) -> None:
    build_eod(engine, settings, DAY, "main", AccountState(cash=1.0, equity=2.0), now=START)
    assert snapshots(engine) == [("main", START, 1.0, 2.0, 0.0, "eod")]


def test_a_broker_reading_at_the_next_midnight_is_not_stored_and_says_so(
    engine: Engine, settings: Settings
) -> None:
    report = build_eod(
        engine, settings, DAY, "main", AccountState(cash=1.0, equity=2.0), now=END, warnings=["x"]
    )
    assert snapshots(engine) == []
    assert report.warnings == [
        "x",
        "the broker's state at 2025-09-11 00:00 KST is not of 2025-09-10: no snapshot taken",
        "no account snapshot on 2025-09-10: equity and PnL are unknown",
    ]


def test_now_in_another_zone_is_read_as_kst(engine: Engine, settings: Settings) -> None:
    utc_now = dt.datetime(2025, 9, 9, 16, 30, tzinfo=dt.UTC)  # 01:30 KST on DAY
    report = build_eod(engine, settings, DAY, "main", AccountState(cash=1.0, equity=2.0), now=utc_now)
    assert report.written_at == kst(1, 30) and report.written_at.utcoffset() == dt.timedelta(hours=9)
    assert snapshots(engine) == [("main", kst(1, 30), 1.0, 2.0, 0.0, "eod")]


def test_without_now_the_wall_clock_is_used_and_a_past_day_gets_no_snapshot(
    engine: Engine, settings: Settings
) -> None:
    before = dt.datetime.now(KST)
    report = build_eod(engine, settings, DAY, "main", AccountState(cash=1.0, equity=2.0))
    after = dt.datetime.now(KST)
    assert before <= report.written_at <= after and report.written_at.utcoffset() == dt.timedelta(hours=9)
    assert snapshots(engine) == []
    assert any(w.endswith("is not of 2025-09-10: no snapshot taken") for w in report.warnings)


# --- the eod snapshot ------------------------------------------------------------------------------------
def test_a_rerun_updates_the_days_eod_row_and_leaves_every_other_row_alone(engine: Engine) -> None:
    with engine.begin() as conn:
        add_snapshot(conn, kst(15, 50, BEFORE), 1.0, source="eod")  # yesterday's eod
        add_snapshot(conn, END, 3.0, source="eod")  # tomorrow's eod, at the next midnight
        add_snapshot(conn, kst(15, 45), 4.0, account="other", source="eod")  # the other account's
        add_snapshot(conn, kst(15, 0), 5.0)  # today's broker snapshot
    with engine.begin() as conn:
        record_snapshot(conn, "main", AccountState(cash=10.0, equity=20.0, margin_used=1.0), kst(15, 45))
    with engine.begin() as conn:
        record_snapshot(conn, "main", AccountState(cash=11.0, equity=21.0, margin_used=2.0), kst(16, 30))
    assert snapshots(engine) == [
        ("main", kst(15, 50, BEFORE), 0.5, 1.0, 0.0, "eod"),
        ("main", kst(15, 0), 2.5, 5.0, 0.0, "broker"),
        ("main", kst(15, 45), 11.0, 21.0, 2.0, "eod"),  # the first run's time, the rerun's numbers
        ("main", END, 1.5, 3.0, 0.0, "eod"),
        ("other", kst(15, 45), 2.0, 4.0, 0.0, "eod"),
    ]


def test_an_eod_row_at_the_opening_midnight_is_the_days_and_is_updated(engine: Engine) -> None:
    with engine.begin() as conn:
        add_snapshot(conn, START, 1.0, source="eod")
        record_snapshot(conn, "main", AccountState(cash=7.0, equity=8.0), kst(16, 0))
    assert snapshots(engine) == [("main", START, 7.0, 8.0, 0.0, "eod")]


@pytest.mark.parametrize("machine_tz", MACHINE_ZONES, indirect=True)
def test_the_eod_rows_day_is_the_kst_day_whatever_the_machines_zone(engine: Engine, machine_tz: str) -> None:
    with engine.begin() as conn:
        add_snapshot(conn, kst(0, 30), 1.0, source="eod")
        add_snapshot(conn, kst(23, 30, BEFORE), 2.0, source="eod")
        record_snapshot(conn, "main", AccountState(cash=7.0, equity=8.0), kst(1, 30))
        record_snapshot(conn, "main", AccountState(cash=5.0, equity=6.0), kst(23, 0))
    assert snapshots(engine) == [
        ("main", kst(23, 30, BEFORE), 1.0, 2.0, 0.0, "eod"),
        ("main", kst(0, 30), 5.0, 6.0, 0.0, "eod"),
    ]


def test_a_snapshot_already_at_that_instant_moves_the_eod_row_a_microsecond_later(engine: Engine) -> None:
    with engine.begin() as conn:
        add_snapshot(conn, kst(16, 0), 5.0)
        add_snapshot(conn, kst(16, 0, ss=1), 6.0, account="other")
        record_snapshot(conn, "main", AccountState(cash=7.0, equity=8.0), kst(16, 0))
        record_snapshot(conn, "other", AccountState(cash=1.0, equity=9.0), kst(16, 0))
    rows = snapshots(engine)
    assert rows[:2] == [
        ("main", kst(16, 0), 2.5, 5.0, 0.0, "broker"),
        ("main", kst(16, 0) + dt.timedelta(microseconds=1), 7.0, 8.0, 0.0, "eod"),
    ]
    assert ("other", kst(16, 0), 1.0, 9.0, 0.0, "eod") in rows  # another account's instant is no clash


# --- the HTML page ---------------------------------------------------------------------------------------
def full_report() -> EodReport:
    orders = pd.DataFrame(
        [
            (kst(9, 1), "stocks-1d", "005930", "buy", 12_345_678_901, 12_345_678_900, "filled", "market",
             70_000.0, 70_050.0, "sim", None),  # quantities in full, never in e-notation
            (kst(11, 0), "stocks-1d", "035420", "buy", 2, 0, "rejected", "market", 180_000.0, None, "sim",
             "broker: <insufficient> cash"),
        ],
        columns=ORDER_COLUMNS,
    )  # fmt: skip
    fills = fills_frame(
        [
            (kst(9, 1, ss=7), "005930", "buy", 1_200, 70_050.0, 70_000.0, 1_260.0, 0.0),
            (kst(9, 31), "101W09", "sell", 1, 349.95, 350.0, 2_600.0, 0.0),
        ]
    )
    fills["spec"] = ["stocks-1d", "kospi200f-1m"]
    decisions = pd.DataFrame({"spec": ["stocks-1d"], "symbol": ["005930"], "order": [1]})
    snaps = snaps_frame([(kst(9, 0), 4_000_000.0, 10_050_000.0), (kst(15, 35), 5_000_000.0, 10_120_000.0)])
    positions = pd.DataFrame({"symbol": ["005930"], "quantity": [1_200], "avg_price": [70_050.0]})
    return make_report(
        account="main",
        orders=orders,
        fills=fills,
        decisions=decisions,
        snapshots=snaps,
        positions=positions,
        start_equity=10_000_000.0,
        risk_rejected=1,
        warnings=["broker <down> & out"],
    )


def row(label: str, value: str) -> str:
    return f"<tr><td>{label}</td><td>{value}</td></tr>"


def test_the_summary_table_shows_the_days_numbers(tmp_path: Path) -> None:
    page = render_eod(full_report(), None)
    slip_bps = (50 / 70_000 * 1e4 * 1_200 + 0.05 / 350 * 1e4) / 1_201
    for label, value in [
        ("start equity", "10,000,000"),
        ("end equity", "10,120,000"),
        ("daily PnL", "+120,000 (+1.200%)"),
        ("cash (last snapshot)", "5,000,000"),
        ("orders", "2 (filled 1, rejected 1)"),
        ("rejected (broker + risk)", "2"),
        ("fills", "2, quantity 1,201"),
        ("costs (fees + tax)", "3,860"),
        ("slippage vs decision price", f"+{60_000 + 12_500:,} KRW"),
        ("average slippage (quantity-weighted)", f"{slip_bps:+.2f} bps"),
        ("written", "2025-09-10 16:00:00 KST"),
    ]:
        assert row(label, value) in page
    assert page.startswith('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">')
    assert "<title>EOD main 2025-09-10</title>" in page
    assert "<h1>End of day 2025-09-10: account main</h1>" in page
    assert '<p class="fail">⚠ broker &lt;down&gt; &amp; out</p>' in page


def test_an_empty_day_reads_as_unknown_and_empty() -> None:
    report = make_report(warnings=["a", "b"], start_equity=0.0)
    page = render_eod(report, None)
    for label, value in [
        ("start equity", "0"),
        ("end equity", "–"),
        ("daily PnL", "– (–)"),
        ("cash (last snapshot)", "–"),
        ("orders", "0 (none)"),
        ("rejected (broker + risk)", "0"),
        ("fills", "0, quantity 0"),
        ("costs (fees + tax)", "0"),
        ("slippage vs decision price", "+0 KRW"),
        ("average slippage (quantity-weighted)", "– bps"),
    ]:
        assert row(label, value) in page
    assert page.endswith(
        "</table><h2>Decisions</h2><p>No decisions.</p>"
        "<h2>Orders</h2><p class='note'>Times in KST; prices in points (futures) or KRW.</p>"
        "<p>No orders on 2025-09-10.</p>"
        "<h2>Fills and slippage</h2><p class='note'>Slippage against the decision bar's close: buys "
        "fill − decision, sells decision − fill (positive: it cost money).</p><p>No fills on 2025-09-10.</p>"
        "<h2>Holdings at the close</h2><p>Flat: no holdings.</p>"
        '<h2>Equity, drawdown and positions</h2><p class="note">No figure.</p></body></html>'
    )
    assert "<table><tr><th></th><th>value</th></tr><tr><td>start equity</td>" in page
    assert '<p class="fail">⚠ a</p><p class="fail">⚠ b</p>' in page
    zero_start = make_report(snapshots=snaps_frame([(kst(9, 0), 1.0, 5.0)]), start_equity=0.0)
    assert row("daily PnL", "+5 (–)") in render_eod(zero_start, None)  # no percentage of zero


def test_the_tables_list_orders_fills_decisions_and_holdings_formatted() -> None:
    report = full_report()
    page = render_eod(report, None)
    head = "".join(f"<th>{c}</th>" for c in ORDER_COLUMNS)
    assert (
        "<h2>Orders</h2><p class='note'>Times in KST; prices in points (futures) or KRW.</p>"
        f"<table><tr>{head}</tr>" in page
    )
    first = ["09:01:00", "stocks-1d", "005930", "buy", "12,345,678,901", "12,345,678,900", "filled", "market",
             "70,000", "70,050", "sim", "–"]  # fmt: skip
    assert "<tr>" + "".join(f"<td>{c}</td>" for c in first) + "</tr><tr><td>11:00:00</td>" in page
    assert "<td>broker: &lt;insufficient&gt; cash</td>" in page and "<td>–</td><td>sim</td>" in page
    fill_head = "".join(
        f"<th>{c}</th>"
        for c in ["ts", "spec", "symbol", "side", "quantity", "price", "decision_price", "slippage",
                  "slippage_krw", "slippage_bps", "fee", "tax"]
    )  # fmt: skip
    assert f"<table><tr>{fill_head}</tr>" in page
    bps = 50 / 70_000 * 1e4
    first_fill = ["09:01:07", "stocks-1d", "005930", "buy", "1,200", "70,050", "70,000", "+50", "+60,000",
                  f"{bps:+.2f}", "1,260", "0"]  # fmt: skip
    assert "<tr>" + "".join(f"<td>{c}</td>" for c in first_fill) + "</tr>" in page
    fut = ["09:31:00", "kospi200f-1m", "101W09", "sell", "1", "349.95", "350", "+0.05", "+12,500",
           f"{0.05 / 350 * 1e4:+.2f}", "2,600", "0"]  # fmt: skip
    assert "<tr>" + "".join(f"<td>{c}</td>" for c in fut) + "</tr>" in page
    assert "<h2>Decisions</h2><table><tr><th>spec</th><th>symbol</th><th>order</th></tr>" in page
    assert "<tr><td>stocks-1d</td><td>005930</td><td>1</td></tr>" in page
    assert (
        "<h2>Holdings at the close</h2><table><tr><th>symbol</th><th>quantity</th><th>avg_price</th></tr>"
        "<tr><td>005930</td><td>1,200</td><td>70,050</td></tr></table>" in page
    )
    assert "<h2>Fills and slippage</h2>" in page and "<h2>Equity, drawdown and positions</h2>" in page


def test_cells_show_nat_nan_and_instants_in_kst_and_long_numbers_in_full() -> None:
    positions = pd.DataFrame(
        {"symbol": ["a<b"], "quantity": [np.int64(1_234_567_890)], "avg_price": [np.nan], "ts": [pd.NaT]}
    )
    page = render_eod(make_report(positions=positions), None)
    assert "<tr><td>a&lt;b</td><td>1,234,567,890</td><td>–</td><td>–</td></tr>" in page
    utc = pd.DataFrame({"symbol": ["x"], "when": [dt.datetime(2025, 9, 10, 6, 30, 5, tzinfo=dt.UTC)]})
    assert "<td>15:30:05</td>" in render_eod(make_report(positions=utc), None)
    precise = pd.DataFrame({"symbol": ["x"], "avg_price": [1234.56789012345]})
    assert "<td>1,234.56789</td>" in render_eod(make_report(positions=precise), None)
    account = render_eod(make_report(account="a&b"), None)
    assert "<title>EOD a&amp;b 2025-09-10</title>" in account and "account a&amp;b</h1>" in account


def test_the_figure_is_embedded_only_when_its_file_exists(tmp_path: Path) -> None:
    png = tmp_path / "eod-main.png"
    png.write_bytes(b"\x89PNG fake")
    page = render_eod(make_report(), png)
    assert '<figure><img alt="eod-main" src="data:image/png;base64,iVBORyBmYWtl"></figure>' in page
    assert "No figure." not in page
    assert "No figure." in render_eod(make_report(), tmp_path / "missing.png")
    assert "No figure." in render_eod(make_report(), tmp_path)  # a folder is no figure


# --- the figure ---------------------------------------------------------------------------------------------
@pytest.fixture
def figures(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, dict[str, Any]]]:
    """Figures plot_eod saves, with savefig's keywords; the file gets a stand-in instead of a drawing."""
    import matplotlib.figure

    saved: list[tuple[Any, dict[str, Any]]] = []

    def savefig(fig: Any, path: Path, **kw: Any) -> None:
        saved.append((fig, kw))
        Path(path).write_bytes(b"png")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", savefig)
    return saved


def to_rgba(color: str, alpha: float) -> tuple[float, ...]:
    import matplotlib.colors

    return tuple(matplotlib.colors.to_rgba(color, alpha))


def naive(t: dt.datetime) -> float:
    import matplotlib.dates as mdates

    return float(mdates.date2num(t.astimezone(KST).replace(tzinfo=None)))


def test_the_figure_plots_equity_drawdown_from_the_running_peak_and_positions(
    tmp_path: Path, figures: list[tuple[Any, dict[str, Any]]]
) -> None:
    snaps = snaps_frame([(kst(9, 0), 0, 110.0), (kst(12, 0), 0, 99.0), (kst(15, 0), 0, 120.0)])
    path = pd.DataFrame(
        [(None, "B", 2), (kst(9, 1), "A", 5), (kst(10, 0), "B", -1)], columns=["ts", "symbol", "quantity"]
    )
    report = make_report(account="acc", snapshots=snaps, start_equity=100.0, position_path=path)
    target = tmp_path / "a" / "b" / "eod.png"
    assert plot_eod(report, target) == target and target.read_bytes() == b"png"
    ((fig, kw),) = figures
    assert kw == {"dpi": 100}
    assert list(fig.get_size_inches()) == [10.0, 8.0]
    ax_eq, ax_dd, ax_pos = fig.axes
    heights = [ax.get_position().height for ax in fig.axes]
    assert heights[0] / heights[1] == pytest.approx(2.0, rel=0.02) and heights[1] == pytest.approx(heights[2])
    assert ax_eq.get_title() == "acc 2025-09-10" and ax_eq.get_ylabel() == "equity (KRW)"
    assert ax_dd.get_ylabel() == "drawdown" and ax_pos.get_ylabel() == "position"
    assert ax_pos.get_xlabel() == "KST"
    (line,) = ax_eq.lines
    assert list(line.get_ydata()) == [110.0, 99.0, 120.0]
    assert list(line.get_xdata(orig=False)) == pytest.approx(
        [naive(kst(9, 0)), naive(kst(12, 0)), naive(kst(15, 0))], abs=1e-7
    )
    assert line.get_marker() == "." and line.get_linewidth() == 1.2
    (area,) = ax_dd.collections
    assert tuple(area.get_facecolor()[0]) == pytest.approx(to_rgba("#b00020", 0.4))  # translucent red
    ys = sorted({round(float(y), 6) for y in area.get_paths()[0].vertices[:, 1]})
    assert ys == sorted({0.0, round(99.0 / 110.0 - 1.0, 6)})  # peak 110 before the dip, none at 120
    assert ax_eq.yaxis.get_major_formatter()(1234567.0) == "1,234,567"
    assert ax_dd.yaxis.get_major_formatter()(-0.1)[1:] == "10.0%"
    assert ax_pos.xaxis.get_major_formatter()(naive(kst(9, 5))) == "09:05"
    # futures hours 08:45-15:45, widened to nothing here
    assert ax_pos.get_xlim() == pytest.approx((naive(kst(8, 45)), naive(kst(15, 45))), abs=1e-7)
    steps = {line.get_label(): line for line in ax_pos.lines}
    assert sorted(steps) == ["A", "B"]
    assert list(steps["A"].get_ydata()) == [5, 5] and list(steps["B"].get_ydata()) == [2, -1, -1]
    assert list(steps["B"].get_xdata(orig=False)) == pytest.approx(
        [naive(kst(8, 45)), naive(kst(10, 0)), naive(kst(15, 45))], abs=1e-7
    )
    assert steps["A"].get_drawstyle() == "steps-post" and steps["A"].get_linewidth() == 1.2
    legend = ax_pos.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["A", "B"]
    assert legend._loc == 2 and {t.get_fontsize() for t in legend.get_texts()} == {8.0}  # upper left, small
    assert ax_eq.get_shared_x_axes().joined(ax_eq, ax_pos) and ax_dd.get_shared_x_axes().joined(ax_dd, ax_pos)
    assert all(ax.xaxis._major_tick_kw.get("gridOn") for ax in fig.axes)
    assert {line.get_alpha() for ax in fig.axes for line in ax.get_xgridlines()} == {0.3}  # faint grid


def test_the_drawdown_counts_the_start_equity_as_a_peak_and_the_axis_widens_to_every_row(
    tmp_path: Path, figures: list[tuple[Any, dict[str, Any]]]
) -> None:
    snaps = snaps_frame([(kst(8, 0), 0, 90.0), (kst(12, 0), 0, 95.0)])
    fills = fills_frame([(kst(16, 30), "005930", "buy", 1, 1.0, 1.0, 0.0, 0.0)])
    report = make_report(snapshots=snaps, start_equity=100.0, fills=fills)
    plot_eod(report, tmp_path / "eod.png")
    plot_eod(report, tmp_path / "eod.png")  # the folder exists already
    fig = figures[0][0]
    _, ax_dd, ax_pos = fig.axes
    ys = sorted({round(float(y), 6) for y in ax_dd.collections[0].get_paths()[0].vertices[:, 1]})
    assert ys == [-0.1, -0.05, 0.0]
    assert ax_pos.get_xlim() == pytest.approx((naive(kst(8, 0)), naive(kst(16, 30))), abs=1e-7)
    assert ax_pos.get_legend() is None
    no_start = make_report(snapshots=snaps)
    plot_eod(no_start, tmp_path / "eod.png")
    ys = sorted(
        {round(float(y), 6) for y in figures[2][0].axes[1].collections[0].get_paths()[0].vertices[:, 1]}
    )
    assert ys == [0.0]  # from the first snapshot: 90 then a new peak at 95


def test_a_day_without_snapshots_draws_a_note_instead_of_equity(
    tmp_path: Path, figures: list[tuple[Any, dict[str, Any]]]
) -> None:
    plot_eod(make_report(), tmp_path / "eod.png")
    ax_eq, ax_dd, ax_pos = figures[0][0].axes
    (note,) = ax_eq.texts
    assert note.get_text() == "no account snapshot" and note.get_position() == (0.5, 0.5)
    assert note.get_transform() == ax_eq.transAxes and note.get_horizontalalignment() == "center"
    assert len(ax_eq.lines) == 0 and len(ax_dd.collections) == 0 and len(ax_pos.lines) == 0


def test_the_figure_file_is_a_1000_by_800_png(tmp_path: Path) -> None:
    snaps = snaps_frame([(kst(9, 0), 0, 110.0), (kst(15, 0), 0, 120.0)])
    out = plot_eod(make_report(snapshots=snaps), tmp_path / "eod.png")
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == (1000, 800)


# --- writing the report -------------------------------------------------------------------------------------
@pytest.fixture
def fake_plot(monkeypatch: pytest.MonkeyPatch) -> list[tuple[EodReport, Path]]:
    drawn: list[tuple[EodReport, Path]] = []

    def plot(report: EodReport, path: Path) -> Path:
        drawn.append((report, path))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\x89PNG fake")
        return path

    monkeypatch.setattr(eod, "plot_eod", plot)
    return drawn


def test_the_report_goes_beside_its_figure_under_the_var_dir_by_default(
    tmp_path: Path, fake_plot: list[tuple[EodReport, Path]], isolated_settings: Path
) -> None:
    report = make_report(warnings=["⚠ ünïcode"])
    settings = Settings(var_dir=tmp_path / "elsewhere")
    html_path = write_eod_report(report, settings=settings)
    folder = tmp_path / "elsewhere" / "reports" / "trading" / "2025-09-10"
    assert html_path == report.html_path == folder / "eod-main-2025-09-10.html"
    assert fake_plot[0] == (report, folder / "eod-main-2025-09-10.png")
    assert report.png_path == folder / "eod-main-2025-09-10.png"
    page = html_path.read_text(encoding="utf-8")
    assert page == render_eod(report, report.png_path) and "ünïcode" in page and "data:image/png" in page
    # no settings: the process's (the isolated var folder)
    again = write_eod_report(make_report(day=NEXT))
    assert again == isolated_settings / "reports" / "trading" / "2025-09-11" / "eod-main-2025-09-11.html"
    mine = write_eod_report(make_report(), tmp_path / "out", settings)
    assert mine == tmp_path / "out" / "eod-main-2025-09-10.html" and mine.is_file()


# --- MLflow ---------------------------------------------------------------------------------------------
@pytest.fixture
def mlflow_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """Settings with a file-based MLflow store in tmp_path; MLflow's process-wide URIs, environment and
    logger are put back afterwards."""
    import mlflow.tracking._model_registry.utils as registry_utils
    import mlflow.tracking._tracking_service.utils as tracking_utils

    uri = (tmp_path / "mlruns").as_uri()
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    for key in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        monkeypatch.setenv(key, uri)  # configure_mlflow writes them: undo restores the earlier state
    monkeypatch.setattr(tracking_utils, "_tracking_uri", tracking_utils._tracking_uri)
    monkeypatch.setattr(registry_utils, "_registry_uri", registry_utils._registry_uri)
    logger = logging.getLogger("mlflow")
    handlers, level = list(logger.handlers), logger.level
    handler_levels = [h.level for h in handlers]
    yield Settings(
        var_dir=tmp_path / "var",
        mlflow_tracking_uri=uri,
        kis_app_key="APPKEY-SECRET-1234",
        kis_app_secret="APPSECRET-5678",
        kis_account_no="50001234",
    )
    for h in logger.handlers[:]:
        if h not in handlers:
            logger.removeHandler(h)
            h.close()
    for h, lvl in zip(handlers, handler_levels, strict=True):
        h.setLevel(lvl)
    logger.setLevel(level)


def mlflow_report(**kw: Any) -> EodReport:
    fills = fills_frame(
        [
            (kst(9, 1), "005930", "buy", 4, 70_100.0, 70_000.0, 42.0, 0.0),
            (kst(9, 2), "000660", "sell", 1, 199_000.0, 200_000.0, 30.0, 300.0),
        ]
    )
    snaps = snaps_frame([(kst(15, 30), 3, 10_120_000.0)])
    values: dict[str, Any] = {
        "fills": fills,
        "snapshots": snaps,
        "start_equity": 10_000_000.0,
        "orders": pd.DataFrame({"status": ["filled", "filled", "rejected"]}),
        "warnings": ["one", "two"],
    }
    return make_report(**(values | kw))


def test_the_day_is_logged_to_one_run_of_the_operations_experiment(
    tmp_path: Path, mlflow_settings: Settings
) -> None:
    from mlflow import MlflowClient

    html_path, png_path = tmp_path / "eod-main-2025-09-10.html", tmp_path / "eod-main-2025-09-10.png"
    html_path.write_text("<html></html>")
    png_path.write_bytes(b"png")
    report = mlflow_report()
    before = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
    run_id = log_eod_to_mlflow(report, [html_path, png_path], mlflow_settings)
    after = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
    assert report.mlflow_run_id == run_id
    client = MlflowClient(tracking_uri=mlflow_settings.resolved_mlflow_uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment is not None and EXPERIMENT == "operations"
    assert experiment.artifact_location == (tmp_path / "var" / "mlflow-artifacts" / "operations").as_uri()
    run = client.get_run(run_id)
    assert run.info.experiment_id == experiment.experiment_id
    assert run.info.run_name == "eod-main-2025-09-10" and run.info.status == "FINISHED"
    assert run.data.metrics == pytest.approx(report.metrics())
    assert set(run.data.metrics) == {
        "daily_pnl", "equity", "orders", "fills", "filled_quantity", "rejected", "avg_slippage_bps",
        "slippage_krw", "costs",
    }  # fmt: skip
    (point,) = client.get_metric_history(run_id, "daily_pnl")
    assert point.value == 120_000.0 and point.step == 0 and before <= point.timestamp <= after
    tags = {k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.")}
    assert tags == {
        RUN_TAG: "main/2025-09-10",
        "krx.account": "main",
        "krx.day": "2025-09-10",
        "krx.warnings": "2",
    }
    assert RUN_TAG == "krx.eod"
    assert run.data.params == {}
    logged = str(run.data.tags) + str(run.data.params) + str(run.data.metrics)
    for secret in ("50001234", "APPKEY-SECRET-1234", "APPSECRET-5678"):
        assert secret not in logged
    assert {a.path for a in client.list_artifacts(run_id)} == {html_path.name, png_path.name}


def test_a_rerun_finds_the_days_run_by_its_tag_and_replaces_its_numbers(
    tmp_path: Path, mlflow_settings: Settings
) -> None:
    from mlflow import MlflowClient

    first = log_eod_to_mlflow(mlflow_report(), [], mlflow_settings)
    other_day = log_eod_to_mlflow(mlflow_report(day=NEXT), [], mlflow_settings)
    other_account = log_eod_to_mlflow(mlflow_report(account="alt"), [], mlflow_settings)
    assert len({first, other_day, other_account}) == 3
    later = mlflow_report(snapshots=snaps_frame([(kst(16, 0), 3, 10_170_000.0)]), warnings=[])
    assert log_eod_to_mlflow(later, [], mlflow_settings) == first
    client = MlflowClient(tracking_uri=mlflow_settings.resolved_mlflow_uri)
    run = client.get_run(first)
    assert run.data.metrics["daily_pnl"] == 170_000.0 and run.data.tags["krx.warnings"] == "0"
    assert run.info.status == "FINISHED"
    assert client.get_run(other_account).data.tags["krx.account"] == "alt"


def test_a_deleted_operations_experiment_is_restored_and_logged_to(mlflow_settings: Settings) -> None:
    from mlflow import MlflowClient

    first = log_eod_to_mlflow(mlflow_report(), [], mlflow_settings)
    client = MlflowClient(tracking_uri=mlflow_settings.resolved_mlflow_uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment is not None
    client.delete_experiment(experiment.experiment_id)
    assert log_eod_to_mlflow(mlflow_report(), [], mlflow_settings) == first
    assert client.get_experiment(experiment.experiment_id).lifecycle_stage == "active"


# --- the broker and the whole job ------------------------------------------------------------------------
class FakeBroker:
    def __init__(self, fail: Exception | None = None) -> None:
        self.fail = fail
        self.closed = 0

    def account(self) -> AccountState:
        if self.fail is not None:
            raise self.fail
        return AccountState(cash=1.0, equity=2.0)

    def now(self) -> dt.datetime:
        return kst(15, 50)

    def close(self) -> None:
        self.closed += 1


def test_the_brokers_account_and_clock_are_read_and_the_broker_closed(
    monkeypatch: pytest.MonkeyPatch, settings: Settings
) -> None:
    import pipeline.trading.brokers as brokers

    broker = FakeBroker()
    made: list[Settings] = []
    monkeypatch.setattr(brokers, "make_broker", lambda s: made.append(s) or broker)
    assert broker_account(settings) == (AccountState(cash=1.0, equity=2.0), kst(15, 50), None)
    assert made == [settings] and broker.closed == 1


def test_an_unreachable_broker_gives_a_warning_naming_only_the_errors_type(
    monkeypatch: pytest.MonkeyPatch, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    import pipeline.trading.brokers as brokers

    broker = FakeBroker(fail=ConnectionError("https://x/?CANO=50001234"))
    monkeypatch.setattr(brokers, "make_broker", lambda s: broker)
    logger = logging.getLogger("pipeline.trading.eod")
    logger.addHandler(caplog.handler)
    try:
        caplog.set_level(logging.DEBUG, logger="pipeline.trading.eod")
        before = dt.datetime.now(KST)
        state, now, warning = broker_account(settings)
        after = dt.datetime.now(KST)
    finally:
        logger.removeHandler(caplog.handler)
    assert state is None and before <= now <= after and now.utcoffset() == dt.timedelta(hours=9)
    assert warning == "broker unreachable (ConnectionError): report from the store, no new snapshot"
    assert broker.closed == 1
    seen = {id(r): r for r in caplog.records if r.name == "pipeline.trading.eod"}  # here and via root
    records = [(r.levelname, r.getMessage()) for r in seen.values()]
    assert records == [("WARNING", "broker unreachable for the end-of-day report: ConnectionError")]

    def unbuildable(s: Settings) -> FakeBroker:
        raise ValueError("no account number")

    monkeypatch.setattr(brokers, "make_broker", unbuildable)
    assert (
        broker_account(settings)[2]
        == "broker unreachable (ValueError): report from the store, no new snapshot"
    )


@pytest.fixture
def spies(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[Any]]:
    calls: dict[str, list[Any]] = {"write": [], "mlflow": []}

    def write(report: EodReport, out_dir: Path | None = None, settings: Settings | None = None) -> Path:
        calls["write"].append((report, out_dir, settings))
        report.png_path = Path("/out/eod.png")
        report.html_path = Path("/out/eod.html")
        return report.html_path

    def log_run(report: EodReport, paths: Any, settings: Settings) -> str:
        calls["mlflow"].append((report, list(paths), settings))
        report.mlflow_run_id = "run-1"
        return "run-1"

    monkeypatch.setattr(eod, "write_eod_report", write)
    monkeypatch.setattr(eod, "log_eod_to_mlflow", log_run)
    return calls


def test_run_eod_reports_the_settings_account_writes_the_page_and_logs_both_files(
    engine: Engine, tmp_path: Path, spies: dict[str, list[Any]], caplog: pytest.LogCaptureFixture
) -> None:
    seed(engine)
    with engine.begin() as conn:
        add_snapshot(conn, kst(15, 0), 1.0, account="desk")
    settings = Settings(var_dir=tmp_path / "var", trading_account="desk")
    logger = logging.getLogger("pipeline.trading.eod")
    logger.addHandler(caplog.handler)
    try:
        caplog.set_level(logging.DEBUG, logger="pipeline.trading.eod")
        report = run_eod(
            settings, DAY, AccountState(cash=1.0, equity=3.0), now=kst(15, 50), warnings=["w"],
            engine=engine, out_dir=tmp_path / "out",
        )  # fmt: skip
    finally:
        logger.removeHandler(caplog.handler)
    assert report.account == "desk" and report.day == DAY and report.written_at == kst(15, 50)
    assert report.daily_pnl == 2.0 and report.warnings == ["w"]
    assert ("desk", kst(15, 50), 1.0, 3.0, 0.0, "eod") in snapshots(engine)
    assert spies["write"] == [(report, tmp_path / "out", settings)]
    assert spies["mlflow"] == [(report, [Path("/out/eod.html"), Path("/out/eod.png")], settings)]
    assert report.mlflow_run_id == "run-1"
    seen = {id(r): r for r in caplog.records if r.name == "pipeline.trading.eod"}  # here and via root
    messages = [r.getMessage() for r in seen.values()]
    assert messages == ["end-of-day report desk 2025-09-10: PnL 2.0 -> /out/eod.html"]


def test_run_eod_defaults_to_today_in_kst_and_the_settings_store(
    tmp_path: Path, spies: dict[str, list[Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'market.db'}"
    store = create_store_engine(url)
    schema.metadata.create_all(store)
    today = dt.datetime.now(KST).date()
    with store.begin() as conn:
        add_snapshot(conn, dt.datetime.combine(today, dt.time(0, 0, 1), KST), 42.0)
    store.dispose()
    settings = Settings(var_dir=tmp_path / "var", database_url=url)
    report = run_eod(settings)
    assert report.day == today and report.end_equity == 42.0 and report.account == "main"
    assert report.written_at.utcoffset() == dt.timedelta(hours=9)
    assert spies["write"] == [(report, None, settings)]
    assert report.warnings == []
