"""One trading run: resolve and track orders, reconcile with the broker, check the loss limit, then for every
traded spec and symbol whose bar has just closed, ask the served model, size the order, pass the risk checks
and send it exactly once.

The decision rule is the backtest's (:class:`pipeline.rl.env.VecTradingEnv`): decide at the close of bar t,
execute at the open of bar t+1 with a market order; the action's level becomes a whole number of shares
(``floor(level * equity / (close * (1 + buy fee)))``) or contracts (``clip(level, ±margin cap)``); an action
equal to the previous one keeps the position as it is.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pipeline import observability as obs
from pipeline.config import Settings, get_settings
from pipeline.kis.errors import KisError
from pipeline.market import (
    CONTINUOUS_FUTURES,
    FUTURES_MARGIN_RATE,
    FUTURES_MULTIPLIER,
    KST,
    InstrumentKind,
    fee_rate,
    front_contract,
    tick_size,
)
from pipeline.registry.specs import ModelSpec, resolve_spec
from pipeline.store.db import get_engine, write_transaction
from pipeline.store.schema import decisions, orders
from pipeline.trading import clock, risk, state
from pipeline.trading.brokers import Broker, make_broker
from pipeline.trading.decider import Decision, HttpDecider, ModelUnavailable, WindowRequest
from pipeline.trading.orders import OrderManager, multiplier_of
from pipeline.trading.reconcile import reconcile, snapshot, start_of_day_equity
from pipeline.trading.types import AccountState, ProposedOrder, Side

log = logging.getLogger(__name__)


class Decider(Protocol):
    """What the engine needs from the model server (:class:`HttpDecider`)."""

    def decide(self, requests: list[WindowRequest]) -> list[Decision | ModelUnavailable]: ...


@dataclass
class SymbolDecision:
    """What one run did for one spec and symbol."""

    spec: str
    symbol: str
    instrument: str
    bar_ts: dt.datetime
    outcome: str  # order | hold | rejected | no_model | halted | dry | flatten
    reason: str | None = None
    action: int | None = None
    target_level: float | None = None
    position_before: int = 0
    target_quantity: int | None = None
    client_order_id: str | None = None
    order_status: str | None = None
    model_version: str | None = None


@dataclass
class TradingRun:
    """The result of :func:`run_trading`; ``skipped`` says why nothing was done (out of session)."""

    now: dt.datetime
    mode: str
    account: str
    skipped: str | None = None
    halted: str | None = None
    decisions: list[SymbolDecision] = field(default_factory=list)
    reconciliation: list[str] = field(default_factory=list)
    new_fills: int = 0
    resolved: list[str] = field(default_factory=list)
    wall_s: float = 0.0

    def summary(self) -> dict[str, Any]:
        """A JSON-able summary (the DAG task's return value)."""
        return {
            "now": self.now.isoformat(),
            "mode": self.mode,
            "account": self.account,
            "skipped": self.skipped,
            "halted": self.halted,
            "decisions": [
                {
                    "spec": d.spec,
                    "symbol": d.symbol,
                    "instrument": d.instrument,
                    "bar": d.bar_ts.isoformat(),
                    "outcome": d.outcome,
                    "reason": d.reason,
                    "action": d.action,
                    "position_before": d.position_before,
                    "target_quantity": d.target_quantity,
                    "order_status": d.order_status,
                }
                for d in self.decisions
            ],
            "reconciliation": self.reconciliation,
            "new_fills": self.new_fills,
            "resolved": self.resolved,
            "wall_s": round(self.wall_s, 3),
        }


def instrument_for(symbol: str, kind: InstrumentKind, day: dt.date, roll_days: int) -> str:
    """What the broker trades for a spec's symbol: the front contract for the continuous futures series."""
    if kind is InstrumentKind.FUTURES and symbol == CONTINUOUS_FUTURES:
        return front_contract(day, roll_days).code
    return symbol


def target_quantity(level: float, kind: InstrumentKind, equity: float, close: float) -> int:
    """The backtest's sizing: contracts capped by the margin equity can post, or whole shares worth
    ``level`` of equity including the buy fee."""
    eq = max(equity, 0.0)
    if kind is InstrumentKind.FUTURES:
        cap = math.floor(eq / (close * FUTURES_MULTIPLIER * FUTURES_MARGIN_RATE))
        return int(max(-cap, min(cap, round(level))))
    return math.floor(level * eq / (close * (1.0 + fee_rate(kind))))


class Trader:
    """The trading job of one account: build once per run (or keep across runs in tests)."""

    def __init__(
        self,
        settings: Settings,
        broker: Broker,
        decider: Decider | HttpDecider,
        engine: Engine,
        *,
        fault: Callable[[str], None] | None = None,
    ) -> None:
        self.settings, self.broker, self.decider, self.engine = settings, broker, decider, engine
        self.account = settings.trading_account
        self.limits = risk.load_limits(settings)
        self.specs: list[ModelSpec] = [resolve_spec(name, settings) for name in settings.trading_specs]
        self.orders = OrderManager(
            engine,
            broker,
            self.account,
            cancel_after_s=settings.trading_cancel_after_s,
            resolve_window_s=settings.trading_resolve_window_s,
            fault=fault,
        )
        self._fault = fault

    def kinds(self) -> set[InstrumentKind]:
        return {InstrumentKind(s.kind) for s in self.specs}

    # --- the run -----------------------------------------------------------------------------
    def run(self, now: dt.datetime | None = None) -> TradingRun:
        # observability: the run's metrics (published at the end, even when it raises) and log context
        with obs.trading_run(self.settings, self.account, self._halted) as metrics:
            now = (now or self.broker.now()).astimezone(KST)
            with obs.log_context(account=self.account, mode=self.broker.mode, run_at=now.isoformat()):
                result = self._run(now)
                log.info("trading run: %s", _run_outcome(result))
            metrics.runs[_run_outcome(result)] += 1
            return result

    def _halted(self) -> bool:
        return state.halt_state(self.engine, self.account).halted

    def _run(self, now: dt.datetime) -> TradingRun:
        started = time.perf_counter()
        result = TradingRun(now, self.broker.mode, self.account)
        status = clock.should_run(now, self.kinds())
        if not status.open:
            result.skipped = status.reason
            return result
        seen = self.broker.orders_today(now.date(), self.kinds())
        result.resolved = self.orders.resolve_unknown(now, seen)
        result.new_fills = self.orders.track(now, seen)
        acct = self.broker.account()
        rec = reconcile(self.engine, self.account, acct, now, self.settings.trading_reconcile_halt_runs)
        result.reconciliation = [str(d) for d in rec.differences]
        obs.count_reconciliation(len(rec.differences))  # observability
        snapshot(self.engine, self.account, acct, now)
        self._check_loss(acct, now)
        halt = state.halt_state(self.engine, self.account)
        result.halted = halt.reason if halt.halted else None
        result.decisions = self._decide_all(now, acct, halt.reason if halt.halted else None)
        result.wall_s = time.perf_counter() - started
        return result

    def _check_loss(self, acct: AccountState, now: dt.datetime) -> None:
        start = start_of_day_equity(self.engine, self.account, now)
        if start is None:
            return
        breach = risk.check_daily_loss(self.limits, start, acct.equity)
        if breach is not None:
            state.engage(self.engine, self.account, breach.reason, "risk:daily_loss_limit")

    # --- decisions -----------------------------------------------------------------------------
    def _decide_all(self, now: dt.datetime, acct: AccountState, halted: str | None) -> list[SymbolDecision]:
        """Every (spec, symbol) with a newly closed bar: prepare its window, ask the model for all of them
        in one call, then act on each answer."""
        unresolved = self.orders.unresolved_symbols() | self.orders.working_symbols()
        prepared = []
        for item in self._pending(now, acct):
            with _symbol_context(item):  # observability
                prepared.append(self._prepare(item, now, acct, halted, unresolved))
        windows = [(i, item["window"]) for i, item in enumerate(prepared) if "window" in item]
        answers: dict[int, Decision | ModelUnavailable] = {}
        windows_sent = time.perf_counter()  # observability: decision latency runs from here
        if windows:
            got = self.decider.decide([w for _, w in windows])
            answers = {i: a for (i, _), a in zip(windows, got, strict=True)}
        out = []
        for i, item in enumerate(prepared):
            with _symbol_context(item):  # observability
                out.append(self._act(item, answers.get(i), now))
                if "window" in item:
                    obs.observe_latency(time.perf_counter() - windows_sent)
        return out

    def _pending(self, now: dt.datetime, acct: AccountState) -> list[dict[str, Any]]:
        """The (spec, symbol) pairs in session whose latest closed bar has no decision yet."""
        pending = []
        for spec in self.specs:
            kind = InstrumentKind(spec.kind)
            bar_ts = clock.last_closed_bar(now, spec.interval, kind)
            if not clock.session_status(now, kind).open or bar_ts is None:
                continue
            for symbol in spec.symbols:
                if not self._decided(spec.name, symbol, bar_ts):
                    instrument = instrument_for(symbol, kind, now.date(), self.settings.futures_roll_days)
                    pending.append(
                        {
                            "spec": spec,
                            "symbol": symbol,
                            "kind": kind,
                            "instrument": instrument,
                            "bar_ts": bar_ts,
                            "position": acct.quantity(instrument),
                        }
                    )
        return pending

    def _prepare(
        self,
        item: dict[str, Any],
        now: dt.datetime,
        acct: AccountState,
        halted: str | None,
        unresolved: set[str],
    ) -> dict[str, Any]:
        """Fetch and check the bars of one pending pair; sets ``window`` or ``skip`` (outcome, reason)."""
        spec: ModelSpec = item["spec"]
        if halted:
            item["skip"] = ("halted", f"kill switch engaged: {halted}")
            return item
        if item["instrument"] in unresolved:
            item["skip"] = ("rejected", "an earlier order of this symbol is still working or unresolved")
            return item
        try:
            bars = self.broker.bars(item["instrument"], item["kind"], spec.interval, now, self._history(spec))
        except KisError as exc:
            item["skip"] = ("rejected", f"no bars from the broker ({type(exc).__name__}): no new risk")
            return item
        bars = bars[bars.index <= item["bar_ts"]]
        last = bars.index[-1].to_pydatetime() if len(bars) else None
        stale = risk.is_stale(
            risk.bar_end(last, spec.interval) if last is not None else None, spec.interval, now, self.limits
        )
        if stale is not None:
            obs.count_rejection(stale.rule)  # observability
            item["skip"] = ("rejected", stale.reason)
            return item
        item["bars"], item["close"] = bars, float(bars["close"].iloc[-1])
        item["equity"] = self._allocation(spec, acct)
        item["positions"] = acct.positions
        item["window"] = self._window(item, acct)
        return item

    def _history(self, spec: ModelSpec) -> int:
        if spec.interval == "1d":
            return self.settings.trading_daily_history_days
        return self.settings.trading_minute_sessions

    def _allocation(self, spec: ModelSpec, acct: AccountState) -> float:
        """Equity one symbol of ``spec`` trades with: an equal share of the account's equity."""
        return acct.equity / max(len(spec.symbols), 1) / max(len(self.specs), 1)

    def _window(self, item: dict[str, Any], acct: AccountState) -> WindowRequest:
        kind: InstrumentKind = item["kind"]
        qty = int(item["position"])
        pos = acct.positions.get(item["instrument"])
        if kind is InstrumentKind.FUTURES:
            level = float(qty)
        else:
            level = qty * item["close"] / item["equity"] if item["equity"] > 0 else 0.0
        entry = pos.avg_price if pos is not None and pos.avg_price > 0 else None
        spec: ModelSpec = item["spec"]
        first = self._previous_action(spec.name, item["symbol"], item["bar_ts"], today_only=True) is None
        if spec.interval != "1d" and self.settings.trading_minute_sessions == 1 and first and qty == 0:
            # The session's first decision: the model replays the session from its first bar and takes the
            # position its replay holds, so the live path starts on the path the backtest takes.
            return WindowRequest(spec.name, item["bars"], None, None)
        return WindowRequest(spec.name, item["bars"], level, entry)

    def _decided(self, spec: str, symbol: str, bar_ts: dt.datetime) -> bool:
        with self.engine.connect() as conn:
            return (
                conn.execute(
                    sa.select(decisions.c.outcome).where(
                        decisions.c.account == self.account,
                        decisions.c.spec == spec,
                        decisions.c.symbol == symbol,
                        decisions.c.bar_ts == bar_ts,
                    )
                ).first()
                is not None
            )

    def _previous_action(
        self, spec: str, symbol: str, bar_ts: dt.datetime, today_only: bool = False
    ) -> int | None:
        """The action of the latest earlier decision (of today's session only, with ``today_only``) whose
        order did not fail: an action whose order was rejected, expired or cancelled never reached its
        target, so repeating it must aim for the target again rather than keep the position."""
        since = dt.datetime.combine(bar_ts.astimezone(KST).date(), dt.time(0), KST) if today_only else None
        failed = ("rejected", "expired", "cancelled")
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(decisions.c.action)
                .select_from(
                    decisions.outerjoin(orders, orders.c.client_order_id == decisions.c.client_order_id)
                )
                .where(sa.or_(orders.c.status.is_(None), orders.c.status.not_in(failed)))
                .where(decisions.c.outcome != "rejected")
                .where(
                    decisions.c.account == self.account,
                    decisions.c.spec == spec,
                    decisions.c.symbol == symbol,
                    decisions.c.bar_ts < bar_ts,
                    decisions.c.bar_ts >= (since or dt.datetime(1970, 1, 1, tzinfo=dt.UTC)),
                    decisions.c.action.is_not(None),
                )
                .order_by(decisions.c.bar_ts.desc())
                .limit(1)
            ).first()
            return None if row is None else int(row[0])

    def _act(
        self, item: dict[str, Any], answer: Decision | ModelUnavailable | None, now: dt.datetime
    ) -> SymbolDecision:
        """Turn one answer into a target, an order through the risk checks, and a decision row."""
        spec: ModelSpec = item["spec"]
        kind: InstrumentKind = item["kind"]
        d = SymbolDecision(
            spec.name,
            item["symbol"],
            item["instrument"],
            item["bar_ts"],
            "hold",
            position_before=item["position"],
        )
        price = float(item.get("close") or 0.0)
        if "skip" in item:
            d.outcome, d.reason = item["skip"]
            return self._record(d, price, None)
        target = self._target(d, item, answer, now)
        d.target_quantity = target if kind is InstrumentKind.FUTURES else max(target, 0)
        delta = d.target_quantity - d.position_before
        if delta == 0:
            if d.outcome == "hold" and d.reason is None:
                d.reason = "already at the target"
            return self._record(d, price, None)
        order = self._proposed(spec, kind, item, delta, price)
        rejections = risk.check_order(self.limits, order, self._risk_context(item, now, spec, price))
        if rejections:
            d.outcome = "rejected"
            d.reason = "; ".join(r.reason for r in rejections)
            with write_transaction(self.engine) as conn:
                for r in rejections:
                    obs.count_rejection(r.rule)  # observability
                    state.record_event(
                        conn,
                        self.account,
                        "risk_rejected",
                        r.reason,
                        symbol=order.symbol,
                        detail={"rule": r.rule},
                    )
            return self._record(d, price, None)
        if d.outcome == "hold":
            d.outcome = "order"
        with write_transaction(self.engine) as conn:
            key, _ = self.orders.record_intent(conn, order, now)
            self._insert_decision(conn, d, price, key)
        d.client_order_id = key
        outcome = self.orders.send(key, order, now)
        d.order_status = outcome.status
        log.info(  # observability
            "decision: %s %s %d -> order %s",
            d.outcome,
            order.side,
            order.quantity,
            outcome.status,
            extra={"client_order_id": key},
        )
        if outcome.status == "dry":
            d.outcome = "dry"
            self._set_outcome(d)
        return d

    def _target(
        self,
        d: SymbolDecision,
        item: dict[str, Any],
        answer: Decision | ModelUnavailable | None,
        now: dt.datetime,
    ) -> int:
        """The position to hold: flat before the close (intraday), the model's level sized like the
        backtest, or — without a usable answer — hold or flatten as configured. Sets outcome and reason."""
        spec: ModelSpec = item["spec"]
        flatten_at = self.settings.trading_flatten_before_close_min
        left = clock.minutes_to_close(now, item["kind"])
        if spec.interval == "1m" and flatten_at is not None and left is not None and left <= flatten_at:
            d.outcome, d.reason = "flatten", f"{left:.0f} min to the close: intraday position flattened"
            return 0
        if isinstance(answer, Decision):
            d.action, d.target_level, d.model_version = (
                answer.action,
                answer.target_level,
                answer.model_version,
            )
            if self._previous_action(spec.name, item["symbol"], item["bar_ts"]) == answer.action:
                return d.position_before  # the backtest keeps the position when the action repeats
            return target_quantity(answer.target_level, item["kind"], item["equity"], item["close"])
        why = str(answer) if answer is not None else "no answer"
        d.outcome = "no_model"
        if self.settings.trading_on_model_failure == "flatten":
            d.reason = f"{why}; flattening (KRX_TRADING_ON_MODEL_FAILURE=flatten)"
            return 0
        d.reason = f"{why}; holding (no new risk)"
        return d.position_before

    def _risk_context(
        self, item: dict[str, Any], now: dt.datetime, spec: ModelSpec, price: float
    ) -> risk.RiskContext:
        return risk.RiskContext(
            now=now,
            orders_today=self._orders_today(now),
            positions={
                p.symbol: (p.quantity, p.price or price, multiplier_of(p.symbol))
                for p in item["positions"].values()
            },
            price_band=self._band(item["instrument"], item["kind"]),
            latest_bar_end=None,
            interval=spec.interval,
        )

    def _proposed(
        self, spec: ModelSpec, kind: InstrumentKind, item: dict[str, Any], delta: int, price: float
    ) -> ProposedOrder:
        side: Side = "buy" if delta > 0 else "sell"
        limit: float | None = None
        if self.settings.trading_order_type == "limit":
            ticks = self.settings.trading_limit_offset_ticks * tick_size(price, kind)
            limit = price + ticks if side == "buy" else price - ticks
        return ProposedOrder(
            account=self.account,
            spec=spec.name,
            symbol=item["instrument"],
            kind=kind.value,
            side=side,
            quantity=abs(delta),
            price=price,
            multiplier=FUTURES_MULTIPLIER if kind is InstrumentKind.FUTURES else 1.0,
            position_before=int(item["position"]),
            decision_ts=item["bar_ts"],
            order_type=self.settings.trading_order_type,
            limit_price=limit,
        )

    def _band(self, instrument: str, kind: InstrumentKind) -> tuple[float, float] | None:
        if not self.limits.check_price_band:
            return None
        try:
            return self.broker.price_band(instrument, kind)
        except KisError:
            return None

    def _orders_today(self, now: dt.datetime) -> int:
        day_start = dt.datetime.combine(now.date(), dt.time(0), KST)
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    sa.select(sa.func.count())
                    .select_from(orders)
                    .where(
                        orders.c.account == self.account,
                        orders.c.created_at >= day_start,
                        orders.c.status.not_in(("rejected", "expired")),
                    )
                ).scalar_one()
            )

    # --- decision rows -------------------------------------------------------------------------
    def _record(self, d: SymbolDecision, price: float, key: str | None) -> SymbolDecision:
        log.info("decision: %s (%s)", d.outcome, d.reason)  # observability
        with write_transaction(self.engine) as conn:
            self._insert_decision(conn, d, price, key)
        return d

    def _insert_decision(self, conn: sa.Connection, d: SymbolDecision, price: float, key: str | None) -> None:
        exists = conn.execute(
            sa.select(decisions.c.outcome).where(
                decisions.c.account == self.account,
                decisions.c.spec == d.spec,
                decisions.c.symbol == d.symbol,
                decisions.c.bar_ts == d.bar_ts,
            )
        ).first()
        if exists is not None:
            return
        conn.execute(
            decisions.insert().values(
                account=self.account,
                spec=d.spec,
                symbol=d.symbol,
                bar_ts=d.bar_ts,
                instrument=d.instrument,
                model_version=d.model_version,
                action=d.action,
                target_level=d.target_level,
                price=price,
                position_before=d.position_before,
                target_quantity=d.target_quantity,
                client_order_id=key,
                outcome=d.outcome,
                reason=d.reason,
                decided_at=dt.datetime.now(dt.UTC),
            )
        )

    def _set_outcome(self, d: SymbolDecision) -> None:
        with write_transaction(self.engine) as conn:
            conn.execute(
                decisions.update()
                .where(
                    decisions.c.account == self.account,
                    decisions.c.spec == d.spec,
                    decisions.c.symbol == d.symbol,
                    decisions.c.bar_ts == d.bar_ts,
                )
                .values(outcome=d.outcome)
            )


