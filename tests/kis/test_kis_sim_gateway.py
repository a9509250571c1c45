"""The simulator's gateway behaves like KIS's: only configured app keys with their own secret get in, each
key's environment (real or paper) has KIS's rate limit and its own book, hashkeys, minute-bar retention."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from pipeline.kis import KisClient
from pipeline.kis.simulator.server import SimServer
from pipeline.kis.simulator.simconfig import SimConfig
from tests.kis.conftest import (
    ACCOUNT,
    APP_KEY,
    APP_SECRET,
    FUTURES_PATH,
    PAPER_KEY,
    PAPER_SECRET,
    SESSION,
    STOCK_PATH,
    RawKis,
    stock_order_body,
)

QUOTE = (f"{STOCK_PATH}/quotations/inquire-price", "FHKST01010100", {"FID_INPUT_ISCD": "005930"})
HASHKEY = "/uapi/hashkey"


def _token_answer(base: str, key: str, secret: str) -> httpx.Response:
    body = {"grant_type": "client_credentials", "appkey": key, "appsecret": secret}
    return httpx.post(f"{base}/oauth2/tokenP", json=body)


def test_an_unknown_app_key_gets_no_token(sim: SimServer) -> None:
    resp = _token_answer(sim.base_url, "PSunknown" + "0" * 27, APP_SECRET)
    assert resp.status_code == 403 and resp.json()["error_code"] == "EGW00103"


def test_a_known_app_key_with_the_wrong_secret_gets_no_token(sim: SimServer) -> None:
    resp = _token_answer(sim.base_url, APP_KEY, PAPER_SECRET)
    assert resp.status_code == 403 and resp.json()["error_code"] == "EGW00105"


def test_a_valid_token_is_refused_when_the_call_carries_the_wrong_secret(raw: RawKis) -> None:
    headers = {**raw.headers("FHKST01010100"), "appsecret": "not-the-secret"}
    resp = httpx.get(f"{raw.base_url}{QUOTE[0]}", params=QUOTE[2], headers=headers)
    assert resp.status_code == 403 and resp.json()["msg_cd"] == "EGW00105"


def test_the_default_settings_connect_to_a_default_simulator(tmp_path: Path) -> None:
    cfg = SimConfig(db_path=tmp_path / "sim.db", clock_start=SESSION, token_interval_s=0)
    with SimServer(cfg) as sim, KisClient.from_settings(base_url=sim.base_url) as client:
        assert client.stock_price("005930").price > 0  # the demo's path: no keys configured anywhere


def _burst(raw: RawKis, calls: int, threads: int) -> list[httpx.Response]:
    raw.token()
    answers: list[httpx.Response] = []
    lock = threading.Lock()

    def run() -> None:
        with httpx.Client() as http:
            for _ in range(calls // threads):
                resp = http.get(f"{raw.base_url}{QUOTE[0]}", params=QUOTE[2], headers=raw.headers(QUOTE[1]))
                with lock:
                    answers.append(resp)

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return answers


def test_by_default_a_real_key_gets_20_calls_a_second_and_a_paper_key_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline.kis.config import SIM_APP_KEY, SIM_APP_SECRET, SIM_PAPER_APP_KEY, SIM_PAPER_APP_SECRET
    from pipeline.kis.simulator import auth

    # The gateway's rate window reads a monotonic clock: stopped, every call of a burst falls in one
    # second however slowly this machine sends them.
    monkeypatch.setattr(auth, "time", SimpleNamespace(time=time.time, monotonic=lambda: 1_000.0))
    cfg = SimConfig(db_path=tmp_path / "sim.db", clock_start=SESSION, token_interval_s=0)
    with SimServer(cfg) as sim:
        real = _burst(RawKis(sim.base_url, SIM_APP_KEY, SIM_APP_SECRET), 40, 8)
        paper = _burst(RawKis(sim.base_url, SIM_PAPER_APP_KEY, SIM_PAPER_APP_SECRET), 5, 1)
    refused = [r for r in real + paper if r.status_code != 200]
    assert refused and all(
        r.status_code == 500
        and r.json() == {"rt_cd": "1", "msg_cd": "EGW00201", "msg1": "초당 거래건수를 초과하였습니다."}
        for r in refused
    )
    assert sum(r.status_code == 200 for r in real) == 20
    assert [r.status_code for r in paper] == [200, 200, 500, 500, 500]


def test_paper_and_real_orders_are_kept_in_separate_books(sim: SimServer) -> None:
    real, paper = RawKis(sim.base_url), RawKis(sim.base_url, PAPER_KEY, PAPER_SECRET)
    placed = real.post(f"{STOCK_PATH}/trading/order-cash", "TTTC0012U", stock_order_body("5"))
    assert placed.json()["rt_cd"] == "0", placed.text
    assert paper.stock_orders("VTTC0081R") == []
    paper_order = paper.post(f"{STOCK_PATH}/trading/order-cash", "VTTC0012U", stock_order_body("2"))
    assert paper_order.json()["rt_cd"] == "0", paper_order.text
    assert [o["ord_qty"] for o in real.stock_orders()] == ["5"]
    assert [o["ord_qty"] for o in paper.stock_orders("VTTC0081R")] == ["2"]


@pytest.mark.parametrize(
    ("key", "secret", "tr_id"),
    [(PAPER_KEY, PAPER_SECRET, "TTTC8434R"), (APP_KEY, APP_SECRET, "VTTC8434R")],
    ids=["paper-key-real-tr", "real-key-paper-tr"],
)
def test_a_key_cannot_trade_in_the_other_environment(
    sim: SimServer, key: str, secret: str, tr_id: str
) -> None:
    params = {"CANO": ACCOUNT, "ACNT_PRDT_CD": "01", "INQR_DVSN": "01"}
    resp = RawKis(sim.base_url, key, secret).get(f"{STOCK_PATH}/trading/inquire-balance", tr_id, params)
    assert resp.status_code == 500 and resp.json()["msg_cd"] == "EGW02004"


def _hashkey(raw: RawKis, body: Any, secret: str | None = None) -> httpx.Response:
    headers = {
        "appkey": raw.app_key,
        "appsecret": secret or raw.app_secret,
        "content-type": "application/json",
    }
    return httpx.post(f"{raw.base_url}{HASHKEY}", json=body, headers=headers)


def test_hashkey_hashes_the_exact_order_body(raw: RawKis) -> None:
    body = stock_order_body("3")
    first, again, other = _hashkey(raw, body), _hashkey(raw, body), _hashkey(raw, stock_order_body("4"))
    assert first.status_code == 200 and first.json()["JsonBody"] == body
    assert first.json()["HASH"] == again.json()["HASH"] != other.json()["HASH"]
    assert _hashkey(raw, body, secret="wrong").json()["msg_cd"] == "EGW00105"


def test_an_order_whose_hashkey_does_not_match_its_body_is_refused(raw: RawKis) -> None:
    hashed = _hashkey(raw, stock_order_body("3")).json()["HASH"]
    path = f"{raw.base_url}{STOCK_PATH}/trading/order-cash"
    headers = {**raw.headers("TTTC0012U"), "content-type": "application/json"}
    tampered = httpx.post(path, json=stock_order_body("300"), headers={**headers, "hashkey": hashed})
    assert tampered.json()["rt_cd"] != "0" and tampered.json()["msg_cd"] == "OPSQ2001"
    honest = httpx.post(path, json=stock_order_body("3"), headers={**headers, "hashkey": hashed})
    assert honest.json()["rt_cd"] == "0", honest.text
    assert [o["ord_qty"] for o in raw.stock_orders()] == ["3"]


def test_hashkey_calls_count_against_the_rate_limit(tmp_path: Path) -> None:
    cfg = SimConfig(db_path=tmp_path / "sim.db", clock_start=SESSION, token_interval_s=0)
    from pipeline.kis.config import SIM_PAPER_APP_KEY, SIM_PAPER_APP_SECRET

    with SimServer(cfg) as sim:
        raw = RawKis(sim.base_url, SIM_PAPER_APP_KEY, SIM_PAPER_APP_SECRET)
        raw.token()
        answers = [_hashkey(raw, stock_order_body()) for _ in range(2)]
        answers.append(raw.get(*QUOTE))
    assert [r.status_code for r in answers] == [200, 200, 500]
    assert answers[-1].json()["msg_cd"] == "EGW00201"


def test_minute_bars_older_than_about_a_year_are_not_served(client: KisClient) -> None:
    assert len(client.fetch_minute_bars("005930", date(2024, 7, 10))) == 390  # 11 months back
    assert client.fetch_minute_bars("005930", date(2024, 5, 10)).empty  # 13 months back
    assert client.fetch_minute_bars("101W06", date(2024, 5, 10)).empty


def test_futures_minute_paging_stops_at_the_retention_horizon(raw: RawKis) -> None:
    params = {
        "FID_COND_MRKT_DIV_CODE": "F",
        "FID_INPUT_ISCD": "101W06",
        "FID_HOUR_CLS_CODE": "60",
        "FID_PW_DATA_INCU_YN": "Y",
        "FID_INPUT_DATE_1": "20240610",  # the oldest retained day: 2025-06-10 minus 365 days
        "FID_INPUT_HOUR_1": "090000",
    }
    resp = raw.get(f"{FUTURES_PATH}/quotations/inquire-time-fuopchartprice", "FHKIF03020200", params)
    rows = resp.json()["output2"]
    assert rows and {r["stck_bsop_date"] for r in rows} == {"20240610"}  # nothing from the Friday before


def test_market_hours_come_from_the_market_facts(make_client: Callable[..., KisClient], admin: Any) -> None:
    admin.clock(datetime(2025, 6, 12, 15, 25))  # 2025-06-12: the June contract's last trading day
    from pipeline.kis import KisRejectedError

    with pytest.raises(KisRejectedError):
        make_client().futures_order("101W06", "buy", 1)  # closed at 15:20 on expiry day
