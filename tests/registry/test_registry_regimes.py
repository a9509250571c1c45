"""Regimes per spec: fitted on the first fold's training window only, stored idempotently by (symbol,
interval, ts, spec), logged to the spec's experiment, skipped when a spec has too few bars."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd
import pytest
import sqlalchemy as sa

from pipeline.backtest.walkforward import common_calendar, make_folds
from pipeline.config import get_settings
from pipeline.registry.contracts import RegimesSummary, specs_in
from pipeline.registry.data import load_spec_data, regime_window
from pipeline.registry.regimes import cluster_spec, regimes_extra
from pipeline.registry.specs import resolve_spec
from pipeline.registry.tracking import configure_mlflow
from pipeline.store import read_regimes, upsert_bars, write_regimes
from pipeline.store.db import create_store_engine
from tests.registry.stored import SYMBOLS, store_market, use_specs

pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy:DeprecationWarning")


@pytest.fixture
def market(monkeypatch: pytest.MonkeyPatch) -> pd.DataFrame:
    use_specs(monkeypatch)
    return store_market()


def test_the_regime_window_is_the_first_folds_training_window_before_the_first_validation(
    market: pd.DataFrame,
) -> None:
    spec = resolve_spec("stocks-1d", get_settings())
    data = load_spec_data(spec)
    first, last = regime_window(data.folds, data.calendar)
    fold = data.folds[0]
    assert (first, last) == (data.calendar[0], data.calendar[fold.train.stop - 1])
    # The window ends an embargo before the first validation bar: no validation or test bar is inside.
    assert data.calendar.get_loc(data.dates(fold)["val"][0]) - data.calendar.get_loc(last) == spec.embargo + 1
    assert fold == make_folds(len(common_calendar(data.universe)), spec.walkforward_config())[0]


def test_bars_after_the_window_do_not_change_the_fit_and_bars_inside_do(market: pd.DataFrame) -> None:
    first = cluster_spec("kospi200f-1d")
    data = load_spec_data(resolve_spec("kospi200f-1d", get_settings()))
    _, last = regime_window(data.folds, data.calendar)
    series = market[market["symbol"] == "KOSPI200F"].set_index("ts")
    after = series[series.index > last].iloc[[10]].reset_index()
    upsert_bars(after.assign(close=after["close"] * 1.05, high=after["high"] * 1.05), source="test")
    assert cluster_spec("kospi200f-1d")["model_id"] == first["model_id"]
    inside = series[series.index <= last].iloc[[-30]].reset_index()
    upsert_bars(inside.assign(close=inside["close"] * 1.05, high=inside["high"] * 1.05), source="test")
    refit = cluster_spec("kospi200f-1d")
    assert refit["model_id"] != first["model_id"]
    labels = read_regimes("kospi200f-1d")
    assert set(labels["model_id"]) == {refit["model_id"]} and len(labels) == len(series)


def test_clustering_stores_labels_once_and_logs_k_regimes_and_a_chart(market: pd.DataFrame) -> None:
    summary = cluster_spec("stocks-1d")
    again = cluster_spec("stocks-1d")
    assert summary == {**again, "run_id": summary["run_id"]}  # a rerun writes the same labels
    labels = read_regimes("stocks-1d")
    assert len(labels) == summary["labels"] == 1000 and set(labels["symbol"]) == set(SYMBOLS["stocks-1d"])
    assert set(labels["run_id"]) == {again["run_id"]} and labels["regime"].max() == summary["k"] - 1
    assert (labels["regime"] == -1).sum() == 2 * 20  # each symbol's regime features warm up for 20 bars
    client = configure_mlflow(get_settings())
    run = client.get_run(summary["run_id"])
    assert client.get_experiment(run.info.experiment_id).name == "krx-a3c-stocks-1d"
    metrics = run.data.metrics
    assert metrics["regimes/k"] == summary["k"] and "regimes/bic/k2" in metrics
    shares = [metrics[f"regimes/{k}/share"] for k in range(summary["k"])]
    assert sum(shares) == pytest.approx(1.0)
    assert run.data.params["window.last"] == summary["train_end"]
    chart = mlflow.artifacts.download_artifacts(run_id=summary["run_id"], artifact_path="regimes/regimes.png")
    assert Path(chart).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_spec_with_too_few_bars_is_skipped_and_writes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    use_specs(monkeypatch)
    store_market(n=250)
    summary = cluster_spec("stocks-1d")
    assert summary["status"] == "skipped" and "too few" in summary["reason"]
    assert read_regimes("stocks-1d").empty
    assert regimes_extra([summary, None]) is None


def test_writing_a_new_fit_replaces_the_specs_labels_and_leaves_other_specs_alone(store_url: str) -> None:
    engine = create_store_engine(store_url)
    ts = pd.date_range("2025-01-01", periods=3, freq="D", tz="Asia/Seoul")
    old = pd.DataFrame({"symbol": ["A1"] * 3 + ["B1"] * 3, "interval": "1d", "ts": [*ts, *ts], "regime": 0})
    write_regimes(old, "spec-a", "m1", "run1", engine)
    write_regimes(old, "spec-b", "m1", "run1", engine)
    assert write_regimes(old, "spec-a", "m1", "run1", engine).removed == 0  # rerun: no change
    new = old[old["symbol"] == "A1"].assign(regime=[1, 2, -1])
    written = write_regimes(new, "spec-a", "m2", "run2", engine)
    assert (written.written, written.removed) == (3, 3)
    labels = read_regimes("spec-a", engine=engine)
    assert labels["regime"].tolist() == [1, 2, -1] and set(labels["model_id"]) == {"m2"}
    assert labels["ts"].dt.tz is not None and labels["ts"].iloc[0] == ts[0]
    assert len(read_regimes("spec-b", engine=engine)) == 6
    assert len(read_regimes("spec-b", symbols="B1", start=ts[1], engine=engine)) == 2
    with pytest.raises(ValueError, match="repeat"):
        write_regimes(pd.concat([new, new]), "spec-a", "m3", None, engine)
    engine.dispose()


def test_the_regimes_event_names_the_fitted_specs_and_a_bad_extra_names_none() -> None:
    fitted = RegimesSummary(
        spec="stocks-1d",
        status="fitted",
        reason="",
        model_id="rg-1",
        run_id="r",
        k=2,
        criterion="bic",
        train_start="",
        train_end="",
        labels=10,
    )
    extra = regimes_extra([fitted])
    assert extra == {"specs": ["stocks-1d"], "model_ids": {"stocks-1d": "rg-1"}}
    assert specs_in([extra, {"specs": ["stocks-1d", "kospi200f-1d"]}, {}, None, "x"]) == [
        "stocks-1d",
        "kospi200f-1d",
    ]


def test_the_store_keys_regimes_by_spec(store_url: str) -> None:
    engine = create_store_engine(store_url)
    pk = sa.inspect(engine).get_pk_constraint("regimes")["constrained_columns"]
    assert pk == ["symbol", "interval", "ts", "spec"]
    engine.dispose()
