"""Simulator configuration: market universe, ledger file, clock, gateway (app keys, limits) and costs."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal

from pipeline.config import Settings, get_settings
from pipeline.kis.config import SIM_APP_KEY, SIM_APP_SECRET, SIM_PAPER_APP_KEY, SIM_PAPER_APP_SECRET
from pipeline.kis.endpoints import MINUTE_RETENTION_DAYS
from pipeline.market import FUTURES_FEE_RATE, FUTURES_MARGIN_RATE, STOCK_FEE_RATE

#: The two KIS environments a key belongs to: each has its own limits and its own book (spec §1, §4).
SimEnv = Literal["real", "vts"]
#: KIS's REST calls per second per app key (spec §4, notice 2025-08-07): real 20, paper (VTS) 2.
KIS_RATE_LIMITS: dict[str, float] = {"real": 20.0, "vts": 2.0}


@dataclass(frozen=True)
class AppKeyPair:
    """An app key the simulator accepts, its secret, and the environment it trades in. Neither the key
    nor the secret shows in ``repr``."""

    app_key: str = field(repr=False)
    app_secret: str = field(repr=False)
    env: SimEnv = "real"


#: Accepted by every simulator unless configured otherwise: the pair env ``sim`` uses by default (real
#: environment, so the default setup and the demo just work) and a paper pair for the paper book.
DEFAULT_APP_KEYS = (
    AppKeyPair(SIM_APP_KEY, SIM_APP_SECRET, "real"),
    AppKeyPair(SIM_PAPER_APP_KEY, SIM_PAPER_APP_SECRET, "vts"),
)


@dataclass
class SimConfig:
    """Everything the simulator needs; ``from_settings`` reads the ``KRX_SIM_*`` settings."""

    seed: int = 7
    stock_symbols: list[str] = field(
        default_factory=lambda: ["005930", "000660", "035420", "005380", "051910"]
    )
    #: Codes traded as ETFs (no sell tax, ETF ticks) besides those :mod:`pipeline.market` knows.
    etf_symbols: list[str] = field(default_factory=list)
    #: The real book; the paper book lives next to it (``<stem>.paper<suffix>``).
    db_path: Path = Path("var/kis_sim.db")
    clock_start: datetime | None = None
    clock_speed: float = 1.0
    csv_dir: Path | None = None
    #: The only keys that get tokens; each must come with its own secret, as at KIS.
    app_keys: list[AppKeyPair] = field(default_factory=lambda: list(DEFAULT_APP_KEYS))
    token_interval_s: float = 60.0
    token_ttl_s: float = 86_400.0
    #: KIS returns the same token when asked again within 6 hours (spec §2).
    token_reuse_s: float = 6 * 3600.0
    #: Calls per second for every key, overriding KIS's per-environment ``rate_limits`` (benchmarks and
    #: tests that need speed set it explicitly).
    rate_limit: float | None = None
    rate_limits: dict[str, float] = field(default_factory=lambda: dict(KIS_RATE_LIMITS))
    #: Minute bars older than this many days are not served (spec §5: "up to about 1 year").
    minute_retention_days: int = MINUTE_RETENTION_DAYS
    initial_cash: int = 100_000_000
    slippage_ticks: int = 1
    #: A market order placed at most this many seconds after a minute bar starts fills at that bar's open
    #: (it reached the book with the minute's opening trades); later ones fill at the next bar's open.
    open_grace_s: float = 0.0
    #: Largest fill per bar as a fraction of the bar's volume (larger orders fill partially over bars).
    participation: float = 0.10
    stock_fee_rate: float = STOCK_FEE_RATE
    futures_fee_rate: float = FUTURES_FEE_RATE
    futures_margin_rate: float = FUTURES_MARGIN_RATE

    @property
    def paper_db_path(self) -> Path:
        """The paper (VTS) book: orders of paper keys never touch the real book."""
        return self.db_path.with_name(f"{self.db_path.stem}.paper{self.db_path.suffix}")

    def limit_for(self, env: str) -> float:
        """Calls per second allowed to one key of ``env``."""
        return self.rate_limit or self.rate_limits[env]

    @classmethod
    def from_settings(cls, settings: Settings | None = None, **overrides: object) -> SimConfig:
        """Defaults from Settings (``KRX_SIM_*``, ``KRX_STOCK_SYMBOLS``); ``overrides`` win. With env ``sim``
        and a configured key pair, that pair is accepted too (real environment)."""
        s = settings or get_settings()
        start = datetime.fromisoformat(s.sim_clock_start) if s.sim_clock_start else None
        keys = list(DEFAULT_APP_KEYS)
        if s.kis_env == "sim" and s.kis_app_key and s.kis_app_secret:
            keys.append(AppKeyPair(s.kis_app_key.get_secret_value(), s.kis_app_secret.get_secret_value()))
        cfg = cls(
            seed=s.sim_seed,
            stock_symbols=list(s.stock_symbols),
            etf_symbols=list(s.etf_symbols),
            db_path=s.sim_db or s.var_dir / "kis_sim.db",
            clock_start=start,
            clock_speed=s.sim_clock_speed,
            csv_dir=s.sim_csv_dir,
            app_keys=keys,
            token_interval_s=s.sim_token_interval_s,
            token_ttl_s=s.sim_token_ttl_s,
            rate_limit=s.sim_rate_limit,
            initial_cash=s.sim_initial_cash,
            open_grace_s=s.sim_open_grace_s,
        )
        for name, value in overrides.items():
            if value is not None:
                setattr(cfg, name, value)
        return cfg
