"""Walk-forward folds, and a full small walk-forward on real S&P 500 bars shipped by ``arch``."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.backtest.metrics import METRIC_NAMES
from pipeline.backtest.policies import BASELINES
from pipeline.backtest.walkforward import WalkForwardConfig, make_folds, run_walkforward
from pipeline.regimes.model import RegimeConfig
from pipeline.rl.config import TrainConfig
from pipeline.rl.env import EnvConfig
from pipeline.rl.instruments import stock_spec


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
