"""Benchmark: env steps/s of A3C (2 worker processes) vs Stable-Baselines3 A2C in the same wall-clock time.

Usage: python tests/benchmarks/bench_train.py [--quick] [--seconds S] [--envs N] [--sb3-envs M]
Same market (planted regime drift), features, regimes, costs, rollout length (20), hidden size (64), gamma,
GAE lambda, learning rate (decayed linearly to 0 over the budget for both) and loss weights. SB3 has no
recurrent A2C, so it gets an MLP [64, 64] on the same observation; it steps the same vectorised env through
a VecEnv adapter. Each A3C worker and the SB3 learner get the same number of envs (``--envs``, default 16):
A3C's two learners run in parallel processes, SB3's one learner in this process (``--sb3-envs 32`` instead
gives SB3 as many envs as A3C has in total).
Afterwards each model is backtested greedily on the held-out bars. Ends with one JSON line:
a3c_steps_per_s, sb3_a2c_steps_per_s, ratio (target >= 2), a3c_oos_return, sb3_oos_return.

``--critic-seeds 0,1,2,3,4`` instead measures what bootstrapping time limits does to the critic: per seed,
A3C (sync, ``--critic-steps`` env steps) is trained twice, treating time limits as terminal and
bootstrapping them, and each critic's V(s_t) is compared with the discounted return on a fresh path of the
same planted-drift process (``pipeline.rl.diagnostics.critic_error``); JSON: critic_mae_*, critic_bias_*,
rollout_ev_* (explained variance of the last 50 updates) for ``terminal`` and ``bootstrap``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from stable_baselines3 import A2C
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnv

from pipeline.backtest.engine import run_backtest
from pipeline.backtest.metrics import compute_metrics
from pipeline.regimes.model import RegimeConfig, RegimeModel
from pipeline.rl.agent import AgentPolicy, prepare_market
from pipeline.rl.config import TrainConfig
from pipeline.rl.diagnostics import critic_error
from pipeline.rl.env import EnvConfig, VecTradingEnv
from pipeline.rl.market import FeatureNormaliser, MarketArrays
from pipeline.rl.synthetic import regime_switching_bars
from pipeline.rl.train import train, train_on_market

N_TRAIN = 2000


class SB3VecEnv(VecEnv):
    """Our vectorised env behind SB3's VecEnv interface (rewards scaled like A3C's ``reward_scale``; time
    limits reported as ``TimeLimit.truncated`` with the ``terminal_observation``, so both bootstrap them)."""

    def __init__(self, env: VecTradingEnv, reward_scale: float) -> None:
        space = gym.spaces.Box(-np.inf, np.inf, shape=(env.obs_dim,), dtype=np.float32)
        super().__init__(env.n_envs, space, gym.spaces.Discrete(env.n_actions))
        self.env, self.scale = env, reward_scale
        self.actions = np.zeros(env.n_envs, np.int64)

    def reset(self) -> np.ndarray:
        return self.env.reset()

    def step_async(self, actions: np.ndarray) -> None:
        self.actions = actions

    def step_wait(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        obs, reward, terminated, truncated, info = self.env.step(self.actions)
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        for i in np.flatnonzero(terminated | truncated):
            # SB3's VecEnv convention: it bootstraps a time limit from V(terminal_observation), as A3C does.
            cut = bool(truncated[i])
            infos[i] = {"terminal_observation": info["final_obs"][i], "TimeLimit.truncated": cut}
        return obs, (reward * self.scale).astype(np.float32), terminated | truncated, infos

    def close(self) -> None:
        pass

    def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
        return [getattr(self.env, attr_name)] * self.num_envs

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
        setattr(self.env, attr_name, value)

    def env_method(self, method_name: str, *args: Any, indices: Any = None, **kwargs: Any) -> list[Any]:
        return [getattr(self.env, method_name)(*args, **kwargs)]

    def env_is_wrapped(self, wrapper_class: Any, indices: Any = None) -> list[bool]:
        return [False] * self.num_envs


class TimeBudget(BaseCallback):
    """Stops SB3 after ``seconds`` of learning."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds, self.t0 = seconds, 0.0

    def _on_training_start(self) -> None:
        self.t0 = time.time()

    def _on_step(self) -> bool:
        return time.time() - self.t0 < self.seconds


class SB3Policy:
    """An SB3 model as a backtest policy (greedy)."""

    name = "sb3_a2c"

    def __init__(self, model: A2C) -> None:
        self.model = model

    def reset(self, market: MarketArrays, n_envs: int) -> None:
        pass

    def act(self, obs: np.ndarray, t: np.ndarray) -> np.ndarray:
        action, _ = self.model.predict(obs, deterministic=True)
        return np.asarray(action)


def build_market(config: TrainConfig) -> tuple[MarketArrays, int]:
    bars = regime_switching_bars(3000, seed=1)
    regimes = RegimeModel(config.regimes).fit(bars.iloc[:N_TRAIN])
    raw = prepare_market(bars, config.feature_set, regimes)
    split = raw.position_of(bars.index[N_TRAIN])
    normaliser = FeatureNormaliser.fit(raw.features[:split])  # training rows only
    return raw.with_features(normaliser.transform(raw.features)), split


def oos_return(policy: Any, market: MarketArrays, config: TrainConfig, split: int) -> float:
    return compute_metrics(run_backtest(policy, market, config.env, start=split))["total_return"]


def run_a3c(config: TrainConfig, market: MarketArrays, split: int) -> tuple[float, float]:
    model, _, steps, seconds = train_on_market(config, market, bounds=(0, split))
    return steps / seconds, oos_return(AgentPolicy(model), market, config, split)


