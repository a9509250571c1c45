"""Secrets never leak: a full session's logs (client, httpx, simulator, uvicorn), reprs and error messages
contain no app key, app secret, access token or account number."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest

from pipeline.kis import KisClient, KisError

# Same values the conftest factory uses.
APP_KEY = "PSkeyTEST0123456789abcdefghijklmnopq"
APP_SECRET = "SECRETtest" + "x" * 170
ACCOUNT = "73310045"


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
    for knobs, call in (
        ({"drop_next": 1}, lambda: client.stock_price("005930")),
        ({"lose_order_next": 1}, lambda: client.stock_order("005930", "buy", 1)),
        ({"storm_rate": 1.0}, lambda: client.stock_price("005930")),
    ):
        admin.faults(**knobs)
        try:
            call()
        except KisError as exc:
            errors.append(f"{exc!s} {exc!r}")
        admin.faults()
    with pytest.raises(KisError) as info:
        client.stock_order("005930", "buy", 10**9)
    errors.append(str(info.value))


def test_a_full_session_never_logs_or_shows_a_secret(
    make_client: Callable[..., KisClient], admin: Any, captured: _Capture, tmp_path: Path
) -> None:
    client = make_client(read_retries=1)
    errors: list[str] = []
    _session(client, admin, errors)
    token = next(iter(json.loads((tmp_path / "kis_token.json").read_text()).values()))["access_token"]
    client.revoke_token()
    shown = "\n".join(
        captured.lines + errors + [repr(client), repr(client.config), str(client.config), repr(client.tokens)]
    )
    assert len(captured.lines) > 50 and len(errors) >= 3  # the session really logged and failed
    for name, secret in (
        ("app key", APP_KEY),
        ("secret", APP_SECRET),
        ("account", ACCOUNT),
        ("token", token),
    ):
        leaks = [line for line in shown.splitlines() if secret in line]
        assert not leaks, f"{name} leaked: {leaks[:3]}"
    assert (tmp_path / "kis_token.json").stat().st_mode & 0o777 == 0o600
