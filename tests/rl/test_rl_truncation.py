"""Bootstrapping time limits makes the critic predict what the policy really earns (Pardo et al. 2018)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.rl.config import TrainConfig
from pipeline.rl.diagnostics import CriticError, critic_error
from pipeline.rl.synthetic import regime_switching_bars
from pipeline.rl.train import train


def _held_out_critic_error(config: TrainConfig, bars: pd.DataFrame, fresh: pd.DataFrame) -> CriticError:
    agent = train(config, bars).agent
    market = agent.market(fresh)  # a new path of the same planted-drift process
    length = config.env.episode_length
    starts = np.arange(0, len(market) - length - 460 - 1, 4)  # 460 more steps: gamma^460 < 1 %
    return critic_error(agent.model, market, agent.config, starts)


@pytest.mark.slow
def test_bootstrapping_time_limits_shrinks_the_critics_error_on_held_out_episodes(small_train_config) -> None:
    bars = regime_switching_bars(2000, seed=1)
    fresh = regime_switching_bars(4000, seed=101)
    errors: dict[bool, list[CriticError]] = {True: [], False: []}
    for seed in (0, 1):
        for bootstrap in (False, True):
            config = small_train_config(total_steps=100_000, seed=seed, bootstrap_truncated=bootstrap)
            errors[bootstrap].append(_held_out_critic_error(config, bars, fresh))
    mae = {b: np.mean([e.mean_abs_error for e in errs]) for b, errs in errors.items()}
    bias = {b: np.mean([e.bias for e in errs]) for b, errs in errors.items()}
    print(
        f"held-out |V - G|: terminal {mae[False]:.3f} -> bootstrapped {mae[True]:.3f}; "
        f"bias {bias[False]:+.3f} -> {bias[True]:+.3f}"
    )
    # Treating time limits as terminal teaches the critic that value ends with the episode: it
    # underestimates the continuing return; bootstrapping removes most of that bias.
    assert bias[False] < -0.2
    assert abs(bias[True]) < abs(bias[False]) - 0.1
    assert mae[True] < mae[False]
