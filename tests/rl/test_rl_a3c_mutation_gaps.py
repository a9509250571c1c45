"""A3C in one process, number by number: the shared Adam against plain Adam (and Adam's first step by hand),
the actor-critic loss of a hand-made rollout, the learning-rate schedule, each worker's seeds, its
inverse-CDF action draw, what a rollout stores, and one update replayed by hand (gaps found by mutation
testing, ``tools/mutation.py``). Everything runs in the test process: spawned workers would not see mutmut's
mutated copy."""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pipeline.regimes.model import RegimeConfig
from pipeline.rl.a3c import A3CWorker, LocalCounter, SharedAdam, a3c_loss, hash_seed, scheduled_lr
from pipeline.rl.buffer import explained_variance
from pipeline.rl.config import TrainConfig
from pipeline.rl.env import EnvConfig, VecTradingEnv
from pipeline.rl.network import LSTMActorCritic, single_threaded
from tests.rl.conftest import hand_market


@pytest.fixture(autouse=True)
def _one_thread_and_own_rng() -> Iterator[None]:
    """torch's thread count and global RNG are process-wide: both are restored after each test."""
    with single_threaded(), torch.random.fork_rng():
        torch.manual_seed(0)
        yield


def _market(n_bars: int = 80) -> Any:
    closes = 10_000 * np.exp(np.cumsum(np.random.default_rng(0).normal(0, 0.01, n_bars)))
    return hand_market(opens=closes, closes=closes, n_features=2)


def _config(**overrides: Any) -> TrainConfig:
    base: dict[str, Any] = {
        "mode": "sync",
        "n_workers": 1,
        "n_envs": 2,
        "n_steps": 6,
        "total_steps": 120,
        "hidden_size": 8,
        "progress": False,
        "env": EnvConfig(window=2, episode_length=3),
        "regimes": RegimeConfig(enabled=False),
    }
    return TrainConfig(**(base | overrides))


def _spy(worker: A3CWorker) -> list[tuple[np.ndarray, ...]]:
    """Record every (actions, obs, reward, terminated, truncated, info) the worker's envs return."""
    calls: list[tuple[Any, ...]] = []
    step = worker.env.step

    def spy(actions: np.ndarray) -> Any:
        out = step(actions)
        calls.append((np.array(actions), *(np.copy(x) if isinstance(x, np.ndarray) else x for x in out)))
        return out

    worker.env.step = spy  # type: ignore[method-assign]
    return calls


# --- SharedAdam ---------------------------------------------------------------------------------------


def _params() -> list[torch.nn.Parameter]:
    return [
        torch.nn.Parameter(torch.tensor([[0.5, -1.0], [2.0, 0.25]])),
        torch.nn.Parameter(torch.tensor([0.1, -0.3, 0.7])),
    ]


def _quadratic_loss(params: list[torch.nn.Parameter], k: int) -> torch.Tensor:
    return sum(((p - 0.1 * k) ** 2 * (i + 1)).sum() for i, p in enumerate(params))  # type: ignore[return-value]


def test_shared_adam_creates_zeroed_moments_in_shared_memory_before_any_step() -> None:
    params = _params()
    opt = SharedAdam(params, lr=0.01)
    for p in params:
        state = opt.state[p]
        assert set(state) == {"step", "exp_avg", "exp_avg_sq"}
        assert state["step"].shape == () and state["step"].dtype == torch.float32
        assert float(state["step"]) == 0.0
        for key in ("exp_avg", "exp_avg_sq"):
            assert state[key].shape == p.shape and not state[key].any()
        # in shared memory: a forked or spawned worker steps these very tensors
        assert all(state[key].is_shared() for key in ("step", "exp_avg", "exp_avg_sq"))
    # one set of moments per parameter, not one shared by all
    first, second = (opt.state[p]["exp_avg"] for p in params)
    assert first.data_ptr() != second.data_ptr()


