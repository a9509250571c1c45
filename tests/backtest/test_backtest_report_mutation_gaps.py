"""``evaluate_symbol`` as the ``backtest`` command uses it: the stored bars it reads, the training budget and
walk-forward it asks for, the metrics CSV and the summary table it hands back, and the instrument a symbol
is traded as (gaps found by mutation testing, ``tools/mutation.py``). The walk-forward itself is a stand-in
that records its inputs: training agents is the walk-forward tests' job."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from pipeline.backtest import report
from pipeline.backtest.report import SUMMARY_METRICS, EvaluationSpec, env_for, evaluate_symbol
from pipeline.backtest.walkforward import WalkForwardResult
from pipeline.market import InstrumentKind
from pipeline.rl.instruments import instrument_spec

ENGINE = object()  # stands in for the store's engine: only handed on to read_bars


def _bars(n: int = 4, symbol: str = "005930") -> pd.DataFrame:
    """Stored bars as ``read_bars`` returns them (with the store's extra columns)."""
    ts = pd.date_range("2024-01-02", periods=n, freq="D", tz="UTC")
    close = [100.0 + i for i in range(n)]
    return pd.DataFrame(
        {
            "symbol": symbol,
            "interval": "1d",
            "ts": ts,
            "open": [c - 0.5 for c in close],
            "high": [c + 1 for c in close],
            "low": [c - 1 for c in close],
            "close": close,
            "volume": [1000 + i for i in range(n)],
            "turnover": 1e6,
            "source": "krx",
        }
    )


def _metrics() -> pd.DataFrame:
    """Tidy walk-forward metrics: two folds, val and test, the agent and a baseline, plus a column the
    summary table does not show and without ``costs_paid``."""
    rows = []
    for fold in (0, 1):
        for split in ("val", "test"):
            for strategy, ret in (("agent", 0.1), ("buy_and_hold", 0.02)):
                bump = 0.0 if split == "test" else 5.0  # val rows must not leak into the test summary
                rows.append(
                    {
                        "fold": fold,
                        "split": split,
                        "strategy": strategy,
                        "seed": 0,
                        "total_return": ret * (fold + 1) + bump,
                        "sharpe": 1.0 + fold + bump,
                        "max_drawdown": -0.1 * (fold + 1),
                        "turnover": 2.0,
                        "hit_rate": 0.5,
                        "n_trades": 7,
                    }
                )
    return pd.DataFrame(rows)


class _WalkForward:
    """Stands in for ``run_walkforward``: records (series, train config, walk-forward config)."""

    def __init__(self, metrics: pd.DataFrame) -> None:
        self.metrics = metrics
        self.calls: list[tuple[pd.DataFrame, Any, Any]] = []

    def __call__(self, series: pd.DataFrame, config: Any, wf: Any) -> WalkForwardResult:
        self.calls.append((series, config, wf))
        return WalkForwardResult(metrics=self.metrics, folds=[])


@pytest.fixture
def stored(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The store's bars (``bars``, replaceable) and the reads made (``reads``)."""
    state: dict[str, Any] = {"bars": _bars(), "reads": []}

    def read_bars(symbols: str, interval: str = "1d", *, engine: Any = None) -> pd.DataFrame:
        state["reads"].append((symbols, interval, engine))
        return state["bars"]

    monkeypatch.setattr(report, "read_bars", read_bars)
    return state


@pytest.fixture
def walkforward(monkeypatch: pytest.MonkeyPatch) -> _WalkForward:
    fake = _WalkForward(_metrics())
    monkeypatch.setattr(report, "run_walkforward", fake)
    return fake


def _spec(tmp_path: Path, **kwargs: Any) -> EvaluationSpec:
    return EvaluationSpec(**{"symbol": "005930", "out_dir": tmp_path / "reports", **kwargs})


# --- the walk-forward it runs -----------------------------------------------------------------------------


def test_the_symbols_stored_bars_are_read_and_handed_on_as_ohlcv_by_time(
    stored: dict[str, Any], walkforward: _WalkForward, tmp_path: Path
) -> None:
    evaluate_symbol(_spec(tmp_path, interval="1m"), engine=ENGINE)  # type: ignore[arg-type]
    assert stored["reads"] == [("005930", "1m", ENGINE)]
    (series, _, _), *more = walkforward.calls
    assert not more
    assert list(series.columns) == ["open", "high", "low", "close", "volume"]
    expected = _bars().set_index("ts")[["open", "high", "low", "close", "volume"]]
    pd.testing.assert_frame_equal(series, expected)


def test_no_stored_bars_is_an_error_that_says_to_ingest_them(
    stored: dict[str, Any], walkforward: _WalkForward, tmp_path: Path
) -> None:
    stored["bars"] = _bars().iloc[0:0]
    with pytest.raises(ValueError) as err:
        evaluate_symbol(_spec(tmp_path, interval="5m"), engine=ENGINE)  # type: ignore[arg-type]
    assert str(err.value) == "no 5m bars of 005930 in the store: ingest them first"
    assert walkforward.calls == []
    assert not (tmp_path / "reports").exists()


def test_each_fold_and_seed_trains_for_the_given_seconds_with_the_symbols_instrument(
    stored: dict[str, Any], walkforward: _WalkForward, tmp_path: Path
) -> None:
    spec = _spec(tmp_path, symbol="MYFUT", seconds_per_fold=3.5)
    evaluate_symbol(spec, engine=ENGINE, futures_symbol="MYFUT")  # type: ignore[arg-type]
    ((_, config, _),) = walkforward.calls
    assert config.total_steps is None  # only the clock stops training
    assert config.max_seconds == 3.5
    assert config.progress is False
    assert config.env == env_for("MYFUT", None, "MYFUT")
    assert config.env.instrument.kind is InstrumentKind.FUTURES and config.env.levels == (-1.0, 0.0, 1.0)


def test_etfs_from_the_settings_and_a_forced_kind_reach_the_env(
    stored: dict[str, Any], walkforward: _WalkForward, tmp_path: Path
) -> None:
    evaluate_symbol(_spec(tmp_path, symbol="123456"), engine=ENGINE, etfs=("123456",))  # type: ignore[arg-type]
    evaluate_symbol(_spec(tmp_path, symbol="123456", futures=True), engine=ENGINE)  # type: ignore[arg-type]
    kinds = [config.env.instrument.kind for _, config, _ in walkforward.calls]
    assert kinds == [InstrumentKind.ETF, InstrumentKind.FUTURES]


def test_the_walk_forward_gets_the_specs_folds_sizes_seeds_and_figure_folder(
    stored: dict[str, Any], walkforward: _WalkForward, tmp_path: Path
) -> None:
    spec = _spec(tmp_path, folds=4, val_size=11, test_size=13, min_train_size=17, seeds=(3, 5))
    evaluate_symbol(spec, engine=ENGINE)  # type: ignore[arg-type]
    ((_, _, wf),) = walkforward.calls
    assert (wf.n_folds, wf.val_size, wf.test_size, wf.min_train_size) == (4, 11, 13, 17)
    assert wf.seeds == (3, 5)
    assert wf.figures_dir == str(tmp_path / "reports" / "005930")


def test_the_run_is_logged_with_bars_folds_and_seeds(
    stored: dict[str, Any], walkforward: _WalkForward, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    logger = logging.getLogger(report.__name__)
    logger.addHandler(caplog.handler)
    try:
        caplog.set_level(logging.DEBUG, logger=report.__name__)
        evaluate_symbol(_spec(tmp_path, folds=3, seeds=(0, 1)), engine=ENGINE)  # type: ignore[arg-type]
    finally:
        logger.removeHandler(caplog.handler)
    records = {id(r): r for r in caplog.records if r.name == report.__name__}  # seen here and via root
    messages = [(r.levelno, r.getMessage()) for r in records.values()]
    assert messages == [(logging.INFO, "walk-forward on 005930: 4 bars, 3 folds x 2 seeds")]


# --- what it hands back -----------------------------------------------------------------------------------


def test_the_metrics_csv_is_written_in_a_folder_per_symbol(
    stored: dict[str, Any], walkforward: _WalkForward, tmp_path: Path
) -> None:
    result, _, csv = evaluate_symbol(_spec(tmp_path), engine=ENGINE)  # type: ignore[arg-type]
    assert csv == tmp_path / "reports" / "005930" / "walkforward_metrics.csv"
    written = pd.read_csv(csv)
    assert list(written.columns) == list(_metrics().columns)  # no index column
    pd.testing.assert_frame_equal(written, _metrics())
    assert result.metrics is walkforward.metrics


def test_the_summary_is_the_mean_over_test_folds_in_the_tables_column_order(
    stored: dict[str, Any], walkforward: _WalkForward, tmp_path: Path
) -> None:
    _, summary, _ = evaluate_symbol(_spec(tmp_path), engine=ENGINE)  # type: ignore[arg-type]
    # costs_paid is not in these metrics, n_trades is not a summary metric
    assert list(summary.columns) == ["total_return", "sharpe", "max_drawdown", "turnover", "hit_rate"]
    assert list(summary.index) == ["agent", "buy_and_hold"]
    assert summary.loc["agent", "total_return"] == pytest.approx(0.15)  # (0.1 + 0.2) / 2, test rows only
    assert summary.loc["buy_and_hold", "sharpe"] == pytest.approx(1.5)
    assert summary.loc["agent", "max_drawdown"] == pytest.approx(-0.15)


def test_every_summary_metric_is_shown_when_present(
    stored: dict[str, Any], walkforward: _WalkForward, tmp_path: Path
) -> None:
    walkforward.metrics = _metrics().assign(costs_paid=12.0)
    _, summary, _ = evaluate_symbol(_spec(tmp_path), engine=ENGINE)  # type: ignore[arg-type]
    assert list(summary.columns) == SUMMARY_METRICS
    assert SUMMARY_METRICS == ["total_return", "sharpe", "max_drawdown", "turnover", "hit_rate", "costs_paid"]


# --- the instrument a symbol is traded as -----------------------------------------------------------------


def test_the_env_trades_the_kinds_own_instrument_and_levels() -> None:
    assert env_for("005930", None, "KOSPI200F").instrument == instrument_spec(InstrumentKind.STOCK)
    assert env_for("069500", None, "KOSPI200F").instrument == instrument_spec(InstrumentKind.ETF)
    futures = env_for("MYFUT", None, "MYFUT")  # the settings' continuous series, whatever its name
    assert futures.instrument == instrument_spec(InstrumentKind.FUTURES)
    assert futures.levels == (-1.0, 0.0, 1.0)


def test_forcing_stock_trades_a_futures_symbol_long_or_flat() -> None:
    env = env_for("KOSPI200F", False, "KOSPI200F")
    assert env.instrument == instrument_spec(InstrumentKind.STOCK) and env.levels == (0.0, 1.0)
    assert env_for("KOSPI200", True, "KOSPI200F").instrument.kind is InstrumentKind.FUTURES


def test_an_index_is_refused_with_what_to_backtest_instead() -> None:
    with pytest.raises(ValueError) as err:
        env_for("KOSPI200", None, "KOSPI200F")
    assert str(err.value) == "KOSPI200 is an index, which is not tradable: backtest its futures or an ETF"
