"""The brokers pinned without a simulator (issue 14, mutation testing of ``pipeline/trading/brokers.py``): a
fake KIS client records every call, so each test checks, in milliseconds, what the trading job would send
(stock or futures endpoint, side, quantity, market or limit price, the order's branch number on a cancel),
how KIS order and balance rows become the pipeline's types (order numbers, fills, average prices, open /
filled / cancelled / rejected), which broker each trading mode gets, and that mode ``real`` refuses to start
with a message naming every missing opt-in, cap or environment."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import httpx
import pandas as pd
import pytest
from pydantic import SecretStr

from pipeline.config import Settings, get_settings
from pipeline.kis.client import bars_frame
from pipeline.kis.models import (
    Bar,
    FuturesBalance,
    FuturesOrder,
    FuturesQuote,
    OrderAck,
    StockBalance,
    StockOrder,
    StockQuote,
)
from pipeline.market import KST, InstrumentKind, krx_sessions
from pipeline.trading import brokers
from pipeline.trading.brokers import (
    DryRunBroker,
    KisBroker,
    RealBroker,
    SimBroker,
    TradingConfigurationError,
    VtsBroker,
    broker_order,
    make_broker,
)
from pipeline.trading.types import AccountState, BrokerOrder, BrokerPosition, ProposedOrder, Side

DAY = dt.date(2026, 3, 10)  # a Tuesday
NOW = dt.datetime(2026, 3, 10, 10, 0, tzinfo=KST)
CAPS = {"max_position": 5, "max_order_notional": 1e8, "max_gross_exposure": 2e8, "daily_loss_limit": 1e6}
SECRET = "very-secret-app-key-123"


def stock_row(**fields: Any) -> StockOrder:
    row = {"ord_dt": "20260310", "odno": "0000000001", "sll_buy_dvsn_cd": "02", "pdno": "005930"}
    return StockOrder.model_validate(row | fields)


def futures_row(**fields: Any) -> FuturesOrder:
    row = {"ord_dt": "20260310", "odno": "0000000002", "sll_buy_dvsn_cd": "01", "pdno": "101W06"}
    return FuturesOrder.model_validate(row | fields)


def bars(symbol: str, *stamps: dt.datetime) -> pd.DataFrame:
    return bars_frame(symbol, [Bar(ts=t, open=1, high=2, low=0.5, close=1.5, volume=10) for t in stamps])


@dataclass
class FakeClient:
    """The KisClient methods the brokers call: answers are set per test, every call is recorded."""

    calls: list[tuple[Any, ...]] = field(default_factory=list)
    stock_rows: list[StockOrder] = field(default_factory=list)
    futures_rows: list[FuturesOrder] = field(default_factory=list)
    quote: dict[str, Any] = field(default_factory=dict)
    config: Any = field(
        default_factory=lambda: SimpleNamespace(
            base_url="http://sim.example", timeout_s=4.5, app_key=SecretStr(SECRET)
        )
    )

    def fetch_daily_bars(self, symbol: str, start: dt.date, end: dt.date, kind: Any) -> pd.DataFrame:
        self.calls.append(("daily", symbol, start, end, kind))
        late = dt.datetime.combine(end, dt.time(15, 30), KST)
        return bars(symbol, late, late - dt.timedelta(days=1))

    def fetch_minute_bars(self, symbol: str, day: dt.date, kind: Any) -> pd.DataFrame:
        self.calls.append(("minutes", symbol, day, kind))
        return bars(symbol, dt.datetime.combine(day, dt.time(9, 1), KST))

    def stock_balance(self) -> StockBalance:
        return StockBalance.model_validate(
            {
                "holdings": [
                    {"pdno": "005930", "hldg_qty": "3", "pchs_avg_pric": "70000.5", "prpr": "71500"},
                    {"pdno": "000660", "hldg_qty": "0", "pchs_avg_pric": "1", "prpr": "2"},
                ],
                "summary": {"dnca_tot_amt": "1000000", "tot_evlu_amt": "1214500"},
            }
        )

    def futures_balance(self) -> FuturesBalance:
        return FuturesBalance.model_validate(
            {
                "positions": [
                    {"shtn_pdno": "101W06", "sll_buy_dvsn_name": "매도", "cblc_qty": "2",
                     "ccld_avg_unpr1": "350.25", "idx_clpr": "351.5"},
                    {"shtn_pdno": "101W09", "sll_buy_dvsn_name": "매수", "cblc_qty": "0"},
                ],
                "summary": {"dnca_cash": "500000", "prsm_dpast_amt": "5200000", "mgna_tota": "3100000"},
            }
        )  # fmt: skip

    def stock_order(self, symbol: str, side: str, qty: int, price: float | None) -> OrderAck:
        self.calls.append(("stock_order", symbol, side, qty, price))
        return OrderAck(org_no="06010", order_no="0000000011")

    def futures_order(self, symbol: str, side: str, qty: int, price: float | None) -> OrderAck:
        self.calls.append(("futures_order", symbol, side, qty, price))
        return OrderAck(org_no="06010", order_no="0000000022")

    def stock_cancel(self, org_no: str, order_no: str) -> None:
        self.calls.append(("stock_cancel", org_no, order_no))

    def futures_cancel(self, org_no: str, order_no: str) -> None:
        self.calls.append(("futures_cancel", org_no, order_no))

    def stock_orders(self, start: dt.date, end: dt.date) -> list[StockOrder]:
        self.calls.append(("stock_orders", start, end))
        return self.stock_rows

    def futures_orders(self, start: dt.date, end: dt.date) -> list[FuturesOrder]:
        self.calls.append(("futures_orders", start, end))
        return self.futures_rows

    def stock_price(self, symbol: str) -> StockQuote:
        self.calls.append(("stock_price", symbol))
        return StockQuote.model_validate({"stck_prpr": "100"} | self.quote)

    def futures_price(self, symbol: str) -> FuturesQuote:
        self.calls.append(("futures_price", symbol))
        return FuturesQuote.model_validate({"futs_prpr": "100"} | self.quote)

    def close(self) -> None:
        self.calls.append(("close",))


class FixedBroker(KisBroker):
    """A KIS broker whose clock stands still at NOW (the cancel looks up today's orders)."""

    def now(self) -> dt.datetime:
        return NOW


def proposed(kind: str, side: Side = "buy", qty: int = 3, **extra: Any) -> ProposedOrder:
    return ProposedOrder(
        account="main", spec="s", symbol="101W06" if kind == "futures" else "005930", kind=kind, side=side,
        quantity=qty, price=350.0, multiplier=250_000.0, position_before=0, decision_ts=NOW, **extra,
    )  # fmt: skip


def settings(**fields: Any) -> Settings:
    return Settings(_env_file=None, **fields)  # type: ignore[call-arg]


# --- KIS order rows as BrokerOrders ---------------------------------------------------------------------


def test_a_stock_row_maps_every_field() -> None:
    row = stock_row(
        odno="0000000031", orgn_odno="0000000030", sll_buy_dvsn_cd="01", ord_qty="10", ord_unpr="71500",
        ord_tmd="093015", tot_ccld_qty="4", avg_prvs="71450.5", rmn_qty="6",
    )  # fmt: skip
    assert broker_order(row) == BrokerOrder(
        order_no="0000000031",
        symbol="005930",
        side="sell",
        quantity=10,
        filled_quantity=4,
        avg_price=71450.5,
        status="open",
        placed_at=dt.datetime(2026, 3, 10, 9, 30, 15, tzinfo=KST),
        limit_price=71500.0,
        original_order_no="0000000030",
    )


def test_a_futures_row_is_open_while_contracts_remain_and_a_market_order_has_no_limit() -> None:
    got = broker_order(futures_row(ord_qty="2", qty="2", ord_tmd="1405009"))
    assert (got.side, got.status, got.quantity, got.filled_quantity, got.limit_price) == (
        "sell",
        "open",
        2,
        0,
        None,
    )
    assert got.placed_at == dt.datetime(2026, 3, 10, 14, 5, 0, tzinfo=KST)  # the first six digits


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        ({"ord_qty": "5", "tot_ccld_qty": "5"}, "filled"),
        ({"ord_qty": "5", "tot_ccld_qty": "2"}, "filled"),  # the unfilled rest was cancelled
        ({"ord_qty": "5", "tot_ccld_qty": "2", "rjct_qty": "3"}, "filled"),
        ({"ord_qty": "5", "rjct_qty": "5"}, "rejected"),
        ({"ord_qty": "1", "rjct_qty": "1"}, "rejected"),
        ({"ord_qty": "0"}, "cancelled"),  # KIS shrank the original to what filled: nothing
        ({"ord_qty": "5"}, "cancelled"),
        ({"ord_qty": "5", "tot_ccld_qty": "5", "cncl_yn": "Y"}, "cancelled"),
        ({"ord_qty": "5", "rmn_qty": "1", "cncl_yn": "Y"}, "cancelled"),
        ({"ord_qty": "5", "tot_ccld_qty": "4", "rmn_qty": "1"}, "open"),
    ],
)
def test_the_status_of_a_stock_row(fields: dict[str, str], status: str) -> None:
    assert broker_order(stock_row(**fields)).status == status


