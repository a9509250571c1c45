"""The compose stack and its image definition are consistent (parsed, since no Docker engine runs here)."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).parents[1]


def test_compose_runs_the_store_on_timescaledb_and_every_service_uses_one_image() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())
    services = compose["services"]
    assert {"timescaledb", "migrate", "mlflow", "simulator", "airflow"} <= set(services)
    assert services["timescaledb"]["image"].startswith("timescale/timescaledb")
    build = services["migrate"]["build"]
    assert (ROOT / build["context"] / build["dockerfile"]).is_file()
    url = services["migrate"]["environment"]["KRX_DATABASE_URL"]
    assert url.startswith("postgresql+psycopg://") and "@timescaledb:5432/" in url
    for name, svc in services.items():
        for dep in svc.get("depends_on", {}):
            assert dep in services, f"{name} depends on unknown service {dep}"
    assert services["simulator"]["command"][0] == "sim"


def test_dockerfile_installs_the_pinned_requirements_and_the_cli() -> None:
    text = (ROOT / "infra/docker/Dockerfile").read_text()
    assert "requirements.txt" in text and 'ENTRYPOINT ["krx"]' in text


def test_a_paper_or_real_stack_never_points_at_the_simulator_by_default() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())
    env = compose["services"]["airflow"]["environment"]
    # An unset KRX_KIS_BASE_URL lets KRX_KIS_ENV choose: the simulator only for sim, KIS hosts otherwise.
    assert env["KRX_KIS_BASE_URL"] == "${KRX_KIS_BASE_URL:-}"
    assert env["KRX_SIM_HOST"] == "simulator"
