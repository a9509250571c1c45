"""The end-of-day trading report: daily PnL, the equity snapshot, orders and fills with their slippage
against the decision price, an HTML page with an equity / drawdown / positions figure, and an MLflow run
under the ``operations`` experiment."""

from __future__ import annotations

import datetime as dt
import html
import logging
import math
import numbers
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from pipeline.config import Settings
from pipeline.market import CONTINUOUS_FUTURES, FUTURES_MULTIPLIER, KST, InstrumentKind, classify
from pipeline.store import schema
from pipeline.store.db import get_engine
from pipeline.trading.types import REJECTED, AccountState

log = logging.getLogger(__name__)

#: The MLflow experiment of the trading operations (one run per account and day).
EXPERIMENT = "operations"
#: Tag that identifies a day's run: ``<account>/<YYYY-MM-DD>``; a rerun finds the run by it.
RUN_TAG = "krx.eod"
#: ``account_snapshots.source`` of the snapshot the report records.
SNAPSHOT_SOURCE = "eod"


class EodSummary(TypedDict):
    """What the ``eod_report`` DAG task returns (XCom): where the report is and its headline numbers."""

    account: str
    day: str
    html: str | None
    png: str | None
    mlflow_run_id: str | None
    daily_pnl: float | None
    orders: int
    fills: int
    warnings: list[str]


@dataclass
class EodReport:
    """One account's trading day, read from the store (KST day). Frames hold KST-aware timestamps."""

    account: str
    day: dt.date
    written_at: dt.datetime
    orders: pd.DataFrame
    """The day's orders (by ``created_at``): spec, symbol, side, quantity, status, prices, reason."""
    fills: pd.DataFrame
    """The day's fills with their order's ``decision_price`` and the slippage (:func:`with_slippage`)."""
    decisions: pd.DataFrame
    """Per spec and symbol: one column per outcome (order, hold, rejected, ...) with its count."""
    snapshots: pd.DataFrame
    """The day's ``account_snapshots`` (ts, cash, equity, margin_used, source), oldest first."""
    positions: pd.DataFrame
    """Holdings at the end of the day: symbol, quantity (signed), avg_price."""
    position_path: pd.DataFrame
    """Quantity per symbol after each of the day's fills (ts, symbol, quantity), from the day's start."""
    start_equity: float | None
    """Equity at the last snapshot before the day, else at the day's first snapshot."""
    risk_rejected: int = 0
    """Decisions the risk checks rejected without an order row of their own."""
    warnings: list[str] = field(default_factory=list)
    html_path: Path | None = None
    png_path: Path | None = None
    mlflow_run_id: str | None = None

    @property
    def end_equity(self) -> float | None:
        return float(self.snapshots["equity"].iloc[-1]) if len(self.snapshots) else None

    @property
    def daily_pnl(self) -> float | None:
        if self.end_equity is None or self.start_equity is None:
            return None
        return self.end_equity - self.start_equity

    @property
    def order_counts(self) -> dict[str, int]:
        """Orders per status."""
        return {str(k): int(v) for k, v in self.orders["status"].value_counts().sort_index().items()}

    @property
    def rejected(self) -> int:
        """Orders the broker rejected plus decisions the risk checks rejected (each counted once)."""
        return int((self.orders["status"] == REJECTED).sum()) + self.risk_rejected

    @property
    def costs(self) -> float:
        return float((self.fills["fee"] + self.fills["tax"]).sum())

    @property
    def slippage_krw(self) -> float:
        return float(self.fills["slippage_krw"].sum())

    @property
    def avg_slippage_bps(self) -> float | None:
        """Quantity-weighted mean slippage of the fills that have a decision price, in basis points."""
        known = self.fills.dropna(subset=["slippage_bps"])
        if known.empty:
            return None
        return float((known["slippage_bps"] * known["quantity"]).sum() / known["quantity"].sum())

    def metrics(self) -> dict[str, float]:
        """The numbers logged to MLflow (an unknown value is left out, not logged as NaN)."""
        values: dict[str, float | None] = {
            "daily_pnl": self.daily_pnl,
            "equity": self.end_equity,
            "orders": len(self.orders),
            "fills": len(self.fills),
            "filled_quantity": float(self.fills["quantity"].sum()),
            "rejected": self.rejected,
            "avg_slippage_bps": self.avg_slippage_bps,
            "slippage_krw": self.slippage_krw,
            "costs": self.costs,
        }
        return {k: float(v) for k, v in values.items() if v is not None and math.isfinite(float(v))}

    def summary(self) -> EodSummary:
        return EodSummary(
            account=self.account,
            day=self.day.isoformat(),
            html=str(self.html_path) if self.html_path else None,
            png=str(self.png_path) if self.png_path else None,
            mlflow_run_id=self.mlflow_run_id,
            daily_pnl=self.daily_pnl,
            orders=len(self.orders),
            fills=len(self.fills),
            warnings=list(self.warnings),
        )


