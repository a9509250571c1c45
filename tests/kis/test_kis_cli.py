"""`krx sim` (pipeline.kis.cli.sim) starts a simulator that answers KIS requests."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from pipeline.kis.config import SIM_APP_KEY, SIM_APP_SECRET
from pipeline.kis.simulator.server import free_port


@pytest.mark.integration
@pytest.mark.slow
def test_sim_command_serves_kis_on_the_given_port(tmp_path: Path) -> None:
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "pipeline.kis.simulator",
        "--port",
        str(port),
        "--db",
        str(tmp_path / "s.db"),
        "--clock-start",
        "2025-06-10T10:00:00",
        "--clock-speed",
        "60",
    ]
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(cmd, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        body = {"grant_type": "client_credentials", "appkey": SIM_APP_KEY, "appsecret": SIM_APP_SECRET}
        for _ in range(200):
            try:
                token = httpx.post(f"http://127.0.0.1:{port}/oauth2/tokenP", json=body).json()
                break
            except httpx.TransportError:
                time.sleep(0.05)
        assert token["token_type"] == "Bearer" and token["access_token_token_expired"]
        assert (tmp_path / "s.db").exists()
    finally:
        proc.terminate()
        proc.wait(timeout=20)