def test_a_futures_row_without_a_cancel_flag_is_not_cancelled() -> None:
    assert broker_order(futures_row(ord_qty="3", tot_ccld_qty="3", avg_idx="351.05")).status == "filled"
    assert broker_order(futures_row(ord_qty="3", tot_ccld_qty="3")).avg_price == 0.0


@pytest.mark.parametrize(("day", "time"), [("20260310", ""), ("20260310", "09301"), ("", "093015")])
def test_a_row_without_a_full_time_or_a_date_has_no_placed_at(day: str, time: str) -> None:
    assert broker_order(stock_row(ord_dt=day, ord_tmd=time, ord_qty="1")).placed_at is None


# --- reading the account and the market -----------------------------------------------------------------


def test_the_account_adds_stock_and_futures_and_skips_empty_holdings() -> None:
    assert KisBroker(FakeClient()).account() == AccountState(  # type: ignore[arg-type]
        cash=1_500_000.0,
        equity=1_214_500.0 + 5_200_000.0,
        positions={
            "005930": BrokerPosition("005930", 3, 70000.5, 71500.0),
            "101W06": BrokerPosition("101W06", -2, 350.25, 351.5),
        },
        margin_used=3_100_000.0,
    )


def test_daily_bars_ask_for_history_days_up_to_the_korean_date_and_come_sorted() -> None:
    client = FakeClient()
    late_utc = dt.datetime(2026, 3, 9, 16, 0, tzinfo=dt.UTC)  # 01:00 on March 10 in Seoul
    frame = KisBroker(client).bars("005930", InstrumentKind.STOCK, "1d", late_utc, 30)  # type: ignore[arg-type]
    assert client.calls == [("daily", "005930", dt.date(2026, 2, 8), DAY, InstrumentKind.STOCK)]
    assert list(frame.columns) == ["open", "high", "low", "close", "volume"]
    assert frame.index.name == "ts" and frame.index.is_monotonic_increasing and len(frame) == 2


