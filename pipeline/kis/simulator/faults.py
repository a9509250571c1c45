"""Fault injection: latency, 5xx with the KIS envelope, dropped connections, malformed bodies, rate-limit
storms, SYDB0050 mid-pagination, and "order executed but the response is lost"."""

from __future__ import annotations

import random
import threading
from typing import Literal

from pydantic import BaseModel, Field

Action = Literal["none", "error", "drop", "malformed", "storm", "timeout"]


class FaultKnobs(BaseModel):
    """Rates apply to every /uapi request (demos); ``*_next`` counters hit the next N requests (tests)."""

    latency_ms: float = Field(0.0, ge=0)
    error_rate: float = Field(0.0, ge=0, le=1)
    drop_rate: float = Field(0.0, ge=0, le=1)
    malformed_rate: float = Field(0.0, ge=0, le=1)
    storm_rate: float = Field(0.0, ge=0, le=1)
    error_next: int = Field(0, ge=0)
    drop_next: int = Field(0, ge=0)
    malformed_next: int = Field(0, ge=0)
    storm_next: int = Field(0, ge=0)
    timeout_next: int = Field(0, ge=0)
    timeout_s: float = Field(30.0, ge=0)
    lose_order_next: int = Field(0, ge=0)
    sydb_next: int = Field(0, ge=0)


class Faults:
    """Thread-safe knob holder; decisions are seeded so a demo run is reproducible."""

    def __init__(self, seed: int = 0) -> None:
        self.knobs = FaultKnobs()
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def update(self, knobs: FaultKnobs) -> None:
        """Replace all knobs (an empty FaultKnobs clears every fault)."""
        with self._lock:
            self.knobs = knobs

    def _take(self, name: str) -> bool:
        left = getattr(self.knobs, name)
        if left > 0:
            setattr(self.knobs, name, left - 1)
            return True
        return False

    def decide(self) -> Action:
        """What to do to the current request, before it reaches a handler."""
        with self._lock:
            k = self.knobs
            for counter, action in (
                ("timeout_next", "timeout"),
                ("drop_next", "drop"),
                ("error_next", "error"),
                ("malformed_next", "malformed"),
                ("storm_next", "storm"),
            ):
                if self._take(counter):
                    return action  # type: ignore[return-value]
            roll = self._rng.random()
            for rate, action in (
                (k.drop_rate, "drop"),
                (k.error_rate, "error"),
                (k.malformed_rate, "malformed"),
                (k.storm_rate, "storm"),
            ):
                if roll < rate:
                    return action  # type: ignore[return-value]
                roll -= rate
            return "none"

    def lose_order_response(self) -> bool:
        """True once per ``lose_order_next``: execute the order, then drop the connection."""
        with self._lock:
            return self._take("lose_order_next")

    def sydb(self) -> bool:
        """True once per ``sydb_next``: answer a continuation page with SYDB0050."""
        with self._lock:
            return self._take("sydb_next")
