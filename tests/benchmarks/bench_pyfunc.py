"""Benchmark: decisions of the registered pyfunc (loaded by ``models:/<name>@champion``) on 250-bar windows,
one window per call and many symbols per call, versus ``TradingAgent.decide`` in process.

Usage: python tests/benchmarks/bench_pyfunc.py [--quick] [--windows N] [--symbols N]
A small agent is trained (ta-v1 features, regimes, the default LSTM width) and registered in a throwaway
MLflow store; its decisions are checked to equal the in-process agent's before anything is timed. Ends with
one JSON line: pyfunc_ms_p50, pyfunc_ms_p99 (target <= 5 ms), batch_windows_per_s (target >= 5,000 on 2
cores), overhead_ratio (pyfunc p50 / decide p50), and the in-process and feature-only figures that explain
where the time goes: features + regimes + scaling (``market``), the fast replay alone (``replay``) and the
share of windows whose replay had a call too close for float32 and went to the reference replay.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

WINDOW = 250


def percentiles(times_s: list[float]) -> tuple[float, float]:
    """p50 and p99 in milliseconds."""
    ms = np.asarray(times_s) * 1000.0
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def timed_each(fn: Callable[[int], object], n: int) -> list[float]:
    """Wall time of ``fn(i)`` for i in range(n), after one warm-up call."""
    fn(0)
    out = []
    for i in range(n):
        started = time.perf_counter()
        fn(i)
        out.append(time.perf_counter() - started)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (CI smoke run)")
    parser.add_argument("--windows", type=int, default=200, help="single-window calls timed")
    parser.add_argument("--symbols", type=int, default=256, help="windows (symbols) per batched call")
    args = parser.parse_args()
    if args.quick:
        args.windows, args.symbols = 20, 16
    with tempfile.TemporaryDirectory(prefix="bench-pyfunc-") as tmp:
        os.environ["KRX_VAR_DIR"] = tmp  # a throwaway MLflow store, before settings are read
        figures = run(args.windows, args.symbols)
    print(json.dumps(figures))


def registered_agent(steps: int = 2_000) -> tuple[Any, Any, pd.DataFrame]:
    """Train a small agent (``steps`` env steps), register it as ``champion``, load it back by that alias:
    (agent, pyfunc, bars)."""
    from pipeline.config import get_settings
    from pipeline.registry.promotion import CHAMPION
    from pipeline.registry.pyfunc import load_pyfunc
    from pipeline.registry.register import register_agent
    from pipeline.registry.specs import resolve_spec
    from pipeline.registry.tracking import Tracker
    from pipeline.rl.synthetic import regime_switching_bars
    from pipeline.rl.train import train

    spec = resolve_spec(
        "kospi200f-1d",
        params={"mode": "sync", "n_workers": 1, "total_steps": steps, "seeds": [0], "n_folds": 1},
    )
    bars = regime_switching_bars(1_500, seed=5)[["open", "high", "low", "close", "volume"]]
    bars.index = bars.index.tz_localize("Asia/Seoul").rename("ts")
    agent = train(spec.train_config(0), bars.iloc[:800]).agent
    tracker = Tracker(get_settings())
    version = register_agent(agent, spec, tracker)
    tracker.client.set_registered_model_alias(spec.registered_model_name, CHAMPION, version)
    model = load_pyfunc(spec.registered_model_name, CHAMPION, tracker.client)
    print(f"registered {spec.registered_model_name} v{version}, loaded by alias {CHAMPION}", flush=True)
    return agent, model, bars


def run(n: int, k: int) -> dict[str, float | int | bool]:
    """Check the pyfunc equals the agent, then time single and batched calls; returns the figures."""
    from pipeline.registry.pyfunc import to_model_input
    from pipeline.rl.replay import replay_window

    agent, model, bars = registered_agent()
    starts = np.linspace(0, len(bars) - WINDOW, max(n, k)).astype(int)
    windows = [bars.iloc[s : s + WINDOW] for s in starts]
    inputs = [to_model_input(w) for w in windows]
    check = model.predict(inputs[0]).iloc[0]
    expected = agent.decide(windows[0])
    assert check["action"] == expected["action"] and check["value"] == expected["value"], "pyfunc != agent"
    print("pyfunc decisions equal TradingAgent.decide on the same bars", flush=True)

    pyfunc_p50, pyfunc_p99 = percentiles(timed_each(lambda i: model.predict(inputs[i % len(inputs)]), n))
    decide_p50, decide_p99 = percentiles(timed_each(lambda i: agent.decide(windows[i % len(windows)]), n))
    market_p50, _ = percentiles(timed_each(lambda i: agent.market(windows[i % len(windows)]), n))
    markets = [agent.market(w) for w in windows[:n]]
    replays = [replay_window(agent._float64_policy(), m, agent.config.env) for m in markets]
    replay_p50, _ = percentiles(
        timed_each(lambda i: replay_window(agent._float64_policy(), markets[i], agent.config.env), n)
    )
    deferred = sum(r is None for r in replays) / len(replays)
    print(f"single: pyfunc p50 {pyfunc_p50:.1f} ms p99 {pyfunc_p99:.1f} ms", flush=True)
    print(f"single: decide p50 {decide_p50:.1f} ms p99 {decide_p99:.1f} ms", flush=True)
    print(f"features + regimes + scaling of one window: p50 {market_p50:.1f} ms", flush=True)
    print(
        f"fast replay of one window: p50 {replay_p50:.1f} ms, {deferred:.1%} left to the reference",
        flush=True,
    )

    batch = pd.concat(
        [to_model_input(w, symbol=f"S{i:04d}") for i, w in enumerate(windows[:k])], ignore_index=True
    )
    batch_s = float(np.median(timed_each(lambda _: model.predict(batch), 3)))
    in_process_s = float(np.median(timed_each(lambda _: agent.decide_batch(windows[:k]), 3)))
    print(
        f"batch of {k}: pyfunc {k / batch_s:,.0f} windows/s, decide_batch {k / in_process_s:,.0f}", flush=True
    )

    return {
        "pyfunc_ms_p50": round(pyfunc_p50, 3),
        "pyfunc_ms_p99": round(pyfunc_p99, 3),
        "batch_windows_per_s": round(k / batch_s, 1),
        "overhead_ratio": round(pyfunc_p50 / decide_p50, 3),
        "decide_ms_p50": round(decide_p50, 3),
        "decide_ms_p99": round(decide_p99, 3),
        "decide_batch_windows_per_s": round(k / in_process_s, 1),
        "market_ms_p50": round(market_p50, 3),
        "replay_ms_p50": round(replay_p50, 3),
        "deferred_share": round(deferred, 4),
        "window_bars": WINDOW,
        "batch_symbols": k,
        "single_target_met": pyfunc_p99 <= 5.0,
        "batch_target_met": k / batch_s >= 5_000,
    }


if __name__ == "__main__":
    main()