def test_minute_bars_fetch_the_last_sessions_and_past_sessions_only_once() -> None:
    client = FakeClient()
    broker = KisBroker(client)  # type: ignore[arg-type]
    first = broker.bars("101W06", InstrumentKind.FUTURES, "1m", NOW, 3)
    again = broker.bars("101W06", InstrumentKind.FUTURES, "1m", NOW, 3)
    sessions = [dt.date(2026, 3, 6), dt.date(2026, 3, 9), DAY]
    assert client.calls == [("minutes", "101W06", d, InstrumentKind.FUTURES) for d in [*sessions, DAY]]
    assert [t.date() for t in first.index] == sessions and first.equals(again)
    assert list(first.columns) == ["open", "high", "low", "close", "volume"]


def test_minute_bars_of_many_sessions_reach_back_far_enough() -> None:
    client = FakeClient()
    frame = KisBroker(client).bars("101W06", InstrumentKind.FUTURES, "1m", NOW, 20)  # type: ignore[arg-type]
    days = [c[2] for c in client.calls]
    wide = [d.date() for d in krx_sessions(DAY - dt.timedelta(days=90), DAY)]
    assert days == wide[-20:] and days[0] == dt.date(2026, 2, 5)  # Lunar New Year fell in between
    assert [t.date() for t in frame.index] == days


def test_a_session_fetched_while_it_was_today_is_fetched_again_the_next_day() -> None:
    client = FakeClient()
    broker = KisBroker(client)  # type: ignore[arg-type]
    broker.bars("101W06", InstrumentKind.FUTURES, "1m", NOW, 2)
    broker.bars("101W06", InstrumentKind.FUTURES, "1m", NOW + dt.timedelta(days=1), 2)
    assert [c[2] for c in client.calls] == [dt.date(2026, 3, 9), DAY, DAY, dt.date(2026, 3, 11)]


def test_no_sessions_give_an_empty_frame_with_the_bar_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    import pipeline.market.calendar as calendar

    monkeypatch.setattr(calendar, "krx_sessions", lambda start, end: pd.DatetimeIndex([]))
    client = FakeClient()
    frame = KisBroker(client).bars("101W06", InstrumentKind.FUTURES, "1m", NOW, 3)  # type: ignore[arg-type]
    assert frame.empty and list(frame.columns) == ["open", "high", "low", "close", "volume"]
    assert client.calls == []


