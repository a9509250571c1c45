"""The simulator speaks KIS on the wire (raw HTTP), is deterministic, and keeps its ledger across restarts."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from pipeline.kis import KisClient
from pipeline.kis.simulator import marketgen as mg
from pipeline.kis.simulator.clock import to_kst
from pipeline.kis.simulator.server import SimServer
from pipeline.kis.simulator.simconfig import SimConfig
from pipeline.market import tick_size
from tests.kis.conftest import APP_KEY, APP_SECRET, PAPER_KEY, PAPER_SECRET, RawKis

KEY = {"appkey": APP_KEY, "appsecret": APP_SECRET}


def _token(base: str) -> str:
    body = {"grant_type": "client_credentials", "appkey": KEY["appkey"], "appsecret": KEY["appsecret"]}
    return str(httpx.post(f"{base}/oauth2/tokenP", json=body).json()["access_token"])


def _get(base: str, token: str, path: str, tr_id: str, params: dict[str, str]) -> httpx.Response:
    headers = {**KEY, "authorization": f"Bearer {token}", "tr_id": tr_id, "custtype": "P"}
    return httpx.get(f"{base}{path}", params=params, headers=headers)


def test_same_seed_same_bars_other_seed_other_bars() -> None:
    a = mg.generate_bars("005930", "1m", date(2025, 6, 9), date(2025, 6, 10), seed=11)
    b = mg.generate_bars("005930", "1m", date(2025, 6, 9), date(2025, 6, 10), seed=11)
    c = mg.generate_bars("005930", "1m", date(2025, 6, 9), date(2025, 6, 10), seed=12)
    pd.testing.assert_frame_equal(a, b)
    assert not a["close"].equals(c["close"])
    whole = mg.generate_bars("005930", "1d", date(2020, 1, 1), date(2025, 12, 31), seed=11)
    part = mg.generate_bars("005930", "1d", date(2025, 1, 1), date(2025, 3, 31), seed=11)
    pd.testing.assert_frame_equal(whole[whole["ts"].isin(part["ts"])].reset_index(drop=True), part)


def test_generated_market_respects_ticks_limits_and_switches_regimes() -> None:
    daily = mg.generate_bars("035420", "1d", date(2015, 1, 1), date(2030, 12, 31), seed=3, with_regime=True)
    prev = daily["close"].shift(1).dropna()
    moves = (daily["close"].iloc[1:] / prev - 1).abs()
    assert moves.max() <= 0.30 + 1e-9
    ticks = np.array([tick_size(p, "stock") for p in daily["close"]])
    assert np.allclose(daily["close"] % ticks, 0)
    assert set(daily["regime"]) == {0, 1, 2}
    returns = np.log(daily["close"]).diff().dropna()
    # Volatility clustering: absolute returns are autocorrelated.
    assert returns.abs().autocorr(lag=1) > 0.05


def test_token_throttle_has_kis_shape_and_status(sim: SimServer) -> None:
    _token(sim.base_url)
    body = {"grant_type": "client_credentials", **KEY}
    resp = httpx.post(f"{sim.base_url}/oauth2/tokenP", json=body)
    assert resp.status_code == 403
    assert resp.json()["error_code"] == "EGW00133" and "rt_cd" not in resp.json()


def test_row_limits_headers_and_v_prefixed_tr_ids(sim: SimServer) -> None:
    base, token = sim.base_url, _token(sim.base_url)
    q = "/uapi/domestic-stock/v1/quotations"
    daily = _get(
        base,
        token,
        f"{q}/inquire-daily-itemchartprice",
        "FHKST03010100",
        {"FID_INPUT_ISCD": "005930", "FID_INPUT_DATE_1": "20240101", "FID_INPUT_DATE_2": "20250610"},
    )
    assert len(daily.json()["output2"]) == 100 and daily.headers["gt_uid"]
    today = _get(
        base,
        token,
        f"{q}/inquire-time-itemchartprice",
        "FHKST03010200",
        {"FID_INPUT_ISCD": "005930", "FID_INPUT_HOUR_1": "235959"},
    )
    assert len(today.json()["output2"]) == 30 and today.json()["output2"][0]["stck_cntg_hour"] == "100000"
    past = _get(
        base,
        token,
        f"{q}/inquire-time-dailychartprice",
        "FHKST03010230",
        {"FID_INPUT_ISCD": "005930", "FID_INPUT_DATE_1": "20250609", "FID_INPUT_HOUR_1": "153000"},
    )
    assert len(past.json()["output2"]) == 120
    fut = _get(
        base,
        token,
        "/uapi/domestic-futureoption/v1/quotations/inquire-time-fuopchartprice",
        "FHKIF03020200",
        {"FID_INPUT_ISCD": "101W06", "FID_INPUT_DATE_1": "20250609", "FID_INPUT_HOUR_1": "154500"},
    )
    assert len(fut.json()["output2"]) == 102
    paper = RawKis(base, PAPER_KEY, PAPER_SECRET).get(
        "/uapi/domestic-stock/v1/trading/inquire-balance",
        "VTTC8434R",
        {"CANO": "12345678", "ACNT_PRDT_CD": "01", "INQR_DVSN": "01"},
    )
    assert paper.json()["rt_cd"] == "0" and paper.headers["tr_id"] == "VTTC8434R"
    wrong = _get(base, token, "/uapi/domestic-stock/v1/trading/inquire-balance", "FHKST01010100", {})
    assert wrong.status_code == 500 and wrong.json()["msg_cd"] == "MCA00124"


def test_rate_limit_answers_http_500_with_envelope(sim_config: SimConfig) -> None:
    sim_config.rate_limit = 3
    with SimServer(sim_config) as sim:
        token = _token(sim.base_url)
        codes = [
            _get(
                sim.base_url,
                token,
                "/uapi/domestic-stock/v1/quotations/inquire-price",
                "FHKST01010100",
                {"FID_INPUT_ISCD": "005930"},
            )
            for _ in range(5)
        ]
    assert [r.status_code for r in codes] == [200, 200, 200, 500, 500]
    assert codes[-1].json() == {"rt_cd": "1", "msg_cd": "EGW00201", "msg1": "초당 거래건수를 초과하였습니다."}


def test_ledger_and_tokens_survive_a_restart(sim_config: SimConfig, tmp_path: Path) -> None:
    def connect(sim: SimServer) -> KisClient:
        from pydantic import SecretStr

        from pipeline.kis import KisConfig

        cfg = KisConfig(
            base_url=sim.base_url,
            app_key=SecretStr(APP_KEY),
            app_secret=SecretStr(APP_SECRET),
            account_no=SecretStr("11112222"),
            token_cache=tmp_path / "tok.json",
            token_min_interval_s=0,
        )
        return KisClient(cfg)

    sim_config.clock_start = datetime(2025, 6, 10, 10, 0)
    with SimServer(sim_config) as sim:
        client = connect(sim)
        first = client.stock_order("005930", "buy", 7)
        sim.state.clock.set(datetime(2025, 6, 10, 10, 5))
        before = client.stock_balance()
        issued = sim.state.gateway.issued_count
    sim_config.clock_start = datetime(2025, 6, 10, 10, 5)
    with SimServer(sim_config) as sim:
        client = connect(sim)
        assert client.stock_balance() == before  # same token works, same holdings and cash
        assert sim.state.gateway.issued_count == 0 and issued == 1
        second = client.stock_order("005930", "buy", 1)
    assert int(second.order_no) == int(first.order_no) + 1  # order numbers are never reused


def _wait_for_sim_time(sim: SimServer, moment: datetime, real_seconds: float) -> None:
    """Wait (polling the simulator's own clock) until it reads ``moment``; fail after ``real_seconds``."""
    deadline = time.monotonic() + real_seconds
    while sim.state.clock.now() < to_kst(moment):
        assert time.monotonic() < deadline, f"simulated clock still at {sim.state.clock.now()}"
        time.sleep(0.01)


def test_accelerated_clock_replays_a_session_in_seconds(
    sim: SimServer, make_client: Callable[..., KisClient], admin: Any
) -> None:
    client = make_client()
    admin.clock(datetime(2025, 6, 10, 9, 0, 30), speed=600)  # 10 simulated minutes per real second
    client.stock_order("005930", "buy", 1)
    # Ten simulated minutes pass in about a second of real time; the market order fills at 09:01's open.
    _wait_for_sim_time(sim, datetime(2025, 6, 10, 9, 10), real_seconds=5.0)
    orders = client.stock_orders(date(2025, 6, 10), date(2025, 6, 10))
    assert orders[0].filled_qty == 1


def test_futures_trade_from_0845_but_stocks_wait_for_0900(
    make_client: Callable[..., KisClient], admin: Any
) -> None:
    from pipeline.kis import KisRejectedError

    client = make_client()
    admin.clock(datetime(2025, 6, 10, 8, 50))
    assert client.futures_order("101W06", "buy", 1).order_no
    with pytest.raises(KisRejectedError):
        client.stock_order("005930", "buy", 1)


def test_csv_files_replace_generated_bars(
    sim_config: SimConfig, tmp_path: Path, make_client: Callable[..., KisClient]
) -> None:
    csv = tmp_path / "csv"
    csv.mkdir()
    days = [d for d in mg.trading_days() if date(2025, 5, 1) <= d <= date(2025, 6, 9)]
    closes = np.linspace(10_000, 12_000, len(days)).round(-1)
    pd.DataFrame(
        {
            "date": days,
            "open": closes,
            "high": closes + 100,
            "low": closes - 100,
            "close": closes,
            "volume": 1_000_000,
        }
    ).to_csv(csv / "123450.csv", index=False)
    sim_config.csv_dir = csv
    with SimServer(sim_config) as sim:
        client = make_client(base_url=sim.base_url)
        frame = client.fetch_daily_bars("123450", date(2025, 5, 1), date(2025, 6, 9), asset="stock")
    assert frame["close"].tolist() == closes.tolist()
