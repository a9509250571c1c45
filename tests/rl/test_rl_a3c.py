"""One A3C worker's rollout: time limits bootstrap from the critic, terminations do not; its metrics."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from pipeline.regimes.model import RegimeConfig
from pipeline.rl.a3c import A3CWorker, LocalCounter, SharedAdam
from pipeline.rl.config import TrainConfig
from pipeline.rl.env import EnvConfig
from pipeline.rl.network import LSTMActorCritic


def _worker(make_market, bootstrap: bool) -> tuple[A3CWorker, list[dict[str, Any]]]:
    rng = np.random.default_rng(0)
    closes = 10_000 * np.exp(np.cumsum(rng.normal(0, 0.01, 80)))
    config = TrainConfig(
        mode="sync",
        n_workers=1,
        n_envs=2,
        n_steps=6,
        total_steps=12,
        progress=False,
        bootstrap_truncated=bootstrap,
        env=EnvConfig(window=2, episode_length=3),
        regimes=RegimeConfig(enabled=False),
    )
    worker = A3CWorker(0, config, make_market(opens=closes, closes=closes, n_features=2))
    infos: list[dict[str, Any]] = []
    step = worker.env.step

    def spy(actions: np.ndarray) -> Any:
        out = step(actions)
        infos.append(out[-1])
        return out

    worker.env.step = spy  # type: ignore[method-assign]
    return worker, infos


def test_a_time_limit_bootstraps_from_the_value_of_the_final_observation_with_the_episodes_memory(
    make_market,
) -> None:
    worker, infos = _worker(make_market, bootstrap=True)
    buffer, _ = worker._collect()
    # Episodes of 3 steps from the rollout's start: steps 2 and 5 hit the time limit in both envs.
    np.testing.assert_array_equal(buffer.truncated[:, 0], [0, 0, 1, 0, 0, 1])
    assert not buffer.terminated.any()
    for t in (2, 5):
        # The critic's value of the final observation, after the LSTM has read the whole episode.
        seq = np.concatenate([buffer.obs[t - 2 : t + 1], infos[t]["final_obs"][None]])  # [4, B, D]
        starts = torch.tensor([[1.0, 1.0], [0, 0], [0, 0], [0, 0]])
        with torch.no_grad():
            _, values, _ = worker.local(torch.from_numpy(seq), worker.local.initial_state(2), starts)
        np.testing.assert_allclose(buffer.final_values[t], values[-1].numpy(), rtol=1e-5, atol=1e-6)
        assert (buffer.final_values[t] != 0).all()
    assert (buffer.final_values[[0, 1, 3, 4]] == 0).all()


def test_without_bootstrapping_a_time_limit_counts_as_termination(make_market) -> None:
    worker, _ = _worker(make_market, bootstrap=False)
    buffer, _ = worker._collect()
    np.testing.assert_array_equal(buffer.terminated[:, 0], [0, 0, 1, 0, 0, 1])
    assert not buffer.truncated.any() and not buffer.final_values.any()


def test_an_update_reports_explained_variance_and_steps_per_second(make_market) -> None:
    worker, _ = _worker(make_market, bootstrap=True)
    model = LSTMActorCritic(worker.env.obs_dim, worker.env.n_actions, worker.config.hidden_size)
    metrics = worker.update(model, SharedAdam(model.parameters(), lr=1e-3), LocalCounter(), elapsed=0.5)
    assert metrics["charts/steps_per_s"] == pytest.approx(12 / 0.5)
    assert metrics["losses/explained_variance"] <= 1.0
