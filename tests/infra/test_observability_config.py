"""Prometheus, Grafana and Fluent Bit configuration of the compose stack: Prometheus scrapes services that
exist on the ports they listen on; the provisioned dashboard parses, uses the provisioned datasource, and
every PromQL expression names metrics that exist (the model server's in serving/metrics.py, the trading
run's in infra/prometheus/trading_metrics.json) with labels those metrics carry."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())
DASHBOARD = json.loads((ROOT / "infra/grafana/dashboards/krx.json").read_text())
TRADING = json.loads((ROOT / "infra/prometheus/trading_metrics.json").read_text())
#: Labels Prometheus or the histogram format add to every series.
BUILTIN_LABELS = {"le", "job", "instance", "quantile", "__name__"}
#: PromQL words that look like identifiers but are not metric names.
PROMQL_WORDS = {
    "sum",
    "by",
    "without",
    "rate",
    "increase",
    "irate",
    "histogram_quantile",
    "max",
    "min",
    "avg",
    "count",
    "topk",
    "bottomk",
    "label_values",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "delta",
    "deriv",
    "clamp_min",
    "clamp_max",
    "abs",
    "vector",
    "scalar",
    "time",
    "offset",
    "bool",
}


def series_of(name: str, kind: str) -> set[str]:
    """The series names prometheus_client exposes for a metric (it adds ``_total`` to counters)."""
    base = name.removesuffix("_total")
    if kind == "counter":
        return {base + "_total", base + "_created"}
    if kind == "histogram":
        return {name + "_bucket", name + "_sum", name + "_count", name + "_created"}
    if kind == "summary":
        return {name, name + "_sum", name + "_count", name + "_created"}
    return {name}


def serving_metrics() -> dict[str, set[str]]:
    """Series name → labels of the model server's metrics, read from serving/metrics.py's source."""
    tree = ast.parse((ROOT / "serving/metrics.py").read_text())
    out: dict[str, set[str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            kind = node.func.id.lower()
            if kind in {"counter", "histogram", "gauge", "summary"} and node.args:
                name = ast.literal_eval(node.args[0])
                labels = set(ast.literal_eval(node.args[2])) if len(node.args) > 2 else set()
                for series in series_of(name, kind):
                    out[series] = labels
    return out


def trading_metrics() -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    common = set(TRADING.get("common_labels", []))
    for m in TRADING["metrics"]:
        for series in series_of(m["name"], m["type"]):
            out[series] = set(m["labels"]) | common
    return out


def expressions() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every query of the dashboard, template variables included."""
    out = []
    for panel in DASHBOARD["panels"]:
        for target in panel.get("targets", []):
            out.append((panel["title"], target["expr"]))
    for var in DASHBOARD["templating"]["list"]:
        query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        out.append((f"variable {var['name']}", query))
    return out


def test_trading_metric_list_is_well_formed() -> None:
    names = [m["name"] for m in TRADING["metrics"]]
    assert len(names) == len(set(names))
    assert set(names) == {
        "krx_trading_orders_total",
        "krx_trading_rejections_total",
        "krx_trading_reconciliation_differences_total",
        "krx_trading_kill_switch",
        "krx_trading_decision_latency_seconds",
        "krx_trading_runs_total",
    }
    for m in TRADING["metrics"]:
        assert re.fullmatch(r"krx_trading_[a-z0-9_]+", m["name"]), m["name"]
        assert m["type"] in {"counter", "gauge", "histogram"}, m
        assert (m["type"] == "counter") == m["name"].endswith("_total"), m["name"]
        assert m["help"]
    labels = {m["name"]: m["labels"] for m in TRADING["metrics"]}
    assert labels["krx_trading_orders_total"] == ["state"]
    assert labels["krx_trading_rejections_total"] == ["reason"]
    assert labels["krx_trading_runs_total"] == ["outcome"]