def run_sb3(
    config: TrainConfig, market: MarketArrays, split: int, seconds: float, n_envs: int
) -> tuple[float, float]:
    torch.set_num_threads(1)  # its batches are tiny too; one thread is SB3's fastest setting here
    env = VecTradingEnv(market, config.env, n_envs=n_envs, seed=config.seed, bounds=(0, split))
    model = A2C(
        "MlpPolicy",
        SB3VecEnv(env, config.reward_scale),
        n_steps=config.n_steps,
        learning_rate=config.learning_rate,
        gamma=config.gamma,
        gae_lambda=config.gae_lambda,
        ent_coef=config.ent_coef,
        vf_coef=config.vf_coef,
        max_grad_norm=config.max_grad_norm,
        policy_kwargs={"net_arch": [config.hidden_size, config.hidden_size]},
        seed=config.seed,
        device="cpu",
    )
    t0 = time.time()
    # The same learning-rate decay as A3C's: linear to 0 over the wall-clock budget.
    model.lr_schedule = lambda _: config.learning_rate * max(1.0 - (time.time() - t0) / seconds, 0.0)
    model.learn(total_timesteps=10**10, callback=TimeBudget(seconds))
    rate = model.num_timesteps / (time.time() - t0)
    return rate, oos_return(SB3Policy(model), market, config, split)


def bench_config(envs_per_worker: int, seconds: float) -> TrainConfig:
    return TrainConfig(
        mode="async",
        n_workers=2,
        n_envs=envs_per_worker,
        n_steps=20,
        total_steps=None,
        max_seconds=seconds,
        lr_schedule="linear",  # decays to 0 over the time budget; SB3 gets the same schedule below
        progress=False,
        env=EnvConfig(window=4, episode_length=128),
        regimes=RegimeConfig(k_min=2, k_max=3),
    )


def compare_critics(seeds: list[int], steps: int) -> dict[str, float]:
    """Held-out critic error with time limits treated as terminal vs bootstrapped, averaged over seeds."""
    bars = regime_switching_bars(3000, seed=1).iloc[:N_TRAIN]
    fresh = regime_switching_bars(6000, seed=101)
    base = replace(bench_config(8, 1.0), mode="sync", total_steps=steps, max_seconds=None)
    rows: dict[str, list[tuple[float, float, float]]] = {"terminal": [], "bootstrap": []}
    for seed in seeds:
        for name, bootstrap in (("terminal", False), ("bootstrap", True)):
            result = train(replace(base, seed=seed, bootstrap_truncated=bootstrap), bars)
            market = result.agent.market(fresh)
            starts = np.arange(0, len(market) - 128 - 460 - 1, 4)  # 128-step episodes + 460 (gamma^k < 1 %)
            err = critic_error(result.agent.model, market, result.agent.config, starts)
            ev = float(result.history["losses/explained_variance"].tail(50).mean())
            rows[name].append((err.mean_abs_error, err.bias, ev))
            print(
                f"seed {seed} {name:9s}: |V - G| {err.mean_abs_error:.3f}, bias {err.bias:+.3f}, "
                f"rollout explained variance {ev:.3f}",
                flush=True,
            )
    figures: dict[str, float] = {}
    for name, values in rows.items():
        mae, bias, ev = np.mean(values, axis=0)
        figures |= {f"critic_mae_{name}": round(mae, 3), f"critic_bias_{name}": round(bias, 3)}
        figures[f"rollout_ev_{name}"] = round(ev, 3)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8 s per algorithm instead of 60 s")
    parser.add_argument("--seconds", type=float, default=None, help="wall-clock budget per algorithm")
    parser.add_argument("--envs", type=int, default=16, help="envs per A3C worker")
    parser.add_argument("--sb3-envs", type=int, default=None, help="envs of SB3 (default: --envs)")
    parser.add_argument("--critic-seeds", default=None, help="compare critics over these seeds instead")
    parser.add_argument("--critic-steps", type=int, default=100_000, help="env steps per critic run")
    args = parser.parse_args()
    if args.critic_seeds:
        seeds = [int(s) for s in args.critic_seeds.split(",")]
        print(json.dumps({**compare_critics(seeds, args.critic_steps), "seeds": len(seeds)}))
        return
    seconds = args.seconds or (8.0 if args.quick else 60.0)
    sb3_envs = args.sb3_envs or args.envs
    config = bench_config(args.envs, seconds)
    market, split = build_market(config)
    print(
        f"market: {len(market)} bars, train {split}, test {len(market) - split}, budget {seconds:.0f} s each",
        flush=True,
    )
    a3c_rate, a3c_ret = run_a3c(config, market, split)
    print(
        f"A3C (2 processes x {args.envs} envs, LSTM 64): {a3c_rate:,.0f} env steps/s, "
        f"out-of-sample return {a3c_ret:+.3f}",
        flush=True,
    )
    sb3_rate, sb3_ret = run_sb3(replace(config), market, split, seconds, sb3_envs)
    print(
        f"SB3 A2C (1 process x {sb3_envs} envs, MLP 64x64): {sb3_rate:,.0f} env steps/s, "
        f"out-of-sample return {sb3_ret:+.3f}",
        flush=True,
    )
    buy_hold = float(market.close[-1] / market.close[split] - 1.0)
    figures = {
        "a3c_steps_per_s": round(a3c_rate, 1),
        "sb3_a2c_steps_per_s": round(sb3_rate, 1),
        "ratio": round(a3c_rate / sb3_rate, 2),
        "a3c_oos_return": round(a3c_ret, 4),
        "sb3_oos_return": round(sb3_ret, 4),
        "buy_and_hold_oos_return": round(buy_hold, 4),
        "seconds_each": seconds,
        "a3c_envs_per_worker": args.envs,
        "sb3_envs": sb3_envs,
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
