"""The simulator charges what KRX charges: the stock sell tax in force on the trading day (none on ETFs)
and the market module's futures margin."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from typing import Any

import pytest

from pipeline.kis import KisClient
from pipeline.kis.simulator.server import SimServer
from pipeline.kis.simulator.simconfig import SimConfig
from pipeline.market import FUTURES_MARGIN_RATE, STOCK_FEE_RATE, sell_tax_rate

DAY_2026 = date(2026, 3, 10)  # a Tuesday session under the 0.20 % tax (0.15 % in 2025)


def _round_trip(client: KisClient, admin: Any, symbol: str) -> float:
    """Buy then sell 10 shares on DAY_2026; returns the cash change."""
    admin.clock(datetime(2026, 3, 10, 10, 0))
    start = client.stock_balance().summary.cash
    client.stock_order(symbol, "buy", 10)
    admin.clock(datetime(2026, 3, 10, 10, 5))
    client.stock_order(symbol, "sell", 10)
    admin.clock(datetime(2026, 3, 10, 10, 10))
    bought, sold = (o.avg_fill_price for o in client.stock_orders(DAY_2026, DAY_2026))
    expected = -bought * 10 * (1 + STOCK_FEE_RATE) + sold * 10 * (1 - STOCK_FEE_RATE - _tax(symbol))
    return client.stock_balance().summary.cash - start - expected


def _tax(symbol: str) -> float:
    from pipeline.market import classify

    return sell_tax_rate(classify(symbol), DAY_2026)


def test_a_stock_sell_pays_the_transaction_tax_in_force_that_day(client: KisClient, admin: Any) -> None:
    assert _tax("005930") == 0.0020
    assert _round_trip(client, admin, "005930") == pytest.approx(0, abs=2)


def test_an_etf_sell_pays_no_transaction_tax(
    sim_config: SimConfig, make_client: Callable[..., KisClient]
) -> None:
    sim_config.stock_symbols = [*sim_config.stock_symbols, "069500"]  # KODEX 200
    with SimServer(sim_config) as sim:
        from tests.kis.conftest import SimAdmin

        assert _tax("069500") == 0.0
        client = make_client(base_url=sim.base_url)
        assert _round_trip(client, SimAdmin(sim), "069500") == pytest.approx(0, abs=2)


def test_futures_margin_is_the_market_modules_rate(client: KisClient, admin: Any) -> None:
    client.futures_order("101W06", "buy", 1)
    admin.clock(datetime(2025, 6, 10, 10, 5))
    balance = client.futures_balance()
    price = balance.positions[0].price
    assert balance.summary.margin_total == pytest.approx(price * 250_000 * FUTURES_MARGIN_RATE, rel=1e-6)
