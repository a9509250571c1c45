"""``krx reports`` lists the reports under KRX_VAR_DIR with the paths to open."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from pipeline.cli import app

runner = CliRunner()


def _write(path: Path, text: str = "x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_reports_lists_data_docs_training_reports_walk_forwards_and_the_evaluation(
    isolated_settings: Path,
) -> None:
    empty = runner.invoke(app, ["reports"], terminal_width=200)
    assert empty.exit_code == 0 and "no reports written yet" in empty.output
    index = _write(isolated_settings / "data_docs" / "index.html")
    for run in ("a", "b"):
        _write(isolated_settings / "data_docs" / "validations" / "bars" / run / "t" / "bars-bars.html")
    training = _write(isolated_settings / "reports" / "kospi200f-1d" / "krx-a3c-kospi200f-1d-v3.html")
    metrics = _write(isolated_settings / "reports" / "KOSPI200F" / "walkforward_metrics.csv")
    _write(isolated_settings / "reports" / "KOSPI200F" / "fold_0_test.png")
    evaluation = _write(isolated_settings / "evaluate" / "report.html")

    listed = json.loads(runner.invoke(app, ["reports", "--json"]).output)
    assert [(r["kind"], r["path"]) for r in listed] == [
        ("data docs", str(index.resolve())),
        ("training", str(training.resolve())),
        ("walk-forward", str(metrics.resolve())),
        ("evaluation", str(evaluation.resolve())),
    ]
    assert "2 validation runs" in listed[0]["name"] and "1 figures" in listed[2]["name"]
    table = runner.invoke(app, ["reports"], terminal_width=250)
    assert table.exit_code == 0 and "krx-a3c-kospi200f-1d-v3" in table.output and "data docs" in table.output
