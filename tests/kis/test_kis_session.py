"""One KIS exchange as the README promises it, over loopback HTTP to the simulator: a rejected token is
re-issued once and the call retried once, then the error propagates; the client paces itself at KIS's
default limits (20 calls/s real, 2/s paper) without being told to."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from pipeline.config import Settings
from pipeline.kis import KisClient, KisConfig
from pipeline.kis.config import (
    SIM_ACCOUNT,
    SIM_APP_KEY,
    SIM_APP_SECRET,
    SIM_PAPER_APP_KEY,
    SIM_PAPER_APP_SECRET,
)
from pipeline.kis.endpoints import ENDPOINTS, TOKEN_PATH
from pipeline.kis.errors import KisTokenExpiredError
from pipeline.kis.simulator import auth as gateway
from pipeline.kis.simulator.server import SimServer
from pipeline.kis.simulator.simconfig import SimConfig
from tests.kis.conftest import SESSION, Wire

PRICE = ENDPOINTS["stock_price"].path


@pytest.fixture
def wire() -> Iterator[Wire]:
    log = Wire()
    yield log
    log.close()


def test_a_token_rejected_again_after_its_reissue_propagates_after_one_retry(
    make_client: Callable[..., KisClient], admin: Any, wire: Wire, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin.auth(token_ttl_s=60.0, token_interval_s=0.0)
    # The gateway's wall clock jumps 100 s at every reading: each token it issues has expired by the
    # time it checks the call that carries it, so every call answers EGW00123.
    jumps = itertools.count(time.time(), 100.0)
    monkeypatch.setattr(gateway, "time", SimpleNamespace(time=lambda: next(jumps), monotonic=time.monotonic))
    client = make_client(token_refresh_margin_s=0.0, token_min_interval_s=0.0, transport=wire)
    with pytest.raises(KisTokenExpiredError) as info:
        client.stock_price("005930")
    assert info.value.msg_cd == "EGW00123"
    assert wire.outcomes(PRICE) == ["EGW00123", "EGW00123"]  # the call and exactly one retry
    assert wire.outcomes(TOKEN_PATH) == ["ok", "ok"]  # one re-issue between them
    assert admin.tokens_issued == 2


def _default_simulator(tmp_path: Path) -> SimServer:
    """A simulator with KIS's own limits (20/s for its real key, 2/s for its paper key)."""
    return SimServer(SimConfig(db_path=tmp_path / "sim.db", clock_start=SESSION, token_interval_s=0))


def _settings(tmp_path: Path) -> Settings:
    # A loopback host stands in for KIS's real host here; in production `real` refuses any other host.
    return Settings(var_dir=tmp_path / "var", kis_allow_real=True, kis_allow_real_custom_host=True)


class Stamped(Wire):
    """A Wire that also notes when each request left the client (monotonic seconds)."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[float] = []

    def handle_request(self, request: Any) -> Any:
        self.sent.append(time.monotonic())
        return super().handle_request(request)


@pytest.mark.parametrize(
    ("env", "key", "secret", "calls", "default_rate"),
    [("real", SIM_APP_KEY, SIM_APP_SECRET, 30, 20), ("vts", SIM_PAPER_APP_KEY, SIM_PAPER_APP_SECRET, 5, 2)],
    ids=["real-20-per-s", "paper-2-per-s"],
)
def test_by_default_the_client_paces_itself_to_the_kis_limit_of_its_environment(
    tmp_path: Path, env: str, key: str, secret: str, calls: int, default_rate: int
) -> None:
    from pydantic import SecretStr

    with _default_simulator(tmp_path) as sim:
        config = KisConfig.from_settings(
            _settings(tmp_path),
            env=env,
            base_url=sim.base_url,
            app_key=SecretStr(key),
            app_secret=SecretStr(secret),
            account_no=SecretStr(SIM_ACCOUNT),
        )
        assert config.rate_limit == default_rate
        wire = Stamped()
        with KisClient(config, transport=wire) as client:
            for _ in range(calls):
                assert client.stock_price("005930").price > 0
        wire.close()
    quotes = [at for at, (path, _, _) in zip(wire.sent, wire.seen, strict=True) if path == PRICE]
    # However fast the simulator answers, the (limit + 1)-th call after any call leaves about a second
    # later (0.1 s of slack for a busy machine); unpaced, all of them would leave within ~0.1 s.
    gaps = [b - a for a, b in zip(quotes, quotes[default_rate:], strict=False)]
    assert len(quotes) >= calls and gaps and min(gaps) >= 0.9
