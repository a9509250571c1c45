"""The simulator rejects what KIS rejects, and every rejection is a KIS envelope (never a bare 500)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from pipeline.kis.simulator.server import SimServer
from tests.kis.conftest import (
    ACCOUNT,
    FUTURES_PATH,
    STOCK_PATH,
    RawKis,
    futures_order_body,
    stock_order_body,
)

BUY, FUTURES_ORDER, FUTURES_ORDERS = "TTTC0012U", "TTTO1101U", "TTTO5201R"


def _kis_failure(resp: httpx.Response) -> dict[str, Any]:
    """The answer is a KIS failure envelope (JSON, rt_cd != 0, a msg_cd), whatever the HTTP status."""
    assert resp.headers["content-type"].startswith("application/json"), (resp.status_code, resp.text[:200])
    body = resp.json()
    assert isinstance(body, dict) and body.get("rt_cd") not in (None, "0") and body.get("msg_cd"), body
    return body


def _futures_orders(raw: RawKis) -> list[dict[str, Any]]:
    params = {"CANO": ACCOUNT, "ACNT_PRDT_CD": "03", "STRT_ORD_DT": "20250610", "END_ORD_DT": "20250610"}
    resp = raw.get(f"{FUTURES_PATH}/trading/inquire-ccnl", FUTURES_ORDERS, params)
    assert resp.json()["rt_cd"] == "0", resp.text
    return list(resp.json()["output1"])


@pytest.mark.parametrize("qty", ["1.5", "1e2", "inf", "nan", "-1", "+3", "", "abc", "１"])
def test_a_quantity_that_is_not_a_whole_number_is_rejected_and_nothing_is_booked(
    raw: RawKis, qty: str
) -> None:
    resp = raw.post(f"{STOCK_PATH}/trading/order-cash", BUY, stock_order_body(qty))
    assert _kis_failure(resp)["msg_cd"] == "OPSQ2001"
    assert raw.stock_orders() == []


@pytest.mark.parametrize("price", ["1e5", "inf", "-70000", "7만"])
def test_a_limit_price_that_is_not_a_plain_number_is_rejected(raw: RawKis, price: str) -> None:
    body = stock_order_body("1", ORD_DVSN="00", ORD_UNPR=price)
    assert _kis_failure(raw.post(f"{STOCK_PATH}/trading/order-cash", BUY, body))["msg_cd"] == "OPSQ2001"
    assert raw.stock_orders() == []


@pytest.mark.parametrize("side", [None, "", "03", "2", "buy"])
def test_a_futures_order_without_a_valid_side_code_is_rejected_not_bought(
    raw: RawKis, side: str | None
) -> None:
    body = futures_order_body()
    if side is None:
        del body["SLL_BUY_DVSN_CD"]
    else:
        body["SLL_BUY_DVSN_CD"] = side
    resp = raw.post(f"{FUTURES_PATH}/trading/order", FUTURES_ORDER, body)
    assert _kis_failure(resp)["msg_cd"] == "OPSQ2001"
    assert _futures_orders(raw) == []


def test_a_futures_order_on_the_stock_product_code_01_is_rejected(raw: RawKis) -> None:
    body = futures_order_body(ACNT_PRDT_CD="01")
    resp = raw.post(f"{FUTURES_PATH}/trading/order", FUTURES_ORDER, body)
    assert _kis_failure(resp)["msg_cd"] == "OPSQ2001"
    assert _futures_orders(raw) == []


def test_a_stock_order_on_the_futures_product_code_03_is_rejected(raw: RawKis) -> None:
    resp = raw.post(f"{STOCK_PATH}/trading/order-cash", BUY, stock_order_body("1", ACNT_PRDT_CD="03"))
    assert _kis_failure(resp)["msg_cd"] == "OPSQ2001"


@pytest.mark.parametrize("code", ["", "03", "1", "cancel"])
def test_an_invalid_revise_cancel_code_is_rejected_and_the_order_stays_live(raw: RawKis, code: str) -> None:
    # A limit buy at the lower price limit rests: the market never trades that low in this session.
    low = raw.get(
        f"{STOCK_PATH}/quotations/inquire-price",
        "FHKST01010100",
        {"FID_COND_MRKT_DIV_CODE": "J", "FID_INPUT_ISCD": "005930"},
    ).json()["output"]["stck_llam"]
    ack = raw.post(
        f"{STOCK_PATH}/trading/order-cash", BUY, stock_order_body("3", ORD_DVSN="00", ORD_UNPR=low)
    ).json()["output"]
    revise = {
        "CANO": ACCOUNT,
        "ACNT_PRDT_CD": "01",
        "KRX_FWDG_ORD_ORGNO": ack["KRX_FWDG_ORD_ORGNO"],
        "ORGN_ODNO": ack["ODNO"],
        "ORD_DVSN": "00",
        "RVSE_CNCL_DVSN_CD": code,
        "ORD_QTY": "1",
        "ORD_UNPR": low,
        "QTY_ALL_ORD_YN": "N",
    }
    resp = raw.post(f"{STOCK_PATH}/trading/order-rvsecncl", "TTTC0013U", revise)
    assert _kis_failure(resp)["msg_cd"] == "OPSQ2001"
    live = [o for o in raw.stock_orders() if o["odno"] == ack["ODNO"]]
    assert [(o["ord_qty"], o["rmn_qty"], o["cncl_yn"]) for o in live] == [("3", "3", "N")]


def test_buyable_amount_of_an_unknown_symbol_is_an_error(raw: RawKis) -> None:
    params = {"CANO": ACCOUNT, "ACNT_PRDT_CD": "01", "PDNO": "999999", "ORD_UNPR": "0", "ORD_DVSN": "01"}
    resp = raw.get(f"{STOCK_PATH}/trading/inquire-psbl-order", "TTTC8908R", params)
    assert _kis_failure(resp)["msg_cd"] == "APBK0656"


def _quote_params(**fields: str) -> dict[str, str]:
    return {"FID_COND_MRKT_DIV_CODE": "J", "FID_INPUT_ISCD": "005930", **fields}


MALFORMED: dict[str, Any] = {
    "infinite-quantity": ("POST", "/trading/order-cash", BUY, stock_order_body("inf")),
    "list-body": ("POST", "/trading/order-cash", BUY, [stock_order_body()]),
    "null-body": ("POST", "/trading/order-cash", BUY, None),
    "string-body": ("POST", "/trading/order-cash", BUY, "ORD_QTY=1"),
    "bad-date": (
        "GET",
        "/quotations/inquire-daily-itemchartprice",
        "FHKST03010100",
        _quote_params(FID_INPUT_DATE_1="2025-06-01", FID_INPUT_DATE_2="20250610"),
    ),
    "impossible-date": (
        "GET",
        "/quotations/inquire-time-dailychartprice",
        "FHKST03010230",
        _quote_params(FID_INPUT_DATE_1="20250231", FID_INPUT_HOUR_1="153000"),
    ),
    "bad-time": (
        "GET",
        "/quotations/inquire-time-itemchartprice",
        "FHKST03010200",
        _quote_params(FID_INPUT_HOUR_1="25:00"),
    ),
    "bad-holiday-date": ("GET", "/quotations/chk-holiday", "CTCA0903R", {"BASS_DT": "tomorrow"}),
    "bad-fills-date": (
        "GET",
        "/trading/inquire-daily-ccld",
        "TTTC0081R",
        {"CANO": ACCOUNT, "ACNT_PRDT_CD": "01", "INQR_STRT_DT": "x", "INQR_END_DT": "20250610"},
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_request_gets_a_kis_envelope_with_opsq2001(raw: RawKis, case: str) -> None:
    method, path, tr_id, payload = MALFORMED[case]
    if method == "GET":
        resp = raw.get(f"{STOCK_PATH}{path}", tr_id, payload)
    else:
        resp = raw.post(f"{STOCK_PATH}{path}", tr_id, payload)
    assert _kis_failure(resp)["msg_cd"] == "OPSQ2001"


@pytest.mark.parametrize("body", [[{"grant_type": "client_credentials"}], None, "appkey", 7])
def test_a_token_request_that_is_not_a_json_object_gets_the_token_error_shape(
    sim: SimServer, body: Any
) -> None:
    resp = httpx.post(f"{sim.base_url}/oauth2/tokenP", content=json.dumps(body))
    assert resp.status_code == 403 and resp.headers["content-type"].startswith("application/json")
    assert resp.json()["error_code"] == "OPSQ2001" and "rt_cd" not in resp.json()


def test_a_body_that_is_not_json_at_all_gets_an_envelope(raw: RawKis) -> None:
    headers = {**raw.headers(BUY), "content-type": "application/json"}
    resp = httpx.post(f"{raw.base_url}{STOCK_PATH}/trading/order-cash", content=b"{oops", headers=headers)
    assert _kis_failure(resp)["msg_cd"] == "OPSQ2001"
