"""Walk-forward folds, a full small walk-forward on real S&P 500 bars shipped by ``arch``, and one over
two symbols with different calendars."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.backtest import walkforward
from pipeline.backtest.metrics import METRIC_NAMES
from pipeline.backtest.policies import BASELINES
from pipeline.backtest.walkforward import WalkForwardConfig, make_folds, run_walkforward
from pipeline.regimes.model import RegimeConfig
from pipeline.rl.config import TrainConfig
from pipeline.rl.env import EnvConfig
from pipeline.rl.instruments import stock_spec
from pipeline.rl.synthetic import random_walk_bars, regime_switching_bars
from pipeline.rl.train import TrainResult, train


def test_folds_are_time_ordered_with_embargo_and_tile_the_end() -> None:
    cfg = WalkForwardConfig(n_folds=3, val_size=50, test_size=100, embargo=5, min_train_size=200)
    folds = make_folds(1000, cfg)
    assert [f.test for f in folds] == [slice(700, 800), slice(800, 900), slice(900, 1000)]
    for f in folds:
        assert f.train.start == 0  # expanding window
        assert f.train.stop + 5 == f.val.start and f.val.stop + 5 == f.test.start
    rolling = make_folds(
        1000,
        WalkForwardConfig(n_folds=2, val_size=50, test_size=100, rolling_train_size=300, min_train_size=200),
    )
    assert all(f.train.stop - f.train.start == 300 for f in rolling)
    with pytest.raises(ValueError, match="training bars"):
        make_folds(400, cfg)


@pytest.fixture(scope="module")
def sp500():
    arch_data = pytest.importorskip("arch.data.sp500")
    return arch_data.load().iloc[-1600:]  # 2012-08 .. 2018-12, daily


@pytest.mark.slow
def test_walkforward_on_real_sp500_reports_every_metric_for_agent_and_baselines(sp500, tmp_path) -> None:
    config = TrainConfig(
        mode="sync",
        total_steps=6_000,
        progress=False,
        env=EnvConfig(instrument=stock_spec(tick_size=0.01), window=4, episode_length=128, initial_cash=1e6),
        regimes=RegimeConfig(k_min=2, k_max=3),
    )
    wf = WalkForwardConfig(
        n_folds=2, val_size=126, test_size=126, embargo=5, figures_dir=str(tmp_path / "figs")
    )
    result = run_walkforward(sp500, config, wf)
    m = result.metrics
    assert set(m["strategy"]) == {"agent", *BASELINES}
    assert len(m) == 2 * 2 * (1 + len(BASELINES))  # folds x splits x strategies
    assert set(METRIC_NAMES) <= set(m.columns)
    always_defined = [c for c in METRIC_NAMES if c not in {"sortino", "calmar", "hit_rate"}]
    assert np.isfinite(m[always_defined].to_numpy(dtype=float)).all()
    hold = m[m["strategy"] == "buy_and_hold"]
    assert (hold["exposure"] > 0.95).all() and (hold["n_trades"] == 1).all()
    assert (m.loc[m["strategy"] == "agent", "train_steps"] >= 6_000).all()
    assert [p.name for p in result.figures] == ["fold_0_test.png", "fold_1_test.png"]
    assert set(result.summary().index) == {"agent", *BASELINES}
    # Test windows are the last 2 x 126 bars and never overlap the training data.
    assert m.loc[m["split"] == "test", "end"].max() == sp500.index[-1]


@pytest.mark.slow
def test_walkforward_over_two_symbols_gives_rows_per_symbol_and_never_trains_on_any_val_or_test_date(
    monkeypatch, tmp_path
) -> None:
    cheap = regime_switching_bars(600, seed=4, start_price=3_000.0)
    dear = random_walk_bars(640, seed=5, start_price=200_000.0).iloc[40:]  # listed later, then a halt:
    dear = dear.drop(dear.index[300:320])  # the two symbols have different calendars
    seen: list[dict[str, pd.DataFrame]] = []

    def spy(config: TrainConfig, data: dict[str, pd.DataFrame], instruments: object = None) -> TrainResult:
        seen.append(data)
        return train(config, data, instruments)

    monkeypatch.setattr(walkforward, "train", spy)
    config = TrainConfig(
        mode="sync",
        total_steps=800,
        progress=False,
        env=EnvConfig(window=4, episode_length=64),
        regimes=RegimeConfig(k_min=2, k_max=3),
    )
    wf = WalkForwardConfig(
        n_folds=2, val_size=60, test_size=60, embargo=5, min_train_size=250, figures_dir=str(tmp_path)
    )
    result = run_walkforward({"CHEAP": cheap, "DEAR": dear}, config, wf)
    m, calendar = result.metrics, result.calendar
    assert calendar is not None and calendar.equals(cheap.index.union(dear.index))
    per_window = m.groupby(["fold", "split", "symbol"])["strategy"].apply(set)
    assert len(per_window) == 2 * 2 * 2 and all(s == {"agent", *BASELINES} for s in per_window)
    assert len(seen) == len(result.folds)  # one agent per fold (and seed) over every symbol
    for fold, data in zip(result.folds, seen, strict=True):
        dates = fold.dates(calendar)
        assert set(data) == {"CHEAP", "DEAR"}
        last_trained = max(bars.index.max() for bars in data.values())
        # Every symbol's training ends an embargo of calendar bars before the fold's validation window,
        # and no row of any symbol's val or test window starts before it.
        assert calendar.get_loc(dates["val"][0]) - calendar.get_loc(last_trained) == wf.embargo + 1
        rows = m[m["fold"] == fold.index]
        for split in ("val", "test"):
            window = rows[rows["split"] == split]
            assert (window["start"] >= dates[split][0]).all() and (window["end"] <= dates[split][1]).all()
    assert m.loc[m["split"] == "test", "end"].max() == calendar[-1]
    assert set(result.summary(by_symbol=True).index.get_level_values("symbol")) == {"CHEAP", "DEAR"}
    assert sorted(p.name for p in result.figures)[:2] == ["fold_0_test_CHEAP.png", "fold_0_test_DEAR.png"]


def test_walkforward_on_one_symbol_trains_each_fold_on_its_training_bars_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bars = regime_switching_bars(420, seed=2)
    seen: list[pd.DataFrame] = []

    def spy(config: TrainConfig, data: pd.DataFrame, instruments: object = None) -> TrainResult:
        seen.append(data)
        return train(config, data, instruments)

    monkeypatch.setattr(walkforward, "train", spy)
    config = TrainConfig(
        mode="sync",
        total_steps=400,
        progress=False,
        env=EnvConfig(window=4, episode_length=32),
        regimes=RegimeConfig(k_min=2, k_max=3),
    )
    wf = WalkForwardConfig(n_folds=2, val_size=40, test_size=40, embargo=5, min_train_size=200)
    result = run_walkforward(bars, config, wf)
    assert len(seen) == len(result.folds)
    for fold, data in zip(result.folds, seen, strict=True):
        # The agent (and its regime model) saw exactly the fold's training block: no bar of its
        # validation or test window, nor of the embargo before them.
        assert data.index.equals(bars.index[fold.train])
        assert data.index.max() < bars.index[fold.val.start - wf.embargo]
