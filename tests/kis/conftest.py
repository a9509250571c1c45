"""KIS fixtures: a real simulator on a loopback port per test, and a client factory pointed at it."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from pipeline.kis import KisClient, KisConfig
from pipeline.kis.simulator.server import SimServer
from pipeline.kis.simulator.simconfig import AppKeyPair, SimConfig

#: A Tuesday mid-session: KRX stocks and futures are both trading.
SESSION = datetime(2025, 6, 10, 10, 0)
APP_KEY = "PSkeyTEST0123456789abcdefghijklmnopq"  # 36 characters, like a real key
APP_SECRET = "SECRETtest" + "x" * 170
#: A paper-trading (VTS) pair: the simulator books its orders apart from the real pair's.
PAPER_KEY = "PSpaperTEST0123456789abcdefghijklmno"
PAPER_SECRET = "SECRETpaper" + "y" * 169
ACCOUNT = "73310045"
STOCK_PATH = "/uapi/domestic-stock/v1"
FUTURES_PATH = "/uapi/domestic-futureoption/v1"


#: The key pairs the test simulator accepts (instead of the default pairs).
TEST_KEYS = [AppKeyPair(APP_KEY, APP_SECRET, "real"), AppKeyPair(PAPER_KEY, PAPER_SECRET, "vts")]


@pytest.fixture
def sim_config(tmp_path: Path) -> SimConfig:
    """Simulator settings: fresh ledger, clock at SESSION (wall speed), short token interval, the test
    key pairs. Tests make hundreds of calls, so the rate limit is raised explicitly above KIS's 20/s real
    and 2/s paper (the defaults, which test_kis_sim_gateway checks)."""
    return SimConfig(
        db_path=tmp_path / "sim.db",
        clock_start=SESSION,
        token_interval_s=0.2,
        app_keys=list(TEST_KEYS),
        rate_limit=1000.0,
    )


@pytest.fixture
def sim(sim_config: SimConfig) -> Iterator[SimServer]:
    """A running simulator (uvicorn in a background thread, free port)."""
    with SimServer(sim_config) as server:
        yield server


@pytest.fixture
def make_client(sim: SimServer, tmp_path: Path) -> Iterator[Callable[..., KisClient]]:
    """Build clients for the simulator; keyword arguments override KisConfig fields. ``env="vts"`` gets
    the paper key pair (the simulator's paper book); ``transport=Wire()`` records what the client saw."""
    made: list[KisClient] = []

    def build(**overrides: Any) -> KisClient:
        transport = overrides.pop("transport", None)
        paper = overrides.get("env") == "vts"
        values: dict[str, Any] = {
            "env": "sim",
            "base_url": sim.base_url,
            "app_key": SecretStr(PAPER_KEY if paper else APP_KEY),
            "app_secret": SecretStr(PAPER_SECRET if paper else APP_SECRET),
            "account_no": SecretStr(ACCOUNT),
            "token_cache": tmp_path / "kis_token.json",
            "rate_limit": 1000.0,
            "timeout_s": 5.0,
            "token_min_interval_s": 0.25,
            "backoff_max_s": 0.2,
            "read_retries": 4,
        }
        values.update(overrides)
        client = KisClient(KisConfig(**values), transport=transport)
        made.append(client)
        return client

    yield build
    for client in made:
        client.close()


@pytest.fixture
def client(make_client: Callable[..., KisClient]) -> KisClient:
    """The default client (real tr_ids, simulator domain)."""
    return make_client()


class Wire(httpx.BaseTransport):
    """The client's end of the wire: every answer it got (``ok``, the KIS error code, ``malformed``) or the
    transport error that cut it, in order. Proves that a fault really reached the client, not only that
    the client got over it."""

    def __init__(self) -> None:
        self._inner = httpx.HTTPTransport()
        self.seen: list[tuple[str, str, str]] = []  # (path, tr_cont sent, outcome)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        sent = (request.url.path, request.headers.get("tr_cont", ""))
        try:
            response = self._inner.handle_request(request)
            content = response.read()
        except httpx.TransportError as exc:
            self.seen.append((*sent, type(exc).__name__))
            raise
        self.seen.append((*sent, _outcome(content)))
        return httpx.Response(
            response.status_code, headers=response.headers, content=content, request=request
        )

    def close(self) -> None:
        self._inner.close()

    def outcomes(self, path: str) -> list[str]:
        """What each request to ``path`` came back as, in order."""
        return [outcome for p, _, outcome in self.seen if p == path]


def _outcome(content: bytes) -> str:
    try:
        body = json.loads(content)
    except ValueError:
        return "malformed"
    if not isinstance(body, dict):
        return "malformed"
    if "error_code" in body:  # the token endpoint's own error shape
        return str(body["error_code"])
    if "rt_cd" in body and str(body["rt_cd"]) != "0":
        return str(body.get("msg_cd", ""))
    return "ok"


class SimAdmin:
    """The simulator's admin API, as a demo operator would use it."""

    def __init__(self, server: SimServer) -> None:
        self.server = server

    def faults(self, **knobs: Any) -> None:
        """Replace the fault knobs (no arguments clears every fault)."""
        httpx.post(f"{self.server.base_url}/sim/admin/faults", json=knobs).raise_for_status()

    def pending(self) -> dict[str, Any]:
        """The fault knobs now: each ``*_next`` counter counts down as its fault fires."""
        return dict(httpx.get(f"{self.server.base_url}/sim/admin/faults").json())

    def clock(self, now: datetime | None = None, speed: float | None = None) -> None:
        """Move and/or speed up the simulator clock."""
        body: dict[str, Any] = {"speed": speed, "now": now.isoformat() if now else None}
        httpx.post(f"{self.server.base_url}/sim/admin/clock", json=body).raise_for_status()

    def auth(self, **limits: float) -> None:
        """Change token interval / TTL / rate limit."""
        httpx.post(f"{self.server.base_url}/sim/admin/auth", json=limits).raise_for_status()

    @property
    def tokens_issued(self) -> int:
        """How many distinct tokens the gateway has issued."""
        return int(httpx.get(f"{self.server.base_url}/sim/health").json()["tokens_issued"])


@pytest.fixture
def admin(sim: SimServer) -> SimAdmin:
    """Admin handle on the running simulator."""
    return SimAdmin(sim)


class RawKis:
    """KIS over plain HTTP, as any other client would send it: checks the simulator's wire answers."""

    def __init__(self, base_url: str, app_key: str = APP_KEY, app_secret: str = APP_SECRET) -> None:
        self.base_url, self.app_key, self.app_secret = base_url, app_key, app_secret
        self._token = ""

    def token(self) -> str:
        """Issue (once) and return an access token for this key."""
        if not self._token:
            body = {"grant_type": "client_credentials", "appkey": self.app_key, "appsecret": self.app_secret}
            resp = httpx.post(f"{self.base_url}/oauth2/tokenP", json=body)
            assert resp.status_code == 200, resp.text
            self._token = str(resp.json()["access_token"])
        return self._token

    def headers(self, tr_id: str) -> dict[str, str]:
        """Headers of an authorised call."""
        return {
            "appkey": self.app_key,
            "appsecret": self.app_secret,
            "authorization": f"Bearer {self.token()}",
            "tr_id": tr_id,
            "custtype": "P",
        }

    def get(self, path: str, tr_id: str, params: dict[str, str]) -> httpx.Response:
        """GET ``path`` (relative to the base URL)."""
        return httpx.get(f"{self.base_url}{path}", params=params, headers=self.headers(tr_id))

    def post(self, path: str, tr_id: str, body: Any) -> httpx.Response:
        """POST ``body`` as JSON (any JSON value, to test malformed bodies too)."""
        headers = {**self.headers(tr_id), "content-type": "application/json; charset=utf-8"}
        return httpx.post(f"{self.base_url}{path}", content=json.dumps(body), headers=headers)

    def stock_orders(self, tr_id: str = "TTTC0081R") -> list[dict[str, Any]]:
        """Today's orders of ``ACCOUNT`` (SESSION day)."""
        params = {
            "CANO": ACCOUNT,
            "ACNT_PRDT_CD": "01",
            "INQR_STRT_DT": "20250610",
            "INQR_END_DT": "20250610",
            "INQR_DVSN": "01",
        }
        resp = self.get(f"{STOCK_PATH}/trading/inquire-daily-ccld", tr_id, params)
        assert resp.json()["rt_cd"] == "0", resp.text
        return list(resp.json()["output1"])


def stock_order_body(qty: str = "1", **fields: str) -> dict[str, str]:
    """A market buy of 005930 for ``ACCOUNT`` (fields override)."""
    body = {
        "CANO": ACCOUNT,
        "ACNT_PRDT_CD": "01",
        "PDNO": "005930",
        "ORD_DVSN": "01",
        "ORD_QTY": qty,
        "ORD_UNPR": "0",
        "EXCG_ID_DVSN_CD": "KRX",
    }
    return {**body, **fields}


def futures_order_body(**fields: str) -> dict[str, str]:
    """A market buy of one 101W06 contract on the futures product code 03 (fields override)."""
    body = {
        "ORD_PRCS_DVSN_CD": "02",
        "CANO": ACCOUNT,
        "ACNT_PRDT_CD": "03",
        "SLL_BUY_DVSN_CD": "02",
        "SHTN_PDNO": "101W06",
        "ORD_QTY": "1",
        "UNIT_PRICE": "0",
        "NMPR_TYPE_CD": "02",
        "KRX_NMPR_CNDT_CD": "0",
        "ORD_DVSN_CD": "02",
    }
    return {**body, **fields}


@pytest.fixture
def raw(sim: SimServer) -> RawKis:
    """Plain-HTTP access to the running simulator with the test's real-environment key pair."""
    return RawKis(sim.base_url)
