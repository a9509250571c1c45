"""Regime clustering per model spec: fit on the spec's training window only, label every stored bar
causally, store the labels (``regimes`` table) and log the fit to the spec's MLflow experiment — chosen K
and its criterion, per-regime return, volatility and share of time, a price chart coloured by regime."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import tempfile
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: figures go to files only
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sqlalchemy.engine import Engine

from pipeline.config import Settings, get_settings
from pipeline.features import normalise_ohlcv
from pipeline.regimes.model import RegimeModel
from pipeline.registry.contracts import RegimesExtra, RegimesSummary
from pipeline.registry.data import NotEnoughData, SpecData, load_spec_data, regime_window
from pipeline.registry.specs import ModelSpec, resolve_spec
from pipeline.registry.tracking import Tracker, bars_fingerprint, ensure_experiment
from pipeline.rl.universe import Universe, fit_pooled_regimes
from pipeline.store import write_regimes

log = logging.getLogger(__name__)
#: Symbols drawn in the regime chart (one panel each); a universe's others are summarised only.
CHART_SYMBOLS = 4


def window_of(universe: Universe, first: pd.Timestamp, last: pd.Timestamp) -> Universe:
    """Every symbol's bars with ``first <= ts <= last``."""
    return {s: b[(b.index >= first) & (b.index <= last)] for s, b in universe.items()}


def regime_labels(model: RegimeModel, universe: Universe, interval: str) -> pd.DataFrame:
    """Causal labels of every bar (-1 while the regime features warm up): symbol, interval, ts, regime."""
    frames = [
        pd.DataFrame({"symbol": s, "interval": interval, "ts": b.index, "regime": model.predict(b)})
        for s, b in universe.items()
    ]
    return pd.concat(frames, ignore_index=True)


def regime_table(model: RegimeModel, universe: Universe, periods_per_year: float) -> pd.DataFrame:
    """Per regime, pooled over symbols: share of labelled bars, mean and annualised volatility of the next
    bar's log return (the return the regime precedes), bar count — ``RegimeModel.summary`` over many."""
    labels, nexts = [], []
    for bars in universe.values():
        labels.append(model.predict(bars))
        close = normalise_ohlcv(bars)["close"].astype(np.float64)
        nexts.append(np.log(close).diff().shift(-1).to_numpy())
    lab, nxt = np.concatenate(labels), np.concatenate(nexts)
    valid = max(int((lab >= 0).sum()), 1)
    rows = []
    for k in range(model.n_regimes):
        r = nxt[(lab == k) & ~np.isnan(nxt)]
        rows.append(
            {
                "regime": k,
                "share": float((lab == k).sum() / valid),
                "mean_return": float(r.mean()) if len(r) else math.nan,
                "ann_volatility": float(r.std() * math.sqrt(periods_per_year)) if len(r) > 1 else math.nan,
                "n_bars": int((lab == k).sum()),
            }
        )
    return pd.DataFrame(rows)


def criterion_scores(model: RegimeModel) -> dict[int, float]:
    """The selection score of each K tried, in the criterion's own sense: BIC (lower is better) or the
    silhouette (higher is better; the model stores it negated)."""
    sign = -1.0 if model.config.criterion == "silhouette" else 1.0
    return {int(k): sign * float(v) for k, v in model.scores.items()}


