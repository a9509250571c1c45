"""KIS access tokens: a 0600 cache file shared by every process under a file lock, issued at most 1/min."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from filelock import FileLock

from pipeline.kis.config import KisConfig
from pipeline.kis.endpoints import REVOKE_PATH, TOKEN_PATH
from pipeline.kis.errors import (
    KisAuthError,
    KisTemporaryError,
    KisTokenThrottledError,
    error_from_envelope,
)
from pipeline.market import KST

log = logging.getLogger(__name__)
#: Issuance attempts after EGW00133 before giving up (each waits the full minimum interval).
MAX_THROTTLED_ATTEMPTS = 3


@dataclass(frozen=True)
class AccessToken:
    """A token and its expiry (epoch seconds). ``repr`` never shows the value."""

    value: str
    expires_at: float

    def __repr__(self) -> str:
        return f"AccessToken(expires_at={self.expires_at:.0f})"


def parse_expiry(body: dict[str, Any], now: float) -> float:
    """Expiry from ``access_token_token_expired`` (KST), not ``expires_in``, which drifts (spec §2)."""
    text = str(body.get("access_token_token_expired", "")).strip()
    if text:
        try:
            return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=KST).timestamp()
        except ValueError:
            log.warning("unparsable access_token_token_expired; falling back to expires_in")
    return now + float(body.get("expires_in", 0) or 0)


class TokenCache:
    """The JSON cache file, keyed by an app-key fingerprint; written atomically with mode 0600."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = FileLock(str(path) + ".lock")

    def read(self) -> dict[str, Any]:
        """All entries (empty when missing or unreadable). Call with ``lock`` held."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def write(self, data: dict[str, Any]) -> None:
        """Replace the file atomically, owner-only permissions. Call with ``lock`` held."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh)
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path)


class TokenManager:
    """Hands out a valid token: memory first, then the shared cache, then (rarely) a new issuance."""

    def __init__(
        self,
        config: KisConfig,
        http: httpx.Client,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._config = config
        self._http = http
        self._clock = clock
        self._sleep = sleep
        self._cache = TokenCache(config.token_cache)
        self._key = config.key_fingerprint
        self._token: AccessToken | None = None
        self._mutex = threading.Lock()

    def __repr__(self) -> str:
        return f"TokenManager(key={self._key}, cache={self._cache.path})"

    def _fresh(self, token: AccessToken | None) -> bool:
        return token is not None and token.expires_at - self._config.token_refresh_margin_s > self._clock()

    def get(self) -> str:
        """A token valid for at least ``token_refresh_margin_s`` more seconds."""
        token = self._token
        if self._fresh(token):
            assert token is not None
            return token.value
        with self._mutex, self._cache.lock:
            entries = self._cache.read()
            cached = _entry_token(entries.get(self._key))
            if not self._fresh(cached):
                cached = self._issue_locked(entries)
            self._token = cached
            assert cached is not None
            return cached.value

    def invalidate(self, value: str) -> None:
        """Forget ``value`` after EGW00123/EGW00121, unless another process already replaced it."""
        with self._mutex, self._cache.lock:
            self._token = None
            entries = self._cache.read()
            entry = entries.get(self._key) or {}
            if entry.get("access_token") == value:
                entry.pop("access_token", None)
                entries[self._key] = entry
                self._cache.write(entries)

    def _issue_locked(self, entries: dict[str, Any]) -> AccessToken:
        entry = dict(entries.get(self._key) or {})
        for attempt in range(1, MAX_THROTTLED_ATTEMPTS + 1):
            # KIS allows one issuance per minute per key (spec §2): wait out the interval, don't hammer.
            wait = float(entry.get("last_issue_at", 0)) + self._config.token_min_interval_s - self._clock()
            if wait > 0:
                log.info(
                    "KIS token for key %s issued %.0f s ago; waiting %.1f s",
                    self._key,
                    self._config.token_min_interval_s - wait,
                    wait,
                )
                self._sleep(wait)
            entry["last_issue_at"] = self._clock()
            try:
                token = self._request_token()
            except KisTokenThrottledError:
                log.warning("KIS token issuance throttled (EGW00133), attempt %d", attempt)
                entries[self._key] = entry
                self._cache.write(entries)
                continue
            entry.update(access_token=token.value, expires_at=token.expires_at)
            entries[self._key] = entry
            self._cache.write(entries)
            log.info(
                "issued KIS access token for key %s, valid until %s",
                self._key,
                datetime.fromtimestamp(token.expires_at, KST).isoformat(),
            )
            return token
        raise KisTokenThrottledError(
            "KIS token issuance throttled (EGW00133) after repeated waits", msg_cd="EGW00133"
        )

    def _request_token(self) -> AccessToken:
        body = {
            "grant_type": "client_credentials",
            "appkey": self._config.app_key.get_secret_value(),
            "appsecret": self._config.app_secret.get_secret_value(),
        }
        data, status = _post_json(self._http, TOKEN_PATH, body)
        if status >= 400 or not data.get("access_token"):
            raise error_from_envelope(data, status, TOKEN_PATH)
        return AccessToken(str(data["access_token"]), parse_expiry(data, self._clock()))

    def revoke(self) -> None:
        """POST /oauth2/revokeP for the current token and drop it from the cache (spec §2)."""
        with self._mutex, self._cache.lock:
            entries = self._cache.read()
            entry = entries.get(self._key) or {}
            value = entry.pop("access_token", None) or (self._token.value if self._token else None)
            self._token = None
            entries[self._key] = entry
            self._cache.write(entries)
        if not value:
            return
        body = {
            "appkey": self._config.app_key.get_secret_value(),
            "appsecret": self._config.app_secret.get_secret_value(),
            "token": value,
        }
        data, status = _post_json(self._http, REVOKE_PATH, body)
        if status >= 400:
            raise KisAuthError(
                f"KIS {REVOKE_PATH}: revoke failed (HTTP {status}, code {data.get('code')})", status=status
            )
        log.info("revoked KIS access token for key %s", self._key)


def _entry_token(entry: dict[str, Any] | None) -> AccessToken | None:
    if not entry or not entry.get("access_token"):
        return None
    return AccessToken(str(entry["access_token"]), float(entry.get("expires_at", 0)))


def _post_json(http: httpx.Client, path: str, body: dict[str, str]) -> tuple[dict[str, Any], int]:
    try:
        resp = http.post(path, json=body)
    except httpx.TransportError as exc:
        raise KisTemporaryError(f"KIS {path}: {type(exc).__name__}") from None
    try:
        data = resp.json()
    except ValueError:
        raise KisTemporaryError(
            f"KIS {path}: malformed body (HTTP {resp.status_code})", status=resp.status_code
        ) from None
    if not isinstance(data, dict):
        raise KisTemporaryError(f"KIS {path}: unexpected body (HTTP {resp.status_code})")
    return data, resp.status_code
