"""KIS error taxonomy: temporary / rate-limited / auth / rejected / configuration (spec §9)."""

from __future__ import annotations

from typing import Any

#: msg_cd values that mean "the token is no longer valid": re-issue once, retry once (spec §9).
TOKEN_INVALID_CODES = frozenset({"EGW00123", "EGW00121"})
#: msg_cd values that say the request can never succeed as configured (wrong domain, TR, parameters).
CONFIGURATION_CODES = frozenset({"EGW02004", "MCA00124", "OPSQ2001"})
RATE_LIMIT_CODE = "EGW00201"
TOKEN_THROTTLE_CODE = "EGW00133"
PAGINATION_CHANGED_CODE = "SYDB0050"


class KisError(Exception):
    """Base of every KIS error. Messages carry codes and paths, never keys, secrets, tokens or accounts."""

    def __init__(self, message: str, *, msg_cd: str = "", msg1: str = "", status: int | None = None) -> None:
        super().__init__(message)
        self.msg_cd = msg_cd
        self.msg1 = msg1
        self.status = status


class KisTemporaryError(KisError):
    """Transient failure (5xx, transport error, malformed body): safe to retry a read later."""


class KisRateLimitedError(KisTemporaryError):
    """EGW00201: more calls per second than the app key allows (spec §4)."""


class KisTokenThrottledError(KisRateLimitedError):
    """EGW00133: a token was issued less than a minute ago (HTTP 403, ``error_code`` shape, spec §2)."""


class KisPaginationChangedError(KisTemporaryError):
    """SYDB0050: the data changed between pages; restart pagination from page one (spec §9)."""


class KisOrderNotSentError(KisTemporaryError):
    """The order certainly never left: a step before it (its hashkey) failed. Safe to send again later."""


class KisAuthError(KisError):
    """Authentication failed: bad or expired credentials or token."""


class KisTokenExpiredError(KisAuthError):
    """EGW00123 / EGW00121: the token expired or is invalid; re-issue and retry once."""


class KisRejectedError(KisError):
    """The broker understood the request and said no (``rt_cd`` != 0): carries ``msg_cd`` and ``msg1``."""


class KisConfigurationError(KisError):
    """Wrong domain, key, TR or parameters: fatal until the configuration changes."""


class KisUncertainOrderError(KisError):
    """An order was sent but no answer came back: it may or may not exist. Resolve by querying fills,
    never by re-sending (the trading issue owns that)."""


def _describe(where: str, msg_cd: str, msg1: str, status: int | None) -> str:
    return f"KIS {where}: [{msg_cd or '-'}] {msg1 or '(no message)'} (HTTP {status})"


def error_from_envelope(body: dict[str, Any], status: int, where: str) -> KisError:
    """Map a failed response body (either envelope shape) to the taxonomy; ``where`` is the path/tr_id."""
    if "error_code" in body and "rt_cd" not in body:
        # The token endpoint's own shape: {"error_code", "error_description"} (spec §2, issue #33).
        code = str(body.get("error_code", ""))
        text = str(body.get("error_description", "")).strip()
        if code == TOKEN_THROTTLE_CODE:
            return KisTokenThrottledError(
                _describe(where, code, text, status), msg_cd=code, msg1=text, status=status
            )
        return KisAuthError(_describe(where, code, text, status), msg_cd=code, msg1=text, status=status)
    msg_cd = str(body.get("msg_cd", "")).strip()
    msg1 = str(body.get("msg1", "")).strip()
    return error_from_codes(msg_cd, msg1, status, where)


def error_from_codes(msg_cd: str, msg1: str, status: int, where: str) -> KisError:
    """Classify a normal ``rt_cd``/``msg_cd``/``msg1`` failure."""
    text = _describe(where, msg_cd, msg1, status)
    kwargs: dict[str, Any] = {"msg_cd": msg_cd, "msg1": msg1, "status": status}
    if msg_cd == RATE_LIMIT_CODE:
        return KisRateLimitedError(text, **kwargs)
    if msg_cd in TOKEN_INVALID_CODES:
        return KisTokenExpiredError(text, **kwargs)
    if msg_cd == PAGINATION_CHANGED_CODE:
        return KisPaginationChangedError(text, **kwargs)
    if msg_cd in CONFIGURATION_CODES or "모의투자 TR" in msg1:
        return KisConfigurationError(text, **kwargs)
    if status >= 500:
        # Unclassified 5xx (gateway or back-end trouble): the envelope says failure, so nothing happened.
        return KisTemporaryError(text, **kwargs)
    if msg_cd.startswith("EGW") or status in (401, 403):
        # Other gateway codes concern the app key / secret / token themselves.
        return KisAuthError(text, **kwargs)
    return KisRejectedError(text, **kwargs)
