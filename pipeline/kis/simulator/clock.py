"""The simulator's controllable clock: wall time by default, settable and accelerated for replays."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta

from pipeline.market import KST


def to_kst(moment: datetime) -> datetime:
    """Naive datetimes are read as KST; aware ones are converted."""
    return moment.replace(tzinfo=KST) if moment.tzinfo is None else moment.astimezone(KST)


class SimClock:
    """Simulated now = anchor + (monotonic elapsed) x speed. ``set`` re-anchors without jumps elsewhere."""

    def __init__(self, start: datetime | None = None, speed: float = 1.0) -> None:
        self._lock = threading.Lock()
        self._anchor_sim = to_kst(start) if start else datetime.now(KST)
        self._anchor_real = time.monotonic()
        self._speed = speed

    @property
    def speed(self) -> float:
        """Simulated seconds per real second."""
        return self._speed

    def now(self) -> datetime:
        """Current simulated time (KST, tz-aware)."""
        with self._lock:
            elapsed = (time.monotonic() - self._anchor_real) * self._speed
            return self._anchor_sim + timedelta(seconds=elapsed)

    def set(self, when: datetime | None = None, speed: float | None = None) -> datetime:
        """Jump to ``when`` (keep the current time if None) and/or change ``speed``; returns the new now."""
        current = self.now()
        with self._lock:
            self._anchor_sim = to_kst(when) if when else current
            self._anchor_real = time.monotonic()
            if speed is not None:
                if speed <= 0:
                    raise ValueError("clock speed must be positive")
                self._speed = speed
            return self._anchor_sim
