"""The Airflow provider: `kis` connection type registration and KisHook building a working client."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from pipeline.kis.simulator.server import SimServer
from pipeline.kis.simulator.simconfig import AppKeyPair, SimConfig

APP_KEY = "PSkeyHOOK0123456789abcdefghijklmnopq"


def test_provider_info_declares_the_kis_connection_form() -> None:
    from krx_airflow_provider import get_provider_info

    info = get_provider_info()
    (conn,) = info["connection-types"]
    assert conn["connection-type"] == "kis"
    assert conn["hook-class-name"] == "krx_airflow_provider.hooks.kis.KisHook"
    assert set(conn["conn-fields"]) >= {"account_no", "product_code", "environment"}
    assert conn["conn-fields"]["account_no"]["schema"]["format"] == "password"  # masked in the UI
    assert conn["conn-fields"]["environment"]["schema"]["enum"] == ["real", "vts", "sim"]
    assert conn["ui-field-behaviour"]["relabeling"]["login"] == "App key"


@pytest.mark.slow
def test_providers_manager_registers_the_kis_hook(tmp_path: Path) -> None:
    # A fresh interpreter: ProvidersManager discovers entry points once per process.
    code = (
        "from airflow.providers_manager import ProvidersManager as P; m = P(); "
        "h = m.hooks['kis']; "
        "print(h.hook_class_name, h.connection_type, 'krx-airflow-provider' in m.providers)"
    )
    env = {"AIRFLOW_HOME": str(tmp_path), "PATH": str(Path(sys.executable).parent)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-3:] == ["krx_airflow_provider.hooks.kis.KisHook", "kis", "True"]


def test_hook_get_conn_returns_a_working_client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from krx_airflow_provider.hooks.kis import KisHook

    cfg = SimConfig(
        db_path=tmp_path / "sim.db",
        clock_start=datetime(2025, 6, 10, 10, 0),
        app_keys=[AppKeyPair(APP_KEY, "hook-secret")],  # the simulator accepts configured pairs only
    )
    with SimServer(cfg) as sim:
        monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow"))
        monkeypatch.setenv("KRX_KIS_TOKEN_CACHE", str(tmp_path / "tok.json"))
        conn = {
            "conn_type": "kis",
            "login": APP_KEY,
            "password": "hook-secret",
            "host": sim.base_url,
            "extra": {"account_no": "55556666", "product_code": "01", "environment": "sim"},
        }
        monkeypatch.setenv("AIRFLOW_CONN_KIS_DEFAULT", json.dumps(conn))
        from pipeline.config import get_settings

        get_settings.cache_clear()
        hook = KisHook()
        with hook.get_conn() as client:
            assert client.config.base_url == sim.base_url
            assert client.config.accounts(futures=False) == ("55556666", "01")
            assert client.stock_price("005930").price > 0
            assert APP_KEY not in repr(client)
        assert hook.test_connection() == (True, "KIS connection works")


def test_the_hook_and_the_provider_info_show_the_same_connection_form() -> None:
    from krx_airflow_provider import get_provider_info
    from krx_airflow_provider.hooks.kis import KisHook

    (conn,) = get_provider_info()["connection-types"]
    declared = conn["ui-field-behaviour"]
    # Airflow reads the kebab-case provider info; the hook method answers the same in Python style.
    assert KisHook.get_ui_field_behaviour() == {
        "hidden_fields": declared["hidden-fields"],
        "relabeling": declared["relabeling"],
        "placeholders": declared["placeholders"],
    }


def test_a_paper_connection_without_a_host_never_falls_back_to_the_simulator_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from krx_airflow_provider.hooks.kis import KisHook

    from pipeline.kis import KisConfigurationError

    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow"))
    monkeypatch.setenv("KRX_KIS_BASE_URL", "http://simulator:8900")  # docker-compose's default
    conn = {
        "conn_type": "kis",
        "login": APP_KEY,
        "password": "paper-secret",
        "extra": {"account_no": "55556666", "environment": "vts"},
    }
    monkeypatch.setenv("AIRFLOW_CONN_KIS_DEFAULT", json.dumps(conn))
    from pipeline.config import get_settings

    get_settings.cache_clear()
    with pytest.raises(KisConfigurationError, match="KRX_KIS_BASE_URL"):
        KisHook().get_conn()
    ok, message = KisHook().test_connection()
    assert not ok and "KRX_KIS_BASE_URL" in message and APP_KEY not in message
