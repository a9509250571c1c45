"""The HTML report of a training: one self-contained file (inline CSS, figures as base64 PNG, no external
asset) with the agent against the baselines per split, the gate's verdict, the statistics, the regime
summary and the equity / drawdown / position figures."""

from __future__ import annotations

import base64
import datetime as dt
import html
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.registry.statistics import TrainingStatistics

#: Columns of the agent-vs-baselines table, with their formats.
TABLE_METRICS = {
    "total_return": "{:+.2%}",
    "annual_return": "{:+.2%}",
    "volatility": "{:.2%}",
    "sharpe": "{:+.2f}",
    "sortino": "{:+.2f}",
    "max_drawdown": "{:.2%}",
    "calmar": "{:+.2f}",
    "turnover": "{:.1f}",
    "hit_rate": "{:.1%}",
    "costs_paid": "{:,.0f}",
}
#: Figures embedded at most (a universe has one per symbol and fold).
MAX_FIGURES = 12
_CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}
td,th{border:1px solid #ddd;padding:.25em .6em;text-align:right}th{background:#f4f4f4}
td:first-child,th:first-child{text-align:left}.agent{font-weight:bold;background:#eef6ff}
.pass{color:#176f2c}.fail{color:#b00020}.note{color:#666;font-size:.9em}
img{max-width:100%;border:1px solid #eee;margin:.5em 0}
"""


@dataclass
class ReportData:
    """Everything the report shows, gathered by the caller (no I/O here)."""

    spec: str
    model_name: str
    version: str
    run_id: str
    outcome: str
    summary: str
    rules: list[dict[str, Any]]
    """The gate's rules: name, passed, value, threshold, detail."""
    metrics: pd.DataFrame
    """Walk-forward rows of the selected configuration: agent (every seed) and baselines."""
    trials: pd.DataFrame
    """One row per trial: config, seed, val_sharpe, test_sharpe, selected."""
    statistics: TrainingStatistics
    champion: pd.DataFrame | None = None
    """The champion's agent rows on the same windows (None: there was no champion)."""
    champion_version: str | None = None
    regimes: pd.DataFrame | None = None
    """The registered agent's regime table (regime, share, mean_return, ann_volatility, n_bars)."""
    regime_note: str = ""
    regime_figure: Path | None = None
    """The registered agent's regimes over the bars (a price chart coloured by regime)."""
    figures: list[Path] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    """Fingerprint of the training bars (rows, first, last, sha256, symbols)."""
    aliases: dict[str, str | None] = field(default_factory=dict)


def _fmt(value: Any, pattern: str = "{:.4g}") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return pattern.format(value) if isinstance(value, int | float) else html.escape(str(value))


def _table(header: Sequence[str], rows: Iterable[Sequence[str]], classes: Sequence[str] = ()) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        cls = f' class="{classes[i]}"' if i < len(classes) and classes[i] else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def split_table(metrics: pd.DataFrame, split: str, champion: pd.DataFrame | None = None) -> str:
    """Agent (mean over folds, seeds and symbols), champion and baselines on ``split``."""
    rows = metrics[metrics["split"] == split]
    columns = [c for c in TABLE_METRICS if c in rows.columns]
    means = rows.groupby("strategy")[columns].mean()
    counts = rows.groupby("strategy").size()
    order = ["agent", *sorted(s for s in means.index if s != "agent")]
    table_rows, classes = [], []
    for strategy in [s for s in order if s in means.index]:
        cells = [_fmt(means.loc[strategy, c], TABLE_METRICS[c]) for c in columns]
        table_rows.append([html.escape(strategy), *cells, str(int(counts[strategy]))])
        classes.append("agent" if strategy == "agent" else "")
    if champion is not None and not champion.empty:
        champ = champion[champion["split"] == split][columns].mean()
        table_rows.insert(1, ["champion", *[_fmt(champ[c], TABLE_METRICS[c]) for c in columns], "–"])
        classes.insert(1, "")
    return _table(["strategy", *columns, "rows"], table_rows, classes)


def _gate(data: ReportData) -> str:
    rows = [
        [
            html.escape(str(r["name"])),
            '<span class="pass">pass</span>' if r["passed"] else '<span class="fail">fail</span>',
            _fmt(r["value"]),
            _fmt(r["threshold"]),
            html.escape(str(r["detail"])),
        ]
        for r in data.rules
    ]
    aliases = ", ".join(f"{k} → v{v}" for k, v in data.aliases.items() if v) or "none"
    return (
        f"<p><b>{html.escape(data.summary)}</b></p>"
        f"<p>Aliases after the gate: {html.escape(aliases)}</p>"
        + _table(["rule", "outcome", "value", "threshold", "detail"], rows)
    )


def _statistics(s: TrainingStatistics) -> str:
    parts = [f"<p>Trials: {s.n_seeds} seeds × {s.n_configurations} configurations = {s.n_trials}.</p>"]
    if s.dsr is not None:
        d = s.dsr
        parts.append(
            "<p><b>Deflated Sharpe ratio</b> (Bailey &amp; López de Prado 2014): probability "
            f"<b>{d.dsr_prob:.3f}</b> that the selected trial's true Sharpe exceeds "
            f"SR0 = {d.sr0:.4f} per bar "
            f"(the best of {d.n_trials} skill-less trials); observed SR {d.sr:.4f} per bar over T = {d.T} "
            f"validation bars, skewness {d.skew:.2f}, kurtosis {d.kurtosis:.2f}. (The gate's own rule "
            "judges the selected configuration's mean Sharpe over its seeds.)</p>"
        )
    else:
        parts.append(f"<p><b>Deflated Sharpe ratio</b>: not computed ({html.escape(s.dsr_note)}).</p>")
    if s.pbo is not None:
        parts.append(
            "<p><b>Probability of backtest overfitting</b> (CSCV, Bailey et al. 2015): "
            f"<b>{s.pbo.pbo:.3f}</b> over {len(s.pbo.logits)} splits of {s.pbo_splits} blocks; "
            f"P(OOS loss) {s.pbo.prob_oos_loss:.3f}, degradation slope {_fmt(s.pbo.degradation_slope)}.</p>"
        )
    else:
        parts.append(
            f"<p><b>Probability of backtest overfitting</b>: not computed ({html.escape(s.pbo_note)}).</p>"
        )
    ci_rows = [
        [split, *(_fmt(v, "{:+.3f}") for v in (ci or (math.nan,) * 3))] for split, ci in s.sharpe_ci.items()
    ]
    parts.append("<p><b>Bootstrap 95% interval</b> of the annualised Sharpe over folds and seeds:</p>")
    parts.append(_table(["split", "low", "mean", "high"], ci_rows))
    if s.ci_note:
        parts.append(f'<p class="note">{html.escape(s.ci_note)}</p>')
    return "".join(parts)


def _trials(trials: pd.DataFrame) -> str:
    rows = [
        [
            str(int(t.config)),
            str(int(t.seed)),
            _fmt(t.val_sharpe, "{:+.3f}"),
            _fmt(t.test_sharpe, "{:+.3f}"),
            "selected" if t.selected else "",
        ]
        for t in trials.itertuples()
    ]
    classes = ["agent" if t.selected else "" for t in trials.itertuples()]
    return _table(["configuration", "seed", "val Sharpe", "test Sharpe", ""], rows, classes)


def _regimes(data: ReportData) -> str:
    if data.regimes is None or data.regimes.empty:
        return f'<p class="note">No regime model ({html.escape(data.regime_note or "regimes disabled")}).</p>'
    rows = [
        [
            str(int(r.regime)),
            _fmt(r.share, "{:.1%}"),
            _fmt(r.mean_return, "{:+.4%}"),
            _fmt(r.ann_volatility, "{:.1%}"),
            str(int(r.n_bars)),
        ]
        for r in data.regimes.itertuples()
    ]
    note = f'<p class="note">{html.escape(data.regime_note)}</p>' if data.regime_note else ""
    header = ["regime", "share of time", "mean next-bar log return", "annualised volatility", "bars"]
    chart = _figure(data.regime_figure) if data.regime_figure is not None else ""
    return note + _table(header, rows) + chart


def _figure(path: Path) -> str:
    encoded = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<figure><img alt="{html.escape(path.stem)}" src="data:image/png;base64,{encoded}"></figure>'


def render_report(data: ReportData) -> str:
    """The report as one HTML document (no external reference: it opens offline, as an MLflow artifact)."""
    fp = data.data
    facts = [
        ["spec", html.escape(data.spec)],
        ["registered model", f"{html.escape(data.model_name)} v{html.escape(data.version)}"],
        ["training run", html.escape(data.run_id)],
        ["bars", f"{_fmt(fp.get('rows'))} from {_fmt(fp.get('first'))} to {_fmt(fp.get('last'))}"],
        ["bars sha256", html.escape(str(fp.get("sha256", "–")))],
        [
            "champion compared",
            f"v{data.champion_version}" if data.champion_version else "none (first version)",
        ],
        ["written", dt.datetime.now(dt.UTC).isoformat(timespec="seconds")],
    ]
    splits = "".join(
        f"<h3>{split}</h3>" + split_table(data.metrics, split, data.champion) for split in ("val", "test")
    )
    figures = "".join(_figure(p) for p in data.figures[:MAX_FIGURES])
    more = len(data.figures) - MAX_FIGURES
    if more > 0:
        figures += f'<p class="note">{more} more figures are artifacts of the seed run.</p>'
    body = (
        f"<h1>{html.escape(data.model_name)} v{html.escape(data.version)}: training report</h1>"
        + _table(["", ""], facts)
        + "<h2>Agent vs baselines</h2><p class='note'>Means over folds, seeds and symbols; Sharpe, Sortino "
        "and volatility annualised; costs in KRW.</p>"
        + splits
        + "<h2>Promotion gate</h2>"
        + _gate(data)
        + "<h2>Statistics</h2>"
        + _statistics(data.statistics)
        + "<h2>Trials</h2>"
        + _trials(data.trials)
        + "<h2>Regimes</h2>"
        + _regimes(data)
        + "<h2>Equity, drawdown and position (test windows, selected seed)</h2>"
        + (figures or '<p class="note">No figure.</p>')
    )
    title = html.escape(f"{data.model_name} v{data.version}")
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        f"<style>{_CSS}</style></head><body>{body}</body></html>"
    )
