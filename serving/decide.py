"""Requests → the served pyfunc → responses: the windows of one spec go to its champion in one call (one
row per window, keyed by position in the call), and requests that arrive while a call runs wait for the
next one (:class:`NaturalBatcher`), so an idle server answers at once and a busy one batches."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Generic, TypeVar

import numpy as np
import pandas as pd

from serving.champions import Served
from serving.schemas import PredictRequest, PredictResponse, field_error

_OHLCV = ("open", "high", "low", "close", "volume")
T = TypeVar("T")
R = TypeVar("R")


class NotServed(RuntimeError):
    """A request for a spec whose champion is not loaded (yet): the service answers 503."""


def _model_input(requests: list[PredictRequest]) -> pd.DataFrame:
    """The pyfunc's input (``pipeline.registry.pyfunc.model_signature``) for every request's window at once:
    ``ts`` naive KST (the schema made it so), float OHLCV, ``symbol`` = the request's position in the call,
    ``position`` / ``entry_price`` where any request gives one (NaN: the pyfunc's default). One frame per
    call, built from arrays."""
    lengths = [len(r.bars) for r in requests]
    bars = [b for r in requests for b in r.bars]
    n = len(bars)
    columns: dict[str, np.ndarray] = {"ts": np.array([b.ts for b in bars], dtype="datetime64[ns]")}
    for k in _OHLCV:
        columns[k] = np.fromiter((getattr(b, k) for b in bars), np.float64, n)
    columns["symbol"] = np.repeat(np.array([str(i) for i in range(len(requests))], dtype=object), lengths)
    for column in ("position", "entry_price"):
        given = [getattr(r, column) for r in requests]
        if any(v is not None for v in given):
            columns[column] = np.repeat([np.nan if v is None else float(v) for v in given], lengths)
    return pd.DataFrame(columns)


def _decide_spec(served: Served, requests: list[PredictRequest]) -> list[PredictResponse]:
    try:
        out = served.model.predict(_model_input(requests))
    except ValueError as exc:  # e.g. a window the model swapped in meanwhile finds too short
        raise field_error(("bars",), "window_rejected", f"{served.name} v{served.version}: {exc}") from None
    rows = {str(row["symbol"]): row for row in out.to_dict("records")}
    responses = []
    for i, request in enumerate(requests):
        row = rows[str(i)]
        regime = row["regime"]
        responses.append(
            PredictResponse(
                spec=served.spec,
                symbol=request.symbol,
                model_name=served.name,
                model_version=served.version,
                timestamp=str(row["timestamp"]),
                action=int(row["action"]),
                target_level=float(row["target_level"]),
                probabilities=[float(p) for p in row["probabilities"]],
                value=float(row["value"]),
                regime=None if regime is None or pd.isna(regime) else int(regime),
                simulated_position=float(row["simulated_position"]),
                latency_ms=0.0,
            )
        )
    return responses


def decide(served: Mapping[str, Served], requests: list[PredictRequest]) -> list[PredictResponse | Exception]:
    """One response (or the exception for it) per request, in order; one pyfunc call per spec."""
    by_spec: dict[str, list[int]] = {}
    for i, request in enumerate(requests):
        by_spec.setdefault(str(request.spec), []).append(i)
    out: list[PredictResponse | Exception] = [NotServed("unreachable")] * len(requests)
    for spec, rows in by_spec.items():
        model = served.get(spec)
        if model is None:
            for i in rows:
                out[i] = NotServed(f"model spec {spec}: no champion loaded yet")
            continue
        try:
            answers: list[PredictResponse | Exception] = list(
                _decide_spec(model, [requests[i] for i in rows])
            )
        except Exception as exc:  # noqa: BLE001 - handed to each caller of this spec, not swallowed
            answers = [exc] * len(rows)
        for i, answer in zip(rows, answers, strict=True):
            out[i] = answer
    return out


class NaturalBatcher(Generic[T, R]):
    """Runs ``run`` over the items submitted while its previous call ran (at most ``max_size`` at once),
    in a worker thread: no waiting when idle, bigger batches under load."""

    def __init__(self, run: Callable[[list[T]], list[R | Exception]], max_size: int) -> None:
        self._run, self._max = run, max_size
        self._queue: list[tuple[T, asyncio.Future[R]]] = []
        self._busy = False

    async def submit(self, item: T) -> R:
        """The result for ``item`` (its exception re-raised here)."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if not self._busy:
            self._busy = True
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue[: self._max], self._queue[self._max :]
                try:
                    results = await asyncio.to_thread(self._run, [item for item, _ in batch])
                except Exception as exc:  # noqa: BLE001 - every waiting caller gets it
                    results = [exc] * len(batch)
                for (_, future), result in zip(batch, results, strict=True):
                    if future.done():
                        continue
                    if isinstance(result, Exception):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        finally:
            self._busy = False


def stamp_latency(responses: list[PredictResponse], started: float) -> list[PredictResponse]:
    """Set ``latency_ms`` of each response to the time since ``started`` (``time.perf_counter``)."""
    elapsed = round((time.perf_counter() - started) * 1000.0, 3)
    for response in responses:
        response.latency_ms = elapsed
    return responses
