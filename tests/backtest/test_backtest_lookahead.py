"""No look-ahead anywhere a decision is made, on real KRX bars: a different future after bar t never changes
the features, the regime labels, a baseline's or the agent's decisions at or before t; and a policy that
peeks one bar ahead is caught, so the check itself can fail."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from pipeline.backtest.lookahead import find_lookahead, perturb_after, policy_decisions
from pipeline.backtest.policies import make_baseline
from pipeline.features import get_feature_fn
from pipeline.regimes import RegimeConfig, RegimeModel
from pipeline.rl.agent import EnsemblePolicy, TradingAgent, prepare_market
from pipeline.rl.config import TrainConfig
from pipeline.rl.env import EnvConfig
from pipeline.rl.instruments import etf_spec
from pipeline.rl.market import FeatureNormaliser, MarketArrays
from pipeline.rl.network import LSTMActorCritic
from tests.features.krx_data import krx_bars

#: Rows after which the future is rewritten: early (just past the warm-up), middle, near the end.
CUTS = (80, 300, 560)
CONFIG = EnvConfig(instrument=etf_spec(), levels=(0.0, 0.5, 1.0), window=8, episode_length=None)


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    return krx_bars("229200").iloc[-600:]  # KOSDAQ150, 2017-2019


def test_a_rewritten_future_is_a_valid_different_path(bars: pd.DataFrame) -> None:
    changed = perturb_after(bars, 300, seed=1)
    assert changed.iloc[:301].equals(bars.iloc[:301])
    assert (changed["close"].iloc[301:] != bars["close"].iloc[301:]).all()
    assert (changed["high"] >= changed[["open", "close"]].max(axis=1)).all()
    assert (changed["low"] <= changed[["open", "close"]].min(axis=1)).all()


def test_features_never_look_ahead(bars: pd.DataFrame) -> None:
    for feature_set in ("ta-v1", "basic"):
        assert find_lookahead(get_feature_fn(feature_set), bars, CUTS) == [], feature_set


def test_regime_labels_never_look_ahead(bars: pd.DataFrame) -> None:
    model = RegimeModel(RegimeConfig(k_max=3)).fit(bars.iloc[:300])
    labels = model.predict(bars)
    assert len(set(labels[labels >= 0])) > 1  # several regimes, so a leak would show
    assert find_lookahead(lambda b: pd.Series(model.predict(b), index=b.index), bars, CUTS) == []


@pytest.mark.parametrize("name", ["buy_and_hold", "sma_crossover", "momentum", "random"])
def test_baselines_never_look_ahead(bars: pd.DataFrame, name: str) -> None:
    def decisions(b: pd.DataFrame) -> pd.Series:
        return policy_decisions(make_baseline(name, CONFIG, seed=3), prepare_market(b, "ta-v1", None), CONFIG)

    assert find_lookahead(decisions, bars, CUTS) == []


def _agent(bars: pd.DataFrame, seed: int) -> TradingAgent:
    config = TrainConfig(feature_set="ta-v1", env=CONFIG, regimes=RegimeConfig(k_max=3), progress=False)
    regimes = RegimeModel(config.regimes).fit(bars.iloc[:300])
    market = prepare_market(bars.iloc[:300], "ta-v1", regimes)
    torch.manual_seed(seed)
    model = LSTMActorCritic(CONFIG.window * market.n_features + market.n_regimes + 2, len(CONFIG.levels))
    with torch.no_grad():
        model.policy_head.weight.mul_(300.0)  # decisive, changing actions: a leak would move them
    return TradingAgent(config, model, FeatureNormaliser.fit(market.features), regimes)


def test_the_agents_decisions_never_look_ahead(bars: pd.DataFrame) -> None:
    agent = _agent(bars, 0)

    def decisions(b: pd.DataFrame) -> pd.Series:
        return policy_decisions(agent.policy(), agent.market(b), CONFIG)

    assert decisions(bars).nunique() > 1
    assert find_lookahead(decisions, bars, CUTS) == []


def test_the_seeds_ensembles_decisions_never_look_ahead(bars: pd.DataFrame) -> None:
    members = [_agent(bars, seed) for seed in (0, 1, 2)]

    def decisions(b: pd.DataFrame) -> pd.Series:
        policy = EnsemblePolicy([m.model for m in members])
        return policy_decisions(policy, members[0].market(b), CONFIG)

    assert decisions(bars).nunique() > 1
    assert find_lookahead(decisions, bars, CUTS) == []


class _PeekingPolicy:
    """Long when tomorrow's close is higher: the leak a careless signal would have."""

    name = "peeking"

    def reset(self, market: MarketArrays, n_envs: int) -> None:
        self.close = market.close

    def act(self, obs: np.ndarray, t: np.ndarray) -> np.ndarray:
        return np.where(self.close[np.minimum(t + 1, len(self.close) - 1)] > self.close[t], 2, 0)


def test_a_policy_that_peeks_one_bar_ahead_is_caught_at_the_cut(bars: pd.DataFrame) -> None:
    def decisions(b: pd.DataFrame) -> pd.Series:
        return policy_decisions(_PeekingPolicy(), prepare_market(b, "ta-v1", None), CONFIG)

    found = find_lookahead(decisions, bars, CUTS)  # fixed data and seeds: the same cuts every run
    assert found, "a policy reading tomorrow's close passed the look-ahead check"
    assert {f.cut for f in found} <= {bars.index[t] for t in CUTS}
    assert all(f.first_changed == f.cut for f in found)  # the decision at t read bar t+1
