"""One A3C worker's rollout: time limits bootstrap from the critic, terminations do not; its metrics.
The shared Adam: worker processes step one set of moments, which the parent sees."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from pipeline.regimes.model import RegimeConfig
from pipeline.rl.a3c import A3CWorker, LocalCounter, SharedAdam
from pipeline.rl.config import TrainConfig
from pipeline.rl.env import EnvConfig
from pipeline.rl.network import LSTMActorCritic
from pipeline.rl.runner import run_async

TARGET = torch.tensor([1.0, -2.0, 0.5])


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


def _adam_steps(model: torch.nn.Linear, optimizer: torch.optim.Optimizer, lock: Any, steps: int) -> None:
    """A worker process: ``steps`` Adam steps on the shared model, one at a time under ``lock`` (so the
    result is exactly that of the same number of steps in one process, whichever worker took each)."""
    torch.set_num_threads(1)
    for _ in range(steps):
        with lock:
            optimizer.zero_grad()
            ((model.weight[0] - TARGET) ** 2).sum().backward()
            optimizer.step()


@pytest.mark.integration
def test_adam_steps_taken_in_worker_processes_land_in_the_parents_shared_moments() -> None:
    workers, steps = 3, 4
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1, bias=False)
    reference = torch.nn.Linear(3, 1, bias=False)
    reference.load_state_dict(model.state_dict())
    model.share_memory()
    shared = SharedAdam(model.parameters(), lr=0.1)
    ctx = mp.get_context("fork")  # TrainConfig's default start method
    lock = ctx.Lock()
    procs = [ctx.Process(target=_adam_steps, args=(model, shared, lock, steps)) for _ in range(workers)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=60)
    assert [proc.exitcode for proc in procs] == [0] * workers
    # The same 12 steps in one process, with a plain Adam.
    plain = torch.optim.Adam(reference.parameters(), lr=0.1, eps=1e-5, foreach=False)
    _adam_steps(reference, plain, mp.get_context("fork").Lock(), workers * steps)
    ours, theirs = shared.state[model.weight], plain.state[reference.weight]
    assert float(ours["step"]) == workers * steps  # every worker's steps, counted in the parent
    torch.testing.assert_close(ours["exp_avg"], theirs["exp_avg"])
    torch.testing.assert_close(ours["exp_avg_sq"], theirs["exp_avg_sq"])
    torch.testing.assert_close(model.weight, reference.weight)


@pytest.mark.integration
def test_async_a3c_workers_step_the_optimiser_state_the_parent_holds(make_market) -> None:
    closes = 10_000 * np.exp(np.cumsum(np.random.default_rng(1).normal(0, 0.01, 120)))
    config = TrainConfig(
        mode="async",
        n_workers=2,
        n_envs=2,
        n_steps=5,
        total_steps=400,
        hidden_size=16,
        progress=False,
        env=EnvConfig(window=2, episode_length=16),
        regimes=RegimeConfig(enabled=False),
    )
    market = make_market(opens=closes, closes=closes, n_features=2)
    probe = A3CWorker(0, config, market)
    model = LSTMActorCritic(probe.env.obs_dim, probe.env.n_actions, config.hidden_size)
    optimizer = SharedAdam(model.parameters(), lr=config.learning_rate, eps=config.adam_eps)
    updates: Counter[int] = Counter()
    run_async(config, market, model, optimizer, lambda m: updates.update([m["rank"]]))
    assert set(updates) == {0, 1}
    (parent_steps,) = {float(optimizer.state[p]["step"]) for p in model.parameters()}
    # Lock-free (Hogwild!) increments may rarely collide, but the parent's count must hold more updates
    # than any one worker made: both processes stepped the moments the parent holds.
    assert max(updates.values()) < parent_steps <= sum(updates.values()), (parent_steps, updates)
    assert all(optimizer.state[p]["exp_avg_sq"].abs().sum() > 0 for p in model.parameters())
