"""The end-of-day report on a seeded trading day (both store backends): PnL from the snapshots, slippage
against the decision price with the right sign per side and weighted by quantity, counts, one ``eod``
snapshot per day, an offline HTML page, and one MLflow run per account and day."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pipeline.config import get_settings
from pipeline.market import FUTURES_MULTIPLIER, KST
from pipeline.store import schema
from pipeline.trading.eod import EXPERIMENT, build_eod, run_eod, with_slippage
from pipeline.trading.types import AccountState, BrokerPosition

#: MLflow's own SQLAlchemy mappings warn once per process; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy:DeprecationWarning")

DAY = dt.date(2025, 9, 10)


def kst(hour: int, minute: int, day: dt.date = DAY) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), KST)


#: (account, created, spec, symbol, side, quantity, status, decision price,
#:  fills: (time, quantity, price, fee, tax))
ORDERS = [
    ("main", kst(9, 1), "stocks-1d", "005930", "buy", 10, "filled", 70_000.0,
     [(kst(9, 1), 4, 70_100.0, 42.0, 0.0), (kst(9, 2), 6, 70_050.0, 63.0, 0.0)]),
    ("main", kst(9, 1), "stocks-1d", "000660", "sell", 5, "filled", 200_000.0,
     [(kst(9, 3), 5, 199_800.0, 150.0, 1_500.0)]),
    ("main", kst(10, 0), "stocks-1d", "000660", "sell", 3, "filled", 200_000.0,
     [(kst(10, 1), 3, 200_400.0, 90.0, 900.0)]),
    ("main", kst(9, 30), "kospi200f-1m", "101W09", "buy", 1, "filled", 350.00,
     [(kst(9, 31), 1, 350.05, 2_600.0, 0.0)]),
    ("main", kst(11, 0), "stocks-1d", "035420", "buy", 2, "rejected", 180_000.0, []),
    # Not this account's, not this day's: never in the report.
    ("other", kst(9, 5), "stocks-1d", "005930", "buy", 7, "filled", 70_000.0,
     [(kst(9, 5), 7, 71_000.0, 10.0, 0.0)]),
    ("main", kst(14, 0, DAY - dt.timedelta(days=1)), "stocks-1d", "005930", "buy", 9, "filled", 69_000.0,
     [(kst(14, 0, DAY - dt.timedelta(days=1)), 9, 69_500.0, 10.0, 0.0)]),
    # After the day: moves the current position, not the one at the day's close.
    ("main", kst(9, 10, DAY + dt.timedelta(days=1)), "stocks-1d", "005930", "buy", 5, "filled", 71_000.0,
     [(kst(9, 10, DAY + dt.timedelta(days=1)), 5, 71_000.0, 10.0, 0.0)]),
]  # fmt: skip
#: (ts, equity) of account ``main``: two the day before (the later one is the start), three on the day.
SNAPSHOTS = [
    (kst(9, 0, DAY - dt.timedelta(days=1)), 9_000_000.0),
    (kst(15, 40, DAY - dt.timedelta(days=1)), 10_000_000.0),
    (kst(9, 0), 10_050_000.0),
    (kst(12, 0), 9_940_000.0),
    (kst(15, 35), 10_120_000.0),
]


def seed_day(engine: Engine) -> None:
    """The trading day above, written with plain inserts into the real tables."""
    now = kst(16, 0)
    with engine.begin() as conn:
        for i, (account, created, spec, symbol, side, qty, status, decision, fills) in enumerate(ORDERS):
            order_id = conn.execute(
                sa.insert(schema.orders).values(
                    client_order_id=f"coid-{i}",
                    account=account,
                    spec=spec,
                    symbol=symbol,
                    side=side,
                    quantity=qty,
                    order_type="market",
                    status=status,
                    mode="sim",
                    filled_quantity=sum(f[1] for f in fills),
                    decision_ts=created - dt.timedelta(minutes=1),
                    decision_price=decision,
                    created_at=created,
                    updated_at=now,
                    reason="broker: insufficient cash" if status == "rejected" else None,
                )
            ).inserted_primary_key[0]
            for j, (ts, q, price, fee, tax) in enumerate(fills):
                conn.execute(
                    sa.insert(schema.fills).values(
                        order_id=order_id,
                        broker_fill_id=f"{i}:{j}",
                        symbol=symbol,
                        side=side,
                        quantity=q,
                        price=price,
                        fee=fee,
                        tax=tax,
                        ts=ts,
                    )
                )
        decisions = [
            ("stocks-1d", "005930", "order", "coid-0"),
            ("stocks-1d", "000660", "order", "coid-1"),
            ("stocks-1d", "035420", "order", "coid-4"),  # the broker rejected its order
            ("stocks-1d", "000270", "rejected", None),  # the risk checks rejected it: no order
            ("kospi200f-1m", "KOSPI200F", "order", "coid-3"),
            ("kospi200f-1m", "KOSPI200F", "hold", None),
        ]
        for k, (spec, symbol, outcome, coid) in enumerate(decisions):
            conn.execute(
                sa.insert(schema.decisions).values(
                    account="main",
                    spec=spec,
                    symbol=symbol,
                    bar_ts=kst(9, 0) + dt.timedelta(minutes=k),
                    instrument=symbol,
                    price=1.0,
                    position_before=0,
                    client_order_id=coid,
                    outcome=outcome,
                    reason="max position" if outcome == "rejected" else None,
                    decided_at=kst(9, 0),
                )
            )
        for ts, equity in SNAPSHOTS:
            conn.execute(
                sa.insert(schema.account_snapshots).values(
                    account="main", ts=ts, cash=equity / 2, equity=equity, source="broker"
                )
            )
        conn.execute(  # a richer account of another alias: never mixed in
            sa.insert(schema.account_snapshots).values(account="other", ts=kst(15, 36), cash=1.0, equity=9e9)
        )
        for symbol, qty in (("005930", 24), ("000660", 2), ("101W09", 1)):
            conn.execute(
                sa.insert(schema.positions).values(
                    account="main", symbol=symbol, quantity=qty, avg_price=1.0, updated_at=now
                )
            )


def main_fills() -> list[tuple[str, str, int, float, float, float, float]]:
    """(symbol, side, quantity, price, decision price, fee, tax) of account ``main``'s fills on ``DAY``,
    oldest first."""
    rows = [
        (ts, (sym, side, q, price, decision, fee, tax))
        for account, _, _, sym, side, _, _, decision, fills in ORDERS
        for ts, q, price, fee, tax in fills
        if account == "main" and ts.date() == DAY
    ]
    return [row for _, row in sorted(rows, key=lambda r: r[0])]


def expected_slippage(side: str, price: float, decision: float) -> float:
    return price - decision if side == "buy" else decision - price


def test_pnl_counts_and_costs_come_from_the_days_rows(store: Engine) -> None:
    seed_day(store)
    report = build_eod(store, get_settings(), DAY, "main", None, now=kst(16, 0))
    assert report.start_equity == 10_000_000.0  # the day before's last snapshot, not its first
    assert report.end_equity == 10_120_000.0
    assert report.daily_pnl == pytest.approx(120_000.0)
    assert len(report.orders) == 5 and report.order_counts == {"filled": 4, "rejected": 1}
    assert len(report.fills) == len(main_fills()) == 5
    assert report.rejected == 2  # one by the broker, one by the risk checks
    assert report.costs == pytest.approx(sum(fee + tax for *_, fee, tax in main_fills()))
    decisions = report.decisions.set_index(["spec", "symbol"])
    assert decisions.loc[("kospi200f-1m", "KOSPI200F"), "hold"] == 1
    assert decisions.loc[("stocks-1d", "000270"), "rejected"] == 1
    # Positions at the close: today's holdings less the next day's buy of 5 005930.
    held = dict(zip(report.positions["symbol"], report.positions["quantity"], strict=True))
    assert held == {"005930": 19, "000660": 2, "101W09": 1}
    path = report.position_path[report.position_path["symbol"] == "000660"]
    assert list(path["quantity"]) == [10, 5, 2]  # 10 before the first sell, then after each fill


def test_slippage_is_against_the_decision_price_signed_per_side_and_weighted_by_quantity(
    store: Engine,
) -> None:
    seed_day(store)
    fills = build_eod(store, get_settings(), DAY, "main", None, now=kst(16, 0)).fills
    expected = [
        expected_slippage(side, price, decision) for _, side, _, price, decision, _, _ in main_fills()
    ]
    assert list(fills["slippage"]) == pytest.approx(expected)
    sells = fills[fills["side"] == "sell"].set_index("price")["slippage"]
    assert sells[199_800.0] == pytest.approx(200.0)  # sold below the decision price: a cost
    assert sells[200_400.0] == pytest.approx(-400.0)  # sold above it: a gain
    # KRW: per unit × quantity × multiplier (250,000 KRW a point for the futures contract).
    futures = fills[fills["symbol"] == "101W09"].iloc[0]
    assert futures["slippage_krw"] == pytest.approx(0.05 * FUTURES_MULTIPLIER)
    report = build_eod(store, get_settings(), DAY, "main", None, now=kst(16, 0))
    bps = [(s / d * 1e4, q) for s, (_, _, q, _, d, _, _) in zip(expected, main_fills(), strict=True)]
    weighted = sum(b * q for b, q in bps) / sum(q for _, q in bps)
    assert report.avg_slippage_bps == pytest.approx(weighted)
    assert weighted != pytest.approx(sum(b for b, _ in bps) / len(bps))  # quantity weighting matters


def test_a_fill_without_a_decision_price_has_no_slippage() -> None:
    import pandas as pd

    frame = pd.DataFrame(
        {"symbol": ["005930"], "side": ["sell"], "quantity": [3], "price": [100.0], "decision_price": [None]}
    )
    out = with_slippage(frame)
    assert out["slippage_bps"].isna().all() and out["slippage_krw"].isna().all()


def test_the_broker_snapshot_is_recorded_once_per_day_even_when_rerun(store: Engine) -> None:
    seed_day(store)
    state = AccountState(
        cash=5e6, equity=10_150_000.0, positions={"005930": BrokerPosition("005930", 24, 70e3)}
    )
    first = build_eod(store, get_settings(), DAY, "main", state, now=kst(15, 50))
    assert first.end_equity == 10_150_000.0 and first.daily_pnl == pytest.approx(150_000.0)
    later = AccountState(cash=5e6, equity=10_160_000.0)
    second = build_eod(store, get_settings(), DAY, "main", later, now=kst(16, 20))
    with store.connect() as conn:
        rows = conn.execute(
            sa.select(schema.account_snapshots.c.ts, schema.account_snapshots.c.equity).where(
                schema.account_snapshots.c.source == "eod"
            )
        ).all()
    assert len(rows) == 1 and rows[0].equity == 10_160_000.0
    assert rows[0].ts == kst(15, 50)  # the first run's time is kept
    assert second.daily_pnl == pytest.approx(160_000.0)
    # The broker's positions win: 000660 and the futures are not held by the second state.
    assert set(second.positions["symbol"]) == set()


def test_a_broker_state_read_on_another_day_is_not_stored_as_that_days_snapshot(store: Engine) -> None:
    seed_day(store)
    state = AccountState(cash=1.0, equity=1.0)
    report = build_eod(store, get_settings(), DAY, "main", state, now=kst(16, 0, DAY + dt.timedelta(days=2)))
    assert report.end_equity == 10_120_000.0
    assert any("no snapshot" in w for w in report.warnings)
    with store.connect() as conn:
        count = conn.execute(
            sa.select(sa.func.count()).where(schema.account_snapshots.c.source == "eod")
        ).scalar_one()
    assert count == 0


def _mlflow_runs(day: dt.date) -> list:  # type: ignore[type-arg]
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=get_settings().resolved_mlflow_uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment is not None
    assert experiment.artifact_location.startswith((get_settings().var_dir.resolve()).as_uri())
    return list(client.search_runs([experiment.experiment_id], filter_string=f"tags.`krx.day` = '{day}'"))


def test_run_eod_writes_an_offline_html_report_and_one_mlflow_run_per_day(
    store: Engine, isolated_settings: Path
) -> None:
    seed_day(store)
    settings = get_settings()
    state = AccountState(cash=5e6, equity=10_150_000.0)
    report = run_eod(settings, DAY, state, now=kst(15, 50), engine=store)
    assert report.html_path is not None and report.png_path is not None
    assert report.html_path.parent == isolated_settings / "reports" / "trading" / "2025-09-10"
    page = report.html_path.read_text()
    assert not re.search(r"(?:src|href)\s*=\s*['\"]?https?://", page) and "http://" not in page
    assert "https://" not in page and "data:image/png;base64," in page
    assert "+150,000" in page  # the daily PnL
    assert "70,100" in page and "199,800" in page  # fills with their prices
    assert f"{report.avg_slippage_bps:+.2f} bps" in page
    assert report.png_path.stat().st_size > 10_000

    again = run_eod(settings, DAY, AccountState(cash=5e6, equity=10_170_000.0), now=kst(16, 5), engine=store)
    assert again.mlflow_run_id == report.mlflow_run_id
    runs = _mlflow_runs(DAY)
    assert len(runs) == 1
    run = runs[0]
    assert run.info.run_name == "eod-main-2025-09-10" and run.info.status == "FINISHED"
    metrics = run.data.metrics
    assert metrics["daily_pnl"] == pytest.approx(170_000.0)  # the rerun's numbers replace the first
    assert metrics["orders"] == 5 and metrics["fills"] == 5 and metrics["rejected"] == 2
    assert metrics["avg_slippage_bps"] == pytest.approx(report.avg_slippage_bps)
    assert metrics["costs"] == pytest.approx(report.costs)
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=settings.resolved_mlflow_uri)
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert artifacts == {"eod-main-2025-09-10.html", "eod-main-2025-09-10.png"}
    assert "50000000" not in str(run.data.params) + str(run.data.tags)
    # `krx reports` lists it
    from pipeline.reports import find_reports

    listed = [r for r in find_reports(isolated_settings) if r.kind == "trading"]
    assert [r.path for r in listed] == [report.html_path.resolve()]


def test_an_empty_day_reports_no_orders_instead_of_failing(store: Engine) -> None:
    report = run_eod(get_settings(), DAY, None, now=kst(16, 0), engine=store)
    assert len(report.orders) == 0 and report.daily_pnl is None
    assert report.html_path is not None
    page = report.html_path.read_text()
    assert "No orders on 2025-09-10" in page and "No fills on 2025-09-10" in page
    assert "no account snapshot" in page
    assert report.metrics() == {
        "orders": 0.0,
        "fills": 0.0,
        "filled_quantity": 0.0,
        "rejected": 0.0,
        "slippage_krw": 0.0,
        "costs": 0.0,
    }
