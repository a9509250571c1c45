"""Per-app-key request pacing with pyrate-limiter: one limiter per key per process (spec §4)."""

from __future__ import annotations

import math
import threading

from pyrate_limiter import Duration, InMemoryBucket, Limiter, Rate

_LIMITERS: dict[tuple[str, float], Limiter] = {}
_GUARD = threading.Lock()


def rate_for(per_second: float) -> Rate:
    """A pyrate-limiter Rate for ``per_second`` calls (fractions become 1 call per longer window)."""
    if per_second >= 1:
        return Rate(math.floor(per_second), Duration.SECOND)
    return Rate(1, int(1000 / per_second))


def limiter_for(key_fingerprint: str, per_second: float) -> Limiter:
    """The process-wide limiter for one app key: every client sharing the key shares the budget."""
    with _GUARD:
        limiter = _LIMITERS.get((key_fingerprint, per_second))
        if limiter is None:
            limiter = Limiter(InMemoryBucket([rate_for(per_second)]))
            _LIMITERS[(key_fingerprint, per_second)] = limiter
        return limiter


def acquire(limiter: Limiter, key_fingerprint: str) -> None:
    """Block until the key may send one more request."""
    limiter.try_acquire(key_fingerprint, blocking=True)
