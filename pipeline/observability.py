"""Logs and metrics of the pipeline: one JSON object per log line with the run's context (``KRX_LOG_FORMAT``),
secrets redacted in every format, and the Prometheus metrics of a trading run, written to
``<var_dir>/metrics/trading.prom`` after each run and pushed to a Pushgateway when one is configured.

A trading run is a short task, not a server: its counters are carried from one run to the next through the
``.prom`` file (the file read at the start of a run, written at its end), so they stay monotonic as
Prometheus expects; deleting the file is a counter reset, which ``rate``/``increase`` handle.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import math
import os
import re
import sys
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, push_to_gateway, write_to_textfile
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families

if TYPE_CHECKING:
    from pipeline.config import Settings

log = logging.getLogger(__name__)

# --- log context ---------------------------------------------------------------------------------

_CONTEXT: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("krx_log_context", default={})  # noqa: B039

#: Airflow exports these to every task process; they name the run, DAG and task a line belongs to.
AIRFLOW_CONTEXT = {
    "dag_id": "AIRFLOW_CTX_DAG_ID",
    "task_id": "AIRFLOW_CTX_TASK_ID",
    "run_id": "AIRFLOW_CTX_DAG_RUN_ID",
}


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Add ``fields`` to every log line written inside the block (nested blocks add to the outer ones)."""
    token = _CONTEXT.set({**_CONTEXT.get(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def current_context() -> dict[str, Any]:
    """The context of a line logged now: Airflow's run, DAG and task when set, then :func:`log_context`."""
    out = {name: os.environ[var] for name, var in AIRFLOW_CONTEXT.items() if os.environ.get(var)}
    out.update(_CONTEXT.get())
    return out


class ContextFilter(logging.Filter):
    """Stamps the current context on each record as ``record.krx_context`` (on a handler, so records of
    every logger get it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "krx_context"):
            record.krx_context = current_context()
        return True


# --- redaction -----------------------------------------------------------------------------------

_SECRET_FIELD = re.compile(
    r"(?i)\b(appkey|appsecret|app_key|app_secret|access_token|approval_key|authorization|api[_-]?key|"
    r"password|secret|token|CANO)([\"']?\s*[:=]\s*[\"']?)(bearer\s+)?[^\s\"',&;}]+"
)
#: Field names (``extra=``, context) whose value is a credential whatever it looks like.
_SECRET_NAME = re.compile(
    r"(?i)app_?key|app_?secret|secret|token|password|authorization|api_?key|account_no|cano"
)
_BEARER = re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{8,}")
_USERINFO = re.compile(r"(?<=://)[^/\s:@\"']+:[^/\s@\"']+@")
_QUERY = re.compile(r"\?[^\s\"'?=]+=[^\s\"']*")
#: A KIS app key ("PS" and 34 letters or digits), a JWT (KIS access tokens) and any long base64 run (app
#: secrets are 180 characters).
_SECRET_SHAPES = re.compile(
    r"\bPS[A-Za-z0-9]{34}\b|\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*|[A-Za-z0-9+/]{100,}={0,2}"
)


class Redactor:
    """Removes secrets from a formatted line: the known secret values of the settings, ``key=value`` pairs
    whose key names a credential, bearer tokens, the shapes of KIS keys and tokens, URL passwords and URL
    query strings (KIS puts the account number there)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for value in self.secrets:
            text = text.replace(value, "***")
        text = _SECRET_FIELD.sub(lambda m: f"{m[1]}{m[2]}***", text)
        text = _BEARER.sub("Bearer ***", text)
        text = _SECRET_SHAPES.sub("***", text)
        text = _USERINFO.sub("***@", text)
        return _QUERY.sub("?…", text)


def settings_secrets(settings: Settings) -> list[str]:
    """The secret values held by ``settings`` (every ``SecretStr`` field)."""
    from pydantic import SecretStr

    values = (getattr(settings, name) for name in type(settings).model_fields)
    return [v.get_secret_value() for v in values if isinstance(v, SecretStr)]


# --- formatters ----------------------------------------------------------------------------------

#: LogRecord attributes that are not ``extra=`` fields.
_RECORD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "krx_context",
}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts`` (UTC, ISO 8601), ``level``, ``logger``, ``message``, the context
    fields (run, DAG, task, account, symbol, client_order_id…), ``extra=`` fields and ``exc_info``."""

    def __init__(self, redactor: Redactor | None = None) -> None:
        super().__init__()
        self.redact = redactor or Redactor()

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        context = getattr(record, "krx_context", None)
        for key, value in (context if context is not None else current_context()).items():
            out.setdefault(key, value)
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRS and not key.startswith("_"):
                out.setdefault(key, value)
        if record.exc_info:
            out["exc_info"] = self.formatException(record.exc_info)
        return json.dumps({k: self._safe(k, v) for k, v in out.items()}, ensure_ascii=False)

    def _safe(self, key: str, value: Any) -> Any:
        # redact each value before encoding: JSON escaping would hide quoted secrets from the patterns
        if _SECRET_NAME.search(key):
            return "***"
        return value if isinstance(value, bool | int | float | None) else self.redact(str(value))


class TextFormatter(logging.Formatter):
    """The human format (``time level logger: message``) with the context appended and secrets redacted."""

    def __init__(self, redactor: Redactor | None = None) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.redact = redactor or Redactor()

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = getattr(record, "krx_context", None) or current_context()
        if context:
            line += " [" + " ".join(f"{k}={v}" for k, v in context.items()) + "]"
        return self.redact(line)


def configure_logging(
    settings: Settings, log_file: Path | None = None, *, level: str | None = None, force: bool = False
) -> bool:
    """Set up the root logger from ``settings`` (``log_level`` or ``level``, ``log_format``): one stderr
    handler and, with ``log_file``, one file handler, both carrying the context and redacting secrets.

    Like :func:`logging.basicConfig`, it leaves a root logger that a host already configured (pytest,
    Airflow) alone unless ``force``; calling it again replaces only the handlers it installed itself.
    Returns whether it configured anything."""
    root = logging.getLogger()
    ours = [h for h in root.handlers if getattr(h, "krx_handler", False)]
    if len(ours) < len(root.handlers) and not force:
        return False
    redactor = Redactor(settings_secrets(settings))
    fmt: logging.Formatter = (
        JsonFormatter(redactor) if settings.log_format == "json" else TextFormatter(redactor)
    )
    for old in ours:
        root.removeHandler(old)
        old.close()
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
    for handler in handlers:
        handler.krx_handler = True  # type: ignore[attr-defined]
        handler.addFilter(ContextFilter())
        handler.setFormatter(fmt)
        root.addHandler(handler)
    root.setLevel((level or settings.log_level).upper())
    return True


def configure_task_logging(settings: Settings) -> bool:
    """Inside a host that owns the root logger (an Airflow task): with ``log_format=json`` the ``pipeline``
    loggers write JSON lines (context, redaction) to stdout, which the task log captures, instead of
    propagating to the host's text handlers. Idempotent; returns whether it installed the handler."""
    if settings.log_format != "json":
        return False
    logger = logging.getLogger("pipeline")
    if any(getattr(h, "krx_handler", False) for h in logger.handlers):
        return False
    handler = logging.StreamHandler(sys.stdout)
    handler.krx_handler = True  # type: ignore[attr-defined]
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter(Redactor(settings_secrets(settings))))
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(settings.log_level.upper())
    return True


# --- trading metrics -----------------------------------------------------------------------------

ORDERS = "krx_trading_orders_total"
REJECTIONS = "krx_trading_rejections_total"
RECONCILIATION = "krx_trading_reconciliation_differences_total"
KILL_SWITCH = "krx_trading_kill_switch"
LATENCY = "krx_trading_decision_latency_seconds"
RUNS = "krx_trading_runs_total"
#: Outcomes of a run: ``traded`` (it went through its decisions), ``skipped`` (market closed), ``halted``
#: (the kill switch was engaged at its end), ``failed`` (it raised).
RUN_OUTCOMES = ("traded", "skipped", "halted", "failed")
#: Upper bounds of the decision-latency buckets, seconds (a model call plus an order round trip).
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, math.inf)
#: Pushgateway job name; the grouping key is the account alias.
PUSH_JOB = "krx_trading"


