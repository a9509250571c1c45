"""Fault handling over real HTTP: token throttling and expiry, rate limits, 5xx, timeouts, malformed
bodies, dropped and lost responses, SYDB0050 pagination restarts."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import date
from typing import Any

import pytest

from pipeline.kis import KisClient, KisRateLimitedError, KisTemporaryError, KisUncertainOrderError
from pipeline.kis.simulator.server import SimServer

TODAY = date(2025, 6, 10)


def test_token_throttle_egw00133_is_waited_out_not_hammered(
    make_client: Callable[..., KisClient], admin: Any, tmp_path: Any
) -> None:
    admin.auth(token_interval_s=1.0)
    first = make_client(token_cache=tmp_path / "a.json")
    first.stock_price("005930")
    # A second machine with its own cache asks within the minute: 403 EGW00133, it must wait and retry.
    second = make_client(token_cache=tmp_path / "b.json", token_min_interval_s=0.6)
    started = time.monotonic()
    assert second.stock_price("005930").price > 0
    assert 0.6 <= time.monotonic() - started < 5  # waited after EGW00133 instead of retrying at once
    assert admin.tokens_issued == 1  # KIS hands back the same token within 6 h (spec §2)


def test_one_token_is_shared_by_many_clients_through_the_cache_file(
    make_client: Callable[..., KisClient], admin: Any
) -> None:
    clients = [make_client() for _ in range(6)]
    threads = [threading.Thread(target=c.stock_price, args=("005930",)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert admin.tokens_issued == 1


def test_token_expiring_mid_run_is_reissued_once_and_the_call_retried(
    make_client: Callable[..., KisClient], admin: Any
) -> None:
    admin.auth(token_ttl_s=1.0, token_interval_s=0.1)
    client = make_client(token_refresh_margin_s=0.0, token_min_interval_s=0.1)
    client.stock_price("005930")
    # The client believes its token still has a day left (clock drift): the server says EGW00123.
    client.tokens._token = type(client.tokens._token)(client.tokens._token.value, time.time() + 86_400)  # type: ignore[union-attr,arg-type]
    time.sleep(1.1)
    assert client.stock_price("005930").price > 0
    assert admin.tokens_issued == 2


def test_rate_limit_storm_is_retried_with_backoff(client: KisClient, admin: Any) -> None:
    admin.faults(storm_next=3)
    assert client.stock_price("005930").price > 0


def test_endless_storm_surfaces_as_rate_limited(make_client: Callable[..., KisClient], admin: Any) -> None:
    admin.faults(storm_rate=1.0)
    with pytest.raises(KisRateLimitedError) as info:
        make_client(read_retries=2).stock_price("005930")
    assert info.value.msg_cd == "EGW00201"


def test_client_paces_itself_under_the_servers_per_key_limit(
    make_client: Callable[..., KisClient], admin: Any
) -> None:
    admin.auth(rate_limit=10)
    client = make_client(rate_limit=10, read_retries=0)
    client.stock_price("005930")  # token + first call
    started = time.monotonic()
    for _ in range(20):
        client.stock_price("005930")  # never EGW00201: read_retries=0 would raise it
    assert time.monotonic() - started >= 0.9


def test_http_500_with_envelope_is_retried_for_reads(client: KisClient, admin: Any) -> None:
    admin.faults(error_next=2)
    assert client.stock_price("005930").price > 0


def test_http_500_with_envelope_on_an_order_is_not_resent(client: KisClient, admin: Any) -> None:
    client.stock_price("005930")
    admin.faults(error_next=1)
    with pytest.raises(KisTemporaryError) as info:
        client.stock_order("005930", "buy", 1)
    assert info.value.msg_cd == "EGW00002" and not isinstance(info.value, KisUncertainOrderError)
    assert client.stock_orders(TODAY, TODAY) == []


def test_read_timeout_is_retried(make_client: Callable[..., KisClient], admin: Any) -> None:
    client = make_client(timeout_s=0.3)
    client.stock_price("005930")
    admin.faults(timeout_next=1, timeout_s=0.6)
    assert client.stock_price("005930").price > 0


def test_malformed_body_gives_a_clear_error_and_the_client_keeps_working(
    make_client: Callable[..., KisClient], admin: Any
) -> None:
    client = make_client(read_retries=1)
    client.stock_price("005930")
    admin.faults(malformed_next=2)
    with pytest.raises(KisTemporaryError, match="malformed body"):
        client.stock_price("005930")
    assert client.stock_price("005930").price > 0


def test_dropped_connection_on_a_read_is_retried(client: KisClient, admin: Any) -> None:
    client.stock_price("005930")
    admin.faults(drop_next=1)
    assert client.stock_price("005930").price > 0


def test_lost_order_response_is_uncertain_and_never_resent(client: KisClient, admin: Any) -> None:
    client.stock_price("005930")
    admin.faults(lose_order_next=1)
    with pytest.raises(KisUncertainOrderError, match="query fills"):
        client.stock_order("005930", "buy", 1)
    orders = client.stock_orders(TODAY, TODAY)
    assert len(orders) == 1 and orders[0].qty == 1  # executed exactly once


def test_order_timeout_is_uncertain(make_client: Callable[..., KisClient], admin: Any) -> None:
    client = make_client(timeout_s=0.3)
    client.stock_price("005930")
    admin.faults(timeout_next=1, timeout_s=0.6)
    with pytest.raises(KisUncertainOrderError):
        client.stock_order("005930", "buy", 1)
    time.sleep(0.4)  # the server finishes the delayed order
    assert len(client.stock_orders(TODAY, TODAY)) == 1


def test_sydb0050_restarts_pagination_from_page_one(
    make_client: Callable[..., KisClient], admin: Any
) -> None:
    paper = make_client(env="vts")
    numbers = [paper.stock_order("005930", "buy", 1, price=20_000).order_no for _ in range(18)]
    admin.faults(sydb_next=1)
    assert [r.order_no for r in paper.stock_orders(TODAY, TODAY)] == numbers


def test_invalid_cached_token_egw00121_is_replaced(
    make_client: Callable[..., KisClient], sim: SimServer
) -> None:
    client = make_client()
    key = client.config.key_fingerprint
    client.tokens._cache.write({key: {"access_token": "stale", "expires_at": time.time() + 86_400}})
    assert client.stock_price("005930").price > 0
    assert client.tokens._cache.read()[key]["access_token"] != "stale"