@pytest.mark.parametrize(
    ("kind", "call"),
    [(InstrumentKind.FUTURES, "futures_price"), (InstrumentKind.STOCK, "stock_price")],
)
def test_the_price_band_comes_from_the_quote_of_the_kind(kind: InstrumentKind, call: str) -> None:
    client = FakeClient(quote={"stck_llam": "50", "stck_mxpr": "130", "futs_llam": "300", "futs_mxpr": "400"})
    band = KisBroker(client).price_band("X", kind)  # type: ignore[arg-type]
    assert client.calls == [(call, "X")]
    assert band == ((300.0, 400.0) if kind is InstrumentKind.FUTURES else (50.0, 130.0))


def test_a_price_band_below_one_won_is_still_a_band() -> None:
    client = FakeClient(quote={"futs_llam": "0.5", "futs_mxpr": "2.05"})
    assert KisBroker(client).price_band("201W06", InstrumentKind.FUTURES) == (0.5, 2.05)  # type: ignore[arg-type]


@pytest.mark.parametrize(("lower", "upper"), [("0", "130"), ("130", "130"), ("140", "130"), ("-1", "130")])
def test_no_price_band_when_the_quote_does_not_carry_a_real_one(lower: str, upper: str) -> None:
    client = FakeClient(quote={"stck_llam": lower, "stck_mxpr": upper})
    assert KisBroker(client).price_band("005930", InstrumentKind.STOCK) is None  # type: ignore[arg-type]


# --- sending and cancelling ------------------------------------------------------------------------------


def test_orders_go_to_the_endpoint_of_their_kind_with_side_quantity_and_price() -> None:
    client = FakeClient()
    broker = KisBroker(client)  # type: ignore[arg-type]
    assert broker.place(proposed("futures", "sell", 2)) == "0000000022"
    assert broker.place(proposed("stock", "buy", 7)) == "0000000011"
    assert broker.place(proposed("etf", "sell", 4, order_type="limit", limit_price=9150.0)) == "0000000011"
    assert broker.place(proposed("futures", "buy", 1, order_type="limit", limit_price=351.2)) == "0000000022"
    # a limit price on a market order is not sent
    assert broker.place(proposed("stock", "buy", 1, limit_price=9.0)) == "0000000011"
    assert client.calls == [
        ("futures_order", "101W06", "sell", 2, None),
        ("stock_order", "005930", "buy", 7, None),
        ("stock_order", "005930", "sell", 4, 9150.0),
        ("futures_order", "101W06", "buy", 1, 351.2),
        ("stock_order", "005930", "buy", 1, None),
    ]


def test_a_cancel_carries_the_branch_number_of_todays_order() -> None:
    client = FakeClient(
        stock_rows=[stock_row(odno="0000000005", ord_gno_brno="91111", ord_qty="1")],
        futures_rows=[
            futures_row(odno="0000000001", ord_gno_brno="00001", ord_qty="1"),
            futures_row(odno="0000000007", ord_gno_brno="06010", ord_qty="1"),
        ],
    )
    broker = FixedBroker(client)  # type: ignore[arg-type]
    broker.cancel("0000000007", "101W06", InstrumentKind.FUTURES)
    broker.cancel("0000000005", "005930", InstrumentKind.STOCK)
    broker.cancel("0000000099", "005930", InstrumentKind.ETF)  # not in today's list: no branch number
    assert client.calls == [
        ("futures_orders", DAY, DAY),
        ("futures_cancel", "06010", "0000000007"),
        ("stock_orders", DAY, DAY),
        ("stock_cancel", "91111", "0000000005"),
        ("stock_orders", DAY, DAY),
        ("stock_cancel", "", "0000000099"),
    ]


@pytest.mark.parametrize(
    ("kinds", "asked"),
    [
        ([InstrumentKind.STOCK], ["stock_orders"]),
        ([InstrumentKind.ETF], ["stock_orders"]),
        ([InstrumentKind.FUTURES], ["futures_orders"]),
        ([InstrumentKind.ETF, InstrumentKind.FUTURES], ["stock_orders", "futures_orders"]),
    ],
)
def test_orders_today_asks_only_the_accounts_of_the_kinds(
    kinds: list[InstrumentKind], asked: list[str]
) -> None:
    client = FakeClient(
        stock_rows=[stock_row(odno="0000000005", ord_qty="2", rmn_qty="2")],
        futures_rows=[futures_row(odno="0000000006", ord_qty="1", tot_ccld_qty="1")],
    )
    got = KisBroker(client).orders_today(DAY, iter(kinds))  # type: ignore[arg-type]
    assert client.calls == [(name, DAY, DAY) for name in asked]
    numbers = {"stock_orders": ("0000000005", "open"), "futures_orders": ("0000000006", "filled")}
    assert [(o.order_no, o.status) for o in got] == [numbers[name] for name in asked]


