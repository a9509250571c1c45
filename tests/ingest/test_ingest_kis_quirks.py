"""Malformed rows in a real-KIS-shaped chart envelope reach the quarantine through the real client."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import httpx
import sqlalchemy as sa
from pydantic import SecretStr
from sqlalchemy.engine import Engine

from pipeline.ingest import KisBarSource, ingest_daily
from pipeline.kis import KisClient, KisConfig
from pipeline.market import TZ_NAME
from pipeline.store import read_bars

TOKEN = {
    "access_token": "t",
    "token_type": "Bearer",
    "expires_in": 86400,
    "access_token_token_expired": "2099-01-01 09:00:00",
}


def _row(day: str, o: str, h: str, lo: str, c: str, v: str = "1000") -> dict[str, str]:
    return {
        "stck_bsop_date": day,
        "stck_oprc": o,
        "stck_hgpr": h,
        "stck_lwpr": lo,
        "stck_clpr": c,
        "acml_vol": v,
        "acml_tr_pbmn": "",
    }


ROWS = [  # newest first, as KIS sends them (spec §5 inquire-daily-itemchartprice output2)
    _row("20250910", "70000", "71000", "69500", "70500"),
    _row("20250909", "69000", "70100", "68800", "70000"),
    _row("20250909", "69100", "70200", "68900", "69900"),  # conflicting second row for the same day
    _row("20250908", "abc", "70000", "68000", "69000"),  # a string where a price belongs
    _row("20250905", "", "", "", ""),  # empty fields
    _row("20250904", "0", "0", "0", "0"),  # zero prices
    _row("20250903", "68000", "68500", "67500", "68200"),
]


def _client(tmp_path: Path) -> KisClient:
    def route(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth2/tokenP":
            return httpx.Response(200, json=TOKEN)
        body = {
            "rt_cd": "0",
            "msg_cd": "MCA00000",
            "msg1": "정상처리 되었습니다.",
            "output1": {},
            "output2": ROWS,
        }
        return httpx.Response(
            200,
            content=json.dumps(body, ensure_ascii=False).encode(),
            headers={"content-type": "application/json; charset=utf-8", "tr_cont": "D"},
        )

    config = KisConfig(
        env="real",
        base_url="https://openapi.example",
        app_key=SecretStr("k" * 36),
        app_secret=SecretStr("s" * 180),
        account_no=SecretStr("12345678"),
        token_cache=tmp_path / "tok.json",
        backoff_max_s=0.01,
    )
    return KisClient(config, transport=httpx.MockTransport(route))


def test_malformed_kis_chart_rows_are_quarantined_and_the_rest_stored(store: Engine, tmp_path: Path) -> None:
    source = KisBarSource(_client(tmp_path))
    report = ingest_daily(source, ["005930"], dt.date(2025, 9, 10), engine=store, history_days=10)
    assert not report.failed  # one bad field never aborts the symbol's fetch
    item = report.items[0]
    assert (item.fetched, item.quarantined) == (7, 5)
    assert item.fetched == item.inserted + item.updated + item.unchanged + item.quarantined
    stored = read_bars("005930", engine=store)
    assert list(stored["ts"].dt.tz_convert(TZ_NAME).dt.strftime("%m-%d")) == ["09-03", "09-10"]
    with store.connect() as conn:
        reasons = [r for (r,) in conn.execute(sa.text("SELECT reason FROM bars_quarantine"))]
    assert sum("duplicate" in r for r in reasons) == 2
    assert any("open is not a finite number" in r for r in reasons)
    assert any("close is not positive" in r for r in reasons)
