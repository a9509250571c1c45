"""Token issuance is remembered: within KIS's one-per-minute window a new token is never even requested,
whichever process issued the last one. Checked against a token endpoint that keeps KIS's rule on a fake
clock and counts what it refused, so a client that asks too early is caught even though it recovers."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from pipeline.kis.config import KisConfig
from pipeline.kis.endpoints import REVOKE_PATH, TOKEN_PATH
from pipeline.kis.errors import KisAuthError
from pipeline.kis.token import TokenManager
from pipeline.market import KST
from tests.kis.conftest import APP_KEY, APP_SECRET

MINUTE = 60.0  # KIS: one token issuance per minute per app key (spec §2)


@dataclass
class FakeClock:
    """Epoch seconds that move only when someone sleeps."""

    now: float = 1_750_000_000.0
    slept: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@dataclass
class TokenEndpoint:
    """POST /oauth2/tokenP as KIS answers it: a 6-hour token, or 403 EGW00133 within the minute."""

    clock: FakeClock
    requested_at: list[float] = field(default_factory=list)
    refused: int = 0
    issued: int = 0
    _last_issue: float = -1e18

    revoked: list[str] = field(default_factory=list)
    revoke_status: int = 200

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == REVOKE_PATH:  # POST /oauth2/revokeP {appkey, appsecret, token}
            self.revoked.append(json.loads(request.content)["token"])
            return httpx.Response(self.revoke_status, json={"code": self.revoke_status}, request=request)
        assert request.url.path == TOKEN_PATH
        now = self.clock()
        self.requested_at.append(now)
        if now - self._last_issue < MINUTE:
            self.refused += 1
            return httpx.Response(
                403, json={"error_code": "EGW00133", "error_description": "1분당 1회"}, request=request
            )
        self._last_issue = now
        self.issued += 1
        expires = datetime.fromtimestamp(now + 6 * 3600, KST).strftime("%Y-%m-%d %H:%M:%S")
        body = {"access_token": f"tok-{self.issued}", "access_token_token_expired": expires}
        return httpx.Response(200, json=body, request=request)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def endpoint(clock: FakeClock) -> TokenEndpoint:
    return TokenEndpoint(clock)


def _manager(endpoint: TokenEndpoint, clock: FakeClock, cache: Path, **overrides: float) -> TokenManager:
    """A manager with KIS's default interval and margin (61 s, 10 min) on the fake clock and endpoint."""
    config = KisConfig(
        base_url="https://kis.test",
        app_key=SecretStr(APP_KEY),
        app_secret=SecretStr(APP_SECRET),
        token_cache=cache,
        **overrides,
    )
    http = httpx.Client(base_url=config.base_url, transport=httpx.MockTransport(endpoint.handle))
    return TokenManager(config, http, clock=clock, sleep=clock.sleep)


def test_a_token_rejected_seconds_after_its_issuance_is_replaced_without_asking_within_the_minute(
    endpoint: TokenEndpoint, clock: FakeClock, tmp_path: Path
) -> None:
    tokens = _manager(endpoint, clock, tmp_path / "token.json")
    first = tokens.get()
    clock.now += 10.0
    tokens.invalidate(first)  # KIS answered EGW00121/EGW00123 with it
    second = tokens.get()
    assert second != first
    assert endpoint.refused == 0  # the second request waited out the minute instead of being refused
    assert endpoint.requested_at[1] - endpoint.requested_at[0] >= MINUTE
    assert endpoint.issued == 2


def test_another_process_sharing_the_cache_waits_for_the_minute_of_the_last_issuance(
    endpoint: TokenEndpoint, clock: FakeClock, tmp_path: Path
) -> None:
    cache = tmp_path / "token.json"
    issuer = _manager(endpoint, clock, cache)
    stale = issuer.get()
    clock.now += 5.0
    other = _manager(endpoint, clock, cache)  # a second process: nothing in memory, only the file
    other.invalidate(stale)
    assert other.get() != stale
    assert endpoint.refused == 0 and endpoint.issued == 2
    assert json.loads(cache.read_text())[other._key]["last_issue_at"] == endpoint.requested_at[-1]