def test_close_closes_the_client_and_the_repr_shows_the_mode_not_the_keys() -> None:
    client = FakeClient()
    broker = VtsBroker(client)  # type: ignore[arg-type]
    assert repr(broker) == "VtsBroker(mode='vts')" and SECRET not in repr(broker)
    broker.close()
    assert client.calls == [("close",)]


def test_a_kis_broker_reads_the_wall_clock_in_korea() -> None:
    got = KisBroker(FakeClient()).now()  # type: ignore[arg-type]
    assert got.utcoffset() == dt.timedelta(hours=9)
    assert abs(got - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=1)


def test_the_sim_broker_reads_the_simulators_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    posted: list[tuple[str, Any, Any]] = []

    def post(url: str, json: Any = None, timeout: Any = None) -> httpx.Response:
        posted.append((url, json, timeout))
        return httpx.Response(
            200, json={"now": "2026-03-10T01:02:03+00:00"}, request=httpx.Request("POST", url)
        )

    monkeypatch.setattr(brokers.httpx, "post", post)
    got = SimBroker(FakeClient()).now()  # type: ignore[arg-type]
    assert got == dt.datetime(2026, 3, 10, 10, 2, 3, tzinfo=KST) and got.utcoffset() == dt.timedelta(hours=9)
    assert posted == [("http://sim.example/sim/admin/clock", {}, 4.5)]


def test_the_sim_broker_fails_loudly_when_the_clock_call_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    def post(url: str, **_: Any) -> httpx.Response:
        return httpx.Response(
            503, json={"now": "2026-03-10T01:02:03+00:00"}, request=httpx.Request("POST", url)
        )

    monkeypatch.setattr(brokers.httpx, "post", post)
    with pytest.raises(httpx.HTTPStatusError):
        SimBroker(FakeClient()).now()  # type: ignore[arg-type]


def test_dry_run_sends_nothing_and_takes_its_clock_from_the_given_broker() -> None:
    client = FakeClient()
    dry = DryRunBroker(client, FixedBroker(client))  # type: ignore[arg-type]
    assert (dry.mode, dry.sends_orders, dry.now()) == ("dry", False, NOW)
    with pytest.raises(TradingConfigurationError) as placed:
        dry.place(proposed("stock"))
    with pytest.raises(TradingConfigurationError) as cancelled:
        dry.cancel("0000000001", "005930", InstrumentKind.STOCK)
    assert str(placed.value) == "dry-run sends no orders (the order manager records them)"
    assert str(cancelled.value) == "dry-run has no orders to cancel"
    assert client.calls == []
    wall = DryRunBroker(client).now()  # type: ignore[arg-type]
    assert wall.utcoffset() == dt.timedelta(hours=9) and abs(wall - dt.datetime.now(dt.UTC)) < dt.timedelta(
        minutes=1
    )


# --- choosing the broker ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "env", "cls"),
    [("sim", "sim", SimBroker), ("vts", "vts", VtsBroker), ("dry-run", "vts", DryRunBroker)],
)
def test_each_mode_gets_its_broker(mode: str, env: str, cls: type) -> None:
    client = FakeClient()
    broker = make_broker(settings(trading_mode=mode, kis_env=env), client)  # type: ignore[arg-type]
    assert type(broker) is cls and broker.client is client  # type: ignore[attr-defined]
    assert broker.sends_orders is (mode != "dry-run")


def test_dry_run_on_the_simulator_follows_the_simulators_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    def post(url: str, **_: Any) -> httpx.Response:
        return httpx.Response(
            200, json={"now": "2026-03-10T01:02:03+00:00"}, request=httpx.Request("POST", url)
        )

    monkeypatch.setattr(brokers.httpx, "post", post)
    dry = make_broker(settings(trading_mode="dry-run", kis_env="sim"), FakeClient())  # type: ignore[arg-type]
    assert type(dry) is DryRunBroker and dry.now() == dt.datetime(2026, 3, 10, 10, 2, 3, tzinfo=KST)


