"""Simulator gateway: configured app keys and secrets, tokens with KIS's 1/minute rule (EGW00133), expiry,
per-key rate limits by environment (EGW00201) and hashkeys."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pipeline.kis.simulator.ledger import Ledger
from pipeline.kis.simulator.simconfig import SimConfig, SimEnv
from pipeline.market import KST

# Gateway answers. EGW00121/00123/00133/00201 are in the spec (§2, §9); EGW00103/EGW00105 are what KIS
# users report for an unknown app key / a wrong app secret [U: not in the spec]; OPSQ2001 is the spec's
# invalid-input code, used for every malformed request.
UNKNOWN_KEY = ("EGW00103", "유효하지 않은 AppKey입니다.")
WRONG_SECRET = ("EGW00105", "유효하지 않은 AppSecret입니다.")
BAD_TOKEN = ("EGW00121", "유효하지 않은 token 입니다.")
EXPIRED_TOKEN = ("EGW00123", "기간이 만료된 token 입니다.")
THROTTLED = ("EGW00133", "접근토큰 발급 잠시 후 다시 시도하세요(1분당 1회)")
RATE_LIMITED = ("EGW00201", "초당 거래건수를 초과하였습니다.")
INVALID_INPUT = "OPSQ2001"


def key_hash(app_key: str) -> str:
    """Tokens and limits are tracked by a hash, so the simulator's own state holds no app keys."""
    return hashlib.sha256(app_key.encode()).hexdigest()[:24]


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


@dataclass
class Issued:
    """An issued token."""

    token: str
    key: str
    issued_at: float
    expires_at: float


@dataclass(frozen=True)
class Caller:
    """Who is calling: the key's hash and the environment (book, limits) it belongs to."""

    key: str
    env: SimEnv
    secret: bytes  # sha256 of the app secret: keys the hashkey HMAC without holding the secret itself


class AuthError(Exception):
    """A request the gateway refuses: carries the HTTP status and the KIS body to send."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body.get("msg_cd") or body.get("error_code"))
        self.status = status
        self.body = body


def envelope_error(msg_cd: str, msg1: str, rt_cd: str = "1") -> dict[str, Any]:
    """A KIS failure envelope."""
    return {"rt_cd": rt_cd, "msg_cd": msg_cd, "msg1": msg1}


def token_error(code: tuple[str, str]) -> AuthError:
    """The token endpoint's own error shape: ``error_code``/``error_description``, HTTP 403 (spec §2)."""
    return AuthError(403, {"error_code": code[0], "error_description": code[1]})


def invalid_token_request(what: str) -> AuthError:
    """A token/revoke body that is not the JSON object KIS expects."""
    return token_error((INVALID_INPUT, f"INPUT INVALID_CHECK_{what}"))


