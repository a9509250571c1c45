"""Token issuance is remembered: within KIS's one-per-minute window a new token is never even requested,
whichever process issued the last one. Checked against a token endpoint that keeps KIS's rule on a fake
clock and counts what it refused, so a client that asks too early is caught even though it recovers.
Also pinned here: the spec's request bodies, the expiry fallback to ``expires_in``, the bound on retries after
EGW00133, the cache file's folder and 0600 mode, the error messages and the operator's log lines (which
name the key fingerprint, never a key, secret or token)."""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from pipeline.kis.config import KisConfig
from pipeline.kis.endpoints import REVOKE_PATH, TOKEN_PATH
from pipeline.kis.errors import KisAuthError, KisTemporaryError, KisTokenThrottledError
from pipeline.kis.token import MAX_THROTTLED_ATTEMPTS, AccessToken, TokenManager
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
    #: Every JSON body the client sent, in order (token and revoke requests alike).
    bodies: list[dict[str, str]] = field(default_factory=list)
    #: Refuse every issuance with EGW00133 (KIS still counting an issuance made elsewhere).
    throttle_all: bool = False
    #: The expiry fields of a successful answer; None: KIS's usual ``access_token_token_expired`` in 6 h.
    expiry: dict[str, object] | None = None

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.bodies.append(json.loads(request.content))
        if request.url.path == REVOKE_PATH:  # POST /oauth2/revokeP {appkey, appsecret, token}
            self.revoked.append(json.loads(request.content)["token"])
            return httpx.Response(self.revoke_status, json={"code": self.revoke_status}, request=request)
        assert request.url.path == TOKEN_PATH
        now = self.clock()
        self.requested_at.append(now)
        if self.throttle_all or now - self._last_issue < MINUTE:
            self.refused += 1
            return httpx.Response(
                403, json={"error_code": "EGW00133", "error_description": "1분당 1회"}, request=request
            )
        self._last_issue = now
        self.issued += 1
        expires = datetime.fromtimestamp(now + 6 * 3600, KST).strftime("%Y-%m-%d %H:%M:%S")
        expiry = {"access_token_token_expired": expires} if self.expiry is None else self.expiry
        body = {"access_token": f"tok-{self.issued}", "token_type": "Bearer", **expiry}
        return httpx.Response(200, json=body, request=request)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def endpoint(clock: FakeClock) -> TokenEndpoint:
    return TokenEndpoint(clock)


def _manager(endpoint: TokenEndpoint, clock: FakeClock, cache: Path, **overrides: float) -> TokenManager:
    """A manager with KIS's default interval and margin (61 s, 10 min) on the fake clock and endpoint."""
    return _manager_for(endpoint.handle, clock, cache, **overrides)


def _manager_for(
    handler: Callable[[httpx.Request], httpx.Response], clock: FakeClock, cache: Path, **overrides: float
) -> TokenManager:
    """A manager whose HTTP requests all go to ``handler``."""
    config = KisConfig(
        base_url="https://kis.test",
        app_key=SecretStr(APP_KEY),
        app_secret=SecretStr(APP_SECRET),
        token_cache=cache,
        **overrides,
    )
    http = httpx.Client(base_url=config.base_url, transport=httpx.MockTransport(handler))
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


TOKEN_LOG = "pipeline.kis.token"


def _mentions(text: str, word: str) -> bool:
    """``word`` appears in ``text`` as a whole (not glued to other letters or digits)."""
    return re.search(rf"(?<!\w){re.escape(word)}(?!\w)", text) is not None


def _token_logs(caplog: pytest.LogCaptureFixture, level: int = logging.DEBUG) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == TOKEN_LOG and r.levelno >= level]


def test_the_token_request_carries_the_grant_type_and_key_pair_and_the_revoke_names_the_token(
    endpoint: TokenEndpoint, clock: FakeClock, tmp_path: Path
) -> None:
    tokens = _manager(endpoint, clock, tmp_path / "token.json")
    first = tokens.get()
    tokens.revoke()
    assert endpoint.bodies == [  # spec §2: tokenP and revokeP bodies, nothing more and nothing less
        {"grant_type": "client_credentials", "appkey": APP_KEY, "appsecret": APP_SECRET},
        {"appkey": APP_KEY, "appsecret": APP_SECRET, "token": first},
    ]


