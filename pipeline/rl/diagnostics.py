"""How well the critic predicts what the policy earns: V(s_t) against discounted returns on held-out bars."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from pipeline.rl.buffer import explained_variance
from pipeline.rl.config import TrainConfig
from pipeline.rl.env import VecTradingEnv
from pipeline.rl.market import MarketArrays
from pipeline.rl.network import LSTMActorCritic, single_threaded


@dataclass(frozen=True)
class CriticError:
    """Critic V(s_t) against the discounted return G_t of the continuing market, in reward units (scaled)."""

    mean_abs_error: float
    """mean |V(s_t) - G_t| over every evaluated step."""
    bias: float
    """mean V(s_t) - G_t: negative when the critic expects less than the policy earns."""
    explained_variance: float
    """1 - Var(G - V) / Var(G)."""
    n: int
    """Steps evaluated (episodes x ``episode_length``)."""


def critic_error(
    model: LSTMActorCritic,
    market: MarketArrays,
    config: TrainConfig,
    starts: np.ndarray,
    tail: int | None = None,
    seed: int = 0,
) -> CriticError:
    """Run the sampling policy from each bar in ``starts`` [K] (K envs at once) for
    ``config.env.episode_length`` steps (128 when episodes span the whole range), where V(s_t) is read with
    the LSTM state of a training episode, then ``tail`` more steps (default: until gamma^k < 1 %) that only
    complete the return G_t = sum_k gamma^k r_{t+k} (scaled like training rewards). The market does not
    stop at a time limit, so a critic that treats time limits as terminal underestimates G (Pardo et al.
    2018). Every start needs ``length + tail`` bars after it.
    """
    length = config.env.episode_length or 128
    if tail is None and config.gamma >= 1.0:
        raise ValueError("with gamma = 1 the return never fades: give tail explicitly")
    tail = tail if tail is not None else int(np.ceil(np.log(0.01) / np.log(config.gamma)))
    starts = np.asarray(starts, dtype=np.int64)
    if starts.size == 0 or starts.max() + length + tail > len(market) - 1:
        raise ValueError(f"each start needs {length + tail} bars after it; the market has {len(market)}")
    values, rewards, alive = _rollout(model, market, config, starts, length + tail, seed)
    g = np.zeros_like(rewards)  # [steps, K]: G_t = r_t + gamma G_{t+1}, from the last step back
    for t in reversed(range(len(rewards))):
        g[t] = rewards[t] + config.gamma * (g[t + 1] if t + 1 < len(rewards) else 0.0)
    ok = alive[:length]  # steps an episode actually reached (a wiped-out account stops there)
    v, g = values[:length][ok], g[:length][ok]
    return CriticError(
        mean_abs_error=float(np.mean(np.abs(v - g))),
        bias=float(np.mean(v - g)),
        explained_variance=explained_variance(v, g),
        n=int(v.size),
    )


@torch.no_grad()
def _rollout(
    model: LSTMActorCritic,
    market: MarketArrays,
    config: TrainConfig,
    starts: np.ndarray,
    steps: int,
    seed: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """values [steps, K], scaled rewards [steps, K] (0 after a termination), alive-before-step [steps, K]."""
    env = VecTradingEnv(market, config.env, n_envs=len(starts), auto_reset=False)
    obs = env.reset(start=starts, end=starts + steps)
    generator = torch.Generator().manual_seed(seed)
    state, start = model.initial_state(len(starts)), torch.ones(len(starts))
    live = np.ones(len(starts), dtype=bool)
    values, rewards, alive = [], [], []
    with single_threaded():
        for _ in range(steps):
            logits, value, state = model.step(torch.from_numpy(obs), state, start)
            action = torch.multinomial(logits.softmax(-1), 1, generator=generator).squeeze(1)
            obs, reward, terminated, truncated, _ = env.step(action.numpy())
            values.append(value.double().numpy())
            rewards.append(np.where(live, reward * config.reward_scale, 0.0))
            alive.append(live.copy())
            live &= ~terminated
            start = torch.zeros_like(start)
            if (truncated | ~live).all():
                break
    return np.array(values), np.array(rewards), np.array(alive)
