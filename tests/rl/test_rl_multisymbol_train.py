"""One agent over several symbols: features per symbol (no leakage across symbols), regimes and scaling
fitted on all symbols pooled, reproducible training, and an agent that decides on any symbol's bars."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from pipeline.regimes.model import RegimeConfig, RegimeModel
from pipeline.rl.agent import prepare_market
from pipeline.rl.env import EnvConfig, VecTradingEnv
from pipeline.rl.market import MarketArrays
from pipeline.rl.synthetic import random_walk_bars, regime_switching_bars
from pipeline.rl.train import TrainResult, train
from pipeline.rl.universe import fit_pooled_regimes, prepare_universe, split_universe

REGIMES = RegimeConfig(k_min=2, k_max=3)


@pytest.fixture(scope="module")
def universe() -> dict[str, pd.DataFrame]:
    """Two symbols on the same dates, ~50x apart in price, with different dynamics."""
    return {
        "CHEAP": regime_switching_bars(400, seed=1, start_price=2_000.0),
        "DEAR": random_walk_bars(400, seed=2, start_price=100_000.0),
    }


def test_features_at_a_symbols_first_bars_equal_those_computed_on_that_symbol_alone(universe) -> None:
    regimes = fit_pooled_regimes(REGIMES, universe.values())
    both = prepare_universe(universe, "ta-v1", regimes)
    alone = prepare_market(universe["DEAR"], "ta-v1", regimes)
    dear = both.segment("DEAR")
    np.testing.assert_array_equal(dear.features, alone.features)  # every row, the first ones included
    np.testing.assert_array_equal(dear.regimes, alone.regimes)
    assert dear.index.equals(alone.index)
    # The agent's first observation on DEAR sees DEAR's bars only, never CHEAP's last ones.
    config = EnvConfig(window=8)
    first_dear = both.segment_bounds()[1][0]
    obs_both = VecTradingEnv(both, config, auto_reset=False).reset(start=first_dear)
    obs_alone = VecTradingEnv(alone, config, auto_reset=False).reset(start=0)
    np.testing.assert_array_equal(obs_both, obs_alone)


def test_regimes_pooled_over_one_symbol_are_the_ordinary_regime_fit(universe) -> None:
    bars = universe["CHEAP"]
    pooled = fit_pooled_regimes(REGIMES, [bars])
    assert type(pooled) is RegimeModel  # saves and loads like any regime model
    np.testing.assert_array_equal(pooled.predict(bars), RegimeModel(REGIMES).fit(bars).predict(bars))


def test_a_long_frame_with_a_symbol_column_splits_into_each_symbols_bars(universe) -> None:
    long = pd.concat([bars.assign(symbol=s) for s, bars in universe.items()]).sample(frac=1.0, random_state=0)
    split = split_universe(long)
    assert split is not None and list(split) == ["CHEAP", "DEAR"]
    for symbol, bars in universe.items():
        ohlcv = ["open", "high", "low", "close", "volume"]
        pd.testing.assert_frame_equal(split[symbol][ohlcv], bars[ohlcv], check_freq=False)
    assert split_universe(universe["CHEAP"]) is None  # one symbol's bars stay the single-symbol path


def _assert_same_weights(a: TrainResult, b: TrainResult) -> None:
    left, right = a.agent.model.state_dict(), b.agent.model.state_dict()
    assert all(torch.equal(left[k], right[k]) for k in left)


def test_two_symbol_sync_training_is_deterministic_and_its_agent_decides_on_either_symbol(
    universe, small_train_config
) -> None:
    config = small_train_config(total_steps=1_600, env=EnvConfig(window=4, episode_length=64))
    long = pd.concat([bars.assign(symbol=s) for s, bars in universe.items()])
    first, second = train(config, universe), train(config, long)  # a dict or a long frame: one universe
    assert first.symbols == second.symbols == ("CHEAP", "DEAR")
    _assert_same_weights(first, second)
    learned = [c for c in first.history if c.startswith("losses/") or c == "charts/episode_return"]
    pd.testing.assert_frame_equal(first.history[learned], second.history[learned], check_exact=True)
    # Feature scaling was fitted on both symbols' rows together.
    rows = prepare_universe(universe, config.feature_set, first.agent.regime_model).features
    np.testing.assert_allclose(first.agent.normaliser.mean, rows.astype(np.float64).mean(axis=0), rtol=1e-9)
    for symbol in universe:
        decision = first.agent.decide(universe[symbol].iloc[-260:])
        assert decision["action"] in (0, 1) and decision["regime"] in range(
            first.agent.regime_model.n_regimes
        )


def test_one_symbol_given_as_a_mapping_trains_exactly_like_its_bare_bars(
    universe, small_train_config
) -> None:
    config = small_train_config(total_steps=800)
    bare, mapped = train(config, universe["DEAR"]), train(config, {"DEAR": universe["DEAR"]})
    _assert_same_weights(bare, mapped)
    assert bare.symbols == () and mapped.symbols == ("DEAR",)


def test_a_symbol_too_short_for_the_features_is_left_out_of_training(universe) -> None:
    short = {"NEW": universe["DEAR"].iloc[:30], **universe}  # 30 bars < the 60-bar feature warm-up
    market = prepare_universe(short, "ta-v1", None)
    assert market.symbols == ("CHEAP", "DEAR")
    assert isinstance(market, MarketArrays) and market.n_segments == 2