@pytest.mark.parametrize(
    ("expiry", "lifetime_s", "warned"),
    [
        ({"expires_in": 86400}, 86400.0, False),  # no KST timestamp at all: expires_in, no complaint
        ({"access_token_token_expired": "", "expires_in": 7200}, 7200.0, False),
        ({"access_token_token_expired": "2025-06-16T09:00", "expires_in": 86400}, 86400.0, True),
        ({}, 0.0, False),  # nothing says how long it lives: not trusted beyond the moment it came
    ],
)
def test_without_a_readable_kst_expiry_the_token_lives_expires_in_seconds(
    endpoint: TokenEndpoint,
    clock: FakeClock,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    expiry: dict[str, object],
    lifetime_s: float,
    warned: bool,
) -> None:
    caplog.set_level(logging.INFO, logger=TOKEN_LOG)
    endpoint.expiry = expiry
    cache = tmp_path / "token.json"
    tokens = _manager(endpoint, clock, cache, token_refresh_margin_s=0.0)
    issued_at = clock.now
    first = tokens.get()
    assert json.loads(cache.read_text())[tokens._key]["expires_at"] == issued_at + lifetime_s
    warnings = _token_logs(caplog, logging.WARNING)
    if warned:  # the operator learns which field was unusable and what was used instead
        assert len(warnings) == 1
        assert _mentions(warnings[0], "access_token_token_expired") and _mentions(warnings[0], "expires_in")
    else:
        assert warnings == []
    clock.now += 1.0
    assert (tokens.get() == first) == (lifetime_s > 0)  # a token without a lifetime is asked for anew
    assert endpoint.refused == 0


