"""GAE with terminated and truncated episodes kept apart, against hand computations; the A3C loss terms."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.rl.a3c import a3c_loss
from pipeline.rl.buffer import RolloutBuffer, compute_gae, explained_variance

GAMMA, LAM = 0.9, 0.8
# One env, three steps; the episode is cut by its time limit with step 1: step 1 bootstraps from the value
# of the final observation it led to (4.0), not from step 2's observation, which starts a new episode.
REWARDS = np.array([[1.0], [2.0], [3.0]])
VALUES = np.array([[0.5], [1.0], [1.5]])
NO = np.zeros((3, 1))
ENDED = np.array([[0.0], [1.0], [0.0]])
FINAL = np.array([[0.0], [4.0], [0.0]])  # V(final observation) where the step was truncated
LAST = np.array([2.0])


def _gae(terminated: np.ndarray, truncated: np.ndarray, lam: float = LAM) -> tuple[np.ndarray, np.ndarray]:
    return compute_gae(REWARDS, VALUES, terminated, truncated, FINAL, LAST, GAMMA, lam)


def test_a_truncated_step_bootstraps_from_the_value_of_its_final_observation() -> None:
    d2 = 3.0 + 0.9 * 2.0 - 1.5  # = 3.3, bootstraps from V(s_3) = 2.0
    d1 = 2.0 + 0.9 * 4.0 - 1.0  # = 4.6, the time limit hid V(final obs) = 4.0: bootstrap from it
    d0 = 1.0 + 0.9 * 1.0 - 0.5  # = 1.4
    a2, a1 = d2, d1  # the episode boundary still cuts the advantage sum
    a0 = d0 + 0.9 * 0.8 * a1
    adv, ret = _gae(terminated=NO, truncated=ENDED)
    np.testing.assert_allclose(adv[:, 0], [a0, a1, a2])
    np.testing.assert_allclose(ret[:, 0], [a0 + 0.5, a1 + 1.0, a2 + 1.5])


def test_a_terminated_step_does_not_bootstrap() -> None:
    d2 = 3.0 + 0.9 * 2.0 - 1.5
    d1 = 2.0 - 1.0  # terminal: nothing follows, whatever V(final obs) says
    d0 = 1.0 + 0.9 * 1.0 - 0.5
    adv, _ = _gae(terminated=ENDED, truncated=NO)
    np.testing.assert_allclose(adv[:, 0], [d0 + 0.9 * 0.8 * d1, d1, d2])


def test_gae_with_lambda_one_gives_the_n_step_returns_of_a3c() -> None:
    # Mnih et al. 2016, Alg. S3: R_t = r_t + gamma R_{t+1}; R at the truncation = r_1 + gamma V(final obs).
    r2 = 3.0 + 0.9 * 2.0
    r1 = 2.0 + 0.9 * 4.0
    r0 = 1.0 + 0.9 * r1
    _, ret = _gae(terminated=NO, truncated=ENDED, lam=1.0)
    np.testing.assert_allclose(ret[:, 0], [r0, r1, r2])


def test_envs_of_a_batch_are_independent() -> None:
    rewards = np.hstack([REWARDS, REWARDS])
    values = np.hstack([VALUES, VALUES])
    adv, _ = compute_gae(
        rewards,
        values,
        np.hstack([ENDED, NO]),
        np.hstack([NO, ENDED]),
        np.hstack([FINAL, FINAL]),
        np.array([2.0, 2.0]),
        GAMMA,
        LAM,
    )
    np.testing.assert_allclose(adv[:, 0], _gae(ENDED, NO)[0][:, 0])
    np.testing.assert_allclose(adv[:, 1], _gae(NO, ENDED)[0][:, 0])


def test_explained_variance_is_one_for_a_perfect_critic_and_zero_for_a_constant_one() -> None:
    returns = np.array([1.0, 2.0, 3.0, 4.0])
    assert explained_variance(returns, returns) == pytest.approx(1.0)
    assert explained_variance(np.full(4, 2.5), returns) == pytest.approx(0.0)
    assert explained_variance(returns - 1.0, returns) == pytest.approx(1.0)  # a bias is not variance
    assert np.isnan(explained_variance(returns, np.ones(4)))  # undefined for constant targets


def test_buffer_keeps_terminated_and_truncated_apart_and_feeds_the_a3c_loss() -> None:
    buffer = RolloutBuffer(3, 1, obs_dim=2, gamma=GAMMA, gae_lambda=LAM)
    actions = [0, 0, 1]
    for t in range(3):
        buffer.add(
            np.zeros((1, 2)), np.array([actions[t]]), REWARDS[t], NO[t], ENDED[t], np.zeros(1), FINAL[t]
        )
    assert buffer.full()
    np.testing.assert_array_equal(buffer.truncated, ENDED)
    np.testing.assert_array_equal(buffer.terminated, NO)
    batch = buffer.batch(VALUES, LAST)
    adv, ret = _gae(terminated=NO, truncated=ENDED)
    np.testing.assert_allclose(batch.advantages.numpy(), adv, rtol=1e-6)
    probs = torch.tensor([[[0.5, 0.5]], [[0.25, 0.75]], [[0.5, 0.5]]])  # [n=3, B=1, A=2]
    values = torch.tensor(VALUES, dtype=torch.float32, requires_grad=True)
    loss, metrics = a3c_loss(probs.log(), values, batch.actions, batch.advantages, batch.returns, 0.5, 0.01)
    log_pi = np.log([0.5, 0.25, 0.5])  # the taken actions' probabilities
    pg = -(adv[:, 0] * log_pi).mean()
    v = 0.5 * ((ret[:, 0] - VALUES[:, 0]) ** 2).mean()
    h = np.mean([np.log(2), -(0.25 * np.log(0.25) + 0.75 * np.log(0.75)), np.log(2)])
    assert metrics["losses/policy"] == pytest.approx(pg, rel=1e-5)
    assert metrics["losses/value"] == pytest.approx(v, rel=1e-5)
    assert metrics["losses/entropy"] == pytest.approx(h, rel=1e-5)
    assert loss.item() == pytest.approx(pg + 0.5 * v - 0.01 * h, rel=1e-5)
    loss.backward()
    assert values.grad is not None  # the critic learns through the value head
