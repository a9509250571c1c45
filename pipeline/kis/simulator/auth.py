"""Simulator OAuth: token issuance with KIS's 1/minute rule (EGW00133), expiry, and per-key rate limits."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from pipeline.kis.simulator.ledger import Ledger
from pipeline.kis.simulator.simconfig import SimConfig

KST = ZoneInfo("Asia/Seoul")


def key_hash(app_key: str) -> str:
    """Tokens and limits are tracked by a hash, so the simulator's own state holds no app keys."""
    return hashlib.sha256(app_key.encode()).hexdigest()[:24]


@dataclass
class Issued:
    """An issued token."""

    token: str
    key: str
    issued_at: float
    expires_at: float


class AuthError(Exception):
    """A request the gateway refuses: carries the HTTP status and the KIS body to send."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body.get("msg_cd") or body.get("error_code"))
        self.status = status
        self.body = body


def envelope_error(msg_cd: str, msg1: str, rt_cd: str = "1") -> dict[str, Any]:
    """A KIS failure envelope."""
    return {"rt_cd": rt_cd, "msg_cd": msg_cd, "msg1": msg1}


class Gateway:
    """Tokens (persisted in the ledger; wall-clock expiry) and per-key sliding-window rate limits."""

    def __init__(self, cfg: SimConfig, ledger: Ledger) -> None:
        self.cfg = cfg
        self._ledger = ledger
        self._lock = threading.Lock()
        self._tokens = {
            r["token"]: Issued(r["token"], r["key_hash"], r["issued_at"], r["expires_at"])
            for r in ledger.tokens()
        }
        self._last_issue: dict[str, float] = {}
        self._calls: dict[str, deque[float]] = {}
        self.issued_count = 0

    def issue(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST /oauth2/tokenP: same token within 6 h, 403 EGW00133 within the minimum interval (spec §2)."""
        app_key, secret = str(body.get("appkey", "")), str(body.get("appsecret", ""))
        if body.get("grant_type") != "client_credentials" or not app_key or not secret:
            raise AuthError(403, {"error_code": "EGW00002", "error_description": "잘못된 요청입니다."})
        key = key_hash(app_key)
        now = time.time()
        with self._lock:
            if now - self._last_issue.get(key, -1e18) < self.cfg.token_interval_s:
                raise AuthError(
                    403,
                    {
                        "error_code": "EGW00133",
                        "error_description": "접근토큰 발급 잠시 후 다시 시도하세요(1분당 1회)",
                    },
                )
            self._last_issue[key] = now
            token = self._reusable(key, now) or self._new_token(key, now)
        expires = datetime.fromtimestamp(token.expires_at, KST).strftime("%Y-%m-%d %H:%M:%S")
        return {
            "access_token": token.token,
            "token_type": "Bearer",
            "expires_in": int(token.expires_at - now),
            "access_token_token_expired": expires,
        }

    def _reusable(self, key: str, now: float) -> Issued | None:
        for tok in self._tokens.values():
            if tok.key == key and tok.expires_at > now and now - tok.issued_at < self.cfg.token_reuse_s:
                return tok
        return None

    def _new_token(self, key: str, now: float) -> Issued:
        tok = Issued("sim." + secrets.token_urlsafe(48), key, now, now + self.cfg.token_ttl_s)
        self._tokens[tok.token] = tok
        self._ledger.save_token(tok.token, key, now, tok.expires_at)
        self.issued_count += 1
        return tok

    def revoke(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST /oauth2/revokeP: ``code`` (int) and ``message`` (spec §2)."""
        token = str(body.get("token", ""))
        with self._lock:
            tok = self._tokens.pop(token, None)
        if tok is None or tok.key != key_hash(str(body.get("appkey", ""))):
            raise AuthError(403, {"code": 403, "message": "유효하지 않은 token 입니다."})
        self._ledger.save_token(token, tok.key, tok.issued_at, 0.0)
        return {"code": 200, "message": "접근토큰 폐기에 성공하였습니다"}

    def check(self, headers: dict[str, str]) -> str:
        """Validate appkey/appsecret/bearer token and the key's rate; returns the key hash."""
        app_key = headers.get("appkey", "")
        if not app_key or not headers.get("appsecret"):
            raise AuthError(403, envelope_error("EGW00103", "유효하지 않은 AppKey입니다."))
        key = key_hash(app_key)
        auth = headers.get("authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        tok = self._tokens.get(token)
        if tok is None or tok.key != key:
            raise AuthError(500, envelope_error("EGW00121", "유효하지 않은 token 입니다."))
        if tok.expires_at <= time.time():
            raise AuthError(500, envelope_error("EGW00123", "기간이 만료된 token 입니다."))
        self.take(key)
        return key

    def take(self, key: str) -> None:
        """Count one call against the key's per-second budget; EGW00201 (HTTP 500) beyond it (spec §4)."""
        now = time.monotonic()
        with self._lock:
            window = self._calls.setdefault(key, deque())
            while window and now - window[0] >= 1.0:
                window.popleft()
            if len(window) >= self.cfg.rate_limit:
                raise AuthError(500, envelope_error("EGW00201", "초당 거래건수를 초과하였습니다."))
            window.append(now)
