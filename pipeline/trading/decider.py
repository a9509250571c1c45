"""Asking the served model for decisions: one ``/predict_batch`` call per trading run, over HTTP.

Anything short of a finite, well-formed answer (no server, a timeout, a 4xx/5xx, a missing champion, a NaN)
comes back as a :class:`ModelUnavailable` for that window, never as a decision: the caller then takes no
new risk.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import httpx
import pandas as pd

from pipeline.config import Settings


class ModelUnavailable(Exception):
    """No usable decision for a window (the message says why)."""


@dataclass(frozen=True)
class Decision:
    """The served model's answer for one window."""

    spec: str
    action: int
    target_level: float
    model_version: str


@dataclass(frozen=True)
class WindowRequest:
    """One window to decide on: bars (tz-aware index, oldest first) and the position held now."""

    spec: str
    bars: pd.DataFrame
    #: The position as a level; None: the one the model's replay of the window holds.
    position: float | None
    entry_price: float | None = None

    def body(self) -> dict[str, Any]:
        b = self.bars
        rows = [
            {"ts": ts.isoformat(), "open": o, "high": h, "low": lo, "close": c, "volume": v}
            for ts, o, h, lo, c, v in zip(
                b.index, b["open"], b["high"], b["low"], b["close"], b["volume"], strict=True
            )
        ]
        body: dict[str, Any] = {"spec": self.spec, "bars": rows}
        if self.position is not None:
            body["position"] = self.position
        if self.entry_price:
            body["entry_price"] = self.entry_price
        return body


def server_url(settings: Settings) -> str:
    """The model server's base URL from settings."""
    return (settings.trading_server_url or f"http://{settings.serving_host}:{settings.serving_port}").rstrip(
        "/"
    )


class HttpDecider:
    """A client of the BentoML service (``KRX_TRADING_SERVER_URL``, ``KRX_SERVING_API_KEY``)."""

    def __init__(self, settings: Settings, transport: httpx.BaseTransport | None = None) -> None:
        headers = {}
        if settings.serving_api_key is not None:
            headers["X-API-Key"] = settings.serving_api_key.get_secret_value()
        self.url = server_url(settings)
        self.max_batch = settings.serving_max_batch
        self.max_bars = settings.serving_max_bars
        self._http = httpx.Client(
            headers=headers, timeout=settings.trading_server_timeout_s, transport=transport
        )

    def __repr__(self) -> str:
        return f"HttpDecider(url={self.url!r})"

    def close(self) -> None:
        self._http.close()

    def decide(self, requests: list[WindowRequest]) -> list[Decision | ModelUnavailable]:
        """One answer per request, in order."""
        out: list[Decision | ModelUnavailable] = []
        for lo in range(0, len(requests), self.max_batch):
            out.extend(self._batch(requests[lo : lo + self.max_batch]))
        return out

    def _batch(self, requests: list[WindowRequest]) -> list[Decision | ModelUnavailable]:
        bodies = []
        for r in requests:
            window = WindowRequest(r.spec, r.bars.iloc[-self.max_bars :], r.position, r.entry_price)
            bodies.append(window.body())
        try:
            resp = self._http.post(f"{self.url}/predict_batch", json=bodies)
        except httpx.HTTPError as exc:
            return [ModelUnavailable(f"model server unreachable at {self.url}: {type(exc).__name__}")] * len(
                requests
            )
        if resp.status_code == 400 and len(requests) > 1:
            # One bad window fails the whole batch: ask one by one so the others still get decisions.
            return [a for r in requests for a in self._batch([r])]
        if resp.status_code != 200:
            why = f"model server answered {resp.status_code}: {resp.text[:300]}"
            return [ModelUnavailable(why)] * len(requests)
        try:
            answers = resp.json()
        except ValueError:
            return [ModelUnavailable("model server answered something that is not JSON")] * len(requests)
        if not isinstance(answers, list) or len(answers) != len(requests):
            return [ModelUnavailable("model server answered the wrong number of decisions")] * len(requests)
        return [_decision(a) for a in answers]


def _decision(answer: Any) -> Decision | ModelUnavailable:
    try:
        level = float(answer["target_level"])
        action = int(answer["action"])
        decision = Decision(str(answer["spec"]), action, level, str(answer["model_version"]))
    except (KeyError, TypeError, ValueError) as exc:
        return ModelUnavailable(f"malformed decision from the model server ({type(exc).__name__}: {exc})")
    if not math.isfinite(level):
        return ModelUnavailable(f"non-finite target level {level!r} from the model server")
    return decision