class Gateway:
    """Keys (hashed), tokens (persisted in the ledger; wall-clock expiry) and sliding-window rate limits."""

    def __init__(self, cfg: SimConfig, ledger: Ledger) -> None:
        self.cfg = cfg
        self._ledger = ledger
        self._lock = threading.Lock()
        self._keys = {key_hash(p.app_key): (_digest(p.app_secret), p.env) for p in cfg.app_keys}
        self._tokens = {
            r["token"]: Issued(r["token"], r["key_hash"], r["issued_at"], r["expires_at"])
            for r in ledger.tokens()
        }
        self._last_issue: dict[str, float] = {}
        self._calls: dict[str, deque[float]] = {}
        self.issued_count = 0

    def identify(self, app_key: str, app_secret: str) -> Caller:
        """The caller of a configured key with its own secret; EGW00103 / EGW00105 otherwise."""
        known = self._keys.get(key_hash(app_key)) if app_key else None
        if known is None:
            raise token_error(UNKNOWN_KEY)
        digest, env = known
        if not hmac.compare_digest(digest, _digest(app_secret)):
            raise token_error(WRONG_SECRET)
        return Caller(key_hash(app_key), env, digest)

    def issue(self, body: object) -> dict[str, Any]:
        """POST /oauth2/tokenP: same token within 6 h, 403 EGW00133 within the minimum interval (spec §2)."""
        if not isinstance(body, dict):
            raise invalid_token_request("BODY")
        if body.get("grant_type") != "client_credentials":
            raise invalid_token_request("GRANT_TYPE")
        caller = self.identify(str(body.get("appkey") or ""), str(body.get("appsecret") or ""))
        now = time.time()
        with self._lock:
            if now - self._last_issue.get(caller.key, -1e18) < self.cfg.token_interval_s:
                raise token_error(THROTTLED)
            self._last_issue[caller.key] = now
            token = self._reusable(caller.key, now) or self._new_token(caller.key, now)
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

    def revoke(self, body: object) -> dict[str, Any]:
        """POST /oauth2/revokeP: ``code`` (int) and ``message`` (spec §2). Only the owner may revoke."""
        if not isinstance(body, dict):
            raise invalid_token_request("BODY")
        caller = self.identify(str(body.get("appkey") or ""), str(body.get("appsecret") or ""))
        token = str(body.get("token", ""))
        with self._lock:
            tok = self._tokens.get(token)
            if tok is None or tok.key != caller.key:
                raise AuthError(403, {"code": 403, "message": BAD_TOKEN[1]})
            del self._tokens[token]
        self._ledger.save_token(token, tok.key, tok.issued_at, 0.0)
        return {"code": 200, "message": "접근토큰 폐기에 성공하였습니다"}

    def check(self, headers: dict[str, str]) -> Caller:
        """Validate appkey/appsecret/bearer token and the key's rate; returns the caller."""
        try:
            caller = self.identify(headers.get("appkey", ""), headers.get("appsecret", ""))
        except AuthError as exc:  # same codes, in the normal envelope on /uapi paths
            raise AuthError(
                403, envelope_error(exc.body["error_code"], exc.body["error_description"])
            ) from None
        auth = headers.get("authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        tok = self._tokens.get(token)
        if tok is None or tok.key != caller.key:
            raise AuthError(500, envelope_error(*BAD_TOKEN))
        if tok.expires_at <= time.time():
            raise AuthError(500, envelope_error(*EXPIRED_TOKEN))
        self.take(caller)
        return caller

    def take(self, caller: Caller) -> None:
        """Count one call against the key's per-second budget; EGW00201 (HTTP 500) beyond it (spec §4)."""
        now = time.monotonic()
        with self._lock:
            window = self._calls.setdefault(caller.key, deque())
            while window and now - window[0] >= 1.0:
                window.popleft()
            if len(window) >= self.cfg.limit_for(caller.env):
                raise AuthError(500, envelope_error(*RATE_LIMITED))
            window.append(now)

    def hashkey(self, headers: dict[str, str], body: bytes) -> dict[str, Any]:
        """POST /uapi/hashkey (spec §2): key and secret, no token; counts against the rate limit. KIS's
        hash function is not published: the simulator's is an HMAC of the exact body bytes."""
        try:
            caller = self.identify(headers.get("appkey", ""), headers.get("appsecret", ""))
        except AuthError as exc:
            raise AuthError(
                403, envelope_error(exc.body["error_code"], exc.body["error_description"])
            ) from None
        self.take(caller)
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            raise AuthError(400, envelope_error(INVALID_INPUT, "INPUT INVALID_CHECK_BODY", "2"))
        return {"JsonBody": parsed, "HASH": self._hash(caller, body)}

    def check_hash(self, caller: Caller, hashkey: str, body: bytes) -> None:
        """An order sent with a ``hashkey`` must carry the hash of its own bytes (tamper protection; KIS's
        answer to a mismatch is not documented [U]: OPSQ2001)."""
        if hashkey and not hmac.compare_digest(hashkey, self._hash(caller, body)):
            raise AuthError(500, envelope_error(INVALID_INPUT, "INPUT INVALID_CHECK_HASHKEY", "2"))

    @staticmethod
    def _hash(caller: Caller, body: bytes) -> str:
        return hmac.new(caller.secret, body, hashlib.sha256).hexdigest()
