"""Fault injection against the simulator over HTTP with the served champion: the trading process is
crashed at every step of sending an order (after the intent, after the send before the response, after the
response before it is recorded), and the simulator loses order responses, answers 5xx, drops connections,
sends malformed bodies, storms with rate-limit errors, answers late (timeouts) and expires tokens — at
least 200 faults in one session. Afterwards: zero duplicate orders, zero lost fills, positions equal the
broker's."""

from __future__ import annotations

import datetime as dt
import itertools
import time
from collections import Counter
from typing import Any

import pytest

from pipeline.kis.errors import KisError
from pipeline.trading.brokers import SimBroker
from pipeline.trading.types import ProposedOrder
from tests.trading.conftest import minutes
from tests.trading.harness import DAY, Session

pytestmark = pytest.mark.slow


class Crash(BaseException):
    """The trading process dies here (a BaseException: nothing in the job catches it)."""


class CrashAfterSend(SimBroker):
    """The order reaches the broker; the process dies before it reads the answer."""

    armed = False

    def place(self, order: ProposedOrder) -> str:
        order_no = super().place(order)
        if CrashAfterSend.armed:
            CrashAfterSend.armed = False
            raise Crash("after send, before the response")
        return order_no


def _count_sim_faults(session: Session, counts: Counter[str]) -> None:
    faults = session.sim.state.faults
    decide, lose = faults.decide, faults.lose_order_response

    def counted_decide() -> Any:
        action = decide()
        if action != "none":
            counts[f"sim:{action}"] += 1
        return action

    def counted_lose() -> bool:
        hit = lose()
        if hit:
            counts["sim:order_response_lost"] += 1
        return hit

    faults.decide = counted_decide  # type: ignore[method-assign]
    faults.lose_order_response = counted_lose  # type: ignore[method-assign]


def _expire_tokens(session: Session, counts: Counter[str]) -> None:
    gateway = session.sim.state.gateway
    for tok in list(gateway._tokens.values()):
        tok.expires_at = time.time() - 1
    counts["sim:token_expired"] += 1


#: Every call may fail: 5xx, dropped connections, malformed bodies, rate-limit storms (reads are retried,
#: orders never are); answers come 1.5 s late when a timeout is injected (the client gives up after 1 s).
BACKGROUND = {
    "error_rate": 0.03,
    "drop_rate": 0.02,
    "malformed_rate": 0.02,
    "storm_rate": 0.03,
    "timeout_s": 1.5,
}


class FaultPlan:
    """Cycles through the order faults, one per order sent: crash after the intent, after the send before
    the response, after the response before it is recorded, the response lost by the simulator, the
    response late (timeout), and none."""

    def __init__(self, session: Session, counts: Counter[str]) -> None:
        self.session, self.counts = session, counts
        self._points = itertools.cycle(
            ["after_intent", "after_send", "after_record", "lost", "timeout", None]
        )
        self.point: str | None = next(self._points)

    def _next(self) -> None:
        self.point = next(self._points)

    def before_run(self) -> None:
        """Simulator-side faults are armed before the run whose order they hit."""
        if self.point == "lost":
            self.session.faults(**BACKGROUND, lose_order_next=1)
        elif self.point == "timeout":
            self.session.faults(**BACKGROUND, timeout_next=1)
        else:
            if self.point is None:
                self._next()
            return
        self._next()

    def __call__(self, checkpoint: str) -> None:
        """The order manager's checkpoint hook."""
        if self.point == checkpoint and checkpoint in ("after_intent", "after_record"):
            self._next()
            self.counts[f"crash:{checkpoint}"] += 1
            raise Crash(checkpoint)
        if self.point == "after_send" and checkpoint == "after_intent":
            CrashAfterSend.armed = True  # the broker dies right after sending
            self._next()
            self.counts["crash:after_send_before_response"] += 1


def _trade_through_faults(session: Session, counts: Counter[str]) -> int:
    """Trade 09:00-13:00 under the faults; a crashed or failed run is restarted within its minute.
    Returns the number of runs that failed on a broker error."""
    plan, failed = FaultPlan(session, counts), 0
    session.faults(**BACKGROUND)
    for i, when in enumerate(minutes(DAY, (9, 0), (13, 0))):
        if i % 7 == 3:
            _expire_tokens(session, counts)
        plan.before_run()
        for attempt in range(3):
            try:
                session.run(when + dt.timedelta(seconds=attempt), fault=plan)
                break
            except Crash:
                continue
            except KisError:
                failed += 1
    # The faults stop; a few clean runs settle every order.
    session.faults()
    for when in minutes(DAY, (13, 0), (13, 3)):
        session.run(when)
    return failed


def test_two_hundred_faults_lose_no_fill_and_duplicate_no_order(session: Session) -> None:
    counts: Counter[str] = Counter()
    _count_sim_faults(session, counts)
    session.broker = CrashAfterSend(session.broker.client)
    session.settings = session.settings.model_copy(update={"kis_timeout_s": 1.0})
    failed_runs = _trade_through_faults(session, counts)

    injected = sum(counts.values())
    assert injected >= 200, counts
    assert counts["crash:after_intent"] and counts["crash:after_record"]
    assert counts["crash:after_send_before_response"] and counts["sim:order_response_lost"]
    assert counts["sim:timeout"] and counts["sim:error"] and counts["sim:storm"] and counts["sim:drop"]

    orders = session.orders()
    broker = {o.odno: o for o in session.broker_orders()}
    linked = [o.broker_order_no for o in orders if o.broker_order_no]
    # Zero duplicates: every broker order is one store order, and no store order has two.
    assert len(linked) == len(set(linked))
    assert sorted(linked) == sorted(broker), "a broker order the store does not know (sent twice?)"
    assert len({o.client_order_id for o in orders}) == len(orders)
    # Zero lost fills: what the broker filled is what the store holds, fill by fill.
    fills_by_order: Counter[int] = Counter()
    for f in session.fills():
        fills_by_order[f.order_id] += f.quantity
    for o in orders:
        if o.broker_order_no:
            b = broker[o.broker_order_no]
            assert o.filled_quantity == b.filled_qty == fills_by_order[o.id], (o, b)
        else:
            assert o.status in {"expired", "rejected"} and fills_by_order[o.id] == 0
    assert session.positions() == session.broker_positions()
    assert sum(1 for o in orders if o.status == "filled") >= 5, "trading went on between the faults"
    print(f"faults injected: {injected} {dict(counts)}; failed runs {failed_runs}; orders {len(orders)}")
