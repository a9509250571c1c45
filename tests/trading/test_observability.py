"""What an operator sees of a trading run: JSON log lines that name the DAG, task, run, symbol and order they
belong to (and never a secret), and the run's Prometheus metrics in ``var/metrics/trading.prom`` and at a
Pushgateway — a gateway that is down costs a warning, never the run."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from pipeline import observability as obs
from pipeline.config import Settings
from pipeline.trading import state
from tests.trading.harness import DAY, Session, kst

AIRFLOW_ENV = {
    "AIRFLOW_CTX_DAG_ID": "krx_trade",
    "AIRFLOW_CTX_TASK_ID": "trade_minute",
    "AIRFLOW_CTX_DAG_RUN_ID": "scheduled__2025-07-15T00:30:00+00:00",
}


@pytest.fixture
def json_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The root logger writing JSON lines to a file (as ``KRX_LOG_FORMAT=json``) inside an Airflow task."""
    for var, value in AIRFLOW_ENV.items():
        monkeypatch.setenv(var, value)
    path = tmp_path / "logs" / "krx.jsonl"
    root = logging.getLogger()
    level = root.level
    # Earlier tests (the demo, the CLI) may have quietened these loggers: the test needs their INFO lines.
    quiet = {name: logging.getLogger(name).level for name in ("httpx", "pipeline")}
    for name in quiet:
        logging.getLogger(name).setLevel(logging.NOTSET)
    assert obs.configure_logging(Settings(log_format="json"), path, level="INFO", force=True)
    try:
        yield path
    finally:
        for handler in [h for h in root.handlers if getattr(h, "krx_handler", False)]:
            root.removeHandler(handler)
            handler.close()
        root.setLevel(level)
        for name, was in quiet.items():
            logging.getLogger(name).setLevel(was)


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _metrics(path: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a ``.prom`` file: (name, sorted labels) → value."""
    out = {}
    for family in text_string_to_metric_families(path.read_text(encoding="utf-8")):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = float(sample.value)
    return out


def _value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def _prom(session: Session) -> Path:
    return session.settings.var_dir / "metrics" / "trading.prom"


def _trade_until_an_order(session: Session, start: tuple[int, int] = (9, 30), **overrides: Any) -> int:
    """Run minute by minute until a decision is an order or a rejection; returns the number of runs."""
    when = kst(DAY, *start, 0.5)
    for n in range(1, 121):
        run = session.run(when, **overrides)
        if any(d.outcome in ("order", "rejected") for d in run.decisions):
            return n
        when += dt.timedelta(minutes=1)
    raise AssertionError("the champion decided no trade in two hours")


# --- logs ------------------------------------------------------------------------------------------


def test_json_lines_carry_the_airflow_ids_and_the_nested_context(json_log: Path) -> None:
    log = logging.getLogger("pipeline.trading.engine")
    with obs.log_context(account="main", symbol="005930"):
        with obs.log_context(client_order_id="k123"):
            log.info("order %s sent", "k123")
        log.warning("after the order")
    log.info("outside")
    inner, after, outside = _lines(json_log)
    assert inner["message"] == "order k123 sent" and inner["level"] == "INFO"
    assert inner["logger"] == "pipeline.trading.engine"
    assert dt.datetime.fromisoformat(inner["ts"]).tzinfo is not None
    assert (inner["dag_id"], inner["task_id"], inner["run_id"]) == tuple(AIRFLOW_ENV.values())
    assert (inner["account"], inner["symbol"], inner["client_order_id"]) == ("main", "005930", "k123")
    assert after["symbol"] == "005930" and "client_order_id" not in after and after["level"] == "WARNING"
    assert "symbol" not in outside and outside["dag_id"] == "krx_trade"


def test_no_secret_reaches_a_json_line(tmp_path: Path) -> None:
    app_key = "PS" + "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zAB"  # the shape of a KIS app key
    other_key = "PS" + "Zz9yXx8wVv7uTt6sRr5qQq4pPp3oOo2nNn"  # a key the settings do not know
    secret = "s3cr3t-" + "Q" * 40
    account = "50012345"
    settings = Settings(
        log_format="json",
        kis_app_key=SecretStr(app_key),
        kis_app_secret=SecretStr(secret),
        kis_account_no=SecretStr(f"{account}-01"),
    )
    path = tmp_path / "secret.jsonl"
    root, level = logging.getLogger(), logging.getLogger().level
    assert obs.configure_logging(settings, path, force=True)
    log = logging.getLogger("pipeline.kis.session")
    try:
        log.info("settings key %s", settings.kis_app_key)
        log.info("raw value leaked by mistake: %s / %s", app_key, secret)
        log.info("headers %s", {"appkey": other_key, "authorization": "Bearer eyJhbGciOi.eyJzdWIi.c2ln"})
        log.info('body {"appsecret": "%s"}', "x" * 12)
        log.info("GET https://openapi.example/uapi/inquire-balance?CANO=%s&ACNT_PRDT_CD=01", account)
        log.info("the app key %s", other_key, extra={"token": "abcdefgh12345678"})
        log.warning("push to http://ops:hunter2pw@gateway:9091 failed")
    finally:
        for handler in [h for h in root.handlers if getattr(h, "krx_handler", False)]:
            root.removeHandler(handler)
            handler.close()
        root.setLevel(level)
    text = path.read_text(encoding="utf-8")
    lines = _lines(path)
    assert len(lines) == 7 and all(line["logger"] == "pipeline.kis.session" for line in lines)
    for value in (
        app_key,
        other_key,
        secret,
        account,
        "eyJhbGciOi",
        "x" * 12,
        "abcdefgh12345678",
        "hunter2pw",
    ):
        assert value not in text, value
    assert "headers" in lines[2]["message"] and "***" in lines[2]["message"]


def test_inside_an_airflow_task_the_pipeline_lines_become_json_on_stdout(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The trade DAG's task calls configure_task_logging: Airflow keeps the root logger, the pipeline's own
    lines come out as JSON (with their context) on the stdout the task log captures, once each."""
    logger = logging.getLogger("pipeline")
    assert not obs.configure_task_logging(Settings(log_format="text"))
    try:
        assert obs.configure_task_logging(Settings(log_format="json"))
        assert not obs.configure_task_logging(Settings(log_format="json"))  # idempotent
        with obs.log_context(symbol="KOSPI200F", client_order_id="kabc"):
            logging.getLogger("pipeline.trading.orders").warning("order outcome unknown")
        out = capsys.readouterr().out.strip().splitlines()
        assert len(out) == 1
        line = json.loads(out[0])
        assert line["message"] == "order outcome unknown" and line["level"] == "WARNING"
        assert line["symbol"] == "KOSPI200F" and line["client_order_id"] == "kabc"
    finally:
        for handler in [h for h in logger.handlers if getattr(h, "krx_handler", False)]:
            logger.removeHandler(handler)
        logger.propagate = True
        logger.setLevel(logging.NOTSET)


# --- a trading run ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_trading_run_logs_its_context_and_counts_its_orders(session: Session, json_log: Path) -> None:
    skipped = session.run(kst(DAY, 8, 30))  # before the futures open
    assert skipped.skipped
    runs = _trade_until_an_order(session)
    (order,) = session.orders()
    lines = _lines(json_log)
    decision = next(line for line in lines if line["message"].startswith("decision: order"))
    assert decision["client_order_id"] == order.client_order_id
    assert decision["symbol"] == "KOSPI200F" and decision["instrument"] == order.symbol
    assert decision["spec"] == "kospi200f-1m" and decision["account"] == "main" and decision["mode"] == "sim"
    assert decision["dag_id"] == "krx_trade" and decision["run_id"] == AIRFLOW_ENV["AIRFLOW_CTX_DAG_RUN_ID"]
    ran_at = kst(DAY, 9, 30, 0.5) + dt.timedelta(minutes=runs - 1)
    assert abs(dt.datetime.fromisoformat(decision["run_at"]) - ran_at) < dt.timedelta(seconds=10)
    # every line written while the order was being sent names it
    keyed = [line for line in lines if line.get("client_order_id") == order.client_order_id]
    assert any(line["logger"] == "httpx" for line in keyed)  # the order's own HTTP call
    assert all(line["symbol"] == "KOSPI200F" for line in keyed)

    m = _metrics(_prom(session))
    assert _value(m, "krx_trading_orders_total", state="intent") == 1
    assert _value(m, "krx_trading_orders_total", state="sent") == 1
    assert _value(m, "krx_trading_runs_total", outcome="skipped") == 1
    assert _value(m, "krx_trading_runs_total", outcome="traded") == runs  # counted across runs
    assert _value(m, "krx_trading_kill_switch") == 0
    assert _value(m, "krx_trading_reconciliation_differences_total") == 0
    decided = len(session.decisions())  # one latency per decision whose window went to the model
    assert 1 <= _value(m, "krx_trading_decision_latency_seconds_count") <= decided
    assert 0 < _value(m, "krx_trading_decision_latency_seconds_sum") < 30 * decided


@pytest.mark.slow
def test_a_risk_rejection_is_counted_by_its_rule(session: Session) -> None:
    _trade_until_an_order(session, trading_risk={"max_orders_per_day": 0})
    m = _metrics(_prom(session))
    assert _value(m, "krx_trading_rejections_total", reason="max_orders_per_day") >= 1
    assert _value(m, "krx_trading_orders_total", state="sent") == 0
    assert session.orders() == []


@pytest.mark.slow
def test_the_kill_switch_and_a_failed_run_show_in_the_metrics(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    state.engage(session.engine, "main", "operator stop", "cli:test")
    assert session.run(kst(DAY, 9, 30, 0.5)).halted
    m = _metrics(_prom(session))
    assert _value(m, "krx_trading_kill_switch") == 1
    assert _value(m, "krx_trading_runs_total", outcome="halted") == 1

    def broker_down() -> None:
        raise RuntimeError("broker down")

    monkeypatch.setattr(session.broker, "account", broker_down)
    with pytest.raises(RuntimeError, match="broker down"):
        session.run(kst(DAY, 9, 31, 0.5))
    m = _metrics(_prom(session))
    assert _value(m, "krx_trading_runs_total", outcome="failed") == 1
    assert _value(m, "krx_trading_runs_total", outcome="halted") == 1  # kept from the run before


# --- the Pushgateway ---------------------------------------------------------------------------------


class _Gateway(http.server.BaseHTTPRequestHandler):
    """Records every push (method, path, body) like a Pushgateway would receive it."""

    received: list[tuple[str, str, str]]

    def _record(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        self.received.append((self.command, self.path, body))
        self.send_response(200)
        self.end_headers()

    do_PUT = do_POST = _record

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def gateway() -> Iterator[tuple[str, list[tuple[str, str, str]]]]:
    received: list[tuple[str, str, str]] = []
    handler = type("Gateway", (_Gateway,), {"received": received})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.slow
def test_each_run_pushes_its_metrics_grouped_by_account(
    session: Session, gateway: tuple[str, list[tuple[str, str, str]]]
) -> None:
    url, received = gateway
    session.run(kst(DAY, 8, 30), metrics_pushgateway=url)
    session.run(kst(DAY, 8, 31), metrics_pushgateway=url)
    assert [(method, path) for method, path, _ in received] == [
        ("PUT", "/metrics/job/krx_trading/account/main")
    ] * 2
    last = received[-1][2]
    assert 'krx_trading_runs_total{outcome="skipped"} 2.0' in last
    assert last == _prom(session).read_text(encoding="utf-8")  # the same exposition as the file


@pytest.mark.slow
def test_a_dead_pushgateway_is_a_warning_and_the_run_still_succeeds(
    session: Session, caplog: pytest.LogCaptureFixture
) -> None:
    dead = "http://127.0.0.1:9"  # discard port: nothing listens
    with caplog.at_level(logging.WARNING, logger="pipeline.observability"):
        run = session.run(kst(DAY, 8, 30), metrics_pushgateway=dead)
    assert run.skipped
    assert any("Pushgateway failed" in r.getMessage() for r in caplog.records)
    assert _value(_metrics(_prom(session)), "krx_trading_runs_total", outcome="skipped") == 1
