"""The compose stack and its image definition are consistent (parsed, since no Docker engine runs here):
every service can be built or pulled, long-running ones have health checks, files and volumes they mount
exist, ports do not collide, profiles hold what they should, and the broker's safety settings reach every
container with safe defaults."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import typer.main
import yaml

ROOT = Path(__file__).parents[1]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")

#: Services that run once and exit (their `restart` is "no"); every other one must stay up and be healthy.
ONE_SHOT = {"migrate", "airflow-init"}
AIRFLOW = ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer")
KRX_IMAGE_SERVICES = {"migrate", "airflow-init", "mlflow", "simulator", "bentoml", *AIRFLOW, "airflow-worker"}


def interpolate(value: str, env: dict[str, str] | None = None) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?error}`` against ``env`` (empty: the
    defaults), then ``$$`` → ``$``."""
    env = env or {}

    def one(m: re.Match[str]) -> str:
        name, op, default = m.group(1), m.group(2), m.group(3) or ""
        if env.get(name):
            return env[name]
        if op and op.endswith("?"):
            raise KeyError(f"{name} is required: {default}")
        return default if op else ""

    return _VAR.sub(one, value).replace("$$", "$")


def env_of(service: str, env: dict[str, str] | None = None) -> dict[str, str]:
    raw = SERVICES[service].get("environment") or {}
    return {k: interpolate(str(v), env) for k, v in raw.items()}


def profiles(service: str) -> set[str]:
    return set(SERVICES[service].get("profiles", []))


def published(service: str) -> list[tuple[str, int, int]]:
    """(host interface, host port, container port) of each published port, with the defaults."""
    out = []
    for spec in SERVICES[service].get("ports", []):
        parts = interpolate(str(spec)).split(":")
        host_ip = parts[0] if len(parts) == 3 else "0.0.0.0"
        out.append((host_ip, int(parts[-2]), int(parts[-1])))
    return out


def test_the_default_stack_and_the_profiles_hold_the_services_the_issue_names() -> None:
    default = {name for name in SERVICES if not profiles(name)}
    assert {
        "timescaledb",
        "migrate",
        "airflow-init",
        *AIRFLOW,
        "mlflow",
        "bentoml",
        "simulator",
        "prometheus",
        "pushgateway",
        "grafana",
    } <= default
    assert {n for n in SERVICES if "celery" in profiles(n)} == {"redis", "airflow-worker"}
    assert {n for n in SERVICES if "elk" in profiles(n)} == {
        "opensearch",
        "opensearch-dashboards",
        "fluent-bit",
    }
    # a service of the default stack never waits on one that only a profile starts (compose up would fail)
    for name in default:
        for dep in SERVICES[name].get("depends_on", {}):
            assert dep in SERVICES, f"{name} depends on unknown service {dep}"
            assert not profiles(dep), f"{name} (default stack) depends on {dep} of profile {profiles(dep)}"


def test_every_service_has_an_image_and_the_krx_ones_build_from_the_project_dockerfile() -> None:
    for name, svc in SERVICES.items():
        image = interpolate(svc.get("image", ""))
        assert image, f"{name} has no image"
        if name in KRX_IMAGE_SERVICES:
            assert image == "krx-rl-trader:latest", name
            build = svc["build"]
            assert (ROOT / build["context"] / build["dockerfile"]).is_file(), name
        else:
            # third-party images are pinned to a version, never `latest`
            assert ":" in image and not image.endswith(":latest"), f"{name}: {image}"
    assert SERVICES["timescaledb"]["image"].startswith("timescale/timescaledb:")


def test_every_krx_command_is_one_the_cli_has() -> None:
    from pipeline.cli import app

    cli = typer.main.get_command(app)
    commands = cli.commands  # type: ignore[attr-defined]
    for name in ("migrate", "simulator", "bentoml"):
        argv = SERVICES[name]["command"]
        assert argv[0] in commands, f"{name}: krx {argv[0]} does not exist"
        sub = commands[argv[0]]
        if hasattr(sub, "commands"):
            assert argv[1] in sub.commands, f"{name}: krx {argv[0]} {argv[1]} does not exist"
        else:
            options = {opt for p in sub.params for opt in p.opts}
            for token in argv[1:]:
                if token.startswith("--"):
                    assert token in options, f"{name}: krx {argv[0]} has no option {token}"
    assert SERVICES["migrate"]["command"] == ["db", "upgrade"]
    assert SERVICES["simulator"]["command"][0] == "sim"
    assert SERVICES["bentoml"]["command"][0] == "serve"