def plot_regimes(
    universe: Universe,
    labels: pd.DataFrame,
    path: Path,
    title: str,
    window: tuple[pd.Timestamp, pd.Timestamp],
) -> Path:
    """Close of each symbol (up to :data:`CHART_SYMBOLS`) with every bar coloured by its regime; the
    fitting window is shaded."""
    symbols = list(universe)[:CHART_SYMBOLS]
    fig, axes = plt.subplots(len(symbols), 1, figsize=(10, 2.6 * len(symbols) + 0.6), squeeze=False)
    cmap = plt.get_cmap("tab10")
    for ax, symbol in zip(axes[:, 0], symbols, strict=True):
        close = normalise_ohlcv(universe[symbol])["close"]
        regime = labels.loc[labels["symbol"] == symbol, "regime"].to_numpy()
        ax.plot(close.index, close.to_numpy(), color="0.75", lw=0.8, zorder=1)
        for k in sorted(set(regime.tolist()) - {-1}):
            hit = regime == k
            ax.scatter(close.index[hit], close.to_numpy()[hit], s=6, color=cmap(k % 10), label=f"regime {k}")
        ax.axvspan(window[0], window[1], color="0.9", zorder=0, label="fit window")
        ax.set_ylabel(symbol)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize=7, ncol=5)
    axes[0, 0].set_title(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def model_id(spec: ModelSpec, window_bars: Universe) -> str:
    """Content id of a fit: the spec, its regime config and the training-window bars (same inputs, same
    id — a rerun rewrites identical rows)."""
    regimes = asdict(spec.train_config().regimes)
    long = pd.concat([b.assign(symbol=s) for s, b in window_bars.items()])
    payload = json.dumps(
        [spec.name, spec.interval, regimes, bars_fingerprint(long)["sha256"]], sort_keys=True
    )
    return "rg-" + hashlib.sha256(payload.encode()).hexdigest()[:16]


def _skipped(spec: str, reason: str) -> RegimesSummary:
    return RegimesSummary(
        spec=spec,
        status="skipped",
        reason=reason,
        model_id="",
        run_id="",
        k=0,
        criterion="",
        train_start="",
        train_end="",
        labels=0,
    )


def _log_fit(
    tracker: Tracker, data: SpecData, model: RegimeModel, table: pd.DataFrame, mid: str, chart: Path
) -> str:
    """One MLflow run ``<spec>-regimes`` in the spec's experiment: params, K and scores, per-regime
    metrics, the summary table, the chart and the fitted model. Returns its run id."""
    spec, client = data.spec, tracker.client
    experiment = ensure_experiment(client, spec.registered_model_name, tracker.settings)
    tags = {"krx.spec": spec.name, "krx.kind": "regimes", "regimes.model_id": mid}
    run_id = str(client.create_run(experiment, run_name=f"{spec.name}-regimes", tags=tags).info.run_id)
    first, last = regime_window(data.folds, data.calendar)
    params = {f"regimes.{k}": v for k, v in asdict(model.config).items()}
    params |= {"window.first": str(first), "window.last": str(last), "symbols": ",".join(data.universe)}
    tracker.log_params(run_id, params)
    client.set_tag(run_id, "regimes.criterion", model.config.criterion)
    values = {"regimes/k": float(model.n_regimes)}
    values |= {f"regimes/{model.config.criterion}/k{k}": v for k, v in criterion_scores(model).items()}
    for row in table.itertuples():
        for name in ("mean_return", "ann_volatility", "share"):
            values[f"regimes/{row.regime}/{name}"] = float(getattr(row, name))
    tracker.log_metrics(run_id, values)
    client.log_text(run_id, table.to_csv(index=False), "regimes/summary.csv")
    client.log_artifact(run_id, str(chart), "regimes")
    with tempfile.TemporaryDirectory(prefix="krx-regimes-") as tmp:
        model.save(Path(tmp) / "model")
        client.log_artifacts(run_id, str(Path(tmp) / "model"), "regimes/model")
    return run_id


def cluster_spec(
    name: str, settings: Settings | None = None, engine: Engine | None = None, end: object = None
) -> RegimesSummary:
    """Fit spec ``name``'s regime model on its training window (:func:`regime_window`), label every stored
    bar of its symbols (``ts < end``), store the labels and log the fit. A spec without enough bars for
    its folds is skipped with the reason (nothing written)."""
    s = settings or get_settings()
    spec = resolve_spec(name, s)
    try:
        data = load_spec_data(spec, end, engine)
    except NotEnoughData as exc:
        log.warning("regimes of %s skipped: %s", name, exc)
        return _skipped(name, str(exc))
    first, last = regime_window(data.folds, data.calendar)
    fit_bars = window_of(data.universe, first, last)
    model = fit_pooled_regimes(spec.train_config().regimes, fit_bars.values())
    labels = regime_labels(model, data.universe, spec.interval)
    table = regime_table(model, fit_bars, spec.periods_per_year)
    mid = model_id(spec, fit_bars)
    tracker = Tracker(s)
    with tempfile.TemporaryDirectory(prefix="krx-regimes-") as tmp:
        title = f"{spec.name}: {model.n_regimes} regimes ({model.config.criterion})"
        chart = plot_regimes(data.universe, labels, Path(tmp) / "regimes.png", title, (first, last))
        run_id = _log_fit(tracker, data, model, table, mid, chart)
    try:
        written = write_regimes(labels, spec.name, mid, run_id, engine)
    except BaseException:
        tracker.end_run(run_id, "FAILED")
        raise
    tracker.end_run(run_id)
    log.info(
        "regimes of %s: K=%d by %s, %d labels", name, model.n_regimes, model.config.criterion, written.written
    )
    return RegimesSummary(
        spec=name,
        status="fitted",
        reason="",
        model_id=mid,
        run_id=run_id,
        k=model.n_regimes,
        criterion=model.config.criterion,
        train_start=str(first),
        train_end=str(last),
        labels=written.written,
    )


def regimes_extra(summaries: Iterable[RegimesSummary | None]) -> RegimesExtra | None:
    """The ``regimes`` asset-event extra naming the fitted specs, or None when none was fitted."""
    fitted = [s for s in summaries if s is not None and s["status"] == "fitted"]
    if not fitted:
        return None
    return RegimesExtra(
        specs=[s["spec"] for s in fitted], model_ids={s["spec"]: s["model_id"] for s in fitted}
    )
