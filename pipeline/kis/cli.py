"""``krx sim``: run the offline KIS simulator (registered by pipeline/cli.py)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from pipeline.config import get_settings


def sim(
    port: Annotated[int | None, typer.Option(help="Port to listen on (default: KRX_SIM_PORT, 8900).")] = None,
    host: Annotated[str | None, typer.Option(help="Interface (default: KRX_SIM_HOST, 127.0.0.1).")] = None,
    seed: Annotated[int | None, typer.Option(help="Market generator seed (default: KRX_SIM_SEED).")] = None,
    clock_speed: Annotated[float | None, typer.Option(help="Simulated seconds per real second.")] = None,
    clock_start: Annotated[str | None, typer.Option(help="Start the clock here (ISO, KST if naive).")] = None,
    db: Annotated[Path | None, typer.Option(help="SQLite ledger (default: <var_dir>/kis_sim.db).")] = None,
    token_interval: Annotated[float | None, typer.Option(help="Seconds between token issuances.")] = None,
    rate_limit: Annotated[
        float | None,
        typer.Option(help="Calls per second for every app key (default: KIS's 20 real / 2 paper; EGW00201)."),
    ] = None,
) -> None:
    """Serve the KIS simulator: same paths, tr_ids, envelope and limits as KIS, generated market data."""
    from pipeline.kis.simulator.server import serve
    from pipeline.kis.simulator.simconfig import SimConfig

    settings = get_settings()
    start = datetime.fromisoformat(clock_start) if clock_start else None
    cfg = SimConfig.from_settings(
        settings,
        seed=seed,
        clock_speed=clock_speed,
        clock_start=start,
        db_path=db,
        token_interval_s=token_interval,
        rate_limit=rate_limit,
    )
    serve(cfg, host or settings.sim_host, port or settings.sim_port)