def test_long_running_services_have_health_checks_on_the_port_they_listen_on() -> None:
    for name, svc in SERVICES.items():
        if name in ONE_SHOT:
            assert svc.get("restart") == "no", f"one-shot {name} must not be restarted"
            assert "healthcheck" not in svc
            continue
        check = svc.get("healthcheck")
        assert check and check.get("test"), f"{name} has no healthcheck"
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name
        assert svc.get("restart") == "unless-stopped", f"{name} is not restarted after a crash"
        urls = re.findall(r"https?://localhost:(\d+)", " ".join(map(str, check["test"])))
        container_ports = {c for _, _, c in published(name)}
        for port in map(int, urls):
            if container_ports and name != "airflow-scheduler":
                assert port in container_ports, f"{name} checks port {port}, publishes {container_ports}"


def test_dependencies_wait_for_health_or_completion_that_can_happen() -> None:
    for name, svc in SERVICES.items():
        for dep, cond in (svc.get("depends_on") or {}).items():
            condition = cond["condition"]
            if condition == "service_completed_successfully":
                assert dep in ONE_SHOT, f"{name} waits for {dep} to exit, but it runs forever"
            elif condition == "service_healthy":
                assert "healthcheck" in SERVICES[dep], (
                    f"{name} waits for {dep} to be healthy: it has no check"
                )
    # the market schema exists before anything that reads or writes the store starts
    for name in ("simulator", "bentoml", *AIRFLOW):
        assert SERVICES[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    for name in AIRFLOW:
        assert SERVICES[name]["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"


def test_host_ports_do_not_collide_and_stay_on_localhost_by_default() -> None:
    seen: dict[int, str] = {}
    for name in SERVICES:
        for host_ip, host_port, _ in published(name):
            assert host_port not in seen, f"host port {host_port}: {seen.get(host_port)} and {name}"
            seen[host_port] = name
            assert host_ip == "127.0.0.1", f"{name} publishes {host_port} on {host_ip} by default"
    assert seen[8080] == "airflow-apiserver" and seen[5000] == "mlflow" and seen[3000] == "bentoml"
    assert seen[8900] == "simulator" and seen[9090] == "prometheus"


def test_mounted_files_exist_and_named_volumes_are_declared_and_used() -> None:
    declared = set(COMPOSE["volumes"])
    used: set[str] = set()
    for name, svc in SERVICES.items():
        for spec in svc.get("volumes", []):
            source, target = str(spec).split(":")[:2]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
            elif source.startswith("/"):
                # only the log shipper reads from the host: the containers' json-file logs
                assert name == "fluent-bit" and source == "/var/lib/docker/containers", f"{name}: {source}"
            else:
                assert source in declared, f"{name} uses undeclared volume {source}"
                used.add(source)
            assert target.startswith("/"), f"{name}: {target}"
    assert used == declared, f"declared but unused volumes: {declared - used}"
    # mounted as one file: mounting the folder would hide the image's own timescaledb init scripts
    init = [v for v in SERVICES["timescaledb"]["volumes"] if "docker-entrypoint-initdb.d" in v]
    assert init and all(v.split(":")[1].endswith(".sql") for v in init)


def test_market_data_mlflow_and_airflow_have_separate_databases_on_timescaledb() -> None:
    market = urlsplit(env_of("migrate")["KRX_DATABASE_URL"])
    assert (
        market.scheme == "postgresql+psycopg" and market.hostname == "timescaledb" and market.path == "/krx"
    )
    mlflow_cmd = SERVICES["mlflow"]["command"]
    backend = urlsplit(interpolate(mlflow_cmd[mlflow_cmd.index("--backend-store-uri") + 1]))
    assert backend.hostname == "timescaledb" and backend.path == "/mlflow"
    airflow_db = urlsplit(env_of("airflow-scheduler")["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    assert airflow_db.hostname == "timescaledb" and airflow_db.path == "/airflow"
    created = re.findall(
        r"CREATE DATABASE (\w+)", (ROOT / "infra/timescaledb/10-krx-databases.sql").read_text()
    )
    assert sorted(created) == ["airflow", "mlflow"]
    # one password everywhere: the one the database was initialised with
    secret = {"POSTGRES_PASSWORD": "s3cret"}
    for url in (
        env_of("migrate", secret)["KRX_DATABASE_URL"],
        interpolate(mlflow_cmd[mlflow_cmd.index("--backend-store-uri") + 1], secret),
        env_of("airflow-scheduler", secret)["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"],
    ):
        assert urlsplit(url).password == "s3cret"
    # artifacts are on a volume of the MLflow server and proxied to every client
    assert "--serve-artifacts" in mlflow_cmd
    dest = mlflow_cmd[mlflow_cmd.index("--artifacts-destination") + 1]
    assert any(str(v).endswith(":" + dest) for v in SERVICES["mlflow"]["volumes"])
    assert env_of("bentoml")["KRX_MLFLOW_ARTIFACT_ROOT"].startswith("mlflow-artifacts:")


def test_airflow_is_split_into_its_components_sharing_one_configuration() -> None:
    commands = {name: SERVICES[name]["command"][0] for name in (*AIRFLOW, "airflow-worker")}
    assert commands == {
        "airflow-apiserver": "api-server",
        "airflow-scheduler": "scheduler",
        "airflow-dag-processor": "dag-processor",
        "airflow-triggerer": "triggerer",
        "airflow-worker": "celery",
    }
    envs = [env_of(name) for name in (*AIRFLOW, "airflow-worker", "airflow-init")]
    for key in (
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
        "AIRFLOW__API_AUTH__JWT_SECRET",
        "AIRFLOW__CORE__EXECUTOR",
    ):
        assert len({e[key] for e in envs}) == 1, f"{key} differs between Airflow components"
    env = envs[0]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert env_of("airflow-scheduler", {"AIRFLOW_EXECUTOR": "CeleryExecutor"})["AIRFLOW__CORE__EXECUTOR"] == (
        "CeleryExecutor"
    )
    api = urlsplit(env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
    assert api.hostname == "airflow-apiserver" and api.port in {
        c for _, _, c in published("airflow-apiserver")
    }
    assert urlsplit(env["AIRFLOW__CELERY__BROKER_URL"]).hostname == "redis"
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == "/app/dags" and (ROOT / "dags/trade.py").is_file()
    assert (ROOT / "dags/eod_report.py").is_file()
    assert int(env["AIRFLOW__CORE__PARALLELISM"]) <= 16


def test_broker_mode_and_safety_settings_reach_every_krx_container_with_safe_defaults() -> None:
    for name in KRX_IMAGE_SERVICES - {"mlflow"}:
        env = env_of(name)
        assert env["KRX_KIS_ENV"] == "sim" and env["KRX_TRADING_MODE"] == "sim", name
        assert env["KRX_KIS_ALLOW_REAL"] == "false" and env["KRX_TRADING_REAL_OPT_IN"] == "false", name
        assert "KRX_TRADING_RISK" not in env, "JSON risk caps come from .env unchanged (env_file)"
        assert SERVICES[name]["env_file"] == [{"path": ".env", "required": False}], name
        # the operator's choice passes through unchanged
        real = env_of(
            name,
            {
                "KRX_KIS_ENV": "real",
                "KRX_TRADING_MODE": "real",
                "KRX_KIS_ALLOW_REAL": "true",
                "KRX_TRADING_REAL_OPT_IN": "true",
            },
        )
        assert (real["KRX_KIS_ENV"], real["KRX_TRADING_MODE"]) == ("real", "real")
        assert (real["KRX_KIS_ALLOW_REAL"], real["KRX_TRADING_REAL_OPT_IN"]) == ("true", "true")
    scheduler = env_of("airflow-scheduler")
    assert urlsplit(scheduler["KRX_TRADING_SERVER_URL"]).hostname == "bentoml"
    assert urlsplit(scheduler["KRX_METRICS_PUSHGATEWAY"]).hostname == "pushgateway"
    # no secret is written into the compose file: KIS keys and the serving API key come from .env only
    text = (ROOT / "docker-compose.yaml").read_text()
    for secret in ("KRX_KIS_APP_KEY", "KRX_KIS_APP_SECRET", "KRX_KIS_ACCOUNT_NO", "KRX_SERVING_API_KEY"):
        assert secret not in text


def test_a_paper_or_real_stack_never_points_at_the_simulator_by_default() -> None:
    env = env_of("airflow-scheduler")
    # An unset KRX_KIS_BASE_URL lets KRX_KIS_ENV choose: the simulator only for sim, KIS hosts otherwise.
    assert SERVICES["airflow-scheduler"]["environment"]["KRX_KIS_BASE_URL"] == "${KRX_KIS_BASE_URL:-}"
    assert env["KRX_KIS_BASE_URL"] == "" and env["KRX_SIM_HOST"] == "simulator"
    from pipeline.config import KIS_BASE_URLS, Settings

    for kis_env in ("vts", "real"):
        settings = Settings(
            _env_file=None,
            kis_env=kis_env,
            kis_base_url=env["KRX_KIS_BASE_URL"] or None,
            sim_host=env["KRX_SIM_HOST"],
        )  # type: ignore[call-arg]
        assert settings.resolved_kis_base_url == KIS_BASE_URLS[kis_env]
    sim = Settings(
        _env_file=None, kis_env="sim", sim_host=env["KRX_SIM_HOST"], sim_port=int(env["KRX_SIM_PORT"])
    )  # type: ignore[call-arg]
    assert sim.resolved_kis_base_url == "http://simulator:8900"
    assert 8900 in {c for _, _, c in published("simulator")}


def test_env_example_documents_every_variable_the_compose_file_reads() -> None:
    example = (ROOT / ".env.example").read_text()
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", example, re.MULTILINE))
    # `$${VAR}` is escaped: the container's shell expands it, not compose
    used = set(_VAR.findall(re.sub(r"\$\$\{", "", (ROOT / "docker-compose.yaml").read_text())))
    missing = {name for name, _, _ in used} - documented
    assert not missing, f"not in .env.example: {sorted(missing)}"
    for name in (
        "KRX_KIS_APP_KEY",
        "KRX_KIS_APP_SECRET",
        "KRX_KIS_ACCOUNT_NO",
        "KRX_TRADING_MODE",
        "KRX_DATABASE_URL",
        "KRX_SERVING_API_KEY",
        "KRX_TRADING_RISK",
        "KRX_TRADING_REAL_OPT_IN",
        "KRX_KIS_ALLOW_REAL",
        "POSTGRES_PASSWORD",
    ):
        assert name in documented, name
    # no real-looking secret: every secret is empty or a placeholder
    for m in re.finditer(
        r"^#?\s*(KRX_KIS_APP_\w+|KRX_KIS_ACCOUNT_NO|\w*PASSWORD|\w*SECRET|\w*API_KEY)=(\S*)",
        example,
        re.MULTILINE,
    ):
        assert m.group(2) in ("", "change-me") or m.group(2).startswith("change-me-"), m.group(0)


def test_dockerfile_installs_the_pinned_requirements_with_the_cpu_torch_and_the_cli() -> None:
    text = (ROOT / "infra/docker/Dockerfile").read_text()
    assert "requirements.txt" in text and 'ENTRYPOINT ["krx"]' in text
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in text
    pins = dict(
        line.split("==", 1) for line in (ROOT / "requirements.txt").read_text().splitlines() if "==" in line
    )
    assert pins["torch"] == "2.13.0"
    # the executor extras are installed under requirements.txt as constraints and never contradict it
    assert "-c requirements.txt -r infra/docker/requirements-executors.txt" in text
    extra = dict(
        line.split("==", 1)
        for line in (ROOT / "infra/docker/requirements-executors.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    norm = {k.lower().replace("_", "-"): v for k, v in pins.items()}
    for name, version in extra.items():
        assert norm.get(name.lower().replace("_", "-"), version) == version, name
    for provider in (
        "apache-airflow-providers-celery",
        "apache-airflow-providers-cncf-kubernetes",
        "apache-airflow-providers-git",
    ):
        assert provider in extra
    ignored = (ROOT / "infra/docker/Dockerfile.dockerignore").read_text().split()
    assert {".venv", "var", ".git", ".env"} <= set(ignored)


@pytest.mark.parametrize("service", sorted(KRX_IMAGE_SERVICES))
def test_krx_containers_share_the_state_volume_or_need_none(service: str) -> None:
    volumes = {str(v).split(":")[0] for v in SERVICES[service].get("volumes", [])}
    if service == "mlflow":
        assert volumes == {"mlflow-artifacts"}
    else:
        # token cache (one KIS token issuance a minute), Airflow home and logs, simulator ledger
        assert "krx-var" in volumes
