"""Prometheus metrics of the model server, on BentoML's ``/metrics``: decisions by model, version and action,
latency per endpoint, and champion loads. ``prometheus_client`` is imported only when the service starts:
BentoML points it at its multi-process directory first, so every worker's samples are collected."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

#: Latency buckets (seconds): the pyfunc takes milliseconds per window, a big batch up to a second.
_BUCKETS = (0.002, 0.004, 0.006, 0.008, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5)


class ServingMetrics:
    """The service's own metrics (created once per process: see :func:`serving_metrics`)."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Histogram

        self.predictions: Any = Counter("krx_predictions", "Decisions served", ["model", "version", "action"])
        self.latency: Any = Histogram(
            "krx_request_latency_seconds", "Server-side time per call", ["endpoint"], buckets=_BUCKETS
        )
        self.loads: Any = Counter(
            "krx_model_loads", "Champion load attempts", ["model", "version", "outcome"]
        )

    def record(self, endpoint: str, seconds: float, answers: list[Any]) -> None:
        """Count each answer by model, version and action and observe the call's latency."""
        self.latency.labels(endpoint=endpoint).observe(seconds)
        for a in answers:
            self.predictions.labels(model=a.model_name, version=a.model_version, action=str(a.action)).inc()

    def load(self, model: str, version: str, outcome: str) -> None:
        """Count one load attempt (``loaded`` or ``failed``)."""
        self.loads.labels(model=model, version=version, outcome=outcome).inc()


@lru_cache(maxsize=1)
def serving_metrics() -> ServingMetrics:
    """The process's metrics (a second registration of the same names would raise)."""
    return ServingMetrics()
