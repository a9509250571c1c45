"""One KIS HTTP exchange done right: headers, pacing, envelope parsing, token refresh, retries, pages."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import Any, Self

import httpx
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from pipeline.kis.config import KisConfig
from pipeline.kis.endpoints import ENDPOINTS, HASHKEY_PATH, Endpoint
from pipeline.kis.errors import (
    KisConfigurationError,
    KisError,
    KisOrderNotSentError,
    KisPaginationChangedError,
    KisRateLimitedError,
    KisTemporaryError,
    KisTokenExpiredError,
    KisUncertainOrderError,
    error_from_envelope,
)
from pipeline.kis.ratelimit import acquire, limiter_for
from pipeline.kis.token import TokenManager

log = logging.getLogger(__name__)
#: Pages restarted from page one after SYDB0050 before giving up (spec §9, python-kis#20).
MAX_PAGINATION_RESTARTS = 3
_QUERY = re.compile(r"\?[^\s\"']*")


class _RedactQuery(logging.Filter):
    """httpx logs full URLs at INFO; query strings carry the account number (CANO), so drop them."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.args = tuple(
                _QUERY.sub("?…", a) if isinstance(a, str) else _redact(a) for a in record.args
            )
        return True


def _redact(value: Any) -> Any:
    if isinstance(value, httpx.URL):
        return str(value.copy_with(query=None))
    return value


logging.getLogger("httpx").addFilter(_RedactQuery())


@dataclass(frozen=True)
class KisResponse:
    """A successful envelope plus the response headers that matter (spec §3)."""

    body: dict[str, Any]
    tr_cont: str
    gt_uid: str

    def output(self, key: str = "output") -> dict[str, Any]:
        """A single-object output (lists of one are unwrapped)."""
        value = self.body.get(key)
        if isinstance(value, list):
            return value[0] if value else {}
        return value if isinstance(value, dict) else {}

    def rows(self, key: str = "output2") -> list[dict[str, Any]]:
        """A list output (a lone object becomes one row)."""
        value = self.body.get(key)
        if isinstance(value, dict):
            return [value] if value else []
        return [r for r in value if isinstance(r, dict)] if isinstance(value, list) else []


def _retryable(exc: BaseException) -> bool:
    # SYDB0050 is handled by restarting pagination, not by repeating the same page.
    if isinstance(exc, KisPaginationChangedError):
        return False
    return isinstance(exc, KisTemporaryError | httpx.TransportError)


