"""Simulator configuration: market universe, ledger file, clock, auth limits and trading costs."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from pipeline.config import Settings, get_settings


@dataclass
class SimConfig:
    """Everything the simulator needs; ``from_settings`` reads the ``KRX_SIM_*`` settings."""

    seed: int = 7
    stock_symbols: list[str] = field(
        default_factory=lambda: ["005930", "000660", "035420", "005380", "051910"]
    )
    db_path: Path = Path("var/kis_sim.db")
    clock_start: datetime | None = None
    clock_speed: float = 1.0
    csv_dir: Path | None = None
    token_interval_s: float = 60.0
    token_ttl_s: float = 86_400.0
    #: KIS returns the same token when asked again within 6 hours (spec §2).
    token_reuse_s: float = 6 * 3600.0
    rate_limit: float = 1000.0
    initial_cash: int = 100_000_000
    slippage_ticks: int = 1
    #: Largest fill per bar as a fraction of the bar's volume (larger orders fill partially over bars).
    participation: float = 0.10
    stock_fee_rate: float = 0.00015
    #: Securities transaction tax on stock sells [U: 0.15% KOSPI incl. rural tax in 2025; changes yearly].
    stock_sell_tax: float = 0.0015
    futures_fee_rate: float = 0.00003
    #: Initial margin as a fraction of notional for KOSPI200 futures [U: KRX sets it, roughly 8-10%].
    futures_margin_rate: float = 0.09

    @classmethod
    def from_settings(cls, settings: Settings | None = None, **overrides: object) -> SimConfig:
        """Defaults from Settings (``KRX_SIM_*``, ``KRX_STOCK_SYMBOLS``); ``overrides`` win."""
        s = settings or get_settings()
        start = datetime.fromisoformat(s.sim_clock_start) if s.sim_clock_start else None
        cfg = cls(
            seed=s.sim_seed,
            stock_symbols=list(s.stock_symbols),
            db_path=s.sim_db or s.var_dir / "kis_sim.db",
            clock_start=start,
            clock_speed=s.sim_clock_speed,
            csv_dir=s.sim_csv_dir,
            token_interval_s=s.sim_token_interval_s,
            token_ttl_s=s.sim_token_ttl_s,
            rate_limit=s.sim_rate_limit,
            initial_cash=s.sim_initial_cash,
        )
        for name, value in overrides.items():
            if value is not None:
                setattr(cfg, name, value)
        return cfg
