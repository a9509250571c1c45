"""The simulator's FastAPI app: KIS-shaped routing (auth, rate limit, tr_id incl. V-prefix, the key's
environment and book, hashkey), fault injection middleware, and /sim/admin endpoints."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pipeline.kis.endpoints import HASHKEY_PATH
from pipeline.kis.simulator.auth import AuthError, Caller, Gateway, envelope_error
from pipeline.kis.simulator.clock import SimClock
from pipeline.kis.simulator.faults import FaultKnobs, Faults
from pipeline.kis.simulator.ledger import Ledger
from pipeline.kis.simulator.market import MarketData
from pipeline.kis.simulator.matching import Exchange
from pipeline.kis.simulator.routes_orders import ORDER_TRS
from pipeline.kis.simulator.routes_quotes import QUOTE_ROUTES
from pipeline.kis.simulator.routes_trading import TRADING_ROUTES
from pipeline.kis.simulator.simconfig import SimConfig
from pipeline.kis.simulator.wire import Ctx, Fail, Handler, invalid

log = logging.getLogger(__name__)
_QUERY = re.compile(r"\?\S*")


class _RedactAccessLog(logging.Filter):
    """Access-log lines carry query strings with account numbers (CANO): drop the query part."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_QUERY.sub("", a) if isinstance(a, str) else a for a in record.args)
        return True


logging.getLogger("uvicorn.access").addFilter(_RedactAccessLog())
ROUTES: dict[tuple[str, str, str], Handler] = {(m, p, t): h for m, p, t, h in QUOTE_ROUTES + TRADING_ROUTES}
PATHS = {(m, p) for m, p, _ in ROUTES}


@dataclass
class SimState:
    """Everything one simulator instance owns. Real and paper keys trade in separate books."""

    cfg: SimConfig
    clock: SimClock
    market: MarketData
    ledger: Ledger
    exchange: Exchange
    gateway: Gateway
    faults: Faults
    paper_ledger: Ledger
    paper_exchange: Exchange

    def close(self) -> None:
        """Close both books."""
        self.ledger.close()
        self.paper_ledger.close()


def build_state(cfg: SimConfig) -> SimState:
    """Open the real and paper ledgers and wire the components (tokens live in the real ledger)."""
    ledger, paper = Ledger(cfg.db_path), Ledger(cfg.paper_db_path)
    market = MarketData(cfg)
    return SimState(
        cfg,
        SimClock(cfg.clock_start, cfg.clock_speed),
        market,
        ledger,
        Exchange(cfg, market, ledger),
        Gateway(cfg, ledger),
        Faults(cfg.seed),
        paper,
        Exchange(cfg, market, paper),
    )


class DroppedConnection(Exception):
    """Raised after the status line is sent: the server closes the socket mid-response."""


class FaultMiddleware:
    """Pure ASGI (cheap per request): applies FaultKnobs to /uapi requests before routing."""

    def __init__(self, app: ASGIApp, faults: Faults) -> None:
        self.app, self.faults = app, faults

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Hashkey calls pass untouched, so a ``*_next`` knob hits the order that follows its hashkey.
        if scope["type"] != "http" or not scope["path"].startswith("/uapi/") or scope["path"] == HASHKEY_PATH:
            await self.app(scope, receive, send)
            return
        action, knobs = self.faults.decide(), self.faults.knobs
        if knobs.latency_ms:
            await asyncio.sleep(knobs.latency_ms / 1000)
        if action == "drop":
            await send(
                {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"512")]}
            )
            raise DroppedConnection("simulated dropped connection")
        elif action in ("error", "storm", "malformed"):
            await _send_fault(send, action)
            return

        async def guarded(message: Message) -> None:
            if message["type"] == "http.response.start" and action == "timeout":
                # The request is processed (an order is booked); only the answer is late.
                await asyncio.sleep(knobs.timeout_s)
            if message["type"] == "http.response.start" and scope.get("kis_drop"):
                await send({**message, "headers": [(b"content-length", b"512")]})
                raise DroppedConnection("simulated lost order response")
            await send(message)

        await self.app(scope, receive, guarded)


