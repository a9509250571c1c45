"""Project rules a user relies on: a fully pinned CPU-only environment and one-way dependencies."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]


def _requirements() -> list[str]:
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    return [line for line in lines if line.strip() and not line.startswith("#")]


def test_every_requirement_is_pinned_and_torch_is_the_cpu_build() -> None:
    reqs = _requirements()
    unpinned = [r for r in reqs if not re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[A-Za-z0-9_.+\-]+", r)]
    assert not unpinned
    assert "torch==2.13.0" in reqs
    bentoml = next(r for r in reqs if r.lower().startswith("bentoml=="))
    assert bentoml.startswith("bentoml==1.4.")
    assert not any(r.lower().startswith(("nvidia-cuda", "nvidia-cudnn", "triton==")) for r in reqs)


def test_installed_environment_is_consistent() -> None:
    proc = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout
    import torch

    assert torch.__version__.startswith("2.13.0") and not torch.cuda.is_available()


def test_pipeline_never_imports_airflow_or_bentoml() -> None:
    pattern = re.compile(r"^\s*(import|from)\s+(airflow|bentoml)\b", re.M)
    offenders = [str(p) for p in (ROOT / "pipeline").rglob("*.py") if pattern.search(p.read_text())]
    assert offenders == []


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("lint-imports")
    return subprocess.run([str(exe), "--no-cache"], cwd=root, capture_output=True, text=True, timeout=300)


def test_pipeline_layers_hold() -> None:
    proc = _lint_imports(ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:]


def test_an_upward_import_inside_pipeline_breaks_the_layer_contract(tmp_path: Path) -> None:
    # A copy of the package with a store module reaching up into rl: the contract must catch it.
    shutil.copytree(ROOT / "pipeline", tmp_path / "pipeline", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "pipeline" / "store" / "upward.py").write_text("from pipeline.rl import env  # noqa\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    exe = Path(sys.executable).with_name("lint-imports")
    proc = subprocess.run(
        [str(exe), "--no-cache"], cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env
    )
    assert proc.returncode != 0
    assert "pipeline.store is not allowed to import pipeline.rl" in proc.stdout


def test_reading_the_store_from_the_cli_loads_neither_the_simulator_nor_a_web_server(
    isolated_settings: Path,
) -> None:
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from pipeline.cli import app\n"
        "fresh = CliRunner().invoke(app, ['data', 'summary'])\n"
        "assert fresh.exit_code == 0 and 'krx db upgrade' in fresh.output, fresh.output\n"
        "assert CliRunner().invoke(app, ['db', 'upgrade']).exit_code == 0\n"
        "result = CliRunner().invoke(app, ['data', 'summary'])\n"
        "assert result.exit_code == 0 and 'no 1d bars' in result.output, result.output\n"
        "loaded = [m for m in ('uvicorn', 'pipeline.kis.simulator', 'torch') if m in sys.modules]\n"
        "print('LOADED', loaded)\n"
    )
    env = {**os.environ, "KRX_VAR_DIR": str(isolated_settings)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "LOADED []" in proc.stdout


def _make_setup_dry_run(project: Path) -> str:
    """What ``make setup`` would run in ``project`` (``make -n``: prints, runs nothing)."""
    done = subprocess.run(
        ["make", "-n", "setup"], cwd=project, capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout


def test_make_setup_reinstalls_only_when_requirements_or_a_pyproject_changed(tmp_path: Path) -> None:
    # A copy of the files the stamp is made of, with a stand-in venv: nothing is installed for real.
    for name in ("Makefile", "requirements.txt", "pyproject.toml"):
        shutil.copy(ROOT / name, tmp_path / name)
    for plugin in ROOT.glob("plugins/*/pyproject.toml"):
        (tmp_path / plugin.relative_to(ROOT)).parent.mkdir(parents=True)
        shutil.copy(plugin, tmp_path / plugin.relative_to(ROOT))
    (tmp_path / ".venv").mkdir()
    first = _make_setup_dry_run(tmp_path)
    assert "pip install --quiet -r requirements.txt" in first
    stamp = re.search(r"touch (\.venv/\.installed-[0-9a-f]{16})", first)
    assert stamp, first
    (tmp_path / stamp.group(1)).touch()  # what the real run ends with
    assert "pip install" not in _make_setup_dry_run(tmp_path)  # second run: nothing to install
    with (tmp_path / "requirements.txt").open("a") as fh:
        fh.write("six==1.17.0\n")
    assert "pip install --quiet -r requirements.txt" in _make_setup_dry_run(tmp_path)  # changed: again
