"""Resolved configuration of one KIS client (credentials, target, limits), built from Settings."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from pipeline.config import KIS_BASE_URLS, KisEnv, Settings, get_settings
from pipeline.kis.errors import KisConfigurationError

log = logging.getLogger(__name__)
#: The local simulator's default key pairs (never valid at KIS). The real-environment pair is what env
#: ``sim`` uses when no key is configured, so a default setup just works; the paper pair trades in the
#: simulator's separate paper book. The simulator accepts these and the pairs it is configured with.
SIM_APP_KEY = "SIMULATOR-APP-KEY-000000000000000000"
SIM_APP_SECRET = "SIMULATOR-APP-SECRET"
SIM_PAPER_APP_KEY = "SIMULATOR-PAPER-KEY-0000000000000000"
SIM_PAPER_APP_SECRET = "SIMULATOR-PAPER-SECRET"
SIM_ACCOUNT = "50000000"
#: Host of each public KIS environment (spec §1): a KIS host serves its own environment only.
KIS_HOSTS: dict[str, str] = {env: httpx.URL(url).host for env, url in KIS_BASE_URLS.items()}


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
        """Build from Settings (KRX_ env vars); refuses the real domain without ``kis_allow_real`` and any
        base URL that is not the environment's own (see :func:`resolve_base_url`)."""
        s = settings or get_settings()
        env = overrides.pop("env", s.kis_env)
        if env == "real" and not s.kis_allow_real:
            raise KisConfigurationError("KIS env 'real' needs KRX_KIS_ALLOW_REAL=true (real money)")
        rate = {"real": s.kis_rate_limit_real, "vts": s.kis_rate_limit_vts, "sim": s.kis_rate_limit_sim}[env]
        values: dict[str, Any] = {
            "env": env,
            "base_url": resolve_base_url(s, env, overrides.pop("base_url", None)),
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


def resolve_base_url(settings: Settings, env: str, explicit: str | None = None) -> str:
    """The REST base URL of a ``env`` connection. ``explicit`` (a connection's host) belongs to ``env``;
    ``KRX_KIS_BASE_URL`` belongs to ``KRX_KIS_ENV`` only, so another environment without its own URL is an
    error rather than a silent trip to, say, the simulator. Without either, the environment's default."""
    if explicit:
        url = explicit
    elif settings.kis_base_url:
        if env != settings.kis_env:
            raise KisConfigurationError(
                f"KRX_KIS_BASE_URL ({_shown(settings.kis_base_url)}) is set for KIS env "
                f"{settings.kis_env!r}; a {env!r} connection needs its own base URL (the connection's "
                f"host), or unset KRX_KIS_BASE_URL to use the public {env!r} host"
            )
        url = settings.kis_base_url
    else:
        url = settings.model_copy(update={"kis_env": env, "kis_base_url": None}).resolved_kis_base_url
    check_host(env, url, allow_real_custom=settings.kis_allow_real_custom_host)
    return url.rstrip("/")


def check_host(env: str, url: str, *, allow_real_custom: bool = False) -> None:
    """A KIS host serves only its own environment; ``real`` goes to KIS's real host unless the separate
    ``kis_allow_real_custom_host`` opt-in says otherwise (a proxy you run)."""
    host = _host(url)
    owner = next((e for e, h in KIS_HOSTS.items() if h == host), None)
    if owner is not None and owner != env:
        raise KisConfigurationError(f"{_shown(url)} belongs to KIS env {owner!r}, not {env!r}")
    if env == "real" and owner is None and not allow_real_custom:
        raise KisConfigurationError(
            f"KIS env 'real' refuses {_shown(url)}: not KIS's real host; set "
            "KRX_KIS_ALLOW_REAL_CUSTOM_HOST=true only for a proxy you run"
        )
    if env == "vts" and owner is None:
        log.warning("KIS env 'vts' talks to %s, not KIS's paper host", _shown(url))


def _host(url: str) -> str:
    try:
        return httpx.URL(url).host.lower()
    except (httpx.InvalidURL, TypeError):
        raise KisConfigurationError("KIS base URL is not a URL") from None


def _shown(url: str) -> str:
    """scheme://host:port only: a URL may carry credentials, which never reach logs or errors."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return "(unparsable URL)"
    port = f":{parsed.port}" if parsed.port else ""
    return f"{parsed.scheme}://{parsed.host}{port}"


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