async def _send_fault(send: Send, action: str) -> None:
    if action == "malformed":
        status, body, ctype = 200, b"<html><body>502 Bad Gateway</body></html>", b"text/html"
    else:
        code = (
            ("EGW00201", "초당 거래건수를 초과하였습니다.")
            if action == "storm"
            else ("EGW00002", "서버 에러가 발생했습니다.")
        )  # [U] the generic KIS gateway error code
        status, body, ctype = (
            500,
            json.dumps(envelope_error(*code), ensure_ascii=False).encode(),
            b"application/json",
        )
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", ctype), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _resolve(method: str, path: str, tr_id: str) -> tuple[Handler, str, bool] | None:
    handler = ROUTES.get((method, path, tr_id))
    if handler is not None:
        return handler, tr_id, False
    if tr_id.startswith("V"):
        # VTS tr_ids: the leading T/J/C of the real id became V (spec §3).
        for lead in ("T", "J", "C"):
            handler = ROUTES.get((method, path, lead + tr_id[1:]))
            if handler is not None:
                return handler, lead + tr_id[1:], True
    return None


def _json(status: int, body: dict[str, Any], tr_id: str = "", tr_cont: str = "") -> JSONResponse:
    headers = {"tr_id": tr_id, "tr_cont": tr_cont, "gt_uid": uuid.uuid4().hex}
    return JSONResponse(
        body, status_code=status, headers=headers, media_type="application/json; charset=utf-8"
    )


async def _params(request: Request) -> tuple[dict[str, Any], bytes]:
    """GET query params, or a POST body that must be one JSON object (KIS: string values, upper keys)."""
    if request.method == "GET":
        return dict(request.query_params), b""
    raw = await request.body()
    try:
        body = json.loads(raw)
    except ValueError:
        raise invalid("JSON", status=400) from None
    if not isinstance(body, dict):
        raise invalid("BODY", status=400)
    return body, raw


def _check_environment(caller: Caller, real_tr: str, paper_form: bool) -> None:
    """Account TRs (T/J/C ids, V on paper) belong to one environment: a paper key on a real TR is KIS's
    EGW02004 (spec §1); the reverse has no documented code [U: the same one]. Quote TRs serve both."""
    if real_tr[:1] not in ("T", "J", "C") or paper_form == (caller.env == "vts"):
        return
    if caller.env == "vts":
        raise Fail("EGW02004", "실전투자 도메인은 모의투자 앱키로 호출하실 수 없습니다", status=500)
    raise Fail("EGW02004", "모의투자 도메인은 실전투자 앱키로 호출하실 수 없습니다", status=500)


async def dispatch(request: Request) -> Response:
    """Every /uapi request: gateway checks, tr_id routing, the handler, the KIS envelope."""
    state: SimState = request.app.state.sim
    method, path, tr_id = request.method, request.url.path, request.headers.get("tr_id", "").strip()
    if (method, path) not in PATHS:
        return _json(404, envelope_error("MCA00124", "해당 서비스를 찾을수 없습니다"), tr_id)
    try:
        caller = state.gateway.check(
            {k: request.headers.get(k, "") for k in ("appkey", "appsecret", "authorization")}
        )
    except AuthError as exc:
        return _json(exc.status, exc.body, tr_id)
    resolved = _resolve(method, path, tr_id)
    if resolved is None:
        return _json(500, envelope_error("MCA00124", f"해당 서비스를 찾을수 없습니다 (tr_id {tr_id})"), tr_id)
    handler, real_tr, paper_form = resolved
    try:
        _check_environment(caller, real_tr, paper_form)
        params, raw = await _params(request)
        state.gateway.check_hash(caller, request.headers.get("hashkey", "").strip(), raw)
        ctx = Ctx(
            state,
            real_tr,
            caller.env == "vts",
            params,
            request.headers.get("tr_cont", "").strip(),
            state.clock.now(),
        )
        result = handler(ctx)
    except Fail as exc:
        return _json(exc.status, exc.body, tr_id)
    except AuthError as exc:
        return _json(exc.status, exc.body, tr_id)
    except Exception:  # a simulator bug still answers like KIS (a JSON envelope), and is logged
        log.exception("simulator failed on %s %s", path, real_tr)
        return _json(500, envelope_error("EGW00002", "서버 에러가 발생했습니다."), tr_id)
    if real_tr in ORDER_TRS and state.faults.lose_order_response():
        request.scope["kis_drop"] = True  # the order is booked; its answer will be lost on the wire
    return _json(200, result.body(), tr_id, result.tr_cont)


