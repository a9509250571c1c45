"""Settings: env prefix, .env files, derived defaults, and secrets that never show."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import Settings


def test_env_overrides_with_the_krx_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KRX_DATABASE_URL", "postgresql+psycopg://u:pw@db:5432/krx")
    monkeypatch.setenv("KRX_STOCK_SYMBOLS", "005930, 000660")
    monkeypatch.setenv("KRX_KIS_ENV", "vts")
    s = Settings()
    assert s.resolved_database_url.endswith("@db:5432/krx")
    assert s.stock_symbols == ["005930", "000660"]
    assert s.resolved_kis_base_url == "https://openapivts.koreainvestment.com:29443"


def test_embedded_defaults_live_under_var_dir(isolated_settings: Path) -> None:
    s = Settings()
    assert s.resolved_database_url == f"sqlite:///{(isolated_settings / 'market.db').resolve()}"
    assert s.resolved_kis_base_url == "http://127.0.0.1:8900"


def test_dot_env_file_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("KRX_SIM_PORT=9911\nKRX_KIS_PRODUCT_CODE=03\n")
    s = Settings()
    assert (s.sim_port, s.kis_product_code) == (9911, "03")


def test_invalid_values_name_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KRX_KIS_ENV", "prod")
    with pytest.raises(ValueError, match="kis_env"):
        Settings()


def test_secrets_never_appear_in_repr_or_masked_dump(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KRX_KIS_APP_KEY", "PSabcdefghijklmnopqrstuvwxyz0123456789")
    monkeypatch.setenv("KRX_KIS_APP_SECRET", "topsecret-value-xyz")
    monkeypatch.setenv("KRX_KIS_ACCOUNT_NO", "50123456")
    monkeypatch.setenv("KRX_DATABASE_URL", "postgresql+psycopg://u:dbpassword@db/krx")
    s = Settings()
    dumped = repr(s) + str(s) + str(s.masked())
    for secret in ("PSabcdefghijklmnopqrstuvwxyz0123456789", "topsecret-value-xyz", "50123456"):
        assert secret not in dumped
    assert "dbpassword" not in str(s.masked()["resolved_database_url"])
    assert s.kis_app_key is not None and s.kis_app_key.get_secret_value().startswith("PS")
