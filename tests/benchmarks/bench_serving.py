"""Benchmark: the started model server (``krx serve``, BentoML) on 250-bar windows over loopback HTTP versus
the same pyfunc in process.

Usage: python tests/benchmarks/bench_serving.py [--quick] [--requests N] [--batch K]
A small agent is trained and registered as champion in a throwaway MLflow store; the server's answer is
checked to equal the in-process pyfunc's before anything is timed. The load generator runs in this process
(on the same cores). Ends with one JSON line: p50_ms_c1, p99_ms_c1 (target <= 10 ms), rps_c32 (target >=
300), batch_windows_per_s (target >= 2,000 through /predict_batch), inproc_ms (the pyfunc's p50 on the same
windows) and overhead_ratio (p50_ms_c1 / inproc_ms).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.benchmarks.bench_pyfunc import percentiles, registered_agent

WINDOW = 250
CONCURRENCY = 32


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (CI smoke run)")
    parser.add_argument("--requests", type=int, default=400, help="requests per latency/throughput phase")
    parser.add_argument("--batch", type=int, default=256, help="windows per /predict_batch call")
    args = parser.parse_args()
    steps = 2_000
    if args.quick:
        args.requests, args.batch, steps = 40, 32, 300
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        os.environ["KRX_VAR_DIR"] = str(Path(tmp) / "var")  # a throwaway MLflow store, before settings
        figures = run(args.requests, args.batch, steps, Path(tmp))
    print(json.dumps(figures))


def start_server(tmp: Path) -> tuple[str, subprocess.Popen[bytes]]:
    """``krx serve`` on a free loopback port, in its own process group; returns once /readyz passes."""
    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    env = {**os.environ, "KRX_SERVING_SPECS": "kospi200f-1d", "BENTOML_HOME": str(tmp / "bentoml")}
    env |= {"BENTOML_DO_NOT_TRACK": "true", "MLFLOW_DISABLE_TELEMETRY": "true"}
    krx = Path(sys.executable).with_name("krx")
    log = (tmp / "server.log").open("wb")
    process = subprocess.Popen(
        [str(krx), "serve", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"krx serve exited:\n{(tmp / 'server.log').read_text()[-3000:]}")
        try:
            if httpx.get(url + "/readyz", timeout=5).status_code == 200:
                return url, process
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit("the server did not become ready within 180 s")


def body(window: Any) -> dict[str, Any]:
    bars = [
        {"ts": ts.isoformat(), "open": o, "high": h, "low": lo, "close": c, "volume": v}
        for ts, o, h, lo, c, v in zip(
            window.index, *(window[k] for k in ("open", "high", "low", "close", "volume")), strict=True
        )
    ]
    return {"spec": "kospi200f-1d", "bars": bars, "position": 0.0}


async def concurrent(url: str, payloads: list[bytes], n: int, concurrency: int) -> tuple[float, list[float]]:
    """``n`` POST /predict calls from ``concurrency`` tasks; (wall seconds, each call's seconds)."""
    import httpx

    times: list[float] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"content-type": "application/json"}
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:

        async def worker(k: int) -> None:
            for i in range(k, n, concurrency):
                started = time.perf_counter()
                r = await client.post("/predict", content=payloads[i % len(payloads)], headers=headers)
                assert r.status_code == 200, r.text
                times.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker(k) for k in range(concurrency)))
        return time.perf_counter() - started, times


def run(n: int, k: int, steps: int, tmp: Path) -> dict[str, float | int | bool]:
    """Register, start, check equality, then time c=1, c=32, batches and the pyfunc in process."""
    import httpx

    from pipeline.registry.pyfunc import to_model_input

    _, model, bars = registered_agent(steps)
    starts = np.linspace(0, len(bars) - WINDOW, max(n, k)).astype(int)
    windows = [bars.iloc[s : s + WINDOW] for s in starts]
    bodies = [body(w) for w in windows]
    payloads = [json.dumps(b).encode() for b in bodies]
    url, process = start_server(tmp)
    try:
        with httpx.Client(base_url=url, timeout=60, headers={"content-type": "application/json"}) as client:
            served = client.post("/predict", content=payloads[0]).json()
            local = model.predict(to_model_input(windows[0], position=0.0)).iloc[0]
            assert served["action"] == local["action"] and served["value"] == local["value"], (
                "server != pyfunc"
            )
            print("server decisions equal the in-process pyfunc on the same bars", flush=True)

            single = []
            for i in range(n):
                started = time.perf_counter()
                assert client.post("/predict", content=payloads[i % len(payloads)]).status_code == 200
                single.append(time.perf_counter() - started)
            p50, p99 = percentiles(single)
            print(f"c=1: p50 {p50:.2f} ms, p99 {p99:.2f} ms", flush=True)

            wall, times = asyncio.run(concurrent(url, payloads, n * 2, CONCURRENCY))
            rps = len(times) / wall
            c32_p50, c32_p99 = percentiles(times)
            print(
                f"c={CONCURRENCY}: {rps:,.0f} req/s, p50 {c32_p50:.1f} ms, p99 {c32_p99:.1f} ms", flush=True
            )

            batch = json.dumps(bodies[:k]).encode()
            assert client.post("/predict_batch", content=batch).status_code == 200  # warm-up
            batch_times = []
            for _ in range(3 if k > 64 else 5):
                started = time.perf_counter()
                r = client.post("/predict_batch", content=batch)
                assert r.status_code == 200 and len(r.json()) == k, r.text[:500]
                batch_times.append(time.perf_counter() - started)
            batch_rate = k / float(np.median(batch_times))
            print(f"/predict_batch of {k}: {batch_rate:,.0f} windows/s", flush=True)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)

    inputs = [to_model_input(w, position=0.0) for w in windows[:n]]
    model.predict(inputs[0])
    local_times = []
    for frame in inputs:
        started = time.perf_counter()
        model.predict(frame)
        local_times.append(time.perf_counter() - started)
    inproc, _ = percentiles(local_times)
    print(f"in process: pyfunc p50 {inproc:.2f} ms", flush=True)
    return {
        "p50_ms_c1": round(p50, 3),
        "p99_ms_c1": round(p99, 3),
        "rps_c32": round(rps, 1),
        "p50_ms_c32": round(c32_p50, 3),
        "p99_ms_c32": round(c32_p99, 3),
        "batch_windows_per_s": round(batch_rate, 1),
        "inproc_ms": round(inproc, 3),
        "overhead_ratio": round(p50 / inproc, 3),
        "requests": n,
        "batch_windows": k,
        "window_bars": WINDOW,
        "p99_target_met": p99 <= 10.0,
        "rps_target_met": rps >= 300,
        "batch_target_met": batch_rate >= 2_000,
    }


if __name__ == "__main__":
    main()
