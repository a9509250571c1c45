"""GAE and n-step returns against hand computations; the A3C loss terms."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.rl.a3c import a3c_loss
from pipeline.rl.buffer import RolloutBuffer, compute_gae, n_step_returns

GAMMA, LAM = 0.9, 0.8
# One env, three steps; the episode ends with step 1, so step 1 does not bootstrap from step 2's value.
REWARDS = np.array([[1.0], [2.0], [3.0]])
VALUES = np.array([[0.5], [1.0], [1.5]])
DONES = np.array([[0.0], [1.0], [0.0]])
LAST = np.array([2.0])


def test_gae_matches_hand_computation() -> None:
    d2 = 3.0 + 0.9 * 2.0 - 1.5  # = 3.3, bootstraps from V(s_3) = 2.0
    d1 = 2.0 - 1.0  # = 1.0, terminal
    d0 = 1.0 + 0.9 * 1.0 - 0.5  # = 1.4
    a2 = d2
    a1 = d1  # the episode boundary cuts the sum
    a0 = d0 + 0.9 * 0.8 * a1
    adv, ret = compute_gae(REWARDS, VALUES, DONES, LAST, GAMMA, LAM)
    np.testing.assert_allclose(adv[:, 0], [a0, a1, a2])
    np.testing.assert_allclose(ret[:, 0], [a0 + 0.5, a1 + 1.0, a2 + 1.5])


def test_n_step_returns_match_hand_computation_and_gae_with_lambda_one() -> None:
    r2 = 3.0 + 0.9 * 2.0
    r1 = 2.0
    r0 = 1.0 + 0.9 * r1
    returns = n_step_returns(REWARDS, DONES, LAST, GAMMA)
    np.testing.assert_allclose(returns[:, 0], [r0, r1, r2])
    _, gae_returns = compute_gae(REWARDS, VALUES, DONES, LAST, GAMMA, 1.0)
    np.testing.assert_allclose(gae_returns, returns)


def test_buffer_gae_and_a3c_loss_terms_match_hand_computation() -> None:
    buffer = RolloutBuffer(3, 1, obs_dim=2, gamma=GAMMA, gae_lambda=LAM)
    actions = [0, 0, 1]
    for t in range(3):
        buffer.add(np.zeros((1, 2)), np.array([actions[t]]), REWARDS[t], DONES[t], np.zeros(1))
    assert buffer.full()
    batch = buffer.batch(VALUES, LAST)
    adv, ret = compute_gae(REWARDS, VALUES, DONES, LAST, GAMMA, LAM)
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
