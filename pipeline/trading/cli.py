"""``krx trading``: what the trading job holds, sent and may still do today, and the kill switch by hand.

Reads and writes the store only; no command here talks to the broker. Mounted by ``pipeline/cli.py``.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
from typing import Annotated, Any

import sqlalchemy as sa
import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.engine import Connection, Engine

from pipeline.config import Settings, get_settings, mask_url
from pipeline.market import FUTURES_MULTIPLIER, KST, InstrumentKind, classify
from pipeline.store.db import get_engine
from pipeline.store.schema import account_snapshots, orders, positions
from pipeline.trading.risk import RiskLimits, RiskLimitsError, load_limits
from pipeline.trading.state import HaltState, engage, halt_state, recent_events, resume

trading_app = typer.Typer(
    help="Trading status and the kill switch (reads the store; never calls the broker).", no_args_is_help=True
)
console = Console()

AccountOption = Annotated[
    str | None, typer.Option("--account", help="Account alias (default: KRX_TRADING_ACCOUNT).")
]
#: Trading events shown by ``krx trading status``.
EVENTS_SHOWN = 8


def _engine() -> Engine:
    return get_engine(get_settings().resolved_database_url)


def _limits(settings: Settings) -> RiskLimits:
    try:
        return load_limits(settings)
    except RiskLimitsError as exc:
        console.print(f"[red]error[/] {exc}", soft_wrap=True, markup=True, highlight=False)
        raise typer.Exit(2) from None


def _day_start(now: dt.datetime) -> dt.datetime:
    """Midnight KST of ``now``'s Korean date: where "today" starts for orders, snapshots and limits."""
    return dt.datetime.combine(now.astimezone(KST).date(), dt.time(0), KST)


def _multiplier(symbol: str, settings: Settings) -> float:
    kind = classify(symbol, futures=(settings.futures_symbol,), etfs=settings.etf_symbols)
    return FUTURES_MULTIPLIER if kind is InstrumentKind.FUTURES else 1.0


def _positions(conn: Connection, account: str, settings: Settings) -> list[dict[str, Any]]:
    rows = conn.execute(
        sa.select(positions)
        .where(positions.c.account == account, positions.c.quantity != 0)
        .order_by(positions.c.symbol)
    ).mappings()
    out = []
    for r in rows:
        mult = _multiplier(r["symbol"], settings)
        out.append(
            {
                "symbol": r["symbol"],
                "quantity": int(r["quantity"]),
                "avg_price": float(r["avg_price"]),
                "multiplier": mult,
                "exposure": abs(int(r["quantity"])) * float(r["avg_price"]) * mult,
                "updated_at": r["updated_at"],
            }
        )
    return out


def _orders_today(conn: Connection, account: str, since: dt.datetime) -> list[dict[str, Any]]:
    cols = [
        orders.c.created_at,
        orders.c.spec,
        orders.c.symbol,
        orders.c.side,
        orders.c.quantity,
        orders.c.status,
        orders.c.filled_quantity,
        orders.c.avg_fill_price,
        orders.c.mode,
        orders.c.reason,
    ]
    query = (
        sa.select(*cols)
        .where(orders.c.account == account, orders.c.created_at >= since)
        .order_by(orders.c.created_at, orders.c.id)
    )
    return [dict(r) for r in conn.execute(query).mappings()]


def _loss_today(conn: Connection, account: str, since: dt.datetime) -> dict[str, Any] | None:
    """First and latest equity snapshot of the day; None before the day's first snapshot."""
    mine = sa.and_(account_snapshots.c.account == account, account_snapshots.c.ts >= since)
    first = conn.execute(
        sa.select(account_snapshots).where(mine).order_by(account_snapshots.c.ts).limit(1)
    ).first()
    last = conn.execute(
        sa.select(account_snapshots).where(mine).order_by(account_snapshots.c.ts.desc()).limit(1)
    ).first()
    if first is None or last is None:
        return None
    return {
        "start_equity": float(first.equity),
        "equity": float(last.equity),
        "loss": float(first.equity) - float(last.equity),
        "as_of": last.ts,
    }


def collect_status(
    engine: Engine, settings: Settings, account: str, now: dt.datetime | None = None
) -> dict[str, Any]:
    """Everything ``krx trading status`` shows, as plain data (``store_ready`` False: no trading tables)."""
    now = now or dt.datetime.now(dt.UTC)
    limits = load_limits(settings)
    out: dict[str, Any] = {
        "mode": settings.trading_mode,
        "account": account,
        "store": mask_url(settings.resolved_database_url),
        "as_of": now,
        "limits": limits.model_dump(),
        "store_ready": sa.inspect(engine).has_table("trading_state"),
    }
    if not out["store_ready"]:
        return out
    since = _day_start(now)
    with engine.connect() as conn:
        state = halt_state(conn, account)
        held = _positions(conn, account, settings)
        today = _orders_today(conn, account, since)
        loss = _loss_today(conn, account, since)
        events = recent_events(conn, account, EVENTS_SHOWN)
    gross = sum(p["exposure"] for p in held)
    out.update(
        switch={
            "halted": state.halted,
            "reason": state.reason,
            "since": state.since,
            "by": state.by,
            "mismatch_runs": state.mismatch_runs,
        },
        positions=held,
        orders_today=today,
        used={
            "orders_today": len(today),
            "max_orders_per_day": limits.max_orders_per_day,
            "gross_exposure": gross,
            "max_gross_exposure": limits.max_gross_exposure,
            "loss_today": loss["loss"] if loss else None,
            "start_equity": loss["start_equity"] if loss else None,
            "equity": loss["equity"] if loss else None,
            "daily_loss_limit": limits.daily_loss_limit,
        },
        events=[{k: e[k] for k in ("ts", "kind", "symbol", "reason", "detail")} for e in events],
    )
    return out