class KisSession:
    """Low-level access: ``get`` (retried reads), ``post_order`` (never blindly retried), ``paged``."""

    def __init__(self, config: KisConfig, transport: httpx.BaseTransport | None = None) -> None:
        self.config = config
        self._http = httpx.Client(
            base_url=config.base_url,
            timeout=config.timeout_s,
            transport=transport,
            headers={"content-type": "application/json; charset=utf-8", "custtype": "P"},
        )
        self._limiter = limiter_for(config.key_fingerprint, config.rate_limit)
        self.tokens = TokenManager(config, self._http)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(env={self.config.env}, base_url={self.config.base_url})"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._http.close()

    def revoke_token(self) -> None:
        """Revoke the current access token at KIS and forget it (spec §2)."""
        self.tokens.revoke()

    def endpoint(self, name: str) -> tuple[Endpoint, str]:
        """The endpoint and the tr_id to send on this domain."""
        ep = ENDPOINTS[name]
        if ep.real_only and self.config.paper:
            raise KisConfigurationError(f"KIS {ep.path} ({ep.tr_id}) is real-only; not available on VTS")
        return ep, ep.tr_id_for(self.config.paper)

    # --- one exchange ------------------------------------------------------------------------
    def _send(
        self, ep: Endpoint, tr_id: str, payload: dict[str, Any] | bytes, tr_cont: str, hashkey: str = ""
    ) -> KisResponse:
        token = self.tokens.get()
        headers = {
            "authorization": f"Bearer {token}",
            "appkey": self.config.app_key.get_secret_value(),
            "appsecret": self.config.app_secret.get_secret_value(),
            "tr_id": tr_id,
            "tr_cont": tr_cont,
        }
        if hashkey:
            headers["hashkey"] = hashkey
        acquire(self._limiter, self.config.key_fingerprint)
        if ep.method == "GET":
            resp = self._http.get(ep.path, params=payload, headers=headers)
        else:
            content = payload if isinstance(payload, bytes) else _json_bytes(payload)
            resp = self._http.post(ep.path, content=content, headers=headers)
        where = f"{ep.path} {tr_id}"
        body = _envelope(resp, where)
        # Always judge by the envelope, whatever the HTTP status (spec §3).
        if str(body.get("rt_cd", "")).strip() != "0":
            err = error_from_envelope(body, resp.status_code, where)
            if isinstance(err, KisTokenExpiredError):
                self.tokens.invalidate(token)
            raise err
        return KisResponse(body, resp.headers.get("tr_cont", "").strip(), resp.headers.get("gt_uid", ""))

    def _hashkey(self, content: bytes) -> str:
        """HASH of the exact order bytes (POST /uapi/hashkey, spec §2): key and secret, no token; it is
        paced like any call. Failing here means the order was never sent."""
        headers = {
            "appkey": self.config.app_key.get_secret_value(),
            "appsecret": self.config.app_secret.get_secret_value(),
        }
        acquire(self._limiter, self.config.key_fingerprint)
        try:
            resp = self._http.post(HASHKEY_PATH, content=content, headers=headers)
        except httpx.TransportError as exc:
            raise KisOrderNotSentError(f"KIS {HASHKEY_PATH}: {type(exc).__name__}; order not sent") from None
        try:
            body = _envelope(resp, HASHKEY_PATH, require_rt_cd=False)
        except KisTemporaryError as exc:
            raise KisOrderNotSentError(f"{exc}; order not sent", status=exc.status) from None
        hashed = str(body.get("HASH", "")).strip()
        if hashed:
            return hashed
        err = error_from_envelope(body, resp.status_code, HASHKEY_PATH)
        if isinstance(err, KisRateLimitedError) or not isinstance(err, KisTemporaryError):
            raise err  # EGW00201 is sent once more by post_order; auth errors are the caller's to fix
        raise KisOrderNotSentError(f"{err}; order not sent", msg_cd=err.msg_cd, status=err.status)

    def _send_refreshing(
        self, ep: Endpoint, tr_id: str, payload: dict[str, Any] | bytes, tr_cont: str, hashkey: str = ""
    ) -> KisResponse:
        try:
            return self._send(ep, tr_id, payload, tr_cont, hashkey)
        except KisTokenExpiredError:
            # EGW00123/EGW00121: re-issue once and retry once (spec §9); a second failure propagates.
            log.info("KIS token rejected on %s; re-issuing once", ep.path)
            return self._send(ep, tr_id, payload, tr_cont, hashkey)

    # --- reads: retried with exponential backoff and jitter ------------------------------------
    def get(self, name: str, params: dict[str, Any], tr_cont: str = "") -> KisResponse:
        """GET one page of ``name``; temporary, rate-limit and transport errors are retried."""
        ep, tr_id = self.endpoint(name)
        retrying = Retrying(
            retry=retry_if_exception(_retryable),
            wait=wait_random_exponential(multiplier=0.1, max=self.config.backoff_max_s),
            stop=stop_after_attempt(self.config.read_retries + 1),
            reraise=True,
            before_sleep=lambda rs: log.info(
                "retrying %s after %s (attempt %d)",
                ep.path,
                type(rs.outcome.exception()).__name__ if rs.outcome else "?",
                rs.attempt_number,
            ),
        )
        try:
            return retrying(self._send_refreshing, ep, tr_id, params, tr_cont)
        except httpx.TransportError as exc:
            raise KisTemporaryError(f"KIS {ep.path} {tr_id}: {type(exc).__name__} after retries") from None

    def paged(
        self,
        name: str,
        params: dict[str, Any],
        *,
        ctx: str = "100",
        rows_key: str = "output1",
        summary_key: str = "output2",
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """All pages (연속조회, spec §3): ``tr_cont`` N plus CTX_AREA_FK/NK; SYDB0050 restarts at page 1."""
        for restart in range(MAX_PAGINATION_RESTARTS + 1):
            try:
                return self._walk_pages(name, params, ctx, rows_key, summary_key)
            except KisPaginationChangedError:
                log.warning("KIS %s data changed between pages (SYDB0050); restart %d", name, restart + 1)
        raise KisPaginationChangedError(
            f"KIS {name}: data kept changing between pages (SYDB0050)", msg_cd="SYDB0050"
        )

    def _walk_pages(
        self, name: str, params: dict[str, Any], ctx: str, rows_key: str, summary_key: str
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        fk, nk = f"CTX_AREA_FK{ctx}", f"CTX_AREA_NK{ctx}"
        query = {**params, fk: "", nk: ""}
        rows: list[dict[str, Any]] = []
        summary: dict[str, Any] = {}
        tr_cont = ""
        for _ in range(self.config.max_pages):
            resp = self.get(name, query, tr_cont)
            rows.extend(resp.rows(rows_key))
            summary = resp.output(summary_key)
            if resp.tr_cont not in ("F", "M"):
                return rows, summary
            query[fk] = str(resp.body.get(fk.lower(), "")).strip()
            query[nk] = str(resp.body.get(nk.lower(), "")).strip()
            tr_cont = "N"
        log.warning("KIS %s: stopped after %d pages (kis_max_pages)", name, self.config.max_pages)
        return rows, summary

    # --- orders: never retried blindly -----------------------------------------------------------
    def post_order(self, name: str, body: dict[str, str]) -> KisResponse:
        """POST an order with the ``hashkey`` of its exact bytes. Only certain non-delivery (no connection,
        EGW00201, expired token) is sent once more; a lost answer raises KisUncertainOrderError, to be
        resolved by querying fills."""
        ep, tr_id = self.endpoint(name)
        content = _json_bytes(body)
        for attempt in (1, 2):
            try:
                return self._send_refreshing(ep, tr_id, content, "", self._hashkey(content))
            except (httpx.ConnectError, httpx.ConnectTimeout, KisRateLimitedError) as exc:
                if attempt == 2 and isinstance(exc, KisError):
                    raise
                if attempt == 2:
                    raise KisTemporaryError(
                        f"KIS {ep.path} {tr_id}: cannot connect; order not sent"
                    ) from None
                log.warning("KIS order not delivered (%s); sending once more", type(exc).__name__)
            except httpx.TransportError as exc:
                raise KisUncertainOrderError(
                    f"KIS {ep.path} {tr_id}: order outcome unknown ({type(exc).__name__}); query fills"
                ) from None
            except KisTemporaryError as exc:
                if exc.msg_cd or isinstance(exc, KisOrderNotSentError):
                    raise  # an envelope with a code said "failed", or nothing was sent: nothing was placed
                raise KisUncertainOrderError(
                    f"KIS {ep.path} {tr_id}: order outcome unknown ({exc}); query fills"
                ) from None
        raise AssertionError("unreachable")


def _json_bytes(body: dict[str, Any]) -> bytes:
    """The one serialisation of a POST body: the hashkey covers exactly these bytes."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def _envelope(resp: httpx.Response, where: str, *, require_rt_cd: bool = True) -> dict[str, Any]:
    """The JSON object of a KIS answer; anything else is a temporary failure (retry reads)."""
    try:
        body = resp.json()
    except ValueError:
        raise KisTemporaryError(
            f"KIS {where}: malformed body (HTTP {resp.status_code}, {len(resp.content)} bytes)",
            status=resp.status_code,
        ) from None
    shaped = isinstance(body, dict) and (not require_rt_cd or "rt_cd" in body or "error_code" in body)
    if not shaped:
        raise KisTemporaryError(
            f"KIS {where}: body is not a KIS envelope (HTTP {resp.status_code})", status=resp.status_code
        )
    return body  # type: ignore[no-any-return]