def test_shared_adam_steps_the_same_numbers_as_torch_adam_in_the_shared_tensors() -> None:
    ours, theirs = _params(), _params()
    shared = SharedAdam(ours, lr=0.05)
    plain = torch.optim.Adam(theirs, lr=0.05, eps=1e-5)
    tensors = {id(p): dict(shared.state[p]) for p in ours}  # the shared tensors, before any step
    for k in range(3):
        for opt, params in ((shared, ours), (plain, theirs)):
            opt.zero_grad()
            _quadratic_loss(params, k).backward()
            opt.step()
    for p, q in zip(ours, theirs, strict=True):
        torch.testing.assert_close(p, q)
        for key in ("exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(shared.state[p][key], plain.state[q][key])
            assert shared.state[p][key] is tensors[id(p)][key]  # updated in place: other processes see it
        assert float(shared.state[p]["step"]) == 3.0
        assert shared.state[p]["step"] is tensors[id(p)]["step"]


def test_adams_first_step_is_lr_times_g_over_abs_g_plus_eps_with_eps_1e_5_by_default() -> None:
    # After one step m_hat = g and v_hat = g^2, so the update is lr * g / (|g| + eps): with g = 1e-4 and
    # eps = 1e-5 that is lr / 1.1 (with eps = 1e-8 it would be lr / 1.0001).
    p = torch.nn.Parameter(torch.tensor([1.0, -1.0]))
    opt = SharedAdam([p], lr=0.11)
    p.grad = torch.tensor([1e-4, -1e-4])
    opt.step()
    torch.testing.assert_close(p.detach(), torch.tensor([1.0 - 0.1, -1.0 + 0.1]), rtol=0, atol=1e-6)


def test_shared_adam_takes_its_eps() -> None:
    p = torch.nn.Parameter(torch.tensor([1.0]))
    opt = SharedAdam([p], lr=0.2, eps=1e-4)  # g = 1e-4: lr * 1e-4 / 2e-4 = lr / 2
    p.grad = torch.tensor([1e-4])
    opt.step()
    torch.testing.assert_close(p.detach(), torch.tensor([0.9]), rtol=0, atol=1e-6)


def test_set_lr_sets_the_learning_rate_of_every_group_for_the_next_step() -> None:
    a, b = (torch.nn.Parameter(torch.tensor([1.0])) for _ in range(2))
    opt = SharedAdam([{"params": [a], "lr": 0.5}, {"params": [b], "lr": 0.7}], lr=0.9)
    opt.set_lr(0.022)
    assert [group["lr"] for group in opt.param_groups] == [0.022, 0.022]
    a.grad, b.grad = torch.tensor([1e-4]), torch.tensor([-1e-4])
    opt.step()  # each moves lr / 1.1 = 0.02
    torch.testing.assert_close(a.detach(), torch.tensor([0.98]), rtol=0, atol=1e-6)
    torch.testing.assert_close(b.detach(), torch.tensor([1.02]), rtol=0, atol=1e-6)


# --- the loss -----------------------------------------------------------------------------------------


def test_a3c_loss_of_a_hand_made_rollout() -> None:
    # n = 1 step, B = 2 envs, A = 3 actions. Env 0: pi = (1/2, 1/4, 1/4), took action 0 with advantage 2;
    # env 1: pi uniform, took action 2 with advantage -1.
    logits = torch.tensor([[[math.log(2.0), 0.0, 0.0], [0.0, 0.0, 0.0]]], requires_grad=True)
    values = torch.tensor([[1.0, 0.0]], requires_grad=True)
    actions = torch.tensor([[0, 2]])
    advantages = torch.tensor([[2.0, -1.0]])
    returns = torch.tensor([[3.0, -1.0]])
    loss, metrics = a3c_loss(logits, values, actions, advantages, returns, vf_coef=0.5, ent_coef=0.1)
    pg = -(2.0 * math.log(0.5) + -1.0 * math.log(1 / 3)) / 2  # -E[A log pi(a)] = ln(4/3) / 2
    value = 0.5 * (2.0**2 + 1.0**2) / 2  # 1/2 E[(R - V)^2]
    entropy = (1.5 * math.log(2.0) + math.log(3.0)) / 2  # H(1/2, 1/4, 1/4) = 1.5 ln 2, H(uniform 3) = ln 3
    assert set(metrics) == {"losses/policy", "losses/value", "losses/entropy"}
    assert metrics["losses/policy"] == pytest.approx(pg, rel=1e-6)
    assert metrics["losses/value"] == pytest.approx(value, rel=1e-6)
    assert metrics["losses/entropy"] == pytest.approx(entropy, rel=1e-6)
    assert float(loss.detach()) == pytest.approx(pg + 0.5 * value - 0.1 * entropy, rel=1e-6)
    loss.backward()
    # d/dV of 0.5 * 1/2 * mean((R - V)^2) = 0.5 * (V - R) / 2: the critic moves towards the returns
    torch.testing.assert_close(values.grad, torch.tensor([[-0.5, 0.25]]))
    # d/dlogits of -A log pi(a) / 2 - 0.1 H / 2 for env 1 (uniform, so the entropy term has no gradient)
    torch.testing.assert_close(logits.grad[0, 1], torch.tensor([-1 / 6, -1 / 6, 1 / 3]))


def test_a3c_loss_weights_the_value_loss_and_the_entropy_bonus() -> None:
    logits = torch.tensor([[[0.3, -0.2], [1.0, 0.5]], [[0.0, 0.4], [-0.7, 0.1]]])
    values, returns = torch.tensor([[0.5, -1.0], [0.2, 0.0]]), torch.tensor([[1.0, 1.0], [-0.3, 0.6]])
    actions, adv = torch.tensor([[1, 0], [0, 1]]), torch.tensor([[0.5, -0.2], [1.5, 0.3]])
    base, m = a3c_loss(logits, values, actions, adv, returns, vf_coef=0.0, ent_coef=0.0)
    more_value, _ = a3c_loss(logits, values, actions, adv, returns, vf_coef=2.0, ent_coef=0.0)
    more_entropy, _ = a3c_loss(logits, values, actions, adv, returns, vf_coef=0.0, ent_coef=3.0)
    assert float(base) == pytest.approx(m["losses/policy"], rel=1e-6)
    assert float(more_value - base) == pytest.approx(2.0 * m["losses/value"], rel=1e-5)
    assert float(base - more_entropy) == pytest.approx(3.0 * m["losses/entropy"], rel=1e-5)
    # the log-probabilities are over the actions (the last axis), per step and env
    log_p = [
        [math.log(p) for p in torch.softmax(logits[t, b], 0).tolist()] for t in range(2) for b in range(2)
    ]
    taken = [log_p[0][1], log_p[1][0], log_p[2][0], log_p[3][1]]
    pg = -sum(a * lp for a, lp in zip(adv.flatten().tolist(), taken, strict=True)) / 4
    assert m["losses/policy"] == pytest.approx(pg, rel=1e-5)
    entropy = sum(-sum(math.exp(lp) * lp for lp in row) for row in log_p) / 4
    assert m["losses/entropy"] == pytest.approx(entropy, rel=1e-5)


def test_a3c_loss_of_a_single_env_pairs_each_steps_advantage_with_its_own_action() -> None:
    # n = 2 steps of B = 1 env: pi = (1/2, 1/2) at step 0 (took action 1), pi = (1/3, 2/3) at step 1 (took 0)
    logits = torch.tensor([[[0.0, 0.0]], [[0.0, math.log(2.0)]]])
    actions, adv = torch.tensor([[1], [0]]), torch.tensor([[1.0], [4.0]])
    zeros = torch.zeros(2, 1)
    _, m = a3c_loss(logits, zeros, actions, adv, zeros, vf_coef=0.5, ent_coef=0.01)
    assert m["losses/policy"] == pytest.approx(-(1.0 * math.log(0.5) + 4.0 * math.log(1 / 3)) / 2, rel=1e-6)


# --- the learning-rate schedule -------------------------------------------------------------------


def test_a_constant_schedule_keeps_the_learning_rate_past_the_budget() -> None:
    cfg = _config(learning_rate=0.01, lr_schedule="constant", total_steps=100, max_seconds=10.0)
    assert scheduled_lr(cfg, 0, 0.0) == 0.01
    assert scheduled_lr(cfg, 500, 50.0) == 0.01


def test_the_linear_schedule_decays_to_zero_over_the_step_budget_and_stays_there() -> None:
    cfg = _config(learning_rate=0.01, total_steps=1000)
    assert scheduled_lr(cfg, 0, 0.0) == pytest.approx(0.01)
    assert scheduled_lr(cfg, 250, 1e6) == pytest.approx(0.0075)  # no time budget: elapsed does not count
    assert scheduled_lr(cfg, 1000, 0.0) == 0.0
    assert scheduled_lr(cfg, 1500, 0.0) == 0.0  # never negative


def test_the_linear_schedule_decays_over_the_time_budget() -> None:
    cfg = _config(learning_rate=0.01, total_steps=None, max_seconds=100.0)
    assert scheduled_lr(cfg, 10**9, 0.0) == pytest.approx(0.01)  # no step budget: steps do not count
    assert scheduled_lr(cfg, 0, 25.0) == pytest.approx(0.0075)
    assert scheduled_lr(cfg, 0, 150.0) == 0.0


def test_with_both_budgets_the_one_further_along_sets_the_learning_rate() -> None:
    cfg = _config(learning_rate=0.01, total_steps=1000, max_seconds=100.0)
    assert scheduled_lr(cfg, 250, 50.0) == pytest.approx(0.005)  # time is further along
    assert scheduled_lr(cfg, 750, 10.0) == pytest.approx(0.0025)  # steps are further along


# --- seeds ----------------------------------------------------------------------------------------


def test_hash_seed_is_the_seed_sequence_of_seed_rank_and_the_streams_name_as_little_endian_bytes() -> None:
    tag = ord("e") + (ord("n") << 8) + (ord("v") << 16)  # b"env\0\0\0\0\0", little-endian
    state = int(np.random.SeedSequence([7, 2, tag]).generate_state(1, np.uint64)[0])
    assert hash_seed(7, 2, "env") == state >> 1  # 63 bits: fits a signed int64 seed
    assert 0 <= hash_seed(0, 0, "actions") < 2**63
    # only the name's first 8 bytes count
    assert hash_seed(0, 0, "abcdefghX") == hash_seed(0, 0, "abcdefghY") != hash_seed(0, 0, "abcdefg")


def test_each_worker_seeds_its_envs_and_its_action_draws_from_the_run_seed_and_its_rank() -> None:
    market, cfg = _market(), _config(seed=11)
    worker = A3CWorker(3, cfg, market)
    twin = VecTradingEnv(market, cfg.env, n_envs=2, seed=hash_seed(11, 3, "env"))
    np.testing.assert_array_equal(worker.obs, twin.reset())
    np.testing.assert_array_equal(worker.env.t, twin.t)
    expected = np.random.default_rng(hash_seed(11, 3, "actions")).random(4)
    np.testing.assert_array_equal(worker.rng.random(4), expected)
    assert worker.rank == 3 and worker.config is cfg
    assert not np.array_equal(A3CWorker(4, cfg, market).env.t, worker.env.t)  # another rank, other starts


def test_a_worker_trades_only_inside_its_bounds_with_its_own_local_model() -> None:
    market, cfg = _market(), _config(n_envs=3, hidden_size=5)
    worker = A3CWorker(0, cfg, market, bounds=(40, 60))
    bounded = VecTradingEnv(market, cfg.env, n_envs=3, bounds=(40, 60))
    unbounded = VecTradingEnv(market, cfg.env)
    assert (worker.env.lo, worker.env.hi) == (bounded.lo, bounded.hi) != (unbounded.lo, unbounded.hi)
    assert worker.env.n_envs == 3 and worker.obs.shape == (3, worker.env.obs_dim)
    assert (worker.env.t >= 40).all() and (worker.env.t < 60).all()
    local = worker.local
    assert (local.obs_dim, local.n_actions, local.hidden_size) == (worker.env.obs_dim, 2, 5)
    h, c = worker.state
    assert h.shape == c.shape == (1, 3, 5) and not h.any() and not c.any()
    np.testing.assert_array_equal(worker.episode_start, np.ones(3, np.float32))
    assert worker.episode_start.dtype == np.float32
    np.testing.assert_array_equal(worker.last_values, np.zeros(3))


# --- one rollout ------------------------------------------------------------------------------------


class ScriptedUniforms:
    """Stands in for the worker's action RNG: hands out the given uniforms, records the shapes asked."""

    def __init__(self, rows: list[list[float]]) -> None:
        self.rows, self.shapes = list(rows), []

    def random(self, shape: tuple[int, int]) -> np.ndarray:
        self.shapes.append(shape)
        return np.asarray(self.rows.pop(0), dtype=np.float64).reshape(shape)


def _fixed_policy(worker: A3CWorker, probs: list[float]) -> None:
    """Make pi(.|s) = probs in every state (a zero policy weight, log-probs as the bias)."""
    with torch.no_grad():
        worker.local.policy_head.weight.zero_()
        worker.local.policy_head.bias.copy_(torch.log(torch.tensor(probs)))


def test_actions_are_drawn_by_inverse_cdf_and_a_uniform_on_a_cdf_step_takes_the_lower_action() -> None:
    levels = (0.0, 0.25, 0.5, 1.0)
    cfg = _config(n_envs=4, n_steps=1, env=EnvConfig(window=2, episode_length=3, levels=levels))
    worker = A3CWorker(0, cfg, _market())
    _fixed_policy(worker, [0.25] * 4)  # cdf 0.25, 0.5, 0.75, 1 (exact in float32)
    worker.rng = ScriptedUniforms([[0.1, 0.25, 0.5, 0.9999]])  # type: ignore[assignment]
    calls = _spy(worker)
    buffer, _ = worker._collect()
    np.testing.assert_array_equal(buffer.actions[0], [0, 0, 1, 3])
    np.testing.assert_array_equal(calls[0][0], [0, 0, 1, 3])
    assert worker.rng.shapes == [(4, 1)]  # type: ignore[attr-defined]


def test_actions_follow_the_policys_probabilities_over_actions() -> None:
    levels = (0.0, 0.25, 0.5, 1.0)
    cfg = _config(n_envs=4, n_steps=2, env=EnvConfig(window=2, episode_length=3, levels=levels))
    worker = A3CWorker(0, cfg, _market())
    _fixed_policy(worker, [0.5, 0.25, 0.125, 0.125])  # cdf 0.5, 0.75, 0.875, 1
    worker.rng = ScriptedUniforms([[0.3, 0.6, 0.8, 0.95], [0.95, 0.8, 0.6, 0.3]])  # type: ignore[assignment]
    buffer, _ = worker._collect()
    np.testing.assert_array_equal(buffer.actions, [[0, 1, 2, 3], [3, 2, 1, 0]])


def test_a_rollout_stores_each_observation_before_its_step_scaled_rewards_and_episode_starts() -> None:
    cfg = _config(n_steps=7, reward_scale=10.0)  # episodes of 3 steps: they end after steps 2 and 5
    worker = A3CWorker(0, cfg, _market())
    obs0 = worker.obs.copy()
    calls = _spy(worker)
    buffer, finished = worker._collect()
    assert (buffer.gamma, buffer.gae_lambda) == (cfg.gamma, cfg.gae_lambda)
    np.testing.assert_array_equal(buffer.obs[0], obs0)
    for t in range(1, 7):
        np.testing.assert_array_equal(buffer.obs[t], calls[t - 1][1])  # the obs the previous step returned
    np.testing.assert_array_equal(worker.obs, calls[-1][1])
    np.testing.assert_array_equal(buffer.actions, np.stack([c[0] for c in calls]))
    rewards = np.stack([c[2] for c in calls])
    assert rewards.any()
    np.testing.assert_allclose(buffer.rewards, rewards * 10.0)
    np.testing.assert_array_equal(buffer.episode_starts[:, 0], [1, 0, 0, 1, 0, 0, 1])
    np.testing.assert_array_equal(buffer.episode_starts[:, 1], [1, 0, 0, 1, 0, 0, 1])
    np.testing.assert_array_equal(worker.episode_start, [0, 0])  # step 6 began an episode that goes on
    assert worker.episode_start.dtype == np.float32
    ended = [c[-1]["episode_return"][c[4] | c[3]] for c in calls if "episode_return" in c[-1]]
    assert len(ended) == 2 and finished == pytest.approx(np.concatenate(ended).tolist())
    assert all(type(x) is float for x in finished) and len(finished) == 4


def test_the_rollout_keeps_the_lstm_state_and_bootstraps_from_the_value_after_its_last_step() -> None:
    cfg = _config(n_steps=4)  # the last step is the first of a new episode: V(s_4) uses its memory
    worker = A3CWorker(0, cfg, _market())
    buffer, _ = worker._collect()
    # replay the whole rollout from the zero state, then one more step: the state and V(s_n) must match
    seq = np.concatenate([buffer.obs, worker.obs[None]])  # [5, B, D]
    starts = np.concatenate([buffer.episode_starts, worker.episode_start[None]])
    with torch.no_grad():
        _, values, _ = worker.local(
            torch.from_numpy(seq), worker.local.initial_state(2), torch.from_numpy(starts)
        )
    np.testing.assert_allclose(worker.last_values, values[-1].double().numpy(), rtol=1e-5, atol=1e-6)
    assert worker.last_values.dtype == np.float64 and worker.last_values.shape == (2,)
    with torch.no_grad():
        _, _, (h4, c4) = worker.local(
            torch.from_numpy(buffer.obs),
            worker.local.initial_state(2),
            torch.from_numpy(buffer.episode_starts),
        )
    torch.testing.assert_close(worker.state[0], h4, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(worker.state[1], c4, rtol=1e-5, atol=1e-6)


# --- one update -------------------------------------------------------------------------------------


class LockedCounter:
    """A step counter that refuses a write outside its lock (as ``multiprocessing.Value`` needs)."""

    def __init__(self, value: int) -> None:
        self._value, self.held, self.locks = value, False, 0

    @property
    def value(self) -> int:
        return self._value

    @value.setter
    def value(self, v: int) -> None:
        assert self.held, "the shared step counter was written outside its lock"
        self._value = v

    def get_lock(self) -> LockedCounter:
        return self

    def __enter__(self) -> None:
        self.held, self.locks = True, self.locks + 1

    def __exit__(self, *exc: object) -> None:
        self.held = False


def test_an_update_is_one_clipped_gradient_step_of_shared_adam_on_the_global_model_replayed_by_hand() -> None:
    cfg = _config(total_steps=120, learning_rate=0.01, vf_coef=0.7, ent_coef=0.05, max_grad_norm=0.1)
    worker = A3CWorker(2, cfg, _market())
    torch.manual_seed(5)
    global_model = LSTMActorCritic(worker.env.obs_dim, worker.env.n_actions, cfg.hidden_size)
    before = copy.deepcopy(global_model)
    optimizer = SharedAdam(global_model.parameters(), lr=0.9)
    state0 = worker.state
    collected: list[Any] = []
    collect = worker._collect

    def spy() -> Any:
        collected.append(collect())
        return collected[-1]

    worker._collect = spy  # type: ignore[method-assign]
    counter = LockedCounter(24)
    metrics = worker.update(global_model, optimizer, counter, elapsed=2.0)
    (buffer, finished), steps = collected[0], 24 + 6 * 2

    # by hand: the loss of the rollout under the global weights, from the rollout's first state
    ref = copy.deepcopy(before)
    logits, values, _ = ref(buffer.obs_tensor(), state0, buffer.starts_tensor())
    predicted = values.detach().double().numpy()
    batch = buffer.batch(predicted, worker.last_values)
    log_p = F.log_softmax(logits, -1)
    log_prob = log_p.gather(-1, batch.actions[..., None])[..., 0]
    entropy = -(log_p.exp() * log_p).sum(-1).mean()
    loss = -(batch.advantages * log_prob).mean() + 0.7 * 0.5 * ((batch.returns - values) ** 2).mean()
    (loss - 0.05 * entropy).backward()
    norm = torch.sqrt(sum((p.grad**2).sum() for p in ref.parameters()))  # type: ignore[arg-type]
    for p in ref.parameters():
        p.grad.mul_(min(1.0, 0.1 / (float(norm) + 1e-6)))
    lr = 0.01 * (1 - steps / 120)
    adam = torch.optim.Adam(ref.parameters(), lr=lr, eps=1e-5)
    adam.step()

    for name, p in global_model.named_parameters():
        torch.testing.assert_close(p, dict(ref.named_parameters())[name], rtol=1e-4, atol=1e-6, msg=name)
    assert float(norm) > 0.1  # the clip did bind
    # Adam's first step hardly depends on the gradient's scale: its moments show the clipped gradient
    for p, q in zip(global_model.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-7)
        ours, theirs = optimizer.state[p]["exp_avg"], adam.state[q]["exp_avg"]
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-8)
    assert counter.value == steps and counter.locks == 1
    assert [g["lr"] for g in optimizer.param_groups] == [pytest.approx(lr)]
    assert {float(optimizer.state[p]["step"]) for p in global_model.parameters()} == {1.0}
    # the global gradients are the local ones (aliased: no copy per update)
    for g, local in zip(global_model.parameters(), worker.local.parameters(), strict=True):
        assert g.grad is local.grad
    assert metrics["rank"] == 2
    assert metrics["global_step"] == steps
    assert metrics["losses/grad_norm"] == pytest.approx(float(norm), rel=1e-5)
    ev = explained_variance(predicted, batch.returns.double().numpy())
    assert metrics["losses/explained_variance"] == pytest.approx(ev, rel=1e-6)
    assert metrics["charts/learning_rate"] == pytest.approx(lr)
    assert metrics["charts/steps_per_s"] == pytest.approx(steps / 2.0)
    assert metrics["losses/value"] == pytest.approx(
        float(0.5 * ((batch.returns - values.detach()) ** 2).mean()), rel=1e-5
    )
    assert metrics["losses/entropy"] == pytest.approx(float(entropy.detach()), rel=1e-5)
    assert len(finished) == 4  # 2 envs x episodes of 3 steps in 6 steps
    assert metrics["charts/episodes"] == 4
    assert metrics["charts/episode_return"] == pytest.approx(float(np.mean(finished)))


def test_the_worker_starts_each_update_from_the_global_weights_and_counts_steps_across_updates() -> None:
    cfg = _config(n_steps=2, lr_schedule="constant", learning_rate=0.001)
    worker = A3CWorker(0, cfg, _market())
    global_model = LSTMActorCritic(worker.env.obs_dim, worker.env.n_actions, cfg.hidden_size)
    optimizer, counter = SharedAdam(global_model.parameters(), lr=0.001), LocalCounter()
    assert counter.value == 0
    with warnings.catch_warnings():  # no "mean of empty slice" when no episode finished
        warnings.simplefilter("error", RuntimeWarning)
        first = worker.update(global_model, optimizer, counter, elapsed=0.0)
    with torch.no_grad():  # another worker moved the global model meanwhile
        for p in global_model.parameters():
            p.add_(0.01)
    synced = {k: v.clone() for k, v in global_model.state_dict().items()}
    second = worker.update(global_model, optimizer, counter, elapsed=0.0)
    # the local model acted and computed its gradient with the global weights of the update's start
    local = worker.local.state_dict()
    assert list(local) == list(synced)
    for k, v in synced.items():
        torch.testing.assert_close(local[k], v, rtol=0, atol=0, msg=k)
    assert not torch.equal(global_model.state_dict()["value_head.bias"], synced["value_head.bias"])
    assert (first["global_step"], second["global_step"], counter.value) == (4, 8, 8)
    # two steps of 2 envs, episodes of 3: nothing finished in the first update, both envs in the second
    assert first["charts/episodes"] == 0 and math.isnan(first["charts/episode_return"])
    assert second["charts/episodes"] == 2
    assert math.isnan(first["charts/steps_per_s"])  # no elapsed time yet: no rate
    assert first["charts/learning_rate"] == 0.001


def test_an_updates_learning_rate_follows_the_time_budget_when_it_is_further_along() -> None:
    cfg = _config(n_steps=2, learning_rate=0.01, total_steps=10_000, max_seconds=10.0)
    worker = A3CWorker(0, cfg, _market())
    global_model = LSTMActorCritic(worker.env.obs_dim, worker.env.n_actions, cfg.hidden_size)
    optimizer = SharedAdam(global_model.parameters(), lr=0.01)
    metrics = worker.update(global_model, optimizer, LocalCounter(), elapsed=5.0)
    # 4 of 10,000 steps taken, but half of the 10 s spent: the rate is halved
    assert metrics["charts/learning_rate"] == pytest.approx(0.005)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.005)