def test_a_kst_expiry_padded_with_spaces_is_still_read(
    endpoint: TokenEndpoint, clock: FakeClock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    endpoint.expiry = {"access_token_token_expired": " 2025-06-16 09:00:00 ", "expires_in": 3600}
    cache = tmp_path / "token.json"
    tokens = _manager(endpoint, clock, cache)
    tokens.get()
    expected = datetime(2025, 6, 16, 9, 0, tzinfo=KST).timestamp()
    assert json.loads(cache.read_text())[tokens._key]["expires_at"] == expected
    assert _token_logs(caplog, logging.WARNING) == []


def test_issuance_refused_every_time_gives_up_after_the_allowed_attempts_with_a_clear_error(
    endpoint: TokenEndpoint, clock: FakeClock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=TOKEN_LOG)
    cache = tmp_path / "token.json"
    endpoint.throttle_all = True  # KIS still counts an issuance made with this key elsewhere
    with pytest.raises(KisTokenThrottledError) as info:
        _manager(endpoint, clock, cache).get()
    assert info.value.msg_cd == "EGW00133"
    assert str(info.value).startswith("KIS ") and _mentions(str(info.value), "throttled")
    assert len(endpoint.requested_at) == MAX_THROTTLED_ATTEMPTS  # then it stops instead of hammering
    gaps = [b - a for a, b in zip(endpoint.requested_at, endpoint.requested_at[1:], strict=False)]
    assert min(gaps) >= 61.0  # each retry waited the whole interval
    warnings = _token_logs(caplog, logging.WARNING)
    assert len(warnings) == MAX_THROTTLED_ATTEMPTS
    for attempt, text in enumerate(warnings, start=1):
        assert _mentions(text, "EGW00133") and _mentions(text, f"attempt {attempt}")
    # Another process sharing the cache knows of the last refused attempt and waits its minute out.
    endpoint.throttle_all = False
    clock.now += 5.0
    assert _manager(endpoint, clock, cache).get()
    assert endpoint.requested_at[-1] - endpoint.requested_at[-2] >= 61.0


@pytest.mark.parametrize(("elapsed", "waited"), [(60.5, [0.5]), (61.0, [])])
def test_a_reissue_waits_exactly_what_is_left_of_the_interval_and_no_more(
    endpoint: TokenEndpoint,
    clock: FakeClock,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    elapsed: float,
    waited: list[float],
) -> None:
    caplog.set_level(logging.INFO, logger=TOKEN_LOG)
    tokens = _manager(endpoint, clock, tmp_path / "token.json")
    first = tokens.get()
    clock.now += elapsed
    tokens.invalidate(first)
    assert tokens.get() != first
    assert clock.slept == waited
    assert endpoint.requested_at[1] - endpoint.requested_at[0] == 61.0  # the configured interval, to the dot
    assert any("waiting" in text for text in _token_logs(caplog)) == bool(waited)


def test_log_lines_name_the_key_fingerprint_the_wait_and_the_expiry_never_a_secret(
    endpoint: TokenEndpoint, clock: FakeClock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    tokens = _manager(endpoint, clock, tmp_path / "token.json")
    first = tokens.get()
    clock.now += 10.0
    tokens.invalidate(first)
    second = tokens.get()
    tokens.revoke()
    key = tokens._key
    lines = _token_logs(caplog)
    issued = [text for text in lines if "valid until" in text]
    expiries = [datetime.fromtimestamp(t + 6 * 3600, KST).isoformat() for t in endpoint.requested_at]
    assert len(issued) == 2
    for text, expiry in zip(issued, expiries, strict=True):  # which key, and until when (KST, with offset)
        assert _mentions(text, key) and _mentions(text, expiry) and expiry.endswith("+09:00")
    waits = [text for text in lines if "waiting" in text]  # which key, since when, for how long
    assert len(waits) == 1
    assert _mentions(waits[0], key) and _mentions(waits[0], "10 s ago") and _mentions(waits[0], "51.0 s")
    revoked = [text for text in lines if text.startswith("revoked")]
    assert len(revoked) == 1 and _mentions(revoked[0], key)
    for text in lines:  # greppable, and never a key, a secret or a token
        assert "KIS" in text
        assert not any(secret in text for secret in (APP_KEY, APP_SECRET, first, second))


def test_reprs_show_the_key_fingerprint_cache_and_expiry_but_never_a_secret(
    endpoint: TokenEndpoint, clock: FakeClock, tmp_path: Path
) -> None:
    tokens = _manager(endpoint, clock, tmp_path / "token.json")
    text = repr(tokens)
    assert _mentions(text, tokens._key) and str(tmp_path / "token.json") in text
    assert APP_KEY not in text and APP_SECRET not in text
    token = AccessToken("tok-secret", 1_750_000_000.4)
    assert "tok-secret" not in repr(token) and _mentions(repr(token), "1750000000")


def test_the_cache_folder_is_created_and_the_file_is_private(
    endpoint: TokenEndpoint, clock: FakeClock, tmp_path: Path
) -> None:
    cache = tmp_path / "var" / "kis" / "token.json"  # a fresh checkout: not even var/ exists
    first = _manager(endpoint, clock, cache).get()
    assert cache.stat().st_mode & 0o777 == 0o600
    assert _manager(endpoint, clock, cache).get() == first and endpoint.issued == 1


def test_a_crashed_writers_leftover_temp_file_neither_widens_nor_corrupts_the_cache(
    endpoint: TokenEndpoint, clock: FakeClock, tmp_path: Path
) -> None:
    cache = tmp_path / "token.json"
    leftover = cache.with_suffix(f".{os.getpid()}.tmp")  # the temp file a killed writer with our pid left
    leftover.write_text("x" * 4096)
    leftover.chmod(0o644)
    first = _manager(endpoint, clock, cache).get()
    assert cache.stat().st_mode & 0o777 == 0o600
    assert _manager(endpoint, clock, cache).get() == first and endpoint.issued == 1


@pytest.mark.parametrize("content", ["{not json", "[]", ""])
def test_an_unreadable_cache_file_is_replaced_by_a_fresh_token(
    endpoint: TokenEndpoint, clock: FakeClock, tmp_path: Path, content: str
) -> None:
    cache = tmp_path / "token.json"
    cache.write_text(content)
    first = _manager(endpoint, clock, cache).get()
    assert endpoint.issued == 1
    assert _manager(endpoint, clock, cache).get() == first and endpoint.issued == 1


def test_a_token_held_in_memory_is_used_without_rereading_the_cache(
    endpoint: TokenEndpoint, clock: FakeClock, tmp_path: Path
) -> None:
    cache = tmp_path / "token.json"
    tokens = _manager(endpoint, clock, cache)
    first = tokens.get()
    cache.unlink()  # e.g. an operator cleaned var/: this process still knows its token
    assert tokens.get() == first and endpoint.requested_at == [endpoint.requested_at[0]]


def test_invalidating_a_token_another_process_already_replaced_keeps_the_replacement(
    endpoint: TokenEndpoint, clock: FakeClock, tmp_path: Path
) -> None:
    cache = tmp_path / "token.json"
    mine, theirs = _manager(endpoint, clock, cache), _manager(endpoint, clock, cache)
    old = mine.get()
    clock.now += 120.0
    theirs.invalidate(old)
    new = theirs.get()
    mine.invalidate(old)  # this process saw the old one rejected a moment later
    assert mine.get() == new and endpoint.issued == 2  # no third issuance, no extra KakaoTalk alert
    assert json.loads(cache.read_text())[mine._key]["access_token"] == new


def test_a_token_gone_from_the_cache_is_still_revoked_from_memory(
    endpoint: TokenEndpoint, clock: FakeClock, tmp_path: Path
) -> None:
    cache = tmp_path / "token.json"
    tokens = _manager(endpoint, clock, cache)
    first = tokens.get()
    cache.unlink()
    tokens.revoke()
    assert endpoint.revoked == [first]


def test_a_revoke_refused_with_http_400_is_an_auth_error_naming_status_and_code(
    endpoint: TokenEndpoint, clock: FakeClock, tmp_path: Path
) -> None:
    tokens = _manager(endpoint, clock, tmp_path / "token.json")
    first = tokens.get()
    endpoint.revoke_status = 400
    with pytest.raises(KisAuthError) as info:
        tokens.revoke()
    assert info.value.status == 400
    assert _mentions(str(info.value), REVOKE_PATH) and _mentions(str(info.value), "HTTP 400")
    assert _mentions(str(info.value), "code 400") and first not in str(info.value)


def _refuse_with(response: httpx.Response) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == TOKEN_PATH
        return response

    return handler


BAD_KEY = {"error_code": "EGW00103", "error_description": "유효하지 않은 AppKey"}


@pytest.mark.parametrize(
    ("status", "body"),
    # A refused key: the token endpoint's own error shape, even if something token-like came along.
    [(400, {"access_token": "leftover", **BAD_KEY}), (200, BAD_KEY)],
)
def test_an_answer_without_a_token_or_with_an_error_status_is_an_auth_error_naming_the_code(
    clock: FakeClock, tmp_path: Path, status: int, body: dict[str, str]
) -> None:
    cache = tmp_path / "token.json"
    tokens = _manager_for(_refuse_with(httpx.Response(status, json=body)), clock, cache)
    with pytest.raises(KisAuthError) as info:
        tokens.get()
    assert info.value.msg_cd == "EGW00103" and info.value.status == status
    assert _mentions(str(info.value), TOKEN_PATH) and _mentions(str(info.value), f"HTTP {status}")
    assert APP_SECRET not in str(info.value) and not cache.exists()  # nothing was issued, nothing cached


def _unreachable(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


@pytest.mark.parametrize(
    ("handler", "status", "words"),
    [
        (_unreachable, None, ["ConnectError"]),
        (_refuse_with(httpx.Response(502, text="<html>Bad Gateway</html>")), 502, ["malformed", "HTTP 502"]),
        (_refuse_with(httpx.Response(200, json=["tok"])), None, ["unexpected", "HTTP 200"]),
    ],
)
def test_a_token_endpoint_that_cannot_be_reached_or_read_is_a_temporary_error(
    clock: FakeClock,
    tmp_path: Path,
    handler: Callable[[httpx.Request], httpx.Response],
    status: int | None,
    words: list[str],
) -> None:
    with pytest.raises(KisTemporaryError) as info:
        _manager_for(handler, clock, tmp_path / "token.json").get()
    message = str(info.value)
    assert message.startswith(f"KIS {TOKEN_PATH}:") and all(_mentions(message, w) for w in words)
    assert info.value.status == status and APP_SECRET not in message


def test_the_token_is_never_on_disk_in_a_file_others_may_read_not_even_while_it_is_written(
    endpoint: TokenEndpoint, clock: FakeClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    modes: list[int] = []
    dump = json.dump

    def spy(obj: object, fh: Any, **kwargs: Any) -> None:  # the moment the token reaches the disk
        modes.append(os.fstat(fh.fileno()).st_mode & 0o777)
        dump(obj, fh, **kwargs)

    monkeypatch.setattr(json, "dump", spy)
    umask = os.umask(0o022)  # a usual umask: files are world-readable unless asked otherwise
    try:
        _manager(endpoint, clock, tmp_path / "token.json").get()
    finally:
        os.umask(umask)
    assert modes and set(modes) == {0o600}


def test_the_token_code_leaves_nothing_in_the_working_directory(
    endpoint: TokenEndpoint, clock: FakeClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    tokens = _manager(endpoint, clock, tmp_path / "var" / "token.json")
    tokens.invalidate(tokens.get())
    tokens.revoke()
    assert list(workdir.iterdir()) == []  # the cache, its lock and temp files all live in var/


def test_a_cached_token_without_an_expiry_counts_as_expired(
    endpoint: TokenEndpoint, clock: FakeClock, tmp_path: Path
) -> None:
    cache = tmp_path / "token.json"
    tokens = _manager(endpoint, clock, cache)
    cache.write_text(json.dumps({tokens._key: {"access_token": "from-an-older-version"}}))
    assert tokens.get() == "tok-1" and endpoint.issued == 1  # replaced, not trusted and not a crash