def _run_outcome(result: TradingRun) -> str:
    """The run's outcome as counted by ``krx_trading_runs_total``."""
    if result.skipped:
        return "skipped"
    return "halted" if result.halted else "traded"


def _symbol_context(item: dict[str, Any]) -> AbstractContextManager[None]:
    """Log context of one (spec, symbol) decision."""
    return obs.log_context(spec=item["spec"].name, symbol=item["symbol"], instrument=item["instrument"])


def store_engine(settings: Settings) -> Engine:
    """The market store's engine (migrated by ``krx db upgrade`` or on first use)."""
    from pipeline.store.migrate import upgrade

    engine = get_engine(settings.resolved_database_url)
    upgrade(engine)
    return engine


def run_trading(
    settings: Settings | None = None,
    now: dt.datetime | None = None,
    *,
    broker: Broker | None = None,
    decider: Decider | HttpDecider | None = None,
    engine: Engine | None = None,
) -> TradingRun:
    """One trading run with everything built from settings (the DAG's task); closes what it built."""
    s = settings or get_settings()
    own_broker, own_decider = broker is None, decider is None
    broker = broker or make_broker(s)
    decider = decider or HttpDecider(s)
    try:
        trader = Trader(s, broker, decider, engine or store_engine(s))
        return trader.run(now)
    finally:
        if own_broker:
            broker.close()
        if own_decider and isinstance(decider, HttpDecider):
            decider.close()
