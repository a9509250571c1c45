"""Every benchmark runs in --quick mode and ends with one JSON line, so none can rot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHES = sorted((Path(__file__).parent / "benchmarks").glob("bench_*.py"))

#: Figures each benchmark must report (issue texts name them).
REQUIRED_KEYS = {
    "bench_store.py": {"store_rows_per_s", "to_sql_rows_per_s", "ratio", "peak_rss_mb"},
    "bench_env.py": {"numpy_steps_per_s", "pandas_steps_per_s", "ratio"},
    "bench_train.py": {"a3c_steps_per_s", "sb3_a2c_steps_per_s", "ratio", "a3c_oos_return", "sb3_oos_return"},
    "bench_kis.py": {"sim_quotes_per_s", "client_overhead_ms"},
    "bench_features.py": {"bars_per_s", "baseline_bars_per_s", "ratio", "peak_rss_mb"},
    "bench_agent.py": {
        "folds_beat_bh",
        "pairs_beat_bh",
        "mdd_not_worse",
        "mean_sharpe_agent",
        "mean_sharpe_bh",
        "dsr_prob",
        "ensemble_folds_beat_bh",
        "ensemble_mdd_not_worse",
    },
    "bench_pyfunc.py": {"pyfunc_ms_p50", "pyfunc_ms_p99", "batch_windows_per_s", "overhead_ratio"},
    "bench_serving.py": {
        "p50_ms_c1",
        "p99_ms_c1",
        "rps_c32",
        "batch_windows_per_s",
        "inproc_ms",
        "overhead_ratio",
    },
    "bench_trading.py": {
        "p50_ms_1",
        "p99_ms_1",
        "p99_ms_20",
        "run_wall_s_20_p50",
        "run_wall_s_20_p99",
        "ratio_to_bare_order",
    },
}


def test_every_benchmark_is_run_and_names_its_figures() -> None:
    # A benchmark that disappears, or a new one nobody lists figures for, fails here rather than rotting.
    assert {b.name for b in BENCHES} == set(REQUIRED_KEYS)


@pytest.mark.slow
@pytest.mark.parametrize("bench", BENCHES, ids=lambda p: p.stem)
def test_benchmark_quick_mode_ends_with_its_json_figures(bench: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(bench), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).parents[1],
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = proc.stdout.strip().splitlines()[-1]
    figures = json.loads(last)
    missing = REQUIRED_KEYS[bench.name] - set(figures)
    assert not missing, f"{bench.name} does not report {missing}"
    for key in REQUIRED_KEYS[bench.name]:
        assert isinstance(figures[key], int | float), (key, figures[key])