@dataclass(eq=False)  # registered in a CollectorRegistry, which hashes its collectors
class TradingMetrics:
    """The trading metrics of one account, cumulative across runs, exposed through :meth:`registry`."""

    orders: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    rejections: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    reconciliation: float = 0.0
    kill_switch: float | None = None
    latency_counts: list[float] = field(default_factory=lambda: [0.0] * len(LATENCY_BUCKETS))
    latency_sum: float = 0.0
    runs: defaultdict[str, float] = field(
        default_factory=lambda: defaultdict(float, dict.fromkeys(RUN_OUTCOMES, 0.0))
    )

    def order_state(self, state: str) -> None:
        self.orders[state] += 1

    def rejection(self, reason: str) -> None:
        self.rejections[reason] += 1

    def observe_latency(self, seconds: float) -> None:
        self.latency_sum += seconds
        for i, bound in enumerate(LATENCY_BUCKETS):
            if seconds <= bound:
                self.latency_counts[i] += 1  # cumulative: every bucket at or above the value

    def collect(self) -> Iterator[Metric]:
        """The metric families (a custom collector: the values are restored, not only counted here)."""
        families = [
            (
                ORDERS,
                "Orders that entered each state (intent, sent, partial, filled, …).",
                "state",
                self.orders,
            ),
            (REJECTIONS, "Orders stopped, by risk rule or 'broker'.", "reason", self.rejections),
            (RUNS, "Trading runs by outcome (traded, skipped, halted, failed).", "outcome", self.runs),
        ]
        for name, doc, label, values in families:
            family = CounterMetricFamily(name, doc, labels=[label])
            for value, count in sorted(values.items()):
                family.add_metric([value], count)
            yield family
        yield CounterMetricFamily(
            RECONCILIATION,
            "Differences between the broker and the store found by reconciliation.",
            value=self.reconciliation,
        )
        if self.kill_switch is not None:
            yield GaugeMetricFamily(
                KILL_SWITCH, "1 while the kill switch is engaged.", value=self.kill_switch
            )
        buckets = [(_le(b), c) for b, c in zip(LATENCY_BUCKETS, self.latency_counts, strict=True)]
        yield HistogramMetricFamily(
            LATENCY,
            "From a window sent to the model to its order acknowledged (or its decision recorded).",
            buckets=buckets,
            sum_value=self.latency_sum,
        )

    def registry(self) -> CollectorRegistry:
        """A dedicated registry holding only these metrics (never the process-global one)."""
        reg = CollectorRegistry(auto_describe=False)
        reg.register(self)  # type: ignore[arg-type]
        return reg

    @classmethod
    def load(cls, path: Path) -> TradingMetrics:
        """The values of an earlier run's ``.prom`` file (empty when there is none or it cannot be read)."""
        out = cls()
        if not path.exists():
            return out
        try:
            for family in text_string_to_metric_families(path.read_text(encoding="utf-8")):
                for sample in family.samples:
                    out._restore(sample.name, sample.labels, float(sample.value))
        except (ValueError, OSError) as exc:
            log.warning("metrics: cannot read %s (%s); counting from zero", path, exc)
            return cls()
        return out

    def _restore(self, name: str, labels: dict[str, str], value: float) -> None:
        if name == ORDERS:
            self.orders[labels.get("state", "")] = value
        elif name == REJECTIONS:
            self.rejections[labels.get("reason", "")] = value
        elif name == RUNS:
            self.runs[labels.get("outcome", "")] = value
        elif name == RECONCILIATION:
            self.reconciliation = value
        elif name == f"{LATENCY}_sum":
            self.latency_sum = value
        elif name == f"{LATENCY}_bucket":
            bounds = [_le(b) for b in LATENCY_BUCKETS]
            if labels.get("le") in bounds:
                self.latency_counts[bounds.index(labels["le"])] = value


