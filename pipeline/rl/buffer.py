"""Rollout storage and advantages: GAE (Schulman et al. 2016) and n-step returns (Mnih et al. 2016)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch


def compute_gae(
    rewards: np.ndarray,
    values: np.ndarray,
    dones: np.ndarray,
    last_values: np.ndarray,
    gamma: float,
    gae_lambda: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Generalised advantage estimation over a rollout of n steps and B envs.

    rewards, values, dones: [n, B]; ``dones[t]`` = 1 if the episode ended with step t (no bootstrap past it);
    last_values: [B], V(s_n) of the observation after the last step. Schulman et al. (2016), eq. 16:
        delta_t = r_t + gamma V(s_{t+1}) (1 - d_t) - V(s_t),   A_t = delta_t + gamma lambda (1 - d_t) A_{t+1}.
    Returns (advantages [n, B], returns = advantages + values [n, B]). lambda = 1 gives n-step returns.
    """
    n = rewards.shape[0]
    adv = np.zeros_like(rewards, dtype=np.float64)
    next_adv = np.zeros(rewards.shape[1], dtype=np.float64)
    next_value = np.asarray(last_values, dtype=np.float64)
    for t in reversed(range(n)):
        nonterminal = 1.0 - dones[t]
        delta = rewards[t] + gamma * next_value * nonterminal - values[t]
        next_adv = delta + gamma * gae_lambda * nonterminal * next_adv
        adv[t] = next_adv
        next_value = values[t]
    return adv, adv + values


def n_step_returns(
    rewards: np.ndarray, dones: np.ndarray, last_values: np.ndarray, gamma: float
) -> np.ndarray:
    """A3C's n-step return (Mnih et al. 2016, Alg. S3): R_t = r_t + gamma (1 - d_t) R_{t+1}, R_n = V(s_n)."""
    returns = np.zeros_like(rewards, dtype=np.float64)
    running = np.asarray(last_values, dtype=np.float64)
    for t in reversed(range(rewards.shape[0])):
        running = rewards[t] + gamma * (1.0 - dones[t]) * running
        returns[t] = running
    return returns


class RolloutBatch(NamedTuple):
    """One rollout as tensors: obs [n, B, D], actions / episode_starts / advantages / returns [n, B]."""

    obs: torch.Tensor
    actions: torch.Tensor
    episode_starts: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor


class RolloutBuffer:
    """n steps of B envs collected without gradients; the loss re-runs the model once over the rollout."""

    def __init__(self, n_steps: int, n_envs: int, obs_dim: int, gamma: float, gae_lambda: float) -> None:
        self.gamma, self.gae_lambda = gamma, gae_lambda
        self.obs = np.zeros((n_steps, n_envs, obs_dim), np.float32)
        self.actions = np.zeros((n_steps, n_envs), np.int64)
        self.rewards = np.zeros((n_steps, n_envs), np.float64)
        self.dones = np.zeros((n_steps, n_envs), np.float64)  # the episode ended with this step
        self.episode_starts = np.zeros((n_steps, n_envs), np.float32)  # this obs begins an episode
        self.pos = 0

    def add(
        self, obs: np.ndarray, action: np.ndarray, reward: np.ndarray, done: np.ndarray, start: np.ndarray
    ) -> None:
        """Store one step of all B envs."""
        i = self.pos
        self.obs[i], self.actions[i], self.rewards[i], self.dones[i], self.episode_starts[i] = (
            obs,
            action,
            reward,
            done,
            start,
        )
        self.pos += 1

    def obs_tensor(self) -> torch.Tensor:
        """Observations [n, B, D] (shares memory with the buffer)."""
        return torch.from_numpy(self.obs)

    def starts_tensor(self) -> torch.Tensor:
        """Episode-start flags [n, B]."""
        return torch.from_numpy(self.episode_starts)

    def full(self) -> bool:
        """Whether all n steps are stored."""
        return self.pos == len(self.rewards)

    def batch(self, values: np.ndarray, last_values: np.ndarray) -> RolloutBatch:
        """Loss tensors, with GAE advantages and returns from ``values`` [n, B] and ``last_values`` [B]."""
        adv, ret = compute_gae(self.rewards, values, self.dones, last_values, self.gamma, self.gae_lambda)
        return RolloutBatch(
            obs=torch.from_numpy(self.obs),
            actions=torch.from_numpy(self.actions),
            episode_starts=torch.from_numpy(self.episode_starts),
            advantages=torch.as_tensor(adv, dtype=torch.float32),
            returns=torch.as_tensor(ret, dtype=torch.float32),
        )