def _kst(value: dt.datetime | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    return value.astimezone(KST).strftime(fmt) if value else "-"


def _num(value: float | None, fmt: str = ",.0f") -> str:
    return "-" if value is None else format(value, fmt)


def _of(used: float | None, cap: float | None, unit: str = "") -> str:
    shown = _num(used)
    return f"{shown}{unit} / {_num(cap)}{unit}" if cap is not None else f"{shown}{unit} (no limit)"


def _print_switch(state: HaltState | dict[str, Any], account: str) -> None:
    s = state if isinstance(state, dict) else vars(state)
    if s["halted"]:
        console.print(
            f"trading [bold red]HALTED[/] for account [bold]{account}[/] since {_kst(s['since'])} KST "
            f"by {s['by']}: {s['reason']}",
            soft_wrap=True,
            highlight=False,
        )
        console.print("clear it with `krx trading resume`", highlight=False)
    else:
        console.print(f"trading [bold green]running[/] for account [bold]{account}[/] (kill switch clear)")


def _print_tables(data: dict[str, Any]) -> None:
    if data["positions"]:
        table = Table("symbol", "quantity", "avg price", "exposure (KRW)", "updated (KST)")
        table.title = "positions (exposure: |quantity| × avg price × multiplier)"
        for p in data["positions"]:
            table.add_row(
                p["symbol"], f"{p['quantity']:+,d}", _num(p["avg_price"], ",.2f"), _num(p["exposure"]),
                _kst(p["updated_at"]),
            )  # fmt: skip
        console.print(table)
    else:
        console.print("no positions")
    if data["orders_today"]:
        table = Table("time (KST)", "symbol", "side", "qty", "status", "filled", "avg price", "reason")
        table.title = "orders today"
        for o in data["orders_today"]:
            table.add_row(
                _kst(o["created_at"], "%H:%M:%S"), o["symbol"], o["side"], f"{o['quantity']:,d}", o["status"],
                f"{o['filled_quantity']:,d}", _num(o["avg_fill_price"], ",.2f"), o["reason"] or "",
            )  # fmt: skip
        console.print(table)
    else:
        console.print("no orders today")


def _print_used(data: dict[str, Any]) -> None:
    u = data["used"]
    table = Table("limit", "used / allowed", title="limits today")
    table.add_row("orders today", _of(u["orders_today"], u["max_orders_per_day"]))
    table.add_row("gross exposure", _of(u["gross_exposure"], u["max_gross_exposure"], " KRW"))
    if u["loss_today"] is None:
        loss = "no account snapshot today"
        if u["daily_loss_limit"] is not None:
            loss += f" (limit {_num(u['daily_loss_limit'])} KRW)"
    else:
        loss = _of(u["loss_today"], u["daily_loss_limit"], " KRW")
        loss += f" (equity {_num(u['start_equity'])} -> {_num(u['equity'])})"
    table.add_row("loss today", loss)
    console.print(table)


def _print_events(events: list[dict[str, Any]]) -> None:
    if not events:
        console.print("no trading events")
        return
    table = Table("time (KST)", "kind", "symbol", "reason", title="latest trading events")
    for e in events:
        table.add_row(_kst(e["ts"]), e["kind"], e["symbol"] or "", e["reason"])
    console.print(table)


@trading_app.command("status")
def status(
    account: AccountOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Mode, kill switch, positions, today's orders, limits used and the latest events (from the store)."""
    settings = get_settings()
    _limits(settings)
    alias = account or settings.trading_account
    data = collect_status(_engine(), settings, alias)
    if as_json:
        typer.echo(json.dumps(data, indent=2, default=str))
        return
    console.print(
        f"mode [bold]{data['mode']}[/], account [bold]{alias}[/], store {data['store']}",
        soft_wrap=True,
        highlight=False,
    )
    if not data["store_ready"]:
        console.print("no trading tables in the store yet (a new or older store): run `krx db upgrade` first")
        return
    _print_switch(data["switch"], alias)
    _print_tables(data)
    _print_used(data)
    _print_events(data["events"])


def _ready_engine() -> Engine:
    """The store's engine, migrated to the newest revision first when it is behind (halt and resume write
    to it, and may be the first command run against a new store)."""
    from pipeline.store.migrate import current_revision, head_revision, upgrade

    engine = _engine()
    if current_revision(engine) != head_revision():
        upgrade(engine)
    return engine


def _user() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no login name (a container without a passwd entry)
        return "cli:unknown"


@trading_app.command("halt")
def halt(
    reason: Annotated[str, typer.Option("--reason", help="Why trading stops (shown until it is resumed).")],
    account: AccountOption = None,
) -> None:
    """Engage the kill switch: the trading job sends nothing until `krx trading resume`."""
    alias = account or get_settings().trading_account
    if not reason.strip():
        console.print("[red]error[/] --reason must say why trading stops")
        raise typer.Exit(2)
    engine = _ready_engine()
    before = halt_state(engine, alias)
    state = engage(engine, alias, reason.strip(), _user())
    if before.halted:
        console.print("already halted: the first reason is kept", highlight=False)
    _print_switch(state, alias)


@trading_app.command("resume")
def resume_command(account: AccountOption = None) -> None:
    """Clear the kill switch (and the reconciliation mismatch streak): trading continues at the next run."""
    alias = account or get_settings().trading_account
    state = resume(_ready_engine(), alias, _user())
    _print_switch(state, alias)
