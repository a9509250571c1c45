"""Which host a KIS connection talks to: an explicit base URL belongs to one environment, the public KIS
hosts only serve their own environment, and real money never goes to another host without an opt-in."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.config import KIS_BASE_URLS, Settings
from pipeline.kis import KisConfig, KisConfigurationError

CREDS: dict[str, Any] = {
    "kis_app_key": "PS" + "k" * 34,
    "kis_app_secret": "s" * 180,
    "kis_account_no": "12345678",
}
SIMULATOR = "http://simulator:8900"


def _settings(**values: Any) -> Settings:
    return Settings(**{**CREDS, **values})


def test_a_paper_connection_never_inherits_the_simulator_url_set_for_sim() -> None:
    settings = _settings(kis_env="sim", kis_base_url=SIMULATOR)  # what docker-compose sets
    with pytest.raises(KisConfigurationError, match="KRX_KIS_BASE_URL") as info:
        KisConfig.from_settings(settings, env="vts")
    assert "simulator" in str(info.value) and "'vts'" in str(info.value)


def test_the_configured_environment_uses_its_own_base_url() -> None:
    assert KisConfig.from_settings(_settings(kis_base_url=SIMULATOR + "/")).base_url == SIMULATOR


def test_switching_environment_without_any_url_uses_that_environments_public_host() -> None:
    config = KisConfig.from_settings(_settings(kis_env="sim"), env="vts")
    assert (config.env, config.base_url) == ("vts", KIS_BASE_URLS["vts"])


def test_a_connection_host_given_with_the_environment_belongs_to_it() -> None:
    settings = _settings(kis_env="sim", kis_base_url=SIMULATOR)
    config = KisConfig.from_settings(settings, env="vts", base_url="https://paper-proxy.internal:29443")
    assert config.base_url == "https://paper-proxy.internal:29443"


@pytest.mark.parametrize(
    ("env", "url"),
    [
        ("vts", KIS_BASE_URLS["real"]),
        ("real", KIS_BASE_URLS["vts"]),
        ("sim", KIS_BASE_URLS["real"]),
        ("sim", KIS_BASE_URLS["vts"]),
    ],
    ids=["paper-on-real-host", "real-on-paper-host", "sim-on-real-host", "sim-on-paper-host"],
)
def test_a_kis_host_only_serves_its_own_environment(env: str, url: str) -> None:
    settings = _settings(kis_env=env, kis_allow_real=True, kis_base_url=url)
    with pytest.raises(KisConfigurationError, match="belongs to KIS env"):
        KisConfig.from_settings(settings)


def test_real_refuses_a_non_kis_host_without_its_own_opt_in() -> None:
    settings = _settings(kis_env="real", kis_allow_real=True, kis_base_url="https://user:pw@proxy.example")
    with pytest.raises(KisConfigurationError, match="KRX_KIS_ALLOW_REAL_CUSTOM_HOST") as info:
        KisConfig.from_settings(settings)
    assert "pw" not in str(info.value)  # credentials in a URL are never echoed
    allowed = settings.model_copy(update={"kis_allow_real_custom_host": True})
    assert KisConfig.from_settings(allowed).base_url == "https://user:pw@proxy.example"


def test_real_on_the_real_host_needs_only_the_real_opt_in() -> None:
    config = KisConfig.from_settings(_settings(kis_env="real", kis_allow_real=True))
    assert config.base_url == KIS_BASE_URLS["real"]


def test_the_simulator_defaults_need_no_credentials() -> None:
    config = KisConfig.from_settings(Settings())
    assert config.env == "sim" and config.base_url == "http://127.0.0.1:8900"
    assert config.rate_limit <= 20  # paces itself under the simulator's default (KIS real) limit
