"""KIS benchmark: quotes/s the simulator serves to the client over loopback, and the client's own
overhead per call with the network taken out (httpx MockTransport). Last line: one JSON object.

The simulator enforces KIS's own limits by default (20 calls/s per real key, 2/s per paper key), which
would cap the throughput figure at 20/s: this benchmark raises the simulator's limit explicitly
(``--rate-limit``, ``BENCH_RATE_LIMIT``) and the client's pacing with it, and says so in its output."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from pydantic import SecretStr

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from pipeline.kis import KisClient, KisConfig  # noqa: E402
from pipeline.kis.config import SIM_APP_KEY, SIM_APP_SECRET  # noqa: E402
from pipeline.kis.simulator.server import free_port  # noqa: E402

#: Calls per second the simulator allows during the throughput measurement (KIS itself: 20/s real).
BENCH_RATE_LIMIT = 1_000_000

QUOTE = {
    "rt_cd": "0",
    "msg_cd": "MCA00000",
    "msg1": "정상처리 되었습니다.",
    "output": {
        "stck_prpr": "71500",
        "prdy_ctrt": "0.42",
        "stck_oprc": "71000",
        "stck_hgpr": "72000",
        "stck_lwpr": "70900",
        "acml_vol": "1234567",
        "stck_mxpr": "92900",
        "stck_llam": "50100",
        "stck_sdpr": "71200",
        "aspr_unit": "100",
        "temp_stop_yn": "N",
    },
}


def _config(base_url: str, cache: Path) -> KisConfig:
    return KisConfig(
        env="sim",
        base_url=base_url,
        app_key=SecretStr(SIM_APP_KEY),  # the simulator accepts its configured pairs only
        app_secret=SecretStr(SIM_APP_SECRET),
        account_no=SecretStr("12345678"),
        token_cache=cache,
        rate_limit=float(BENCH_RATE_LIMIT),
        token_min_interval_s=0.0,
    )


def start_simulator(tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    """The simulator in its own process (its own core), as `krx sim` would run it."""
    port = free_port()
    env = {**os.environ, "KRX_VAR_DIR": str(tmp), "PYTHONPATH": str(ROOT)}
    cmd = [
        sys.executable,
        "-m",
        "pipeline.kis.simulator",
        "--port",
        str(port),
        "--db",
        str(tmp / "sim.db"),
        "--clock-start",
        "2025-06-10T10:00:00",
        "--rate-limit",
        str(BENCH_RATE_LIMIT),
        "--token-interval",
        "0",
    ]
    proc = subprocess.Popen(cmd, env=env, cwd=str(ROOT), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/sim/health", timeout=1).status_code == 200:
                return proc, base
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("simulator did not start")


def quotes_per_s(base: str, cache: Path, total: int, threads: int) -> float:
    """Quote calls per second with ``threads`` clients sharing one token."""
    clients = [KisClient(_config(base, cache)) for _ in range(threads)]
    for c in clients:
        c.stock_price("005930")  # token + connection warm-up
    per = total // threads

    def run(c: KisClient) -> None:
        for _ in range(per):
            c.stock_price("005930")

    workers = [threading.Thread(target=run, args=(c,)) for c in clients]
    started = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - started
    for c in clients:
        c.close()
    return per * threads / elapsed


def client_overhead_ms(cache: Path, calls: int) -> float:
    """Mean ms per typed quote call when the transport answers instantly (no network, no server)."""
    body = json.dumps(QUOTE, ensure_ascii=False).encode()
    token = json.dumps({"access_token": "t", "access_token_token_expired": "2099-01-01 00:00:00"}).encode()

    def answer(request: httpx.Request) -> httpx.Response:
        payload = token if request.url.path == "/oauth2/tokenP" else body
        return httpx.Response(
            200, content=payload, headers={"content-type": "application/json", "tr_cont": "D"}
        )

    client = KisClient(_config("http://kis.invalid", cache), transport=httpx.MockTransport(answer))
    for _ in range(200):
        client.stock_price("005930")
    started = time.perf_counter()
    for _ in range(calls):
        client.stock_price("005930")
    return (time.perf_counter() - started) / calls * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes (< 30 s)")
    args = parser.parse_args()
    total = 600 if args.quick else 6000
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        print(f"client overhead: {total} calls through MockTransport", flush=True)
        overhead = client_overhead_ms(tmp / "mock_token.json", total)
        print(f"  {overhead:.3f} ms/call", flush=True)
        proc, base = start_simulator(tmp)
        try:
            print(f"simulator at {base}: {total} quotes, 1 and 4 client threads", flush=True)
            print(
                f"  rate limit raised to {BENCH_RATE_LIMIT:,} calls/s for this measurement "
                "(the simulator's default is KIS's: 20/s real, 2/s paper)",
                flush=True,
            )
            single = quotes_per_s(base, tmp / "token.json", total, 1)
            print(f"  1 thread: {single:.0f} quotes/s", flush=True)
            multi = quotes_per_s(base, tmp / "token.json", total, 4)
            print(f"  4 threads: {multi:.0f} quotes/s", flush=True)
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    figures = {
        "sim_quotes_per_s": round(max(single, multi), 1),
        "sim_quotes_per_s_1_client": round(single, 1),
        "sim_quotes_per_s_4_clients": round(multi, 1),
        "client_overhead_ms": round(overhead, 4),
        "calls": total,
        "sim_rate_limit_per_s": BENCH_RATE_LIMIT,
        "cpus": os.cpu_count(),
        "targets": {"sim_quotes_per_s": 500, "client_overhead_ms": 1},
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
