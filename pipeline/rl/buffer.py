"""Rollout storage and advantages: GAE (Schulman et al. 2016) with terminated and truncated episodes apart."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch


def compute_gae(
    rewards: np.ndarray,
    values: np.ndarray,
    terminated: np.ndarray,
    truncated: np.ndarray,
    final_values: np.ndarray,
    last_values: np.ndarray,
    gamma: float,
    gae_lambda: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Generalised advantage estimation over a rollout of n steps and B envs.

    rewards, values, terminated, truncated, final_values: [n, B]. ``terminated[t]`` = 1 if the episode
    truly ended with step t (nothing follows: bootstrap 0); ``truncated[t]`` = 1 if a time limit cut it
    there (the process goes on: bootstrap from ``final_values[t]`` = V(final observation), Pardo et al.
    2018, as SB3's ``collect_rollouts`` does); either way the next row belongs to a new episode.
    last_values: [B], V(s_n) of the observation after the last step. Schulman et al. (2016), eq. 16:
        V'_{t+1} = 0 if terminated, V(final obs) if truncated, V(s_{t+1}) otherwise,
        delta_t = r_t + gamma V'_{t+1} - V(s_t),   A_t = delta_t + gamma lambda (1 - e_t) A_{t+1},
    with e_t = terminated or truncated. Returns (advantages [n, B], returns = advantages + values [n, B]);
    lambda = 1 gives A3C's n-step returns (Mnih et al. 2016, Alg. S3).
    """
    n = rewards.shape[0]
    adv = np.zeros_like(rewards, dtype=np.float64)
    next_adv = np.zeros(rewards.shape[1], dtype=np.float64)
    next_value = np.asarray(last_values, dtype=np.float64)
    for t in reversed(range(n)):
        ended = np.maximum(terminated[t], truncated[t])
        bootstrap = np.where(terminated[t] > 0, 0.0, np.where(truncated[t] > 0, final_values[t], next_value))
        delta = rewards[t] + gamma * bootstrap - values[t]
        next_adv = delta + gamma * gae_lambda * (1.0 - ended) * next_adv
        adv[t] = next_adv
        next_value = values[t]
    return adv, adv + values


def explained_variance(predicted: np.ndarray, target: np.ndarray) -> float:
    """1 - Var(target - predicted) / Var(target): 1 for a perfect critic, 0 for a constant one, negative
    when it is worse than a constant; NaN when the targets do not vary (as SB3's ``explained_variance``)."""
    var = float(np.var(target))
    return float("nan") if var == 0.0 else 1.0 - float(np.var(target - predicted)) / var


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
        self.terminated = np.zeros((n_steps, n_envs), np.float64)  # the episode truly ended with this step
        self.truncated = np.zeros((n_steps, n_envs), np.float64)  # a time limit cut it after this step
        self.final_values = np.zeros((n_steps, n_envs), np.float64)  # V(final obs) where truncated
        self.episode_starts = np.zeros((n_steps, n_envs), np.float32)  # this obs begins an episode
        self.pos = 0

    def add(
        self,
        obs: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        start: np.ndarray,
        final_value: np.ndarray,
    ) -> None:
        """Store one step of all B envs: obs [B, D]; the rest [B] (``final_value`` read where truncated)."""
        i = self.pos
        self.obs[i], self.actions[i], self.rewards[i] = obs, action, reward
        self.terminated[i], self.truncated[i], self.episode_starts[i] = terminated, truncated, start
        self.final_values[i] = np.where(np.asarray(truncated) > 0, final_value, 0.0)
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
        adv, ret = compute_gae(
            self.rewards,
            values,
            self.terminated,
            self.truncated,
            self.final_values,
            last_values,
            self.gamma,
            self.gae_lambda,
        )
        return RolloutBatch(
            obs=torch.from_numpy(self.obs),
            actions=torch.from_numpy(self.actions),
            episode_starts=torch.from_numpy(self.episode_starts),
            advantages=torch.as_tensor(adv, dtype=torch.float32),
            returns=torch.as_tensor(ret, dtype=torch.float32),
        )