def test_every_dashboard_query_names_existing_metrics_with_labels_they_have() -> None:
    known = serving_metrics() | trading_metrics()
    assert "krx_request_latency_seconds_bucket" in known and "krx_predictions_total" in known
    used: set[str] = set()
    for title, expr in expressions():
        text = re.sub(r'"[^"]*"', '""', expr)  # label values and legend text are not names
        text = re.sub(r"\[[^\]]*\]", "", text)  # range selectors
        names = {w for w in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", text) if w.startswith("krx_")}
        assert names, f"{title}: {expr} names no krx metric"
        for name in names:
            assert name in known, f"{title}: unknown metric {name}"
        used |= names
        allowed = set().union(*(known[n] for n in names)) | BUILTIN_LABELS
        grouped = {lab for group in re.findall(r"\bby\s*\(([^)]*)\)", text) for lab in group.split(",")}
        matched = set(re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*=~?", re.sub(r"\bby\s*\([^)]*\)", "", expr)))
        for label in {lab.strip() for lab in grouped | matched if lab.strip()}:
            assert label in allowed, f"{title}: label {label} not on {sorted(names)}"
    # every panel the issue asks for has its metric on the dashboard
    bases = {re.sub(r"_(bucket|count|sum|total)$", "", n) for n in used}
    for wanted in (
        "krx_trading_orders",
        "krx_trading_rejections",
        "krx_trading_reconciliation_differences",
        "krx_trading_kill_switch",
        "krx_trading_decision_latency_seconds",
        "krx_request_latency_seconds",
        "krx_predictions",
    ):
        assert wanted in bases, f"no panel shows {wanted}"


def test_dashboard_is_provisioned_with_the_datasource_it_uses() -> None:
    datasources = yaml.safe_load(
        (ROOT / "infra/grafana/provisioning/datasources/prometheus.yaml").read_text()
    )["datasources"]
    uids = {d["uid"] for d in datasources}
    (prom,) = [d for d in datasources if d["type"] == "prometheus"]
    host, port = prom["url"].split("//")[1].split(":")
    assert host in COMPOSE["services"] and port == "9090"
    assert DASHBOARD["uid"] and DASHBOARD["title"]
    ids = [p["id"] for p in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids))
    for panel in DASHBOARD["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] in uids, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] in uids and target["expr"], panel["title"]
        g = panel["gridPos"]
        assert g["x"] + g["w"] <= 24, panel["title"]
    providers = yaml.safe_load((ROOT / "infra/grafana/provisioning/dashboards/krx.yaml").read_text())[
        "providers"
    ]
    grafana_mounts = dict(v.split(":")[:2] for v in COMPOSE["services"]["grafana"]["volumes"])
    path = providers[0]["options"]["path"]
    assert grafana_mounts["./infra/grafana/dashboards/krx.json"] == f"{path}/krx.json"


def _container_ports(service: dict[str, Any]) -> set[int]:
    ports = {int(str(p).split(":")[-1]) for p in service.get("ports", [])}
    for token in map(str, service.get("command") or []):
        if token.isdigit():
            ports.add(int(token))
    return ports


def test_prometheus_scrapes_the_model_server_and_the_pushgateway_where_they_listen() -> None:
    config = yaml.safe_load((ROOT / "infra/prometheus/prometheus.yml").read_text())
    services = COMPOSE["services"]
    targets: dict[str, str] = {}
    for job in config["scrape_configs"]:
        for static in job["static_configs"]:
            for target in static["targets"]:
                host, port = target.split(":")
                if host != "localhost":
                    assert host in services, f"{job['job_name']}: no service {host}"
                    assert int(port) in _container_ports(services[host]), f"{target} is not a port of {host}"
                    assert not services[host].get("profiles"), f"{host} only runs in a profile"
                targets[host] = job["job_name"]
    assert "bentoml" in targets and "pushgateway" in targets
    trading_job = next(j for j in config["scrape_configs"] if j["job_name"] == targets["pushgateway"])
    assert trading_job.get("honor_labels") is True, "pushed job/instance labels would be overwritten"
    # the trading run is told where the Pushgateway is, under the name trading_metrics.json documents
    setting = TRADING["pushgateway_setting"]
    url = services["airflow-scheduler"]["environment"][setting]
    assert url == "http://pushgateway:9091"
    # the model server's /metrics needs no API key (serving/auth.py exempts it)
    from serving.auth import EXEMPT

    assert "/metrics" in EXEMPT


def test_fluent_bit_ships_the_containers_json_logs_to_opensearch() -> None:
    conf = (ROOT / "infra/fluent-bit/fluent-bit.conf").read_text()
    parsers = (ROOT / "infra/fluent-bit/parsers.conf").read_text()
    defined = set(re.findall(r"^\s*Name\s+(\S+)", parsers, re.MULTILINE))
    used = set(re.findall(r"^\s*Parser\s+(\S+)", conf, re.MULTILINE))
    assert used and used <= defined, f"undefined parsers {used - defined}"
    fluent = COMPOSE["services"]["fluent-bit"]
    mounts = dict(v.split(":")[:2] for v in fluent["volumes"])
    path = re.search(r"^\s*Path\s+(\S+)", conf, re.MULTILINE)
    assert path and path.group(1).startswith(mounts["/var/lib/docker/containers"])
    assert mounts["./infra/fluent-bit/parsers.conf"] == re.search(r"Parsers_File\s+(\S+)", conf).group(1)  # type: ignore[union-attr]
    assert mounts["./infra/fluent-bit/fluent-bit.conf"] in fluent["command"]
    host = re.search(r"^\s*Host\s+(\S+)", conf, re.MULTILINE).group(1)  # type: ignore[union-attr]
    port = int(re.search(r"^\s*Port\s+(\S+)", conf, re.MULTILINE).group(1))  # type: ignore[union-attr]
    assert host == "opensearch" and port in _container_ports(COMPOSE["services"]["opensearch"])
    assert re.search(r"HTTP_Port\s+2020", conf) and "2020" in " ".join(fluent["healthcheck"]["test"])
