"""A started model server for the serving tests: a tiny agent registered in a throwaway MLflow store,
``krx serve`` on a free loopback port, and request helpers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
from mlflow import MlflowClient

from pipeline.config import Settings
from pipeline.registry.specs import ModelSpec
from pipeline.registry.tracking import Tracker
from pipeline.rl.agent import TradingAgent

ROOT = Path(__file__).parents[2]
API_KEY = "test-key-never-logged-7f3a"
#: The longest window the test server accepts (KRX_SERVING_MAX_BARS), kept small so a too-long case is cheap.
MAX_BARS = 300


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check: Callable[[], bool], what: str, timeout_s: float = 60.0, every_s: float = 0.1) -> None:
    """Poll ``check`` until it is true; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def payload(bars: pd.DataFrame, **fields: Any) -> dict[str, Any]:
    """A /predict body: ``bars`` (tz-aware index ``ts``) as ISO bars, plus ``fields`` (spec, position …)."""
    rows = [
        {"ts": ts.isoformat(), "open": o, "high": h, "low": lo, "close": c, "volume": v}
        for ts, o, h, lo, c, v in zip(
            bars.index, bars["open"], bars["high"], bars["low"], bars["close"], bars["volume"], strict=True
        )
    ]
    return {"bars": rows, **fields}


@dataclass
class Server:
    """The started service and what the tests need to talk to it and to its registry."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path
    settings: Settings
    tracker: Tracker
    spec: ModelSpec
    agent: TradingAgent
    bars: pd.DataFrame
    min_bars: int
    readyz_before_champion: httpx.Response | None = None
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=30.0))

    @property
    def client(self) -> MlflowClient:
        return self.tracker.client

    @property
    def name(self) -> str:
        return self.spec.registered_model_name

    def headers(self) -> dict[str, str]:
        return {"X-API-Key": API_KEY}

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.http.get(self.url + path, **kw)

    def post(self, path: str, body: Any, key: bool = True) -> httpx.Response:
        return self.http.post(self.url + path, json=body, headers=self.headers() if key else {})

    def predict(self, bars: pd.DataFrame, **fields: Any) -> httpx.Response:
        return self.post("/predict", payload(bars, **fields))

    def champion(self) -> str:
        return str(self.client.get_model_version_by_alias(self.name, "champion").version)

    def set_champion(self, version: str) -> None:
        self.client.set_registered_model_alias(self.name, "champion", version)

    def answering_version(self) -> str:
        response = self.predict(self.bars.iloc[-250:], spec=self.spec.name)
        assert response.status_code == 200, response.text
        return str(response.json()["model_version"])

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        self.http.close()
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)  # the group krx serve started (bentoml + workers)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)


def start_server(var_dir: Path, env: dict[str, str], log: Path) -> tuple[str, subprocess.Popen[bytes]]:
    """``krx serve`` on a free port in its own process group, with only ``env``'s KRX_ settings."""
    port = free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("KRX_")}
    clean |= {
        "KRX_VAR_DIR": str(var_dir),
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "BENTOML_HOME": str(var_dir / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "true",
        **env,
    }
    krx = Path(sys.executable).with_name("krx")
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(krx), "serve", "--port", str(port)],
            cwd=var_dir.parent,
            env=clean,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return f"http://127.0.0.1:{port}", process


def wait_live(srv: Server) -> None:
    """Wait until the started server answers /livez (failing with its log if the process exited)."""

    def live() -> bool:
        assert srv.process.poll() is None, f"krx serve exited:\n{srv.log_text()[-4000:]}"
        try:
            return srv.get("/livez").status_code == 200
        except httpx.TransportError:
            return False

    wait_for(live, "the server's /livez", timeout_s=120)


def make_champion(srv: Server, version: str) -> None:
    """Move the alias to ``version`` and wait until the server is ready with it."""
    srv.set_champion(version)
    wait_for(lambda: srv.get("/readyz").status_code == 200, "readiness after the champion was set")
