"""Real-KIS quirks the simulator does not produce, replayed from fixture envelopes built from the spec's
field names (httpx MockTransport, no network)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from pipeline.kis import (
    KisClient,
    KisConfig,
    KisConfigurationError,
    KisRejectedError,
    KisTemporaryError,
    KisUncertainOrderError,
)
from pipeline.market import KST

Responder = Callable[[httpx.Request], httpx.Response]
TOKEN_OK = {
    "access_token": "tok-1",
    "token_type": "Bearer",
    "expires_in": 86400,
    "access_token_token_expired": "2099-01-01 09:00:00",
}


def _client(tmp_path: Path, handler: Responder, **overrides: Any) -> KisClient:
    def route(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth2/tokenP":
            return httpx.Response(200, json=TOKEN_OK)
        return handler(request)

    values: dict[str, Any] = {
        "env": "real",
        "base_url": "https://openapi.example",
        "app_key": SecretStr("k" * 36),
        "app_secret": SecretStr("s" * 180),
        "account_no": SecretStr("12345678"),
        "token_cache": tmp_path / "tok.json",
        "backoff_max_s": 0.01,
        **overrides,
    }
    return KisClient(KisConfig(**values), transport=httpx.MockTransport(route))


def _envelope(status: int = 200, tr_cont: str = "D", **body: Any) -> httpx.Response:
    return httpx.Response(
        status,
        content=json.dumps(body, ensure_ascii=False).encode(),
        headers={"content-type": "application/json; charset=utf-8", "tr_cont": tr_cont},
    )


def test_expiry_comes_from_access_token_token_expired_not_expires_in(tmp_path: Path) -> None:
    client = _client(tmp_path, lambda r: _envelope(rt_cd="0", output={"stck_prpr": "1"}))
    client.stock_price("005930")
    cached = json.loads((tmp_path / "tok.json").read_text())
    entry = next(iter(cached.values()))
    assert entry["expires_at"] == datetime(2099, 1, 1, 9, 0, tzinfo=KST).timestamp()
    assert (tmp_path / "tok.json").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    ("msg_cd", "msg1"),
    [
        ("EGW02004", "실전투자 도메인은 모의투자 앱키로 호출하실 수 없습니다"),
        ("MCA00124", "해당 서비스를 찾을수 없습니다"),
        ("OPSP0000", "모의투자 TR 이 아닙니다"),
    ],
)
def test_wrong_domain_or_tr_is_a_configuration_error_not_retried(
    tmp_path: Path, msg_cd: str, msg1: str
) -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        return _envelope(500, rt_cd="1", msg_cd=msg_cd, msg1=msg1)

    with pytest.raises(KisConfigurationError) as info:
        _client(tmp_path, handler).stock_price("005930")
    assert len(calls) == 1 and info.value.msg_cd == msg_cd


def test_padded_strings_and_empty_numbers_parse(tmp_path: Path) -> None:
    output = {
        "stck_prpr": " 71,500 ",
        "prdy_ctrt": "-0.42",
        "acml_vol": "",
        "stck_mxpr": "92900",
        "aspr_unit": "100",
        "temp_stop_yn": "N",
    }
    quote = _client(
        tmp_path, lambda r: _envelope(rt_cd="0", msg1="정상처리 되었습니다.   ", output=output)
    ).stock_price("005930")
    assert (quote.price, quote.change_pct, quote.volume, quote.upper_limit) == (71_500, -0.42, 0, 92_900)


def test_ambiguous_apbk0919_keeps_msg1_for_the_caller(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return _envelope(rt_cd="1", msg_cd="APBK0919", msg1="주문가능금액을 초과 했습니다   ")

    with pytest.raises(KisRejectedError) as info:
        _client(tmp_path, handler).stock_order("005930", "buy", 1)
    assert info.value.msg1 == "주문가능금액을 초과 했습니다"


def test_real_pages_marked_f_then_m_then_e_are_all_read(tmp_path: Path) -> None:
    pages = {"": ("F", "a"), "a": ("M", "b"), "b": ("E", "")}
    seen: list[tuple[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        nk = request.url.params.get("CTX_AREA_NK100", "")
        seen.append((request.headers["tr_cont"], request.url.params["INQR_DVSN"]))
        tr_cont, next_nk = pages[nk]
        row = {"pdno": f"00593{len(seen)}", "hldg_qty": "1"}
        return _envelope(
            tr_cont=tr_cont,
            rt_cd="0",
            output1=[row, {"pdno": ""}],
            ctx_area_fk100="x",
            ctx_area_nk100=next_nk + "   ",
            output2=[{"dnca_tot_amt": "1000"}],
        )

    balance = _client(tmp_path, handler).stock_balance()
    assert [h.symbol for h in balance.holdings] == ["005931", "005932", "005933"]
    assert balance.summary.cash == 1000
    assert seen == [("", "01"), ("N", "01"), ("N", "01")]  # INQR_DVSN=02 is rejected since 2026-02


def test_chart_filler_rows_are_ignored(tmp_path: Path) -> None:
    rows = [
        {
            "stck_bsop_date": "20250610",
            "stck_oprc": "1",
            "stck_hgpr": "2",
            "stck_lwpr": "1",
            "stck_clpr": "2",
            "acml_vol": "5",
        },
        {"stck_bsop_date": "", "stck_oprc": ""},
    ]
    frame = _client(tmp_path, lambda r: _envelope(rt_cd="0", output2=rows)).fetch_daily_bars(
        "005930", date(2025, 6, 10), date(2025, 6, 10)
    )
    assert len(frame) == 1 and frame["close"].iloc[0] == 2


def test_real_env_needs_explicit_opt_in(tmp_path: Path) -> None:
    from pipeline.config import Settings

    settings = Settings(
        kis_env="real", kis_app_key="k" * 36, kis_app_secret="s" * 180, kis_account_no="12345678"
    )
    with pytest.raises(KisConfigurationError, match="KRX_KIS_ALLOW_REAL"):
        KisClient.from_settings(settings)


def test_orders_carry_the_hashkey_of_their_exact_body(tmp_path: Path) -> None:
    hashed: list[bytes] = []
    orders: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/uapi/hashkey":
            assert request.headers["appkey"] == "k" * 36 and "authorization" not in request.headers
            hashed.append(request.content)
            return httpx.Response(200, json={"JsonBody": json.loads(request.content), "HASH": "h" * 64})
        orders.append(request)
        return _envelope(rt_cd="0", output={"KRX_FWDG_ORD_ORGNO": "00950", "ODNO": "1", "ORD_TMD": "100000"})

    client = _client(tmp_path, handler)
    client.stock_order("005930", "buy", 3)
    client.futures_cancel("00950", "1")
    assert [o.headers["hashkey"] for o in orders] == ["h" * 64, "h" * 64]
    assert hashed == [o.content for o in orders]  # the hash covers the very bytes sent


def test_a_hashkey_that_cannot_be_fetched_means_the_order_was_not_sent(tmp_path: Path) -> None:
    sent: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/uapi/hashkey":
            raise httpx.ReadTimeout("no answer", request=request)
        sent.append(request.url.path)
        return _envelope(rt_cd="0", output={"ODNO": "1"})

    with pytest.raises(KisTemporaryError, match="not sent") as info:
        _client(tmp_path, handler).stock_order("005930", "buy", 1)
    assert not isinstance(info.value, KisUncertainOrderError) and sent == []
