"""The reports the pipeline writes under ``var/`` (Data Docs, training reports, walk-forward results), found
on disk for ``krx reports`` and the demo's summary; each opens from the file system without a network."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

#: Where each kind of report lives under the var folder.
DATA_DOCS = "data_docs"
REPORTS = "reports"
EVALUATION = "evaluate"


@dataclass(frozen=True)
class Report:
    """One report on disk: what it is, a short description, where, and when it was last written."""

    kind: str
    """``data docs`` (GX validation runs), ``training`` (a registered model version), ``walk-forward``,
    ``evaluation`` (``krx evaluate`` on real KRX bars), ``trading`` (an end-of-day report)."""
    name: str
    path: Path
    written: dt.datetime


def _written(path: Path) -> dt.datetime:
    return dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC)


def find_reports(var_dir: Path) -> list[Report]:
    """Every report under ``var_dir``: the Data Docs index (with its count of validation runs), each
    training report (``reports/<spec>/<model>-v<N>.html``) and each walk-forward's metrics CSV and figures
    (``reports/<symbol>/walkforward_metrics.csv``, ``fold_*.png``), the trading end-of-day reports
    (``reports/trading/<day>/eod-<account>-<day>.html``) and the real-data evaluation
    (``evaluate/report.html``)."""
    var_dir = var_dir.resolve()
    found: list[Report] = []
    index = var_dir / DATA_DOCS / "index.html"
    if index.is_file():
        runs = sum(1 for _ in (var_dir / DATA_DOCS / "validations").rglob("*.html"))
        found.append(
            Report(
                "data docs", f"Great Expectations Data Docs, {runs} validation runs", index, _written(index)
            )
        )
    for html in sorted((var_dir / REPORTS).glob("*/*.html")):
        found.append(Report("training", f"{html.stem} ({html.parent.name})", html, _written(html)))
    for csv in sorted((var_dir / REPORTS).glob("*/walkforward_metrics.csv")):
        figures = len(list(csv.parent.glob("fold_*.png")))
        name = f"{csv.parent.name} metrics and {figures} figures (fold_*.png beside it)"
        found.append(Report("walk-forward", name, csv, _written(csv)))
    for html in sorted((var_dir / REPORTS / "trading").glob("*/eod-*.html")):
        found.append(Report("trading", f"end of day {html.stem.removeprefix('eod-')}", html, _written(html)))
    evaluation = var_dir / EVALUATION / "report.html"
    if evaluation.is_file():
        found.append(
            Report("evaluation", "agent on real KRX bars (krx evaluate)", evaluation, _written(evaluation))
        )
    return found
