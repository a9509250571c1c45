"""KisHook: builds the one KIS client (pipeline.kis.KisClient) from an Airflow ``kis`` Connection."""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseHook
from pydantic import SecretStr

from krx_airflow_provider import hook_field_behaviour
from pipeline.config import get_settings
from pipeline.kis import KisClient, KisConfig


class KisHook(BaseHook):
    """Connection fields: login = app key, password = app secret, host = base URL of the connection's
    environment; extras ``account_no``, ``product_code``, ``futures_account_no``, ``environment`` (real /
    vts / sim; empty: ``KRX_KIS_ENV``). Without a host, ``KRX_KIS_BASE_URL`` is used only when the
    environment is ``KRX_KIS_ENV``'s; another environment gets its public KIS host, or an error when
    ``KRX_KIS_BASE_URL`` is set (it belongs to one environment).

    Wrap broker-calling tasks in the ``kis_api`` pool so concurrent tasks stay under the per-key rate."""

    conn_name_attr = "kis_conn_id"
    default_conn_name = "kis_default"
    conn_type = "kis"
    hook_name = "KIS Open API"

    def __init__(self, kis_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.kis_conn_id = kis_conn_id

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """The form behaviour declared once in the provider info (``UI_FIELD_BEHAVIOUR``)."""
        return hook_field_behaviour()

    def get_conn(self) -> KisClient:
        """A KisClient for this connection; limits, timeouts and the token cache come from Settings."""
        conn = self.get_connection(self.kis_conn_id)
        extra = conn.extra_dejson or {}

        def field(name: str) -> Any:
            # Forms may store custom fields plain or with the legacy ``extra__kis__`` prefix.
            return extra.get(name) or extra.get(f"extra__kis__{name}")

        overrides: dict[str, Any] = {}
        if field("environment"):
            overrides["env"] = str(field("environment"))
        for key, value in (
            ("app_key", conn.login),
            ("app_secret", conn.password),
            ("account_no", field("account_no")),
            ("futures_account_no", field("futures_account_no")),
        ):
            if value:
                overrides[key] = SecretStr(str(value))
        if field("product_code"):
            overrides["product_code"] = str(field("product_code"))
        if conn.host:
            host = str(conn.host)
            overrides["base_url"] = host if "://" in host else f"https://{host}"
        return KisClient(KisConfig.from_settings(get_settings(), **overrides))

    def test_connection(self) -> tuple[bool, str]:
        """UI "Test": fetch a token and one quote."""
        try:
            with self.get_conn() as client:
                client.stock_price("005930")
        except Exception as exc:  # noqa: BLE001 - reported to the UI, never raised
            return False, str(exc)
        return True, "KIS connection works"
