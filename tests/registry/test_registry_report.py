"""The training report: the agent-vs-baselines table per split, the gate, the statistics (deflated Sharpe
with trials = seeds × configurations, PBO only when configurations were compared, bootstrap intervals),
regimes and figures — in one HTML file that references nothing outside itself."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from pipeline.backtest.stats import sharpe_ratio
from pipeline.registry.report import ReportData, render_report, split_table
from pipeline.registry.statistics import headline, training_statistics
from tests.registry.factories import wf_rows


def _returns(configs: int, seeds: int, n: int = 120, edge: float = 0.0) -> pd.DataFrame:
    """Per-bar returns of every trial on one fold's val and test windows (config c earns c × ``edge``)."""
    rng = np.random.default_rng(0)
    ts = pd.date_range("2025-01-01", periods=n, freq="D").astype(str)
    frames = [
        pd.DataFrame(
            {
                "config": c,
                "seed": s,
                "fold": 0,
                "split": split,
                "symbol": "A1",
                "ts": ts,
                "ret": rng.normal(c * edge, 0.01, n),
            }
        )
        for c in range(configs)
        for s in range(seeds)
        for split in ("val", "test")
    ]
    return pd.concat(frames, ignore_index=True)


def _metrics(configs: int, seeds: int) -> pd.DataFrame:
    rows = wf_rows({"sharpe": 1.2}, seeds=tuple(range(seeds)), folds=2)
    return pd.concat([rows.assign(config=c) for c in range(configs)], ignore_index=True)


def test_the_deflated_sharpe_counts_seeds_times_configurations_and_pbo_needs_two_configurations() -> None:
    one = training_statistics(_metrics(1, 3), _returns(1, 3), (0, 1), n_configurations=1)
    assert one.n_trials == 3 and one.dsr is not None and one.dsr.n_trials == 3
    assert one.pbo is None and "one configuration" in one.pbo_note
    returns = _returns(2, 3, edge=0.002)
    two = training_statistics(_metrics(2, 3), returns, (1, 0), n_configurations=2)
    assert two.n_trials == 6 and two.dsr is not None and two.dsr.n_trials == 6
    picked = returns.query("config == 1 and seed == 0 and split == 'val'")["ret"]
    assert two.dsr.T == 120 and two.dsr.sr == pytest.approx(sharpe_ratio(picked))  # the selected trial's
    assert two.dsr.sr0 > 0  # the best of 6 lucky trials is expected above zero
    assert two.pbo is not None and 0.0 <= two.pbo.pbo <= 1.0 and two.pbo_splits == 16
    low, mean, high = two.sharpe_ci["val"] or (0.0, 0.0, 0.0)
    assert low <= mean <= high and mean == pytest.approx(1.2)
    assert set(headline(two)) >= {"stats/dsr_prob", "stats/pbo", "stats/n_trials", "stats/val/sharpe_ci_low"}


def test_one_trial_and_one_fold_say_why_a_statistic_is_missing() -> None:
    stats = training_statistics(_metrics(1, 1).query("fold == 0"), _returns(1, 1), (0, 0), n_configurations=1)
    assert stats.sharpe_ci["val"] is None and "at least 2" in stats.ci_note
    assert np.isnan(headline(stats)["stats/val/sharpe_ci_low"])


def _figure(path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(2, 1))
    ax.plot([0, 1], [0, 1])
    fig.savefig(path)
    plt.close(fig)
    return path


def _report(tmp_path: Path, champion: bool = True) -> str:
    metrics = _metrics(2, 3)
    rules = [
        {"name": "sharpe_vs_buy_and_hold", "passed": True, "value": 0.7, "threshold": 0.0, "detail": "a < b"},
        {"name": "deflated_sharpe", "passed": False, "value": 0.4, "threshold": 0.95, "detail": "lucky"},
    ]
    trials = pd.DataFrame(
        {
            "config": [0, 0, 1],
            "seed": [0, 1, 0],
            "val_sharpe": [1.0, np.nan, 0.5],
            "test_sharpe": [0.2, 0.1, 0.3],
        }
    ).assign(selected=[True, False, False])
    data = ReportData(
        spec="stocks-1d",
        model_name="krx-a3c-stocks-1d",
        version="3",
        run_id="abc123",
        outcome="rejected",
        summary="rejected: no new champion and no challenger (failed: deflated_sharpe)",
        rules=rules,
        metrics=metrics[metrics["config"] == 0],
        trials=trials,
        statistics=training_statistics(metrics, _returns(2, 3, edge=0.001), (0, 0), 2),
        champion=metrics[(metrics["strategy"] == "agent") & (metrics["config"] == 1)] if champion else None,
        champion_version="2" if champion else None,
        regimes=pd.DataFrame(
            {
                "regime": [0, 1],
                "share": [0.6, 0.4],
                "mean_return": [0.001, -0.002],
                "ann_volatility": [0.1, 0.3],
                "n_bars": [60, 40],
            }
        ),
        figures=[_figure(tmp_path / "fold_0_test.png"), _figure(tmp_path / "fold_1_test.png")],
        data={"rows": 500, "first": "2024-01-02", "last": "2025-12-30", "sha256": "f" * 64},
        aliases={"champion": "2", "challenger": None},
    )
    return render_report(data)


def test_the_report_has_the_table_per_split_the_gate_and_the_statistics(tmp_path: Path) -> None:
    html = _report(tmp_path)
    for split in ("val", "test"):
        assert f"<h3>{split}</h3>" in html
    assert html.count('<tr class="agent"><td>agent</td>') == 2  # one table per split
    assert html.count("<td>champion</td>") == 2 and "v2" in html
    assert "<td>buy_and_hold</td>" in html and "<td>sharpe</td>" not in html  # metrics are columns
    assert "<th>sharpe</th>" in html and "<th>max_drawdown</th>" in html
    assert "Deflated Sharpe ratio</b> (Bailey" in html and "3 seeds × 2 configurations = 6" in html
    assert "Probability of backtest overfitting</b> (CSCV" in html and "Bootstrap 95% interval" in html
    assert '<span class="fail">fail</span>' in html and "a &lt; b" in html  # details are escaped
    assert "<td>selected</td>" in html and "share of time" in html and "60.0%" in html


def test_the_report_is_self_contained(tmp_path: Path) -> None:
    html = _report(tmp_path, champion=False)
    assert "http://" not in html and "https://" not in html
    assert not re.search(r"""(?:src|href)=["'](?!data:)""", html)  # every src/href is inline data
    assert html.count('src="data:image/png;base64,') == 2
    assert "<script" not in html and "@import" not in html and "url(" not in html
    assert "none (first version)" in html


def test_a_split_table_averages_folds_seeds_and_symbols() -> None:
    rows = _metrics(1, 3)
    html = split_table(rows, "val")
    agent = rows[(rows["strategy"] == "agent") & (rows["split"] == "val")]
    assert f"{agent['sharpe'].mean():+.2f}" in html and f"<td>{len(agent)}</td>" in html