def test_dry_run_on_kis_reads_the_wall_clock_not_a_simulator(monkeypatch: pytest.MonkeyPatch) -> None:
    posted: list[str] = []
    monkeypatch.setattr(brokers.httpx, "post", lambda url, **_: posted.append(url))
    dry = make_broker(settings(trading_mode="dry-run", kis_env="vts"), FakeClient())  # type: ignore[arg-type]
    got = dry.now()
    assert posted == [] and abs(got - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=1)


def test_real_starts_with_the_opt_in_the_caps_and_the_real_environment() -> None:
    s = settings(trading_mode="real", kis_env="real", trading_real_opt_in=True, trading_risk=CAPS)
    broker = make_broker(s, FakeClient())  # type: ignore[arg-type]
    client = broker.client  # type: ignore[attr-defined]
    assert type(broker) is RealBroker and broker.mode == "real" and broker.sends_orders
    assert isinstance(client, FakeClient)


def test_real_without_anything_names_every_missing_piece() -> None:
    with pytest.raises(TradingConfigurationError) as err:
        make_broker(settings(trading_mode="real", kis_env="vts"), FakeClient())  # type: ignore[arg-type]
    assert str(err.value) == (
        "trading mode 'real' refuses to start: KRX_TRADING_REAL_OPT_IN=true is not set; hard caps missing "
        "from KRX_TRADING_RISK: max_position, max_order_notional, max_gross_exposure, daily_loss_limit; "
        "KRX_KIS_ENV is 'vts', not 'real'"
    )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"trading_risk": CAPS, "kis_env": "real"},
            "refuses to start: KRX_TRADING_REAL_OPT_IN=true is not set",
        ),
        (
            {
                "trading_real_opt_in": True,
                "kis_env": "real",
                "trading_risk": CAPS | {"daily_loss_limit": None},
            },
            "refuses to start: hard caps missing from KRX_TRADING_RISK: daily_loss_limit",
        ),
        (
            {"trading_real_opt_in": True, "kis_env": "sim", "trading_risk": CAPS},
            "refuses to start: KRX_KIS_ENV is 'sim', not 'real'",
        ),
    ],
)
def test_real_refuses_with_one_piece_missing(fields: dict[str, Any], message: str) -> None:
    client = FakeClient()
    with pytest.raises(TradingConfigurationError) as err:
        make_broker(settings(trading_mode="real", **fields), client)  # type: ignore[arg-type]
    assert str(err.value) == "trading mode 'real' " + message and client.calls == []


@pytest.mark.parametrize(("mode", "env"), [("sim", "vts"), ("vts", "sim"), ("vts", "real")])
def test_a_mode_refuses_another_kis_environment(mode: str, env: str) -> None:
    with pytest.raises(TradingConfigurationError) as err:
        make_broker(settings(trading_mode=mode, kis_env=env), FakeClient())  # type: ignore[arg-type]
    assert str(err.value) == f"trading mode {mode!r} needs KRX_KIS_ENV={mode} (it is {env!r})"


def test_missing_kis_credentials_refuse_the_mode_without_showing_a_key() -> None:
    s = settings(trading_mode="vts", kis_env="vts", kis_app_key=SecretStr(SECRET))
    with pytest.raises(TradingConfigurationError) as err:
        make_broker(s)
    assert str(err.value) == (
        "trading mode 'vts': KIS env 'vts' needs KRX_KIS_APP_KEY, KRX_KIS_APP_SECRET and KRX_KIS_ACCOUNT_NO"
    )
    assert err.value.__cause__ is None and err.value.__suppress_context__ and SECRET not in str(err.value)


def test_without_settings_the_environment_decides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KRX_TRADING_MODE", "vts")
    monkeypatch.setenv("KRX_KIS_ENV", "sim")
    get_settings.cache_clear()
    try:
        with pytest.raises(TradingConfigurationError, match="trading mode 'vts' needs KRX_KIS_ENV=vts"):
            make_broker(None, FakeClient())  # type: ignore[arg-type]
    finally:
        get_settings.cache_clear()


def test_the_sim_mode_builds_its_own_client_from_the_settings() -> None:
    broker = make_broker(settings(trading_mode="sim", kis_env="sim", kis_base_url="http://127.0.0.1:9"))
    try:
        assert type(broker) is SimBroker
        assert broker.client.config.base_url == "http://127.0.0.1:9"  # type: ignore[attr-defined]
    finally:
        broker.close()
