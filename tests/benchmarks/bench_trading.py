"""Benchmark: decision latency of the trading job (``Trader.run``) against the KIS simulator and the served
model, for a daily stock spec of 1 symbol and one of 20 symbols, versus a bare KIS order round trip.

Usage: python tests/benchmarks/bench_trading.py [--quick] [--runs-1 N] [--runs-20 N]

Set-up: a tiny agent is trained and registered as champion of two stock specs defined through
``KRX_MODEL_SPECS`` (``bench-stocks-1``: one symbol; ``bench-stocks-20``: twenty), ``krx serve`` serves both
(API key on, as in production), the simulator knows the twenty symbols and the store is SQLite. The specs'
levels are (0, 0.2) of the symbol's allocation and the agent's policy-head bias is set to favour the long
level by a wide margin (everything the server computes per window — features, regimes, the LSTM replay — is
unchanged; only the argmax is settled), so from a flat account every decision is a buy: every decision
timed ends with an order sent and acknowledged, which is the path the target is about.

How samples are made: a daily model decides once per session and account, so every timed run trades a
fresh simulator account under a fresh trading-account alias (its first run of the day: nothing to resolve
or reconcile yet) with the simulator's clock running from the session open; nothing in ``decisions`` is
deleted. One untimed warm-up run per phase goes first.

Definition of the latency: inside one run the engine fetches every symbol's bars, asks the model server once
(``/predict_batch``), then for each symbol sizes the order, runs the risk checks (the daily price band is
one more broker call), commits the intent and sends it. The benchmark wraps the broker (``bars`` and
``place``) in a timing proxy; a decision's latency is from the moment the run's last bars arrived to the
moment the broker acknowledged that symbol's order (``place`` returned an order number). With 20 symbols
the 20 decisions of a run share the model call, so the later symbols wait for the earlier orders:
``p99_ms_20`` is close to the slowest order of a run. ``run_wall_s_20`` is ``TradingRun.wall_s`` (the whole
run: clock, orders of the day, account, reconciliation, bars, model, orders).

Baseline in the same process, as a ratio: the bare broker round trip, ``KisClient.stock_order`` of one share
at market on another fresh account (the last step of every decision, without the model, the store and the
risk checks), one after each timed 1-symbol run so both meet the same simulator: ``ratio_to_bare_order`` =
``p50_ms_1`` / ``bare_order_ms_p50``. The simulator fills market orders at once (``open_grace_s`` of a
minute): it re-matches every open order on each trading call, and the thousand throwaway accounts' orders
left waiting for the next minute would otherwise be timed as the job's latency.

Ends with one JSON line: p50_ms_1, p99_ms_1, p50_ms_20, p99_ms_20 (target <= 1,000 ms), run_wall_s_20_p50,
run_wall_s_20_p99, bare_order_ms_p50, ratio_to_bare_order, the model call's and the bars' share, target_met.
The load generator, the simulator, the model server and the store share the machine's cores, so figures
from a busy machine are noisy.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.benchmarks.bench_pyfunc import percentiles

ROOT = Path(__file__).resolve().parents[2]
#: The 20 stock codes of the wide spec (the simulator knows them; prices are generated for each).
SYMBOLS_20 = (
    "005930", "000660", "035420", "005380", "051910", "006400", "035720", "068270", "207940", "005490",
    "012330", "028260", "066570", "096770", "003550", "017670", "034730", "015760", "032830", "055550",
)  # fmt: skip
SPEC_1, SPEC_20 = "bench-stocks-1", "bench-stocks-20"
#: Fractions of the symbol's allocation; 0.2 keeps 20 buys within the simulator account's cash.
LEVELS = (0.0, 0.2)
MODEL_SPECS = {
    name: {"symbols": list(symbols), "interval": "1d", "kind": "stock", "levels": list(LEVELS)}
    for name, symbols in ((SPEC_1, SYMBOLS_20[:1]), (SPEC_20, SYMBOLS_20))
}
TARGET_MS = 1_000.0
DEFINITION = (
    "per decision: from the run's last bars fetched to that symbol's order acknowledged by the broker "
    "(model call, sizing, risk checks incl. the price-band quote, intent commit, order send); "
    "run_wall_s: TradingRun.wall_s; every timed run trades a fresh, flat simulator account"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (CI smoke run)")
    parser.add_argument("--runs-1", type=int, default=200, help="timed runs of the 1-symbol spec")
    parser.add_argument("--runs-20", type=int, default=50, help="timed runs of the 20-symbol spec")
    args = parser.parse_args()
    if args.quick:
        args.runs_1, args.runs_20 = 10, 3
    logs = ROOT / "var"
    logs.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-trading-") as tmp:
        # A throwaway MLflow store and the two specs, before any settings are read.
        os.environ["KRX_VAR_DIR"] = str(Path(tmp) / "var")
        os.environ["KRX_MODEL_SPECS"] = json.dumps(MODEL_SPECS)
        quiet_libraries(logs / "bench-trading.log")
        print(f"library logs: {logs / 'bench-trading.log'}, server log: {logs / 'bench-trading-server.log'}")
        figures = run(args.runs_1, args.runs_20, Path(tmp), logs / "bench-trading-server.log")
    print(json.dumps(figures))


def quiet_libraries(path: Path) -> None:
    """Library chatter (MLflow, the KIS client, the trading job, warnings) to ``path``, not the console."""
    import mlflow  # noqa: F401 - installs its own console handler on import; it is replaced below

    handler = logging.FileHandler(path, mode="w")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    # One INFO line per HTTP request (a 20-symbol run makes ~200) would time the log file, not the job.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.captureWarnings(True)


# --- timing proxies -------------------------------------------------------------------------------------
class TimedBroker:
    """The broker with ``bars`` and ``place`` timed; everything else passes through unchanged."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.bars_s = 0.0
        self.bars_done: float | None = None
        self.acks: list[float] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def bars(self, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return self._inner.bars(*args, **kwargs)
        finally:
            self.bars_done = time.perf_counter()
            self.bars_s += self.bars_done - started

    def place(self, order: Any) -> str:
        order_no: str = self._inner.place(order)
        self.acks.append(time.perf_counter())
        return order_no


class TimedDecider:
    """The model server's client with each ``decide`` (one ``/predict_batch``) timed."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.calls: list[float] = []

    def decide(self, requests: list[Any]) -> list[Any]:
        started = time.perf_counter()
        try:
            return list(self._inner.decide(requests))
        finally:
            self.calls.append(time.perf_counter() - started)


@dataclass
class Phase:
    """The samples of one spec: per-decision latencies and per-run figures, in seconds."""

    latencies: list[float] = field(default_factory=list)
    walls: list[float] = field(default_factory=list)
    bars: list[float] = field(default_factory=list)
    model: list[float] = field(default_factory=list)
    orders: int = 0


# --- set-up ----------------------------------------------------------------------------------------------
def serve_champions(server_log: Path) -> tuple[Any, dict[str, str]]:
    """Train the tiny agent, register it as champion of both specs, start ``krx serve``: (server, the
    champion version of each spec)."""
    import httpx

    from pipeline.config import get_settings
    from pipeline.registry.promotion import CHAMPION
    from pipeline.registry.register import register_agent
    from pipeline.registry.tracking import Tracker
    from pipeline.rl.train import train
    from tests.registry.factories import market_bars, tiny_spec
    from tests.serving.server import API_KEY, Server, start_server, wait_for

    settings = get_settings()
    tracker = Tracker(settings)
    spec_1, spec_20 = tiny_spec(SPEC_1, total_steps=64), tiny_spec(SPEC_20, total_steps=64)
    bars = market_bars()
    agent = train(spec_1.train_config(0), bars.iloc[:300]).agent
    always_long(agent)
    versions = {spec.name: register_agent(agent, spec, tracker) for spec in (spec_1, spec_20)}
    for spec in (spec_1, spec_20):
        tracker.client.set_registered_model_alias(spec.registered_model_name, CHAMPION, versions[spec.name])
    print(f"registered one tiny agent as {CHAMPION} of {SPEC_1} and {SPEC_20}", flush=True)
    env = {
        "KRX_SERVING_SPECS": f"{SPEC_1},{SPEC_20}",
        "KRX_MODEL_SPECS": json.dumps(MODEL_SPECS),
        "KRX_SERVING_POLL_S": "0.2",
        "KRX_SERVING_API_KEY": API_KEY,
    }
    var = settings.var_dir
    url, process = start_server(var, env, server_log)
    server = Server(url, process, server_log, settings, tracker, spec_20, agent, bars, 0)

    def ready() -> bool:
        if process.poll() is not None:
            raise SystemExit(f"krx serve exited:\n{server.log_text()[-3000:]}")
        try:
            return server.get("/readyz").status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(ready, "the model server's /readyz", timeout_s=180)
    except BaseException:
        server.stop()
        raise
    return server, versions


def always_long(agent: Any) -> None:
    """Make the agent choose the long level on any window: the policy head's bias outweighs its inputs
    (tanh-bounded hidden units times small weights), so every window's logits rank the actions alike."""
    import torch

    with torch.no_grad():
        agent.model.policy_head.bias.copy_(torch.tensor([-50.0, 50.0]))


def account_settings(base: Any, n: int, alias: str) -> Any:
    """``base`` on simulator account ``n`` (a fresh CANO: opened with the initial cash on first use)."""
    from pydantic import SecretStr

    return base.model_copy(
        update={"kis_account_no": SecretStr(f"{60_000_000 + n:08d}"), "trading_account": alias}
    )


# --- measuring -------------------------------------------------------------------------------------------
class BareOrder:
    """The baseline: one market order of one share through ``KisClient.stock_order`` on its own fresh
    account — the broker round trip that ends every decision, without the model, the store and the risk
    checks."""

    def __init__(self, settings: Any) -> None:
        from pipeline.kis import KisClient

        self.client = KisClient.from_settings(settings)
        self.times: list[float] = []
        self.once()  # warm-up (token, connection), not counted
        self.times.clear()

    def once(self) -> None:
        started = time.perf_counter()
        ack = self.client.stock_order(SYMBOLS_20[0], "buy", 1)
        self.times.append(time.perf_counter() - started)
        assert ack.order_no, "the simulator acknowledged no order number"

    def close(self) -> None:
        self.client.close()


def trade_runs(
    base: Any,
    spec: str,
    version: str,
    n: int,
    accounts: Iterator[int],
    decider: Any,
    engine: Any,
    between: Callable[[], None] | None = None,
) -> Phase:
    """One warm-up and ``n`` timed runs of ``spec``, each on a fresh account, every decision ending with an
    acknowledged order; ``between`` runs after each timed run (the interleaved baseline)."""
    from pipeline.trading.brokers import make_broker
    from pipeline.trading.engine import Trader

    timed = TimedDecider(decider)
    phase = Phase()
    settings = base.model_copy(update={"trading_specs": [spec]})
    every = max(n // 5, 1)
    for i in range(-1, n):  # -1: the warm-up
        number = next(accounts)
        s = account_settings(settings, number, f"bench-{number}")
        broker = TimedBroker(make_broker(s))
        try:
            result = Trader(s, broker, timed, engine).run()  # type: ignore[arg-type]
        finally:
            broker.close()
        check_orders(result, spec, version, len(MODEL_SPECS[spec]["symbols"]))
        if i < 0 or broker.bars_done is None:
            continue
        phase.latencies += [ack - broker.bars_done for ack in broker.acks]
        phase.walls.append(result.wall_s)
        phase.bars.append(broker.bars_s)
        phase.model.append(timed.calls[-1])
        phase.orders += len(broker.acks)
        if between is not None:
            between()
        if (i + 1) % every == 0 or i + 1 == n:
            p50, p99 = percentiles(phase.latencies)
            print(
                f"{spec}: run {i + 1}/{n}, decision latency p50 {p50:.0f} ms p99 {p99:.0f} ms, "
                f"run wall {result.wall_s:.2f} s",
                flush=True,
            )
    return phase


def check_orders(result: Any, spec: str, version: str, n_symbols: int) -> None:
    """Stop the benchmark unless the run decided every symbol with the champion into an acknowledged order
    (a run that held or was refused would time less than the path measured)."""
    if result.skipped or result.halted or len(result.decisions) != n_symbols:
        raise SystemExit(f"{spec}: the run did not decide every symbol: {result.summary()}")
    bad = [
        d
        for d in result.decisions
        if d.outcome != "order" or d.order_status != "sent" or d.model_version != version
    ]
    if bad:
        why = [(d.symbol, d.outcome, d.order_status, d.model_version, d.reason) for d in bad]
        raise SystemExit(f"{spec}: {len(bad)} decisions did not end with an acknowledged order: {why[:5]}")


def run(runs_1: int, runs_20: int, tmp: Path, server_log: Path) -> dict[str, Any]:
    """Serve the champions, start the simulator, then time both specs (the bare order interleaved with the
    1-symbol runs, so both see the same simulator)."""
    from pipeline.kis.simulator.server import SimServer
    from pipeline.kis.simulator.simconfig import SimConfig
    from pipeline.trading.decider import HttpDecider
    from pipeline.trading.engine import store_engine
    from tests.trading.conftest import trading_settings
    from tests.trading.harness import DAY, kst

    server, versions = serve_champions(server_log)
    open_at = kst(DAY, 9, 0, 0.5)
    cfg = SimConfig(
        db_path=tmp / "sim.db",
        stock_symbols=list(SYMBOLS_20),
        clock_start=open_at,
        rate_limit=5000.0,
        token_interval_s=0.0,
        # Market orders fill at the open of the minute they arrive in, at once: the simulator re-matches
        # every open order on each trading call, and a backlog of the throwaway accounts' orders waiting
        # for the next minute would be timed as the job's latency.
        open_grace_s=60.0,
    )
    try:
        with SimServer(cfg) as sim:
            var = tmp / "trading"
            var.mkdir()
            base = trading_settings(
                sim,
                server,
                var,
                model_specs=MODEL_SPECS,
                stock_symbols=list(SYMBOLS_20),
                trading_risk={"max_order_quantity": None},  # the 1-symbol order is hundreds of shares
            )
            engine = store_engine(base)
            decider = HttpDecider(base)
            accounts = itertools.count(1)
            bare = BareOrder(account_settings(base, next(accounts), "bench-bare"))
            try:
                print(f"simulator at {open_at:%Y-%m-%d %H:%M:%S}, trading daily specs of 1 and 20 symbols")
                one = trade_runs(
                    base, SPEC_1, versions[SPEC_1], runs_1, accounts, decider, engine, between=bare.once
                )
                twenty = trade_runs(base, SPEC_20, versions[SPEC_20], runs_20, accounts, decider, engine)
            finally:
                bare.close()
                decider.close()
                engine.dispose()
    finally:
        server.stop()
    return figures(one, twenty, bare.times)


def figures(one: Phase, twenty: Phase, bare: list[float]) -> dict[str, Any]:
    """The JSON figures (milliseconds unless named ``_s``), printed as a summary too."""
    p50_1, p99_1 = percentiles(one.latencies)
    p50_20, p99_20 = percentiles(twenty.latencies)
    wall_p50, wall_p99 = percentiles(twenty.walls)
    bare_p50, bare_p99 = percentiles(bare)
    model_1, _ = percentiles(one.model)
    model_20, _ = percentiles(twenty.model)
    bars_20, _ = percentiles(twenty.bars)
    print(f"1 symbol: decision p50 {p50_1:.1f} ms, p99 {p99_1:.1f} ms (model call p50 {model_1:.1f} ms)")
    print(f"20 symbols: decision p50 {p50_20:.1f} ms, p99 {p99_20:.1f} ms (target <= {TARGET_MS:,.0f} ms)")
    print(f"20 symbols: run wall p50 {wall_p50 / 1000:.2f} s, p99 {wall_p99 / 1000:.2f} s")
    print(
        f"bare order: p50 {bare_p50:.1f} ms, p99 {bare_p99:.1f} ms; ratio {p50_1 / bare_p50:.1f}x", flush=True
    )
    return {
        "p50_ms_1": round(p50_1, 2),
        "p99_ms_1": round(p99_1, 2),
        "p50_ms_20": round(p50_20, 2),
        "p99_ms_20": round(p99_20, 2),
        "run_wall_s_20_p50": round(wall_p50 / 1000, 3),
        "run_wall_s_20_p99": round(wall_p99 / 1000, 3),
        "run_wall_s_1_p50": round(percentiles(one.walls)[0] / 1000, 3),
        "model_call_ms_p50_1": round(model_1, 2),
        "model_call_ms_p50_20": round(model_20, 2),
        "bars_ms_p50_20": round(bars_20, 2),
        "bare_order_ms_p50": round(bare_p50, 2),
        "bare_order_ms_p99": round(bare_p99, 2),
        "ratio_to_bare_order": round(p50_1 / bare_p50, 2),
        "runs_1": len(one.walls),
        "runs_20": len(twenty.walls),
        "orders_1": one.orders,
        "orders_20": twenty.orders,
        "store": "sqlite",
        "definition": DEFINITION,
        "target_ms": TARGET_MS,
        "target_met": p99_20 <= TARGET_MS,
    }


if __name__ == "__main__":
    main()