# ---- reading the store -------------------------------------------------------------------------------
def day_bounds(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """The KST day ``day`` as [start, end) instants."""
    start = dt.datetime.combine(day, dt.time(0), KST)
    return start, start + dt.timedelta(days=1)


def _frame(conn: Connection, query: sa.Select[Any], time_columns: Iterable[str] = ()) -> pd.DataFrame:
    result = conn.execute(query)
    frame = pd.DataFrame(result.all(), columns=list(result.keys()))
    for column in time_columns:
        frame[column] = pd.to_datetime(frame[column], utc=True).dt.tz_convert(KST)
    return frame


def multiplier(symbol: str, futures: Iterable[str] = (CONTINUOUS_FUTURES,)) -> float:
    """KRW per price point of one unit of ``symbol``: the futures multiplier for a futures contract (or a
    continuous series named in ``futures``), else 1."""
    return FUTURES_MULTIPLIER if classify(symbol, futures=futures) is InstrumentKind.FUTURES else 1.0


def with_slippage(fills: pd.DataFrame, futures: Iterable[str] = (CONTINUOUS_FUTURES,)) -> pd.DataFrame:
    """``fills`` (side, quantity, price, decision_price, symbol) with the slippage against the decision
    price: ``slippage`` per unit in price points (buys: fill − decision; sells: decision − fill, so a
    positive slippage always cost money), ``slippage_krw`` (× quantity × multiplier) and
    ``slippage_bps`` (per unit, relative to the decision price). No decision price: NaN."""
    out = fills.copy()
    sign = out["side"].map({"buy": 1.0, "sell": -1.0})
    decision = pd.to_numeric(out["decision_price"], errors="coerce")
    out["slippage"] = sign * (out["price"] - decision)
    mult = out["symbol"].map(lambda s: multiplier(s, futures)) if len(out) else pd.Series(dtype=float)
    out["slippage_krw"] = out["slippage"] * out["quantity"] * mult
    out["slippage_bps"] = out["slippage"] / decision.where(decision > 0) * 1e4
    return out


#: Columns of the orders table in the report, in this order.
ORDER_COLUMNS = ["created_at", "spec", "symbol", "side", "quantity", "filled_quantity", "status"]
ORDER_COLUMNS += ["order_type", "decision_price", "avg_fill_price", "mode", "reason"]


def _fills_since(conn: Connection, account: str, start: dt.datetime) -> pd.DataFrame:
    f, o = schema.fills, schema.orders
    query = (
        sa.select(f, o.c.spec, o.c.decision_price)
        .join(o, o.c.id == f.c.order_id)
        .where(o.c.account == account, f.c.ts >= start)
        .order_by(f.c.ts, f.c.id)
    )
    return _frame(conn, query, ["ts"])


def _orders(conn: Connection, account: str, start: dt.datetime, end: dt.datetime) -> pd.DataFrame:
    o = schema.orders
    query = (
        sa.select(*(o.c[n] for n in ORDER_COLUMNS))
        .where(o.c.account == account, o.c.created_at >= start, o.c.created_at < end)
        .order_by(o.c.created_at, o.c.id)
    )
    return _frame(conn, query, ["created_at"])


def _decisions(conn: Connection, account: str, start: dt.datetime, end: dt.datetime) -> pd.DataFrame:
    d = schema.decisions
    query = (
        sa.select(d.c.spec, d.c.symbol, d.c.outcome, sa.func.count().label("n"))
        .where(d.c.account == account, d.c.decided_at >= start, d.c.decided_at < end)
        .group_by(d.c.spec, d.c.symbol, d.c.outcome)
    )
    counts = _frame(conn, query)
    if counts.empty:
        return pd.DataFrame(columns=["spec", "symbol"])
    wide = counts.pivot_table(index=["spec", "symbol"], columns="outcome", values="n", fill_value=0)
    return wide.astype(int).reset_index().rename_axis(columns=None)


def _risk_rejected(conn: Connection, account: str, start: dt.datetime, end: dt.datetime) -> int:
    d, o = schema.decisions, schema.orders
    has_order = sa.exists().where(o.c.client_order_id == d.c.client_order_id)
    query = sa.select(sa.func.count()).where(
        d.c.account == account, d.c.decided_at >= start, d.c.decided_at < end, d.c.outcome == REJECTED
    )
    return int(conn.execute(query.where(sa.not_(has_order))).scalar_one())


def _snapshots(conn: Connection, account: str, start: dt.datetime, end: dt.datetime) -> pd.DataFrame:
    s = schema.account_snapshots
    query = (
        sa.select(s.c.ts, s.c.cash, s.c.equity, s.c.margin_used, s.c.source)
        .where(s.c.account == account, s.c.ts >= start, s.c.ts < end)
        .order_by(s.c.ts)
    )
    return _frame(conn, query, ["ts"])


def _equity_before(conn: Connection, account: str, start: dt.datetime) -> float | None:
    s = schema.account_snapshots
    query = sa.select(s.c.equity).where(s.c.account == account, s.c.ts < start).order_by(s.c.ts.desc())
    value = conn.execute(query.limit(1)).scalar()
    return None if value is None else float(value)


def record_snapshot(conn: Connection, account: str, state: AccountState, now: dt.datetime) -> None:
    """Store the broker's cash and equity as the day's ``eod`` snapshot at ``now``: the first run of the
    day inserts it, a rerun updates that same row (one ``eod`` row per account and KST day)."""
    s = schema.account_snapshots
    start, end = day_bounds(now.astimezone(KST).date())
    values = {"cash": state.cash, "equity": state.equity, "margin_used": state.margin_used}
    mine = (s.c.account == account, s.c.source == SNAPSHOT_SOURCE, s.c.ts >= start, s.c.ts < end)
    existing = conn.execute(sa.select(s.c.ts).where(*mine).order_by(s.c.ts).limit(1)).scalar()
    if existing is not None:
        conn.execute(sa.update(s).where(s.c.account == account, s.c.ts == existing).values(**values))
        return
    taken = conn.execute(sa.select(s.c.ts).where(s.c.account == account, s.c.ts == now)).scalar()
    ts = now + dt.timedelta(microseconds=1) if taken is not None else now  # (account, ts) is the key
    conn.execute(sa.insert(s).values(account=account, ts=ts, source=SNAPSHOT_SOURCE, **values))


def _end_positions(conn: Connection, account: str, broker_state: AccountState | None) -> pd.DataFrame:
    if broker_state is not None:  # the broker wins over the database (reconciliation's rule)
        rows = [(p.symbol, p.quantity, p.avg_price) for p in broker_state.positions.values()]
        return pd.DataFrame(rows, columns=["symbol", "quantity", "avg_price"])
    p = schema.positions
    query = sa.select(p.c.symbol, p.c.quantity, p.c.avg_price).where(p.c.account == account)
    return _frame(conn, query)


def _signed(fills: pd.DataFrame) -> pd.Series:
    return fills["quantity"].where(fills["side"] == "buy", -fills["quantity"]).astype("int64")


def _positions(
    now: pd.DataFrame, later: pd.DataFrame, day: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Holdings at the day's end (the current ones less the fills after it) and their path through the
    day's fills (starting from the holdings before its first fill)."""
    held = now.set_index("symbol")["quantity"].astype("int64")
    after = _signed(later).groupby(later["symbol"]).sum() if len(later) else pd.Series(dtype="int64")
    end = held.sub(after, fill_value=0).astype("int64")
    moved = _signed(day).groupby(day["symbol"]).sum() if len(day) else pd.Series(dtype="int64")
    begin = end.sub(moved, fill_value=0).astype("int64")
    path = [(None, sym, int(q)) for sym, q in begin.items() if q or sym in moved.index]
    level = begin.to_dict()
    for row, signed in zip(day.itertuples(), _signed(day), strict=True):
        level[row.symbol] = level.get(row.symbol, 0) + int(signed)
        path.append((row.ts, row.symbol, level[row.symbol]))
    avg = now.set_index("symbol")["avg_price"]
    ended = pd.DataFrame({"quantity": end[end != 0]}).rename_axis("symbol").reset_index()
    ended["avg_price"] = ended["symbol"].map(avg)
    return ended, pd.DataFrame(path, columns=["ts", "symbol", "quantity"])


def build_eod(
    engine: Engine,
    settings: Settings,
    day: dt.date,
    account: str,
    broker_state: AccountState | None,
    *,
    now: dt.datetime | None = None,
    warnings: Sequence[str] = (),
) -> EodReport:
    """The report of ``account`` on the KST day ``day``. With ``broker_state`` (read at ``now``, default
    the wall clock) the day's ``eod`` equity snapshot is recorded first, unless ``now`` is not on ``day``
    (the broker's state today says nothing of a past day)."""
    now = (now or dt.datetime.now(KST)).astimezone(KST)
    start, end = day_bounds(day)
    notes = list(warnings)
    with engine.begin() as conn:
        if broker_state is not None and start <= now < end:
            record_snapshot(conn, account, broker_state, now)
        elif broker_state is not None:
            notes.append(f"the broker's state at {now:%Y-%m-%d %H:%M} KST is not of {day}: no snapshot taken")
        fills = _fills_since(conn, account, start)
        snapshots = _snapshots(conn, account, start, end)
        positions = _end_positions(conn, account, broker_state)
        report = EodReport(
            account=account,
            day=day,
            written_at=now,
            orders=_orders(conn, account, start, end),
            fills=with_slippage(fills[fills["ts"] < end].reset_index(drop=True), (settings.futures_symbol,)),
            decisions=_decisions(conn, account, start, end),
            snapshots=snapshots,
            positions=pd.DataFrame(),
            position_path=pd.DataFrame(),
            start_equity=_equity_before(conn, account, start),
            risk_rejected=_risk_rejected(conn, account, start, end),
        )
    # The holdings read are the broker's at ``now`` or the store's latest: undo the fills after the day.
    later = fills[(fills["ts"] >= end) & ((fills["ts"] <= now) if broker_state is not None else True)]
    report.positions, report.position_path = _positions(positions, later, report.fills)
    if report.start_equity is None and len(snapshots):
        report.start_equity = float(snapshots["equity"].iloc[0])
    if snapshots.empty:
        notes.append(f"no account snapshot on {day}: equity and PnL are unknown")
    report.warnings = notes
    return report


# ---- the figure and the HTML page ----------------------------------------------------------------------
def _naive_kst(times: pd.Series) -> pd.Series:
    return pd.to_datetime(times, utc=True).dt.tz_convert(KST).dt.tz_localize(None)


def _span(report: EodReport) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The time axis: the widest KRX session of the day, widened to every snapshot and fill."""
    from pipeline.market import session_hours

    hours = session_hours(InstrumentKind.FUTURES)
    times = pd.concat([_naive_kst(report.snapshots["ts"]), _naive_kst(report.fills["ts"])])
    lo = pd.Timestamp(dt.datetime.combine(report.day, hours.open))
    hi = pd.Timestamp(dt.datetime.combine(report.day, hours.close))
    return (min(lo, times.min()), max(hi, times.max())) if len(times) else (lo, hi)


def _plot_positions(ax: Any, report: EodReport, x0: pd.Timestamp, x1: pd.Timestamp) -> None:
    path = report.position_path
    for symbol, rows in path.groupby("symbol", sort=True):
        x = [x0 if pd.isna(t) else _naive_kst(pd.Series([t]))[0] for t in rows["ts"]]
        y = list(rows["quantity"])
        ax.step([*x, x1], [*y, y[-1]], where="post", lw=1.2, label=str(symbol))
    if len(path):
        ax.legend(loc="upper left", fontsize=8)


def plot_eod(report: EodReport, path: Path) -> Path:
    """Three panels over the day (KST): equity from the account snapshots, drawdown from the running peak
    (the start equity counts as a peak), and the quantity held per symbol after each fill."""
    import matplotlib

    matplotlib.use("Agg")  # headless: figures go to files only
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt
    import numpy as np

    fig, (ax_eq, ax_dd, ax_pos) = plt.subplots(
        3, 1, figsize=(10, 8), sharex=True, height_ratios=(3, 1.5, 1.5)
    )
    x0, x1 = _span(report)
    snaps = report.snapshots
    if len(snaps):
        x, equity = _naive_kst(snaps["ts"]), snaps["equity"].to_numpy(float)
        start = report.start_equity if report.start_equity is not None else equity[0]
        peak = np.maximum.accumulate(np.r_[start, equity])[1:]
        ax_eq.plot(x, equity, marker=".", lw=1.2)
        ax_dd.fill_between(x, equity / peak - 1.0, 0.0, alpha=0.4, color="#b00020")
    else:
        ax_eq.text(0.5, 0.5, "no account snapshot", transform=ax_eq.transAxes, ha="center")
    _plot_positions(ax_pos, report, x0, x1)
    ax_eq.set_title(f"{report.account} {report.day}")
    ax_eq.set_ylabel("equity (KRW)")
    ax_eq.yaxis.set_major_formatter(matplotlib.ticker.StrMethodFormatter("{x:,.0f}"))
    ax_dd.set_ylabel("drawdown")
    ax_dd.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    ax_pos.set_ylabel("position")
    ax_pos.set_xlim(x0, x1)
    ax_pos.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M"))
    ax_pos.set_xlabel("KST")
    for ax in (ax_eq, ax_dd, ax_pos):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _fmt(value: Any, pattern: str = "{:,.0f}") -> str:
    """A table cell: numbers (NumPy's too) by ``pattern``, instants as KST clock times, text escaped."""
    if value is None or value is pd.NaT or (isinstance(value, numbers.Real) and math.isnan(value)):
        return "–"
    if isinstance(value, dt.datetime):
        return value.astimezone(KST).strftime("%H:%M:%S")
    return pattern.format(value) if isinstance(value, numbers.Real) else html.escape(str(value))


def _table(frame: pd.DataFrame, formats: dict[str, str] | None = None) -> str:
    formats = formats or {}
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = []
    for row in frame.itertuples(index=False):
        cells = [_fmt(v, formats.get(c, "{:,.10g}")) for c, v in zip(frame.columns, row, strict=True)]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _summary_table(r: EodReport) -> str:
    start = r.start_equity
    pct = r.daily_pnl / start if r.daily_pnl is not None and start else None
    counts = ", ".join(f"{k} {v}" for k, v in r.order_counts.items()) or "none"
    rows = [
        ("start equity", _fmt(start)),
        ("end equity", _fmt(r.end_equity)),
        ("daily PnL", f"{_fmt(r.daily_pnl, '{:+,.0f}')} ({_fmt(pct, '{:+.3%}')})"),
        ("cash (last snapshot)", _fmt(r.snapshots["cash"].iloc[-1] if len(r.snapshots) else None)),
        ("orders", f"{len(r.orders)} ({html.escape(counts)})"),
        ("rejected (broker + risk)", str(r.rejected)),
        ("fills", f"{len(r.fills)}, quantity {_fmt(int(r.fills['quantity'].sum()))}"),
        ("costs (fees + tax)", _fmt(r.costs)),
        ("slippage vs decision price", f"{_fmt(r.slippage_krw, '{:+,.0f}')} KRW"),
        ("average slippage (quantity-weighted)", f"{_fmt(r.avg_slippage_bps, '{:+.2f}')} bps"),
        ("written", r.written_at.strftime("%Y-%m-%d %H:%M:%S KST")),
    ]
    return _table(pd.DataFrame(rows, columns=["", "value"]))


#: Columns of the fills table in the report, in this order.
_FILL_COLUMNS = ["ts", "spec", "symbol", "side", "quantity", "price", "decision_price", "slippage"]
_FILL_COLUMNS += ["slippage_krw", "slippage_bps", "fee", "tax"]
_FILL_FORMATS = {"slippage": "{:+,.4g}", "slippage_krw": "{:+,.0f}", "slippage_bps": "{:+.2f}"}


def render_eod(report: EodReport, figure: Path | None) -> str:
    """The report as one HTML document (inline CSS, the figure as a base64 PNG: it opens offline)."""
    r = report
    warn = "".join(f'<p class="fail">⚠ {html.escape(w)}</p>' for w in r.warnings)
    orders = (
        _table(r.orders, {"quantity": "{:,}", "filled_quantity": "{:,}"})
        if len(r.orders)
        else f"<p>No orders on {r.day}.</p>"
    )
    fills = _table(r.fills[_FILL_COLUMNS], _FILL_FORMATS) if len(r.fills) else f"<p>No fills on {r.day}.</p>"
    decisions = _table(r.decisions) if len(r.decisions) else "<p>No decisions.</p>"
    positions = _table(r.positions) if len(r.positions) else "<p>Flat: no holdings.</p>"
    from pipeline.registry.report import _CSS, _figure  # the training report's look

    image = _figure(figure) if figure is not None and figure.is_file() else ""
    body = (
        f"<h1>End of day {r.day}: account {html.escape(r.account)}</h1>{warn}"
        + _summary_table(r)
        + "<h2>Decisions</h2>"
        + decisions
        + "<h2>Orders</h2><p class='note'>Times in KST; prices in points (futures) or KRW.</p>"
        + orders
        + "<h2>Fills and slippage</h2><p class='note'>Slippage against the decision bar's close: buys "
        "fill − decision, sells decision − fill (positive: it cost money).</p>"
        + fills
        + "<h2>Holdings at the close</h2>"
        + positions
        + "<h2>Equity, drawdown and positions</h2>"
        + (image or '<p class="note">No figure.</p>')
    )
    title = html.escape(f"EOD {r.account} {r.day}")
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        f"<style>{_CSS}</style></head><body>{body}</body></html>"
    )


def write_eod_report(
    report: EodReport, out_dir: Path | None = None, settings: Settings | None = None
) -> Path:
    """Write ``eod-<account>-<day>.html`` and the figure ``.png`` beside it into ``out_dir`` (default
    ``<var_dir>/reports/trading/<day>``); sets and returns ``report.html_path``."""
    if out_dir is None:
        from pipeline.config import get_settings

        out_dir = (settings or get_settings()).var_dir / "reports" / "trading" / report.day.isoformat()
    stem = f"eod-{report.account}-{report.day.isoformat()}"
    report.png_path = plot_eod(report, out_dir / f"{stem}.png")
    report.html_path = out_dir / f"{stem}.html"
    report.html_path.write_text(render_eod(report, report.png_path), encoding="utf-8")
    return report.html_path


# ---- MLflow ---------------------------------------------------------------------------------------------
def log_eod_to_mlflow(report: EodReport, paths: Iterable[Path], settings: Settings) -> str:
    """Log the day to run ``eod-<account>-<day>`` of experiment ``operations`` (found again by its tag on
    a rerun, whose metrics and artifacts then replace the first ones); returns the run id. Only the
    account alias is logged, never an account number or a key."""
    from mlflow.entities import Metric

    # The training's tracking setup (URI and artifact root from the settings, MLflow's chatter to a file).
    from pipeline.registry.tracking import configure_mlflow, ensure_experiment

    client = configure_mlflow(settings)
    experiment_id = ensure_experiment(client, EXPERIMENT, settings)
    if client.get_experiment(experiment_id).lifecycle_stage == "deleted":
        client.restore_experiment(experiment_id)
    key = f"{report.account}/{report.day.isoformat()}"
    found = client.search_runs([experiment_id], filter_string=f"tags.`{RUN_TAG}` = '{key}'", max_results=1)
    if found:
        run_id = str(found[0].info.run_id)
    else:
        tags = {RUN_TAG: key, "krx.account": report.account, "krx.day": report.day.isoformat()}
        name = f"eod-{report.account}-{report.day.isoformat()}"
        run_id = str(client.create_run(experiment_id, run_name=name, tags=tags).info.run_id)
    stamp = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
    metrics = [Metric(k, v, stamp, 0) for k, v in report.metrics().items()]
    client.log_batch(run_id, metrics=metrics, tags=[])
    client.set_tag(run_id, "krx.warnings", str(len(report.warnings)))
    for path in paths:
        client.log_artifact(run_id, str(path))
    client.set_terminated(run_id, "FINISHED")
    report.mlflow_run_id = run_id
    return run_id


# ---- the whole job -------------------------------------------------------------------------------------
def broker_account(settings: Settings) -> tuple[AccountState | None, dt.datetime, str | None]:
    """The broker's account state and clock (``pipeline.trading.brokers``), or (None, wall clock, a
    warning) when the broker cannot be reached or built: the report is then made from the store."""
    try:
        from pipeline.trading.brokers import make_broker

        broker = make_broker(settings)
        try:
            return broker.account(), broker.now(), None
        finally:
            broker.close()
    # Any failure (network, KIS error, settings) only means "no broker view today"; the message is not
    # repeated because a transport error can quote a request URL with account fields in it.
    except Exception as exc:  # noqa: BLE001
        log.warning("broker unreachable for the end-of-day report: %s", type(exc).__name__)
        warning = f"broker unreachable ({type(exc).__name__}): report from the store, no new snapshot"
        return None, dt.datetime.now(KST), warning


def run_eod(
    settings: Settings,
    day: dt.date | None = None,
    broker_state: AccountState | None = None,
    *,
    now: dt.datetime | None = None,
    warnings: Sequence[str] = (),
    engine: Engine | None = None,
    out_dir: Path | None = None,
) -> EodReport:
    """Build the report of ``settings.trading_account`` for ``day`` (default: today in KST), write the
    HTML and figure, log them to MLflow; returns the report with its paths and run id."""
    now = (now or dt.datetime.now(KST)).astimezone(KST)
    day = day or now.date()
    engine = engine or get_engine(settings.resolved_database_url)
    report = build_eod(
        engine, settings, day, settings.trading_account, broker_state, now=now, warnings=warnings
    )
    html_path = write_eod_report(report, out_dir, settings)
    log_eod_to_mlflow(report, [p for p in (html_path, report.png_path) if p is not None], settings)
    log.info("end-of-day report %s %s: PnL %s -> %s", report.account, day, report.daily_pnl, html_path)
    return report
