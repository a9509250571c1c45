"""Secrets never leak: a full session's logs (client, httpx, simulator, uvicorn), reprs and error messages
contain no app key, app secret, access token or account number: through hashkeys, refused keys and secrets,
the wrong environment, malformed answers and base-URL checks too."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from pipeline.config import Settings
from pipeline.kis import KisClient, KisConfig, KisError, KisRateLimitedError, KisUncertainOrderError
from tests.kis.conftest import ACCOUNT, APP_KEY, APP_SECRET, PAPER_KEY, PAPER_SECRET

WRONG_SECRET = "SECRETwrong" + "z" * 169
UNKNOWN_KEY = "PSkeyUNKNOWN456789abcdefghijklmnopq"
URL_PASSWORD = "urlpassword-73310045"


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def captured() -> Iterator[_Capture]:
    handler = _Capture()
    loggers = [
        logging.getLogger(n) for n in ("", "uvicorn", "uvicorn.error", "uvicorn.access", "httpx", "httpcore")
    ]
    saved = [(lg, lg.level) for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.DEBUG)
    yield handler
    for lg, level in saved:
        lg.removeHandler(handler)
        lg.setLevel(level)


def _session(client: KisClient, admin: Any, errors: list[str]) -> None:
    client.fetch_daily_bars("005930", date(2025, 1, 1), date(2025, 6, 10))
    client.fetch_minute_bars("005930", date(2025, 6, 10))
    client.futures_price("101W06")
    ack = client.stock_order("005930", "buy", 2)
    client.futures_order("101W06", "sell", 1)
    admin.clock(datetime(2025, 6, 10, 10, 5))
    client.stock_balance()
    client.futures_balance()
    client.stock_orders(date(2025, 6, 10), date(2025, 6, 10))
    with pytest.raises(KisError) as rejected:
        client.stock_cancel(ack.org_no, ack.order_no)  # already filled: a rejection
    errors.append(repr(rejected.value))
    admin.faults(drop_next=1)  # cut mid-answer, then retried: logged, not raised
    assert client.stock_price("005930").price > 0
    assert admin.pending()["drop_next"] == 0
    admin.faults(lose_order_next=1)
    with pytest.raises(KisUncertainOrderError) as lost:
        client.stock_order("005930", "buy", 1)
    errors.append(f"{lost.value!s} {lost.value!r}")
    admin.faults(storm_rate=1.0)
    with pytest.raises(KisRateLimitedError) as storm:
        client.stock_price("005930")
    errors.append(f"{storm.value!s} {storm.value!r}")
    admin.faults()
    with pytest.raises(KisError) as info:
        client.stock_order("005930", "buy", 10**9)
    errors.append(str(info.value))
    with pytest.raises(KisError) as unknown_symbol:
        client.stock_buyable("999999")
    errors.append(f"{unknown_symbol.value!s} {unknown_symbol.value!r}")


def _refusals(make_client: Callable[..., KisClient], tmp_path: Path, errors: list[str]) -> None:
    """The gateway's new refusals and the base-URL rule, each reported without a secret."""
    for overrides in (
        {"app_secret": SecretStr(WRONG_SECRET)},  # a known key with another secret
        {"app_key": SecretStr(UNKNOWN_KEY)},  # a key the simulator was never given
        {"env": "vts", "app_key": SecretStr(APP_KEY), "app_secret": SecretStr(APP_SECRET)},  # wrong book
        {"app_key": SecretStr(PAPER_KEY), "app_secret": SecretStr(PAPER_SECRET)},  # paper key, real TRs
    ):
        cache = tmp_path / f"refused-{len(errors)}.json"
        with pytest.raises(KisError) as refused:
            make_client(token_cache=cache, read_retries=0, **overrides).stock_balance()
        errors.append(f"{refused.value!s} {refused.value!r}")
    settings = Settings(
        kis_env="real",
        kis_allow_real=True,
        kis_base_url=f"https://{APP_KEY}:{URL_PASSWORD}@proxy.example",
        kis_app_key=APP_KEY,
        kis_app_secret=APP_SECRET,
        kis_account_no=ACCOUNT,
    )
    with pytest.raises(KisError) as custom_host:
        KisConfig.from_settings(settings)
    errors.append(f"{custom_host.value!s} {custom_host.value!r}")


def test_a_full_session_never_logs_or_shows_a_secret(
    make_client: Callable[..., KisClient], admin: Any, captured: _Capture, tmp_path: Path
) -> None:
    client = make_client(read_retries=1)
    errors: list[str] = []
    _session(client, admin, errors)
    _refusals(make_client, tmp_path, errors)
    token = next(iter(json.loads((tmp_path / "kis_token.json").read_text()).values()))["access_token"]
    client.revoke_token()
    shown = "\n".join(
        captured.lines + errors + [repr(client), repr(client.config), str(client.config), repr(client.tokens)]
    )
    assert len(captured.lines) > 50 and len(errors) == 10  # the session really logged and failed
    assert any("RemoteProtocolError" in line for line in captured.lines)  # the dropped read was retried
    assert any("/uapi/hashkey" in line for line in captured.lines)  # orders went through hashkeys
    for name, secret in (
        ("app key", APP_KEY),
        ("secret", APP_SECRET),
        ("account", ACCOUNT),
        ("token", token),
        ("paper key", PAPER_KEY),
        ("paper secret", PAPER_SECRET),
        ("wrong secret", WRONG_SECRET),
        ("unknown key", UNKNOWN_KEY),
        ("URL password", URL_PASSWORD),
    ):
        leaks = [line for line in shown.splitlines() if secret in line]
        assert not leaks, f"{name} leaked: {leaks[:3]}"
    assert (tmp_path / "kis_token.json").stat().st_mode & 0o777 == 0o600
