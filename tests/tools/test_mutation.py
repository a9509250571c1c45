"""The mutation-testing driver (``tools/mutation.py``, ``make mutation``) on a tiny project whose test is
deliberately weak: the report keeps its shape and names the mutant the test lets through."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
MODULE = '''"""A module with one function its test checks well and one it barely checks."""


def add(a, b):
    return a + b


def clamp(x):
    return max(0, x)
'''
WEAK_TEST = """from calc.ops import add, clamp


def test_add():
    assert add(2, 3) == 5


def test_clamp_keeps_a_large_value():  # never tries a value near the bound
    assert clamp(5) == 5
"""


@pytest.mark.slow
@pytest.mark.integration
def test_the_driver_reports_counts_scores_and_the_mutant_a_weak_test_lets_survive(tmp_path: Path) -> None:
    (tmp_path / "calc").mkdir()
    (tmp_path / "calc" / "__init__.py").write_text("")
    (tmp_path / "calc" / "ops.py").write_text(MODULE)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_ops.py").write_text(WEAK_TEST)
    (tmp_path / "pyproject.toml").write_text('[tool.pytest.ini_options]\ntestpaths = ["tests"]\n')
    args = ["--root", str(tmp_path), "--modules", "calc/ops.py", "--tests", "calc/ops.py=tests"]
    done = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "mutation.py"), *args, "--max-children", "2"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = tmp_path / "var" / "mutation"
    summary = json.loads((out / "summary.json").read_text())
    counts = summary["modules"]["calc/ops.py"]
    assert set(counts) >= {"killed", "survived", "timeout", "no_tests", "total", "score"}
    assert counts["survived"] >= 1 and counts["killed"] >= 1
    assert counts["score"] == pytest.approx(
        (counts["killed"] + counts["timeout"]) / counts["total"], abs=1e-4
    )
    assert summary["overall"]["total"] == counts["total"] and summary["score"] == counts["score"]
    survivors = (out / "survivors.txt").read_text()
    assert "## calc/ops.py:9 " in survivors  # module and line of the surviving mutant
    assert "-    return max(0, x)\n+    return max(1, x)" in survivors  # and its diff
