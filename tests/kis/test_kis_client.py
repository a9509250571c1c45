"""The KIS client against the simulator over real HTTP: quotes, charts, orders, balances, paper mode."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any

import pytest

from pipeline.kis import KisClient, KisConfigurationError, KisRejectedError
from pipeline.kis.simulator import marketgen as mg
from pipeline.market import FUTURES_FEE_RATE, FUTURES_MARGIN_RATE, KST, STOCK_FEE_RATE

TODAY = date(2025, 6, 10)


def test_stock_quote_is_typed_and_inside_its_daily_limits(client: KisClient) -> None:
    quote = client.stock_price("005930")
    assert quote.lower_limit <= quote.low <= quote.price <= quote.high <= quote.upper_limit
    assert quote.price % quote.tick == 0
    assert quote.volume > 0


def test_daily_bars_walk_past_the_100_row_window(client: KisClient) -> None:
    frame = client.fetch_daily_bars("005930", date(2024, 1, 1), TODAY)
    sessions = [d for d in mg.trading_days() if date(2024, 1, 1) <= d <= TODAY]
    assert len(frame) == len(sessions) > 300  # needs at least four 100-row calls
    assert frame["ts"].is_monotonic_increasing and frame["ts"].is_unique
    assert list(frame.columns) == ["ts", "symbol", "open", "high", "low", "close", "volume", "value"]
    assert (frame["high"] >= frame[["open", "close"]].max(axis=1)).all()


def test_todays_minute_bars_stop_at_the_simulated_now(client: KisClient) -> None:
    frame = client.fetch_minute_bars("005930", TODAY, asset="stock")
    starts = frame["ts"].dt.strftime("%H:%M")
    assert starts.iloc[0] == "09:00" and starts.iloc[-1] == "10:00"  # 60 complete bars + the live one
    assert len(frame) == 61


def test_past_day_minute_bars_aggregate_to_the_daily_bar(client: KisClient) -> None:
    day = date(2025, 6, 9)
    minutes = client.fetch_minute_bars("000660", day)
    daily = client.fetch_daily_bars("000660", day, day).iloc[0]
    assert len(minutes) == 390
    assert minutes["open"].iloc[0] == daily["open"] and minutes["close"].iloc[-1] == daily["close"]
    assert minutes["high"].max() == daily["high"] and minutes["low"].min() == daily["low"]
    assert minutes["volume"].sum() == daily["volume"]


def test_futures_minute_bars_keep_only_the_requested_day(client: KisClient) -> None:
    frame = client.fetch_minute_bars("101W06", date(2025, 6, 9))
    assert len(frame) == 420  # 08:45-15:45, walked in 102-row windows that spill into earlier days
    assert set(frame["ts"].dt.date) == {date(2025, 6, 9)}
    assert ((frame["close"] * 20).round(6) % 1 == 0).all()  # 0.05-point ticks


def test_futures_quote_and_index_quotes(client: KisClient) -> None:
    fut = client.futures_price("101W06")
    assert fut.last_trading_day == date(2025, 6, 12) and fut.days_to_expiry == 2
    k200 = client.index_price("KOSPI200")
    assert abs(fut.price / k200.price - 1) < 0.02
    assert len(client.fetch_daily_bars("KOSPI", date(2025, 1, 1), TODAY)) > 100


def test_holiday_check_reads_the_krx_calendar(client: KisClient) -> None:
    assert client.holiday(date(2025, 6, 6)).is_open is False  # Memorial Day
    assert client.holiday(TODAY).is_open is True


def test_market_buy_fills_at_next_bar_open_plus_slippage(client: KisClient, admin: Any) -> None:
    ack = client.stock_order("005930", "buy", 10)
    admin.clock(datetime(2025, 6, 10, 10, 2))
    order = client.stock_orders(TODAY, TODAY)[0]
    next_open = mg.minute_frame("005930", "stock", 7, TODAY).set_index("ts")["open"]
    expected = next_open.loc[datetime(2025, 6, 10, 10, 1, tzinfo=KST)] + 50  # one tick of 50 won
    assert (order.order_no, order.filled_qty, order.avg_fill_price) == (ack.order_no, 10, expected)
    balance = client.stock_balance()
    assert [(h.symbol, h.qty) for h in balance.holdings] == [("005930", 10)]
    assert balance.summary.cash == pytest.approx(100_000_000 - 10 * expected * (1 + STOCK_FEE_RATE), abs=1)


def test_limit_order_rests_until_cancelled(client: KisClient, admin: Any) -> None:
    low = client.stock_price("005930").lower_limit
    ack = client.stock_order("005930", "buy", 3, price=low)
    admin.clock(datetime(2025, 6, 10, 10, 30))
    assert client.stock_orders(TODAY, TODAY, filled="02")[0].remaining_qty == 3
    client.stock_cancel(ack.org_no, ack.order_no)
    rows = client.stock_orders(TODAY, TODAY)
    assert [r.remaining_qty for r in rows] == [0, 0] and rows[1].cancelled
    assert client.stock_balance().holdings == []


def test_a_limit_buy_fills_at_its_price_in_the_first_bar_that_trades_down_to_it(
    client: KisClient, admin: Any
) -> None:
    bars = mg.minute_frame("005930", "stock", 7, TODAY).set_index("ts")
    after = bars.loc[datetime(2025, 6, 10, 10, 1, tzinfo=KST) : datetime(2025, 6, 10, 10, 30, tzinfo=KST)]
    limit = float(after["low"].min())  # the lowest price of the next half hour: crossed once, late
    crossed = after.index[after["low"] <= limit][0]
    assert crossed > after.index[0] and after["open"].loc[crossed] > limit  # a real crossing, inside a bar
    ack = client.stock_order("005930", "buy", 1, price=limit)
    admin.clock(crossed.replace(tzinfo=None) + timedelta(seconds=30))  # that bar has not closed yet
    assert client.stock_orders(TODAY, TODAY, filled="02")[0].remaining_qty == 1
    admin.clock(crossed.replace(tzinfo=None) + timedelta(minutes=1))  # it has: its low reached the limit
    order = client.stock_orders(TODAY, TODAY)[0]
    assert (order.order_no, order.filled_qty, order.avg_fill_price) == (ack.order_no, 1, limit)
    assert [(h.symbol, h.qty) for h in client.stock_balance().holdings] == [("005930", 1)]


@pytest.mark.parametrize(
    ("symbol", "qty", "price", "code"),
    [
        ("005930", 10_000_000, None, "APBK0952"),
        ("005930", 1, 1.0, "APBK0556"),
        ("999999", 1, None, "APBK0656"),
    ],
    ids=["insufficient-cash", "outside-price-limits", "unknown-symbol"],
)
def test_orders_are_rejected_with_kis_codes(
    client: KisClient, symbol: str, qty: int, price: float | None, code: str
) -> None:
    with pytest.raises(KisRejectedError) as info:
        client.stock_order(symbol, "buy", qty, price=price)
    assert info.value.msg_cd == code and info.value.msg1


def test_paper_orders_use_v_tr_ids_and_are_refused_after_the_close(
    make_client: Callable[..., KisClient], admin: Any
) -> None:
    paper = make_client(env="vts")
    assert paper.endpoint("stock_buy")[1] == "VTTC0012U"
    paper.stock_order("005930", "buy", 1)
    admin.clock(datetime(2025, 6, 10, 15, 35))
    with pytest.raises(KisRejectedError) as info:
        paper.stock_order("005930", "buy", 1)
    assert info.value.msg_cd == "40580000"  # 모의투자 장종료 (spec §8)
    with pytest.raises(KisConfigurationError):
        paper.stock_minute_bars("005930", date(2025, 6, 9))  # real-only TR on VTS


def test_paper_fills_inquiry_pages_15_rows_at_a_time(make_client: Callable[..., KisClient]) -> None:
    paper = make_client(env="vts")
    numbers = [paper.stock_order("005930", "buy", 1, price=20_000).order_no for _ in range(20)]
    rows = paper.stock_orders(TODAY, TODAY)
    assert [r.order_no for r in rows] == numbers  # two pages, nothing lost or repeated


def test_futures_short_then_cover_books_pnl_with_the_250k_multiplier(client: KisClient, admin: Any) -> None:
    client.futures_order("101W06", "sell", 2)
    admin.clock(datetime(2025, 6, 10, 10, 5))
    position = client.futures_balance().positions[0]
    assert (position.signed_qty, position.symbol) == (-2, "101W06")
    assert position.value == pytest.approx(2 * position.price * 250_000)
    margin = client.futures_balance().summary.margin_total
    assert margin == pytest.approx(2 * position.price * 250_000 * FUTURES_MARGIN_RATE, rel=1e-6)
    client.futures_order("101W06", "buy", 2)
    admin.clock(datetime(2025, 6, 10, 10, 10))
    orders = client.futures_orders(TODAY, TODAY)
    sold, bought = orders[0].avg_fill_price, orders[1].avg_fill_price
    balance = client.futures_balance()
    assert balance.positions == []
    fees = (sold + bought) * 2 * 250_000 * FUTURES_FEE_RATE
    assert balance.summary.cash == pytest.approx(100_000_000 + (sold - bought) * 2 * 250_000 - fees, abs=2)


def test_large_orders_fill_partially_over_several_bars(client: KisClient, admin: Any) -> None:
    bar_volume = int(mg.minute_frame("005930", "stock", 7, TODAY)["volume"].iloc[61])
    qty = int(bar_volume * 0.25)  # 2.5x what one bar allows (10% participation)
    client.stock_order("005930", "buy", qty)
    admin.clock(datetime(2025, 6, 10, 10, 1, 30))
    first = client.stock_orders(TODAY, TODAY)[0]
    assert 0 < first.filled_qty < qty
    admin.clock(datetime(2025, 6, 10, 10, 30))
    assert client.stock_orders(TODAY, TODAY)[0].filled_qty == qty


def test_buyable_amount_and_futures_orderable_reflect_cash(client: KisClient) -> None:
    buyable = client.stock_buyable("005930")
    price = client.stock_price("005930").price
    assert buyable.max_qty == int(100_000_000 // (price * (1 + STOCK_FEE_RATE)))
    orderable = client.futures_orderable("101W06", "buy")
    assert orderable.new_qty == int(100_000_000 // (orderable.base_price * 250_000 * FUTURES_MARGIN_RATE))


def test_balance_with_inqr_dvsn_02_is_a_configuration_error(client: KisClient) -> None:
    with pytest.raises(KisConfigurationError) as info:
        client.get("stock_balance", {"CANO": "73310045", "ACNT_PRDT_CD": "01", "INQR_DVSN": "02"})
    assert info.value.msg_cd == "OPSQ2001"
