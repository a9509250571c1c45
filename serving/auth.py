"""Optional API key: when ``KRX_SERVING_API_KEY`` is set, every request needs it in header ``X-API-Key``,
except the probes and metrics (``/livez``, ``/readyz``, ``/metrics``) that orchestrators scrape."""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from pipeline.config import get_settings

HEADER = "x-api-key"
EXEMPT = frozenset({"/livez", "/readyz", "/metrics"})
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
_BODY = json.dumps(
    {"error": "unauthorized", "detail": f"missing or wrong API key in header {HEADER.title()}"}
).encode()


class ApiKeyMiddleware:
    """ASGI middleware refusing (401) HTTP requests without the configured key; open when none is set."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app
        secret = get_settings().serving_api_key
        self._key = secret.get_secret_value().encode() if secret is not None else None

    def __repr__(self) -> str:
        return f"ApiKeyMiddleware(enforced={self._key is not None})"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._key is None or scope["type"] != "http" or scope.get("path", "") in EXEMPT:
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers") or []).get(HEADER.encode(), b"")
        if hmac.compare_digest(given, self._key):
            await self.app(scope, receive, send)
            return
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(_BODY)).encode())]
        await send({"type": "http.response.start", "status": 401, "headers": headers})
        await send({"type": "http.response.body", "body": _BODY})
