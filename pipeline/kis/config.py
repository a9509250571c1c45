"""Resolved configuration of one KIS client (credentials, target, limits), built from Settings."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from pipeline.config import KisEnv, Settings, get_settings
from pipeline.kis.errors import KisConfigurationError

#: Placeholder credentials for the local simulator, which accepts any key (never valid at KIS).
SIM_APP_KEY = "SIMULATOR-APP-KEY-000000000000000000"
SIM_APP_SECRET = "SIMULATOR-APP-SECRET"
SIM_ACCOUNT = "50000000"


class KisConfig(BaseModel):
    """Everything a KisClient needs. Secrets stay SecretStr; ``repr`` shows none of them."""

    model_config = ConfigDict(frozen=True)

    env: KisEnv = "sim"
    base_url: str
    app_key: SecretStr
    app_secret: SecretStr
    account_no: SecretStr = SecretStr(SIM_ACCOUNT)
    product_code: str = "01"
    futures_account_no: SecretStr | None = None
    futures_product_code: str = "03"
    rate_limit: float = Field(20.0, gt=0)
    timeout_s: float = Field(10.0, gt=0)
    token_cache: Path = Path("var/kis_token.json")
    token_refresh_margin_s: float = 600.0
    token_min_interval_s: float = 61.0
    read_retries: int = 4
    backoff_max_s: float = 8.0
    max_pages: int = 100

    @property
    def paper(self) -> bool:
        """True on KIS paper trading (VTS): tr_ids take the V prefix (spec §3)."""
        return self.env == "vts"

    @property
    def key_fingerprint(self) -> str:
        """A short irreversible id of (domain, app key), safe to log and to key caches with."""
        raw = f"{self.base_url}|{self.app_key.get_secret_value()}".encode()
        return hashlib.sha256(raw).hexdigest()[:16]

    def accounts(self, futures: bool) -> tuple[str, str]:
        """(CANO, ACNT_PRDT_CD) for the stock or the futures account (spec §7)."""
        if futures:
            cano = self.futures_account_no or self.account_no
            return split_account(cano.get_secret_value(), self.futures_product_code)
        return split_account(self.account_no.get_secret_value(), self.product_code)

    @classmethod
    def from_settings(cls, settings: Settings | None = None, **overrides: Any) -> KisConfig:
        """Build from Settings (KRX_ env vars); refuses the real domain without ``kis_allow_real``."""
        s = settings or get_settings()
        env = overrides.pop("env", s.kis_env)
        if env == "real" and not s.kis_allow_real:
            raise KisConfigurationError("KIS env 'real' needs KRX_KIS_ALLOW_REAL=true (real money)")
        rate = {"real": s.kis_rate_limit_real, "vts": s.kis_rate_limit_vts, "sim": s.kis_rate_limit_sim}[env]
        base_url = s.kis_base_url.rstrip("/") if s.kis_base_url else None
        if base_url is None:
            base_url = s.model_copy(update={"kis_env": env}).resolved_kis_base_url
        values: dict[str, Any] = {
            "env": env,
            "base_url": base_url,
            "rate_limit": rate,
            "timeout_s": s.kis_timeout_s,
            "token_cache": s.resolved_token_cache,
            "product_code": s.kis_product_code,
            "futures_account_no": s.kis_futures_account_no,
            "futures_product_code": s.kis_futures_product_code,
            "token_refresh_margin_s": s.kis_token_refresh_margin_s,
            "token_min_interval_s": s.kis_token_min_interval_s,
            "read_retries": s.kis_read_retries,
            "backoff_max_s": s.kis_backoff_max_s,
            "max_pages": s.kis_max_pages,
        }
        creds = _credentials(
            env,
            overrides.pop("app_key", s.kis_app_key),
            overrides.pop("app_secret", s.kis_app_secret),
            overrides.pop("account_no", s.kis_account_no),
        )
        values.update(creds)
        values.update(overrides)
        return cls(**values)


def _credentials(
    env: str, key: SecretStr | None, secret: SecretStr | None, account: SecretStr | None
) -> dict[str, SecretStr]:
    if env == "sim":
        return {
            "app_key": key or SecretStr(SIM_APP_KEY),
            "app_secret": secret or SecretStr(SIM_APP_SECRET),
            "account_no": account or SecretStr(SIM_ACCOUNT),
        }
    if key is None or secret is None or account is None:
        raise KisConfigurationError(
            f"KIS env {env!r} needs KRX_KIS_APP_KEY, KRX_KIS_APP_SECRET and KRX_KIS_ACCOUNT_NO"
        )
    return {"app_key": key, "app_secret": secret, "account_no": account}


def split_account(account: str, default_product: str) -> tuple[str, str]:
    """Accept ``12345678``, ``12345678-01`` or ``1234567801``; return (CANO, ACNT_PRDT_CD)."""
    digits = account.replace("-", "").strip()
    if len(digits) == 10:
        return digits[:8], digits[8:]
    if len(digits) != 8:
        raise KisConfigurationError("KIS account number must be 8 digits (CANO), optionally + 2-digit code")
    return digits, default_product
