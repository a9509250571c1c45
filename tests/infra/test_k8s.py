"""The Kubernetes manifests (infra/k8s, applied with kustomize) and the Airflow Helm chart values are
consistent, checked by parsing (kubeconform-style, no cluster here): every object is well formed, selectors
select what they should, every container is sized, Services and the HPA point at existing workloads, and
every Secret or ConfigMap key a pod reads exists."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).parents[2]
K8S = ROOT / "infra/k8s"
KUSTOMIZATION = yaml.safe_load((K8S / "kustomization.yaml").read_text())
OBJECTS: list[dict[str, Any]] = [
    doc for name in KUSTOMIZATION["resources"] for doc in yaml.safe_load_all((K8S / name).read_text()) if doc
]
WORKLOADS = ("Deployment", "StatefulSet")
API_VERSIONS = {
    "Namespace": "v1",
    "ConfigMap": "v1",
    "Secret": "v1",
    "Service": "v1",
    "PersistentVolumeClaim": "v1",
    "Deployment": "apps/v1",
    "StatefulSet": "apps/v1",
    "HorizontalPodAutoscaler": "autoscaling/v2",
}
VALUES = yaml.safe_load((K8S / "airflow-values.yaml").read_text())


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [o for o in OBJECTS if o["kind"] == kind]


def named(kind: str, name: str) -> dict[str, Any]:
    found = [o for o in of_kind(kind) if o["metadata"]["name"] == name]
    assert found, f"no {kind} {name}"
    return found[0]


def data_keys(kind: str, name: str) -> set[str]:
    obj = named(kind, name)
    return set(obj.get("data") or {}) | set(obj.get("stringData") or {})


def test_every_manifest_listed_exists_and_every_object_is_well_formed() -> None:
    listed = set(KUSTOMIZATION["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", "airflow-values.yaml"}
    assert listed == on_disk
    seen = set()
    for obj in OBJECTS:
        kind, meta = obj.get("kind"), obj.get("metadata") or {}
        assert kind in API_VERSIONS, f"unexpected kind {kind}"
        assert obj.get("apiVersion") == API_VERSIONS[kind], (
            f"{kind} {meta.get('name')}: {obj.get('apiVersion')}"
        )
        assert meta.get("name"), f"{kind} without metadata.name"
        key = (kind, meta["name"])
        assert key not in seen, f"duplicate {key}"
        seen.add(key)
        if kind != "Namespace":
            assert meta.get("namespace") == KUSTOMIZATION["namespace"], key
    kinds = {o["kind"] for o in OBJECTS}
    assert {"Deployment", "StatefulSet", "Service", "HorizontalPodAutoscaler", "Secret"} <= kinds
    assert {o["metadata"]["name"] for o in of_kind("Deployment")} == {"mlflow", "bentoml", "simulator"}
    assert named("StatefulSet", "timescaledb")["spec"]["volumeClaimTemplates"]


@pytest.mark.parametrize(
    "workload",
    [o for o in OBJECTS if o["kind"] in WORKLOADS],
    ids=lambda o: f"{o['kind']}/{o['metadata']['name']}",
)
def test_workload_selector_matches_its_pods_and_containers_are_sized_and_probed(
    workload: dict[str, Any],
) -> None:
    spec = workload["spec"]
    selector = spec["selector"]["matchLabels"]
    labels = spec["template"]["metadata"]["labels"]
    assert selector and selector.items() <= labels.items(), "selector does not match the pod template labels"
    pod = spec["template"]["spec"]
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    templates = {t["metadata"]["name"] for t in spec.get("volumeClaimTemplates", [])}
    for c in pod["containers"]:
        assert c.get("image"), c["name"]
        res = c.get("resources") or {}
        for part in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(res.get(part, {})), f"{c['name']} has no {part}"
        assert c.get("readinessProbe") and c.get("livenessProbe"), f"{c['name']} is not probed"
        ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
        for probe in (c["readinessProbe"], c["livenessProbe"]):
            if "httpGet" in probe:
                assert probe["httpGet"]["port"] in ports or probe["httpGet"]["port"] in ports.values()
        for mount in c.get("volumeMounts", []):
            assert mount["name"] in volumes or mount["name"] in templates, f"{c['name']}: {mount['name']}"
    for vol in volumes.values():
        if "persistentVolumeClaim" in vol:
            named("PersistentVolumeClaim", vol["persistentVolumeClaim"]["claimName"])
        if "configMap" in vol:
            named("ConfigMap", vol["configMap"]["name"])


def test_services_select_the_pods_of_a_workload_on_a_port_it_exposes() -> None:
    for svc in of_kind("Service"):
        selector = svc["spec"]["selector"]
        matches = [
            w
            for w in OBJECTS
            if w["kind"] in WORKLOADS
            and selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(matches) == 1, f"Service {svc['metadata']['name']} selects {len(matches)} workloads"
        containers = matches[0]["spec"]["template"]["spec"]["containers"]
        ports = {p["name"] for c in containers for p in c.get("ports", [])} | {
            p["containerPort"] for c in containers for p in c.get("ports", [])
        }
        for port in svc["spec"]["ports"]:
            assert port.get("targetPort", port["port"]) in ports, f"{svc['metadata']['name']}: {port}"
    # the names other pods use in URLs (ConfigMap) are Services
    config = named("ConfigMap", "krx-config")["data"]
    for url in (config["KRX_MLFLOW_TRACKING_URI"], config["KRX_TRADING_SERVER_URL"]):
        host, port = url.split("//")[1].split(":")
        svc = named("Service", host)
        assert int(port) in {p["port"] for p in svc["spec"]["ports"]}
    named("Service", config["KRX_SIM_HOST"])


def test_the_hpa_scales_the_model_server_deployment() -> None:
    (hpa,) = of_kind("HorizontalPodAutoscaler")
    target = hpa["spec"]["scaleTargetRef"]
    deployment = named(target["kind"], target["name"])
    assert target["apiVersion"] == deployment["apiVersion"] and target["name"] == "bentoml"
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    # utilisation is measured against requests: the containers must have them
    for c in deployment["spec"]["template"]["spec"]["containers"]:
        assert c["resources"]["requests"]["cpu"]


def test_every_secret_and_config_key_a_pod_reads_exists_and_secrets_are_placeholders() -> None:
    for w in (o for o in OBJECTS if o["kind"] in WORKLOADS):
        for c in w["spec"]["template"]["spec"]["containers"]:
            for src in c.get("envFrom", []):
                for ref, kind in (("secretRef", "Secret"), ("configMapRef", "ConfigMap")):
                    if ref in src:
                        named(kind, src[ref]["name"])
            for env in c.get("env", []):
                for ref, kind in (("secretKeyRef", "Secret"), ("configMapKeyRef", "ConfigMap")):
                    if ref in env.get("valueFrom", {}):
                        r = env["valueFrom"][ref]
                        assert r["key"] in data_keys(kind, r["name"]), f"{kind} {r['name']} has no {r['key']}"
    for secret in of_kind("Secret"):
        assert "data" not in secret, "templates use stringData placeholders, never encoded values"
        for key, value in secret["stringData"].items():
            if key != "POSTGRES_USER":
                assert "<" in value and ">" in value, (
                    f"{secret['metadata']['name']}.{key} is not a placeholder"
                )
    assert {"KRX_KIS_APP_KEY", "KRX_KIS_APP_SECRET", "KRX_KIS_ACCOUNT_NO"} <= data_keys("Secret", "krx-kis")


def test_k8s_defaults_are_the_simulator_with_real_money_locked(monkeypatch: pytest.MonkeyPatch) -> None:
    config = named("ConfigMap", "krx-config")["data"]
    assert config["KRX_KIS_ENV"] == "sim" and config["KRX_TRADING_MODE"] == "sim"
    assert config["KRX_KIS_ALLOW_REAL"] == "false" and config["KRX_TRADING_REAL_OPT_IN"] == "false"
    from pipeline.config import Settings

    for key, value in config.items():  # the pods' environment, read as the settings read it
        monkeypatch.setenv(key, value)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.trading_mode == "sim" and settings.kis_env == "sim"
    assert not settings.kis_allow_real and not settings.trading_real_opt_in and settings.trading_risk == {}
    assert settings.resolved_kis_base_url == "http://simulator:8900"
    init = named("ConfigMap", "timescaledb-init")["data"]["10-krx-databases.sql"]
    assert (
        init.split()
        == (ROOT / "infra/timescaledb/10-krx-databases.sql").read_text().split("\n", 5)[-1].split()
    )


def test_airflow_chart_values_use_the_kubernetes_executor_with_the_trade_dag_on_a_local_executor() -> None:
    executors = [e.strip() for e in VALUES["executor"].split(",")]
    assert executors[0] == "KubernetesExecutor" and "LocalExecutor" in executors
    # the task policy pins `trade` to the LocalExecutor: run it on a stand-in task
    policy: dict[str, Any] = {}
    exec(VALUES["airflowLocalSettings"], policy)  # our own values file

    class Task:
        def __init__(self, dag_id: str) -> None:
            self.dag_id, self.executor = dag_id, None

    trade, train = Task("trade"), Task("train_agent")
    policy["task_policy"](trade)
    policy["task_policy"](train)
    assert trade.executor == "LocalExecutor" and train.executor is None
    assert (ROOT / "dags/trade.py").is_file()
    # Airflow 3 chart layout (>= 1.16): apiServer, a dag processor with a git bundle, no webserver
    assert "apiServer" in VALUES and "webserver" not in VALUES
    assert VALUES["airflowVersion"].startswith("3.")
    bundles = VALUES["dagProcessor"]["dagBundleConfigList"]
    assert VALUES["dagProcessor"]["enabled"] is True
    assert bundles[0]["classpath"] == "airflow.providers.git.bundles.git.GitDagBundle"
    assert bundles[0]["kwargs"]["subdir"] == "dags"
    assert VALUES["dags"]["gitSync"]["enabled"] is False
    # worker pods are deleted after their task: logs live on a volume
    assert VALUES["logs"]["persistence"]["enabled"] is True
    requirements = (ROOT / "infra/docker/requirements-executors.txt").read_text()
    assert "apache-airflow-providers-cncf-kubernetes==" in requirements
    assert "apache-airflow-providers-git==" in requirements


def test_airflow_chart_reads_its_secrets_and_the_krx_settings_from_objects_that_exist() -> None:
    keys = {
        "metadataSecretName": "connection",
        "fernetKeySecretName": "fernet-key",
        "apiSecretKeySecretName": "api-secret-key",
        "jwtSecretName": "jwt-secret",
    }
    for value, key in keys.items():
        name = VALUES["data"][value] if value == "metadataSecretName" else VALUES[value]
        assert key in data_keys("Secret", name), f"{value}: Secret {name} has no key {key}"
    env_from = yaml.safe_load(VALUES["extraEnvFrom"])
    refs = {(k, v["name"]) for item in env_from for k, v in item.items()}
    assert refs == {("configMapRef", "krx-config"), ("secretRef", "krx-kis"), ("secretRef", "krx-db")}
    for ref, name in refs:
        named("ConfigMap" if ref == "configMapRef" else "Secret", name)
    assert VALUES["postgresql"]["enabled"] is False
    for component in ("apiServer", "scheduler", "triggerer", "dagProcessor", "workers"):
        assert {"requests", "limits"} <= set(VALUES[component]["resources"]), component
