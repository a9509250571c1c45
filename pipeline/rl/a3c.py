"""A3C (Mnih et al. 2016): shared Adam, the actor-critic loss and one worker's rollout-and-update step."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.rl.buffer import RolloutBuffer, explained_variance
from pipeline.rl.config import TrainConfig
from pipeline.rl.env import Info, VecTradingEnv
from pipeline.rl.market import MarketArrays
from pipeline.rl.network import LSTMActorCritic

Metrics = dict[str, Any]


class StepCounter(Protocol):
    """A shared integer: ``multiprocessing.Value`` in async mode, :class:`LocalCounter` in sync mode."""

    value: int

    def get_lock(self) -> Any: ...


class LocalCounter:
    """In-process stand-in for ``multiprocessing.Value('q')``."""

    def __init__(self) -> None:
        self.value = 0

    def get_lock(self) -> Any:
        return contextlib.nullcontext()


class SharedAdam(torch.optim.Adam):
    """Adam whose moment estimates live in shared memory, so every worker updates the same statistics.

    The state is created eagerly (Adam would create it lazily, per process) and moved to shared memory;
    updates are lock-free (Hogwild!-style), as in the A3C paper's shared RMSProp.
    """

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float, eps: float = 1e-5) -> None:
        super().__init__(params, lr=lr, eps=eps, foreach=False)
        for group in self.param_groups:
            for p in group["params"]:
                state = self.state[p]
                state["step"] = torch.zeros((), dtype=torch.float32).share_memory_()
                state["exp_avg"] = torch.zeros_like(p.data).share_memory_()
                state["exp_avg_sq"] = torch.zeros_like(p.data).share_memory_()

    def set_lr(self, lr: float) -> None:
        """Set this process's learning rate (the schedule is computed from the shared step counter)."""
        for group in self.param_groups:
            group["lr"] = lr


def a3c_loss(
    logits: torch.Tensor,
    values: torch.Tensor,
    actions: torch.Tensor,
    advantages: torch.Tensor,
    returns: torch.Tensor,
    vf_coef: float,
    ent_coef: float,
) -> tuple[torch.Tensor, Metrics]:
    """Actor-critic loss of one rollout: logits [n, B, A]; values, actions, advantages, returns [n, B].

    pg_loss = -E[A_t log pi(a_t|s_t)] with A_t from GAE (no gradient), v_loss = 1/2 E[(R_t - V(s_t))^2],
    entropy bonus H[pi(.|s_t)] (Mnih et al. 2016, Alg. S3; Schulman et al. 2016 for A_t).
    """
    log_p = F.log_softmax(logits, dim=-1)  # [n, B, A]
    log_prob = log_p.gather(-1, actions.unsqueeze(-1)).squeeze(-1)  # [n, B]
    entropy = -(log_p.exp() * log_p).sum(-1).mean()
    pg_loss = -(advantages * log_prob).mean()
    v_loss = 0.5 * (returns - values).pow(2).mean()
    loss = pg_loss + vf_coef * v_loss - ent_coef * entropy
    return loss, {
        "losses/policy": pg_loss.item(),
        "losses/value": v_loss.item(),
        "losses/entropy": entropy.item(),
    }


def scheduled_lr(config: TrainConfig, steps: int, elapsed: float) -> float:
    """Learning rate after ``steps`` env steps and ``elapsed`` seconds (linear decay to 0 over the budget)."""
    if config.lr_schedule == "constant":
        return config.learning_rate
    done = 0.0
    if config.total_steps:
        done = max(done, steps / config.total_steps)
    if config.max_seconds:
        done = max(done, elapsed / config.max_seconds)
    return config.learning_rate * max(1.0 - done, 0.0)


