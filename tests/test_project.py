"""Project rules a user relies on: a fully pinned CPU-only environment and one-way dependencies."""

from __future__ import annotations

import re
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
