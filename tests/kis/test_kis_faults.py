"""Fault handling over real HTTP: token throttling and expiry, rate limits, 5xx, timeouts, malformed
bodies, dropped and lost responses, SYDB0050 pagination restarts. Each test also checks on the wire
(``Wire``) that its fault really reached the client, and that the simulator's ``*_next`` knob was used up."""

from __future__ import annotations

import multiprocessing as mp
import time
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import SecretStr

from pipeline.kis import (
    KisClient,
    KisConfig,
    KisRateLimitedError,
    KisTemporaryError,
    KisUncertainOrderError,
)
from pipeline.kis.endpoints import ENDPOINTS, TOKEN_PATH
from pipeline.kis.simulator import auth as gateway
from pipeline.kis.simulator.server import SimServer
from tests.kis.conftest import APP_KEY, APP_SECRET, RawKis, Wire

TODAY = date(2025, 6, 10)
PRICE = ENDPOINTS["stock_price"].path
ORDER = ENDPOINTS["stock_buy"].path
ORDERS = ENDPOINTS["stock_orders"].path


@pytest.fixture
def wire() -> Iterator[Wire]:
    """A fresh wire log (pass it to ``make_client(transport=wire)``)."""
    log = Wire()
    yield log
    log.close()


def _gateway_clock_ahead(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """Move the simulator gateway's wall clock (token expiry and issuance interval) ``seconds`` ahead."""
    real = time.time
    ahead = SimpleNamespace(time=lambda: real() + seconds, monotonic=time.monotonic)
    monkeypatch.setattr(gateway, "time", ahead)


def test_token_throttle_egw00133_is_waited_out_not_hammered(
    make_client: Callable[..., KisClient], admin: Any, tmp_path: Any, wire: Wire
) -> None:
    admin.auth(token_interval_s=0.5)
    make_client(token_cache=tmp_path / "a.json").tokens.get()
    # A second machine with its own cache asks within the minute: 403 EGW00133, it must wait and retry.
    second = make_client(token_cache=tmp_path / "b.json", token_min_interval_s=0.5, transport=wire)
    assert second.stock_price("005930").price > 0
    # Refused once, then asked again only after the whole interval: hammering would be refused again.
    assert wire.outcomes(TOKEN_PATH) == ["EGW00133", "ok"]
    assert admin.tokens_issued == 1  # KIS hands back the same token within 6 h (spec §2)


def _quote_in_a_process(base_url: str, cache: str, start: Any) -> None:
    """A separate process with its own client: waits for the others, then makes one authorised call."""
    config = KisConfig(
        base_url=base_url,
        app_key=SecretStr(APP_KEY),
        app_secret=SecretStr(APP_SECRET),
        token_cache=Path(cache),
        rate_limit=1000.0,
        token_min_interval_s=0.25,  # as make_client: a refused process retries soon, so a miss is quick
    )
    with KisClient(config) as client:
        start.wait(timeout=60)
        assert client.stock_price("005930").price > 0


@pytest.mark.integration
def test_one_token_is_shared_by_many_processes_through_the_cache_file(
    sim: SimServer, admin: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    requests: list[str] = []  # one entry per token request the server received (no secrets kept)
    issue = sim.state.gateway.issue

    def counted(body: object) -> dict[str, Any]:
        requests.append(TOKEN_PATH)
        return issue(body)

    monkeypatch.setattr(sim.state.gateway, "issue", counted)
    ctx = mp.get_context("spawn")  # fresh interpreters: nothing shared but the cache file
    start = ctx.Barrier(4)
    args = (sim.base_url, str(tmp_path / "kis_token.json"), start)
    procs = [ctx.Process(target=_quote_in_a_process, args=args) for _ in range(4)]
    for proc in procs:
        proc.start()
    try:
        for proc in procs:
            proc.join(timeout=60)
    finally:
        for proc in procs:
            if proc.is_alive():  # only our own children, by handle
                proc.terminate()
    assert [proc.exitcode for proc in procs] == [0] * 4
    assert len(requests) == 1  # one process asked; the others found its token in the file
    assert admin.tokens_issued == 1


def test_token_expiring_mid_run_is_reissued_once_and_the_call_retried(
    make_client: Callable[..., KisClient], admin: Any, wire: Wire, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin.auth(token_ttl_s=60.0, token_interval_s=0.1)
    client = make_client(token_refresh_margin_s=0.0, token_min_interval_s=0.1, transport=wire)
    client.stock_price("005930")
    # The server's clock runs a minute ahead of the client's (drift): it calls the token expired while
    # the client still believes it has most of a minute left.
    _gateway_clock_ahead(monkeypatch, 61.0)
    assert client.stock_price("005930").price > 0
    assert wire.outcomes(PRICE) == ["ok", "EGW00123", "ok"]
    assert wire.outcomes(TOKEN_PATH) == ["ok", "ok"]
    assert admin.tokens_issued == 2


def test_rate_limit_storm_is_retried_with_backoff(
    make_client: Callable[..., KisClient], admin: Any, wire: Wire
) -> None:
    client = make_client(transport=wire)
    admin.faults(storm_next=3)
    assert client.stock_price("005930").price > 0
    assert wire.outcomes(PRICE) == ["EGW00201", "EGW00201", "EGW00201", "ok"]
    assert admin.pending()["storm_next"] == 0


def test_endless_storm_surfaces_as_rate_limited(
    make_client: Callable[..., KisClient], admin: Any, wire: Wire
) -> None:
    admin.faults(storm_rate=1.0)
    with pytest.raises(KisRateLimitedError) as info:
        make_client(read_retries=2, transport=wire).stock_price("005930")
    assert info.value.msg_cd == "EGW00201"
    assert wire.outcomes(PRICE) == ["EGW00201"] * 3  # the first try and both retries


def test_client_paces_itself_under_the_servers_per_key_limit(
    make_client: Callable[..., KisClient],
    admin: Any,
    sim: SimServer,
    wire: Wire,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    admin.auth(rate_limit=10)
    # 9/s against the server's 10/s: pacing at exactly the limit lets receive-time jitter on a busy
    # machine put an 11th call inside the server's second; unpaced, 21 calls arrive within one second.
    client = make_client(rate_limit=9, read_retries=0, transport=wire)
    for _ in range(21):
        client.stock_price("005930")  # read_retries=0: one EGW00201 would raise
    assert wire.outcomes(PRICE) == ["ok"] * 21
    # The same key unpaced, straight after, with the gateway's clock stopped so the whole burst falls in
    # one second however slowly this machine sends it: the server refuses every call past the 10th.
    stopped = time.monotonic() + 10.0
    monkeypatch.setattr(gateway, "time", SimpleNamespace(time=time.time, monotonic=lambda: stopped))
    raw = RawKis(sim.base_url)
    burst = [raw.get(PRICE, "FHKST01010100", {"FID_INPUT_ISCD": "005930"}) for _ in range(15)]
    assert [r.json()["msg_cd"] == "EGW00201" for r in burst] == [False] * 10 + [True] * 5


def test_http_500_with_envelope_is_retried_for_reads(
    make_client: Callable[..., KisClient], admin: Any, wire: Wire
) -> None:
    client = make_client(transport=wire)
    admin.faults(error_next=2)
    assert client.stock_price("005930").price > 0
    assert wire.outcomes(PRICE) == ["EGW00002", "EGW00002", "ok"]


def test_http_500_with_envelope_on_an_order_is_not_resent(
    make_client: Callable[..., KisClient], admin: Any, wire: Wire
) -> None:
    client = make_client(transport=wire)
    client.stock_price("005930")
    admin.faults(error_next=1)
    with pytest.raises(KisTemporaryError) as info:
        client.stock_order("005930", "buy", 1)
    assert info.value.msg_cd == "EGW00002" and not isinstance(info.value, KisUncertainOrderError)
    assert wire.outcomes(ORDER) == ["EGW00002"]  # sent once
    assert client.stock_orders(TODAY, TODAY) == []


def test_read_timeout_is_retried(make_client: Callable[..., KisClient], admin: Any, wire: Wire) -> None:
    client = make_client(timeout_s=0.3, transport=wire)
    client.stock_price("005930")
    admin.faults(timeout_next=1, timeout_s=0.6)
    assert client.stock_price("005930").price > 0
    assert wire.outcomes(PRICE) == ["ok", "ReadTimeout", "ok"]
    assert admin.pending()["timeout_next"] == 0


def test_the_latency_fault_delays_every_answer_and_a_shorter_timeout_gives_up_after_its_retries(
    make_client: Callable[..., KisClient], admin: Any, wire: Wire
) -> None:
    patient = make_client()
    patient.stock_price("005930")  # token issued before the fault: only the quote is delayed
    admin.faults(latency_ms=400)
    started = time.monotonic()
    assert patient.stock_price("005930").price > 0
    assert time.monotonic() - started >= 0.4  # every /uapi answer waits the configured latency
    hasty = make_client(timeout_s=0.1, read_retries=1, transport=wire)
    hasty.tokens.get()  # the token endpoint is not delayed
    with pytest.raises(KisTemporaryError, match="ReadTimeout after retries"):
        hasty.stock_price("005930")
    assert wire.outcomes(PRICE) == ["ReadTimeout", "ReadTimeout"]  # the first try and its one retry
    admin.faults()  # cleared: answers come at once again
    assert hasty.stock_price("005930").price > 0


def test_malformed_body_gives_a_clear_error_and_the_client_keeps_working(
    make_client: Callable[..., KisClient], admin: Any, wire: Wire
) -> None:
    client = make_client(read_retries=1, transport=wire)
    client.stock_price("005930")
    admin.faults(malformed_next=2)
    with pytest.raises(KisTemporaryError, match="malformed body"):
        client.stock_price("005930")
    assert client.stock_price("005930").price > 0
    assert wire.outcomes(PRICE) == ["ok", "malformed", "malformed", "ok"]


def test_dropped_connection_on_a_read_is_retried(
    make_client: Callable[..., KisClient], admin: Any, wire: Wire
) -> None:
    client = make_client(transport=wire)
    client.stock_price("005930")
    admin.faults(drop_next=1)
    assert client.stock_price("005930").price > 0
    # The connection really was cut mid-answer (the body promised 512 bytes), then the read retried.
    assert wire.outcomes(PRICE) == ["ok", "RemoteProtocolError", "ok"]
    assert admin.pending()["drop_next"] == 0


def test_lost_order_response_is_uncertain_and_never_resent(
    make_client: Callable[..., KisClient], admin: Any, wire: Wire
) -> None:
    client = make_client(transport=wire)
    client.stock_price("005930")
    admin.faults(lose_order_next=1)
    with pytest.raises(KisUncertainOrderError, match="query fills"):
        client.stock_order("005930", "buy", 1)
    assert wire.outcomes(ORDER) == ["RemoteProtocolError"]  # sent once, its answer cut
    orders = client.stock_orders(TODAY, TODAY)
    assert len(orders) == 1 and orders[0].qty == 1  # executed exactly once


def test_order_timeout_is_uncertain(make_client: Callable[..., KisClient], admin: Any, wire: Wire) -> None:
    client = make_client(timeout_s=0.3, transport=wire)
    client.stock_price("005930")
    admin.faults(timeout_next=1, timeout_s=0.6)
    with pytest.raises(KisUncertainOrderError):
        client.stock_order("005930", "buy", 1)
    assert wire.outcomes(ORDER) == ["ReadTimeout"]
    # The simulator books an order before it delays the answer: the order is there, exactly once.
    assert len(client.stock_orders(TODAY, TODAY)) == 1


def test_sydb0050_restarts_pagination_from_page_one(
    make_client: Callable[..., KisClient], admin: Any, wire: Wire
) -> None:
    paper = make_client(env="vts", transport=wire)
    numbers = [paper.stock_order("005930", "buy", 1, price=20_000).order_no for _ in range(18)]
    admin.faults(sydb_next=1)
    assert [r.order_no for r in paper.stock_orders(TODAY, TODAY)] == numbers
    pages = [(tr_cont, outcome) for path, tr_cont, outcome in wire.seen if path == ORDERS]
    # Page one, then a continuation page answered SYDB0050, then page one again and the rest.
    assert pages[:3] == [("", "ok"), ("N", "SYDB0050"), ("", "ok")]
    assert [outcome for _, outcome in pages].count("SYDB0050") == 1


def test_invalid_cached_token_egw00121_is_replaced(
    make_client: Callable[..., KisClient], sim: SimServer, wire: Wire
) -> None:
    client = make_client(transport=wire)
    key = client.config.key_fingerprint
    client.tokens._cache.write({key: {"access_token": "stale", "expires_at": time.time() + 86_400}})
    assert client.stock_price("005930").price > 0
    assert wire.outcomes(PRICE) == ["EGW00121", "ok"]
    assert client.tokens._cache.read()[key]["access_token"] != "stale"