def test_a_proactive_reissue_inside_the_margin_never_asks_within_the_minute(
    endpoint: TokenEndpoint, clock: FakeClock, tmp_path: Path
) -> None:
    # A margin longer than the token's life: every get() wants a fresh token, yet none may be requested
    # sooner than a minute after the previous one.
    tokens = _manager(endpoint, clock, tmp_path / "token.json", token_refresh_margin_s=7 * 3600)
    for _ in range(3):
        tokens.get()
        clock.now += 1.0
    assert endpoint.refused == 0 and endpoint.issued == 3
    gaps = [b - a for a, b in zip(endpoint.requested_at, endpoint.requested_at[1:], strict=False)]
    assert min(gaps) >= MINUTE


def test_a_refused_request_is_followed_by_one_full_minute_of_waiting_not_by_hammering(
    endpoint: TokenEndpoint, clock: FakeClock, tmp_path: Path
) -> None:
    elsewhere = _manager(endpoint, clock, tmp_path / "a.json")  # another machine, another cache file
    elsewhere.get()
    clock.now += 1.0
    tokens = _manager(endpoint, clock, tmp_path / "b.json")
    assert tokens.get()
    assert endpoint.refused == 1  # it could not know; after the refusal it waits the whole interval
    assert endpoint.requested_at[2] - endpoint.requested_at[1] >= 61.0


def test_with_the_default_margin_a_token_is_reissued_ten_minutes_before_it_expires_and_not_earlier(
    endpoint: TokenEndpoint, clock: FakeClock, tmp_path: Path
) -> None:
    tokens = _manager(endpoint, clock, tmp_path / "token.json")  # KisConfig's default margin: 600 s
    first = tokens.get()
    expires = clock.now + 6 * 3600
    clock.now = expires - 601.0
    assert tokens.get() == first and endpoint.issued == 1  # still more than ten minutes left: kept
    clock.now = expires - 599.0
    second = tokens.get()
    assert second != first and endpoint.issued == 2  # inside the margin: replaced before KIS refuses it
    assert endpoint.requested_at[-1] == expires - 599.0  # asked at once, no wait: the last issue is hours old
    fresh = _manager(endpoint, clock, tmp_path / "token.json")  # another process finds the new one cached
    assert fresh.get() == second and endpoint.issued == 2


def test_a_revoked_token_is_sent_to_kis_dropped_from_the_cache_and_never_used_again(
    endpoint: TokenEndpoint, clock: FakeClock, tmp_path: Path
) -> None:
    cache = tmp_path / "token.json"
    tokens = _manager(endpoint, clock, cache)
    tokens.revoke()  # nothing issued yet: nothing to revoke, no request
    assert endpoint.revoked == [] and endpoint.requested_at == []
    first = tokens.get()
    tokens.revoke()
    assert endpoint.revoked == [first]
    assert "access_token" not in json.loads(cache.read_text())[tokens._key]  # other processes forget it too
    assert _manager(endpoint, clock, cache).get() != first  # a new one, issued after the minute
    assert endpoint.refused == 0 and endpoint.issued == 2


def test_a_refused_revoke_is_an_auth_error_and_the_token_is_forgotten_anyway(
    endpoint: TokenEndpoint, clock: FakeClock, tmp_path: Path
) -> None:
    tokens = _manager(endpoint, clock, tmp_path / "token.json")
    first = tokens.get()
    endpoint.revoke_status = 403
    with pytest.raises(KisAuthError, match="revoke failed \\(HTTP 403") as info:
        tokens.revoke()
    assert info.value.status == 403 and first not in str(info.value)
    assert tokens.get() != first and endpoint.issued == 2
