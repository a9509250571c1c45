"""BentoML service ``KrxTrader``: the ``champion`` of every served model spec, loaded from the MLflow registry
with ``mlflow.pyfunc.load_model`` and followed as the alias moves, answering windows of raw bars with the
decision of that same pyfunc (no feature or policy code here). Run it with ``krx serve``."""

from __future__ import annotations

import time

import bentoml
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse

from pipeline.config import get_settings
from serving.auth import ApiKeyMiddleware
from serving.schemas import PredictRequest, PredictResponse, set_model_check

with bentoml.importing():
    from serving.champions import Champions
    from serving.decide import NaturalBatcher, NotServed, decide, stamp_latency
    from serving.metrics import serving_metrics

SETTINGS = get_settings()


@bentoml.service(name="krx-trader", workers=SETTINGS.serving_workers, traffic={"timeout": 60})
class KrxTrader:
    """POST /predict (one window), POST /predict_batch (many, adaptively batched); /readyz once every
    served spec has its champion loaded; /metrics."""

    def __init__(self) -> None:
        self.metrics = serving_metrics()
        self.champions = Champions(get_settings(), on_load=self.metrics.load)
        set_model_check(self.champions.check)
        self.champions.start()
        self.batcher = NaturalBatcher(self._decide, SETTINGS.serving_max_batch)

    def _decide(self, requests: list[PredictRequest]) -> list[PredictResponse | Exception]:
        return decide(self.champions.snapshot(), requests)

    async def __is_ready__(self) -> bool:
        why = self.champions.not_ready()
        if why is not None:
            raise HTTPException(status_code=503, detail=f"not ready: {why}")
        return True

    @bentoml.api(route="/predict")
    async def predict(self, request: PredictRequest, /) -> PredictResponse:
        """The decision for the bar after the window's last."""
        started = time.perf_counter()
        try:
            answer = await self.batcher.submit(request)
        except NotServed as exc:
            return JSONResponse({"error": "model not ready", "detail": str(exc)}, status_code=503)  # type: ignore[return-value]
        stamp_latency([answer], started)
        self.metrics.record("predict", time.perf_counter() - started, [answer])
        return answer

    @bentoml.api(
        route="/predict_batch",
        batchable=True,
        max_batch_size=SETTINGS.serving_max_batch,
        max_latency_ms=10_000,
    )
    def predict_batch(self, requests: list[PredictRequest], /) -> list[PredictResponse]:
        """One decision per window, in order; calls arriving together are batched into one."""
        started = time.perf_counter()
        answers = decide(self.champions.snapshot(), requests)
        for answer in answers:
            if isinstance(answer, NotServed):
                raise bentoml.exceptions.ServiceUnavailable(str(answer))
            if isinstance(answer, Exception):
                raise answer
        done = stamp_latency([a for a in answers if isinstance(a, PredictResponse)], started)
        self.metrics.record("predict_batch", time.perf_counter() - started, done)
        return done


KrxTrader.add_asgi_middleware(ApiKeyMiddleware)  # type: ignore[attr-defined]  # a bentoml Service