def _le(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else repr(float(bound))


def metrics_file(settings: Settings) -> Path:
    """Where a trading run writes its metrics (node-exporter textfile format)."""
    return settings.var_dir / "metrics" / "trading.prom"


def publish(metrics: TradingMetrics, settings: Settings, account: str) -> Path:
    """Write ``metrics`` to :func:`metrics_file` and push them to ``settings.metrics_pushgateway`` when
    set; a failing push is a warning, never an error of the run. Returns the file written."""
    path = metrics_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    registry = metrics.registry()
    write_to_textfile(str(path), registry)  # atomic: a temporary file renamed over the old one
    if settings.metrics_pushgateway:
        try:
            push_to_gateway(
                settings.metrics_pushgateway,
                job=PUSH_JOB,
                registry=registry,
                grouping_key={"account": account},
            )
        except Exception as exc:  # noqa: BLE001 -- any failure of the gateway must leave the run alone
            log.warning("metrics: push to the Pushgateway failed (%s: %s)", type(exc).__name__, exc)
    return path


_ACTIVE: contextvars.ContextVar[TradingMetrics | None] = contextvars.ContextVar("krx_metrics", default=None)


@contextmanager
def trading_run(
    settings: Settings, account: str, kill_switch: Callable[[], bool] | None = None
) -> Iterator[TradingMetrics]:
    """The metrics of one trading run: loaded from the last run's file, active for :func:`count_order` and
    :func:`count_rejection` inside the block, then published. A run that raises counts as ``failed``; the
    caller counts the other outcomes with ``metrics.runs[outcome] += 1``. ``kill_switch`` is read last."""
    metrics = TradingMetrics.load(metrics_file(settings))
    runs_before = sum(metrics.runs.values())
    token = _ACTIVE.set(metrics)
    try:
        yield metrics
    except BaseException:
        if sum(metrics.runs.values()) == runs_before:
            metrics.runs["failed"] += 1
        raise
    finally:
        _ACTIVE.reset(token)
        _finish(metrics, settings, account, kill_switch)


def _finish(
    metrics: TradingMetrics, settings: Settings, account: str, kill_switch: Callable[[], bool] | None
) -> None:
    if kill_switch is not None:
        try:
            metrics.kill_switch = 1.0 if kill_switch() else 0.0
        except Exception as exc:  # noqa: BLE001 -- a failed read leaves the gauge out, not the run failed
            log.warning("metrics: cannot read the kill switch (%s)", type(exc).__name__)
    try:
        publish(metrics, settings, account)
    except Exception as exc:  # noqa: BLE001 -- metrics that cannot be written never fail the run
        log.warning("metrics: cannot write %s (%s)", metrics_file(settings), exc)


def count_order(state: str) -> None:
    """An order entered ``state`` (no-op outside a :func:`trading_run`)."""
    metrics = _ACTIVE.get()
    if metrics is not None:
        metrics.order_state(state)


def count_rejection(reason: str) -> None:
    """An order was stopped by ``reason`` (a risk rule or ``broker``); no-op outside :func:`trading_run`."""
    metrics = _ACTIVE.get()
    if metrics is not None:
        metrics.rejection(reason)


def count_reconciliation(differences: int) -> None:
    """Reconciliation found ``differences`` (no-op outside a :func:`trading_run`)."""
    metrics = _ACTIVE.get()
    if metrics is not None:
        metrics.reconciliation += differences


def observe_latency(seconds: float) -> None:
    """One symbol's decision took ``seconds`` (no-op outside a :func:`trading_run`)."""
    metrics = _ACTIVE.get()
    if metrics is not None:
        metrics.observe_latency(seconds)