class A3CWorker:
    """One A3C actor-learner: own envs, local model and RNG; syncs from and pushes to the global model."""

    def __init__(
        self, rank: int, config: TrainConfig, market: MarketArrays, bounds: tuple[int, int] | None = None
    ) -> None:
        self.rank, self.config = rank, config
        # ---- seeding: worker `rank` derives every random stream from (config.seed, rank) ----
        self.env = VecTradingEnv(
            market, config.env, n_envs=config.n_envs, seed=hash_seed(config.seed, rank, "env"), bounds=bounds
        )
        self.rng = np.random.default_rng(hash_seed(config.seed, rank, "actions"))
        self.local = LSTMActorCritic(self.env.obs_dim, self.env.n_actions, config.hidden_size)
        self.obs = self.env.reset()  # [B, D]
        self.episode_start = np.ones(config.n_envs, dtype=np.float32)  # [B]
        self.state = self.local.initial_state(config.n_envs)  # (h, c) each [1, B, H]
        self.last_values = np.zeros(config.n_envs)  # [B]

    def update(
        self, global_model: LSTMActorCritic, optimizer: SharedAdam, counter: StepCounter, elapsed: float
    ) -> Metrics:
        """Sync from the global model, collect n steps, push the clipped gradient, step the shared Adam."""
        cfg = self.config
        self.local.load_state_dict(global_model.state_dict())
        state0 = self.state  # (h, c) at the rollout's first step: the loss replays from here
        buffer, finished = self._collect()
        # ALGO LOGIC: one forward pass with gradients over the rollout (truncated BPTT over n steps).
        logits, values, _ = self.local(buffer.obs_tensor(), state0, buffer.starts_tensor())  # [n,B,A], [n,B]
        predicted = values.detach().double().numpy()  # [n, B]
        batch = buffer.batch(predicted, self.last_values)
        loss, metrics = a3c_loss(
            logits, values, batch.actions, batch.advantages, batch.returns, cfg.vf_coef, cfg.ent_coef
        )
        self.local.zero_grad()
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.local.parameters(), cfg.max_grad_norm)
        # The global parameters take the local gradients (aliased, no copy) and the shared Adam steps them.
        for global_param, local_param in zip(global_model.parameters(), self.local.parameters(), strict=True):
            global_param.grad = local_param.grad
        with counter.get_lock():
            counter.value += cfg.n_steps * cfg.n_envs
            steps = int(counter.value)
        lr = scheduled_lr(cfg, steps, elapsed)
        optimizer.set_lr(lr)
        optimizer.step()
        metrics.update(
            {
                "rank": self.rank,
                "global_step": steps,
                "losses/grad_norm": float(grad_norm),
                "losses/explained_variance": explained_variance(predicted, batch.returns.double().numpy()),
                "charts/learning_rate": lr,
                "charts/steps_per_s": steps / elapsed if elapsed > 0 else math.nan,
                "charts/episode_return": float(np.mean(finished)) if finished else math.nan,
                "charts/episodes": len(finished),
            }
        )
        return metrics

    def _collect(self) -> tuple[RolloutBuffer, list[float]]:
        """Step the envs n times with the local policy (no graph); returns the buffer and finished returns."""
        # a block, not a decorator: the same no-graph stepping (mutmut skips decorated functions)
        with torch.no_grad():
            cfg = self.config
            buffer = RolloutBuffer(cfg.n_steps, cfg.n_envs, self.env.obs_dim, cfg.gamma, cfg.gae_lambda)
            finished: list[float] = []
            while not buffer.full():
                logits, self.state = self.local.act_step(
                    torch.from_numpy(self.obs), self.state, torch.from_numpy(self.episode_start)
                )
                # Inverse-CDF sampling in NumPy: a [B] draw from pi(.|s_t), cheaper than torch.multinomial.
                cdf = logits.softmax(-1).numpy().cumsum(1)  # [B, A]
                action = (self.rng.random((len(cdf), 1)) > cdf[:, :-1]).sum(1)  # [B]
                obs, reward, terminated, truncated, info = self.env.step(action)
                if not cfg.bootstrap_truncated:  # the biased variant, kept to measure the bias
                    terminated, truncated = terminated | truncated, np.zeros_like(truncated)
                final_value = self._final_values(truncated, info)  # [B], 0 where not truncated
                start = self.episode_start
                reward = reward * cfg.reward_scale
                buffer.add(self.obs, action, reward, terminated, truncated, start, final_value)
                done = terminated | truncated
                self.obs, self.episode_start = obs, done.astype(np.float32)
                if "episode_return" in info:
                    finished += [float(x) for x in info["episode_return"][done]]
            _, last_value, _ = self.local.step(
                torch.from_numpy(self.obs), self.state, torch.from_numpy(self.episode_start)
            )
            self.last_values = last_value.double().numpy()  # [B], V(s_n) for bootstrapping
            return buffer, finished

    def _final_values(self, truncated: np.ndarray, info: Info) -> np.ndarray:
        """V(final observation) [B] of the envs whose episode a time limit cut (0 elsewhere), evaluated with
        the LSTM state after the episode's last observation: the state the auto-reset is about to mask."""
        out = np.zeros(len(truncated))
        rows = np.flatnonzero(truncated)
        if rows.size:
            h, c = self.state  # each [1, B, H]
            final_obs = torch.from_numpy(info["final_obs"][rows])  # [b, D]
            idx = torch.from_numpy(rows)
            _, value, _ = self.local.step(final_obs, (h[:, idx], c[:, idx]), torch.zeros(rows.size))
            out[rows] = value.double().numpy()
        return out


def hash_seed(seed: int, rank: int, stream: str) -> int:
    """A distinct, reproducible 63-bit seed per (run seed, worker rank, random stream)."""
    tag = int.from_bytes(stream.encode()[:8].ljust(8, b"\0"), "little")
    return int(np.random.SeedSequence([seed, rank, tag]).generate_state(1, np.uint64)[0] >> 1)
