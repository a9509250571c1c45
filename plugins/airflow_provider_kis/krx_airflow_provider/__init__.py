"""Airflow provider for krx-rl-trader: registers the ``kis`` connection type (KIS Open API)."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

#: Connection form fields (Airflow 3.2+ reads these declaratively; no wtforms import needed).
CONN_FIELDS: dict[str, Any] = {
    "account_no": {
        "label": "Account number",
        "description": "8-digit CANO (or 12345678-01). Stored encrypted, never logged.",
        "schema": {"type": ["string", "null"], "format": "password"},
    },
    "product_code": {
        "label": "Product code",
        "description": "ACNT_PRDT_CD: 01 stocks, 03 futures/options.",
        "schema": {"type": ["string", "null"], "default": "01"},
    },
    "futures_account_no": {
        "label": "Futures account number",
        "description": "CANO of the futures/options account (product code 03). Empty: the account above.",
        "schema": {"type": ["string", "null"], "format": "password"},
    },
    "environment": {
        "label": "Environment",
        "description": "real (money; needs KRX_KIS_ALLOW_REAL=true), vts (paper) or sim (local simulator). "
        "Empty: KRX_KIS_ENV.",
        "schema": {"type": ["string", "null"], "default": "sim", "enum": ["real", "vts", "sim"]},
    },
}

#: The connection form's field behaviour, defined once: Airflow reads this (kebab-case) from the provider
#: info, and ``KisHook.get_ui_field_behaviour`` answers the same in the hook method's Python-style keys.
UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden-fields": ["schema", "port"],
    "relabeling": {"login": "App key", "password": "App secret", "host": "Base URL"},
    "placeholders": {
        "host": "empty: KIS's public host of the environment (sim: KRX_KIS_BASE_URL or the local "
        "simulator). KRX_KIS_BASE_URL serves KRX_KIS_ENV only; real needs KIS's real host."
    },
}


def hook_field_behaviour() -> dict[str, Any]:
    """``UI_FIELD_BEHAVIOUR`` in the keys ``BaseHook.get_ui_field_behaviour`` returns."""
    return {
        "hidden_fields": list(UI_FIELD_BEHAVIOUR["hidden-fields"]),
        "relabeling": dict(UI_FIELD_BEHAVIOUR["relabeling"]),
        "placeholders": dict(UI_FIELD_BEHAVIOUR["placeholders"]),
    }


def get_provider_info() -> dict[str, Any]:
    """Provider metadata read by Airflow's ProvidersManager (entry point ``apache_airflow_provider``)."""
    return {
        "package-name": "krx-airflow-provider",
        "name": "KRX RL trader (KIS Open API)",
        "description": "Connection type `kis` and KisHook returning the krx-rl-trader KIS client.",
        "versions": [__version__],
        "hooks": [{"integration-name": "KIS Open API", "python-modules": ["krx_airflow_provider.hooks.kis"]}],
        "connection-types": [
            {
                "hook-class-name": "krx_airflow_provider.hooks.kis.KisHook",
                "hook-name": "KIS Open API",
                "connection-type": "kis",
                "conn-fields": CONN_FIELDS,
                "ui-field-behaviour": UI_FIELD_BEHAVIOUR,
            }
        ],
    }
