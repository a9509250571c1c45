"""Run A3C workers: asynchronously in processes (torch.multiprocessing) or round-robin in this process."""

from __future__ import annotations

import queue as queue_mod
import time
import traceback
from collections.abc import Callable
from typing import Any

import torch
import torch.multiprocessing as mp

from pipeline.rl.a3c import A3CWorker, LocalCounter, Metrics, SharedAdam, StepCounter
from pipeline.rl.config import TrainConfig
from pipeline.rl.market import MarketArrays
from pipeline.rl.network import LSTMActorCritic, single_threaded

OnMetrics = Callable[[Metrics], None]


def budget_reached(config: TrainConfig, steps: int, elapsed: float) -> bool:
    """Whether the step or the time budget is spent."""
    if config.total_steps is not None and steps >= config.total_steps:
        return True
    return config.max_seconds is not None and elapsed >= config.max_seconds


def worker_main(
    rank: int,
    config: TrainConfig,
    market: MarketArrays,
    bounds: tuple[int, int] | None,
    global_model: LSTMActorCritic,
    optimizer: SharedAdam,
    counter: StepCounter,
    stop: Any,
    metrics_queue: Any,
    t_start: float,
) -> None:
    """Body of one worker process: update until the budget is spent or the parent sets ``stop``."""
    torch.set_num_threads(1)  # N workers on N cores: intra-op threads would only contend
    try:
        worker = A3CWorker(rank, config, market, bounds)
        while not stop.is_set():
            metrics = worker.update(global_model, optimizer, counter, time.time() - t_start)
            metrics_queue.put(metrics)
            if budget_reached(config, metrics["global_step"], time.time() - t_start):
                break
    except Exception:  # noqa: BLE001 - any failure is reported to the parent, which raises it
        metrics_queue.put({"type": "error", "rank": rank, "traceback": traceback.format_exc()})
    finally:
        metrics_queue.put({"type": "done", "rank": rank})


def run_async(
    config: TrainConfig,
    market: MarketArrays,
    global_model: LSTMActorCritic,
    optimizer: SharedAdam,
    on_metrics: OnMetrics,
    bounds: tuple[int, int] | None = None,
) -> int:
    """True A3C: ``n_workers`` processes share ``global_model`` and ``optimizer``; returns the env steps."""
    ctx: Any = mp.get_context(config.start_method)
    global_model.share_memory()
    counter = ctx.Value("q", 0)
    stop, metrics_queue = ctx.Event(), ctx.Queue()
    t_start = time.time()
    procs = [
        ctx.Process(
            target=worker_main,
            args=(
                rank,
                config,
                market,
                bounds,
                global_model,
                optimizer,
                counter,
                stop,
                metrics_queue,
                t_start,
            ),
            daemon=True,
        )
        for rank in range(config.n_workers)
    ]
    for p in procs:
        p.start()
    errors = _drain(config, procs, metrics_queue, stop, on_metrics, counter, t_start)
    for p in procs:
        p.join(timeout=30)
        if p.is_alive():  # only our own children, by handle
            p.terminate()
    if errors:
        raise RuntimeError(f"A3C worker failed:\n{errors[0]}")
    return int(counter.value)


def _drain(
    config: TrainConfig,
    procs: list[Any],
    metrics_queue: Any,
    stop: Any,
    on_metrics: OnMetrics,
    counter: Any,
    t_start: float,
) -> list[str]:
    # The parent must empty the queue before joining, or a child blocks flushing its pipe.
    done: set[int] = set()
    errors: list[str] = []
    while len(done) < len(procs):
        try:
            msg = metrics_queue.get(timeout=1.0)
        except queue_mod.Empty:
            if not any(p.is_alive() for p in procs):
                errors.append("worker processes exited without reporting")
                break
            msg = None
        if msg is not None and msg.get("type") == "done":
            done.add(msg["rank"])
        elif msg is not None and msg.get("type") == "error":
            errors.append(msg["traceback"])
            stop.set()
        elif msg is not None:
            on_metrics(msg)
        if budget_reached(config, int(counter.value), time.time() - t_start):
            stop.set()
    return errors


def run_sync(
    config: TrainConfig,
    market: MarketArrays,
    global_model: LSTMActorCritic,
    optimizer: SharedAdam,
    on_metrics: OnMetrics,
    bounds: tuple[int, int] | None = None,
) -> int:
    """The same workers and updates, round-robin in this process: deterministic for a step budget."""
    workers = [A3CWorker(rank, config, market, bounds) for rank in range(config.n_workers)]
    counter = LocalCounter()
    t_start = time.time()
    with single_threaded():
        while True:
            for worker in workers:
                metrics = worker.update(global_model, optimizer, counter, time.time() - t_start)
                on_metrics(metrics)
                if budget_reached(config, counter.value, time.time() - t_start):
                    return counter.value