async def hashkey(request: Request) -> Response:
    """POST /uapi/hashkey (spec §2): the HASH of the exact body, for the order's ``hashkey`` header."""
    state: SimState = request.app.state.sim
    try:
        return _json(200, state.gateway.hashkey(dict(request.headers), await request.body()))
    except AuthError as exc:
        return _json(exc.status, exc.body)


async def _json_body(request: Request) -> object:
    """The parsed JSON body (None when it is not JSON): the gateway checks its shape."""
    try:
        return json.loads(await request.body())
    except ValueError:
        return None


class ClockUpdate(BaseModel):
    """POST /sim/admin/clock body."""

    now: datetime | None = None
    speed: float | None = None


class AuthUpdate(BaseModel):
    """POST /sim/admin/auth body."""

    token_interval_s: float | None = None
    token_ttl_s: float | None = None
    rate_limit: float | None = None


def _admin(app: FastAPI, state: SimState) -> None:
    @app.get("/sim/health")
    async def health() -> dict[str, Any]:
        return {"ok": True, "now": state.clock.now().isoformat(), "tokens_issued": state.gateway.issued_count}

    @app.get("/sim/admin/faults")
    async def get_faults() -> FaultKnobs:
        return state.faults.knobs

    @app.post("/sim/admin/faults")
    async def set_faults(knobs: FaultKnobs) -> FaultKnobs:
        state.faults.update(knobs)
        return knobs

    @app.post("/sim/admin/clock")
    async def set_clock(update: ClockUpdate) -> dict[str, Any]:
        now = state.clock.set(update.now, update.speed)
        return {"now": now.isoformat(), "speed": state.clock.speed}

    @app.post("/sim/admin/auth")
    async def set_auth(update: AuthUpdate) -> dict[str, Any]:
        for name, value in update.model_dump(exclude_none=True).items():
            setattr(state.cfg, name, value)
        return {
            "token_interval_s": state.cfg.token_interval_s,
            "token_ttl_s": state.cfg.token_ttl_s,
            "rate_limit": state.cfg.rate_limit,
        }


def create_app(cfg: SimConfig | None = None, state: SimState | None = None) -> FastAPI:
    """The ASGI app (FaultMiddleware outermost). Pass ``state`` to share one with the caller."""
    state = state or build_state(cfg or SimConfig.from_settings())
    app = FastAPI(title="KIS simulator", docs_url="/sim/docs", openapi_url="/sim/openapi.json")
    app.state.sim = state

    @app.post("/oauth2/tokenP")
    async def token(request: Request) -> Response:
        try:
            return _json(200, state.gateway.issue(await _json_body(request)))
        except AuthError as exc:
            return _json(exc.status, exc.body)

    @app.post("/oauth2/revokeP")
    async def revoke(request: Request) -> Response:
        try:
            return _json(200, state.gateway.revoke(await _json_body(request)))
        except AuthError as exc:
            return _json(exc.status, exc.body)

    _admin(app, state)
    app.add_api_route(HASHKEY_PATH, hashkey, methods=["POST"], include_in_schema=False)
    app.add_api_route("/uapi/{rest:path}", dispatch, methods=["GET", "POST"], include_in_schema=False)
    app.add_middleware(FaultMiddleware, faults=state.faults)
    return app
