"""The critic diagnostic measures V(s_t) against the discounted return of the continuing market."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.regimes.model import RegimeConfig
from pipeline.rl.config import TrainConfig
from pipeline.rl.diagnostics import critic_error
from pipeline.rl.env import EnvConfig
from pipeline.rl.instruments import stock_spec
from pipeline.rl.network import LSTMActorCritic


def _constant_critic(obs_dim: int, n_actions: int, value: float) -> LSTMActorCritic:
    model = LSTMActorCritic(obs_dim, n_actions, hidden_size=4)
    with torch.no_grad():
        model.value_head.weight.zero_()
        model.value_head.bias.fill_(value)
    return model


def test_a_critic_that_always_says_half_on_a_market_that_pays_one_per_step(make_market) -> None:
    # Prices grow by e^0.1 a bar and the only action is all in: every reward is log(e^0.1) x scale 10 = 1
    # (no costs), so G_t = sum_k 0.5^k over the remaining steps; V = 0.5 everywhere.
    closes = 1_000.0 * np.exp(0.1 * np.arange(40))
    market = make_market(opens=closes, closes=closes)
    free = stock_spec(buy_fee=0.0, sell_fee=0.0, sell_tax=0.0, slippage_ticks=0.0)
    env = EnvConfig(instrument=free, levels=(1.0,), window=1, episode_length=3, initial_cash=1e12)
    config = TrainConfig(gamma=0.5, reward_scale=10.0, regimes=RegimeConfig(enabled=False), env=env)
    model = _constant_critic(1 + 2, 1, 0.5)
    err = critic_error(model, market, config, starts=np.array([1, 5]), tail=20)
    # Bar 1's step buys at the next open and marks at its close: no gain yet; later steps earn 1 each.
    g = [sum(0.5**k * (0.0 if t + k == 0 else 1.0) for k in range(23 - t)) for t in range(3)]
    assert err.n == 6
    assert err.bias == pytest.approx(0.5 - np.mean(g), rel=1e-4)
    assert err.mean_abs_error == pytest.approx(np.mean(np.abs(0.5 - np.array(g))), rel=1e-4)


def test_starts_without_enough_bars_after_them_are_refused(make_market) -> None:
    closes = np.linspace(100, 110, 30)
    config = TrainConfig(regimes=RegimeConfig(enabled=False), env=EnvConfig(window=1, episode_length=5))
    model = _constant_critic(3, 2, 0.0)
    with pytest.raises(ValueError, match="bars after it"):
        critic_error(model, make_market(opens=closes, closes=closes), config, np.array([20]), tail=10)
