"""A3C training: it learns a planted edge, claims none on noise, runs across processes, is reproducible."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from pipeline.backtest.engine import run_backtest
from pipeline.backtest.metrics import compute_metrics
from pipeline.backtest.policies import BuyAndHold
from pipeline.regimes.model import RegimeConfig
from pipeline.rl.agent import TradingAgent
from pipeline.rl.network import LSTMActorCritic
from pipeline.rl.synthetic import random_walk_bars, regime_switching_bars
from pipeline.rl.train import train


def _oos(agent: TradingAgent, bars: pd.DataFrame, test_start: int) -> tuple[dict, dict]:
    market = agent.market(bars)
    start = market.position_of(bars.index[test_start])
    env = agent.config.env
    return (
        compute_metrics(run_backtest(agent.policy(), market, env, start)),
        compute_metrics(run_backtest(BuyAndHold(env), market, env, start)),
    )


@pytest.mark.slow
def test_a3c_beats_buy_and_hold_out_of_sample_on_a_planted_regime_drift(small_train_config) -> None:
    bars = regime_switching_bars(3000, seed=1)  # drift +0.3 %/bar in calm regimes, -0.3 % in volatile ones
    result = train(small_train_config(), bars.iloc[:2000])
    agent, hold = _oos(result.agent, bars, 2000)
    assert agent["total_return"] > hold["total_return"] + 0.5
    assert agent["sharpe_ci_low"] > 0  # a real, significant edge
    assert agent["max_drawdown"] < hold["max_drawdown"]


@pytest.mark.slow
def test_a3c_claims_no_edge_on_a_random_walk(small_train_config) -> None:
    bars = random_walk_bars(3000, seed=2)
    result = train(small_train_config(), bars.iloc[:2000])
    agent, _ = _oos(result.agent, bars, 2000)
    assert agent["sharpe_ci_low"] <= 0.0 <= agent["sharpe_ci_high"]
    # The greedy policy may simply stay flat; the sampling policy trades and still claims no positive edge
    # (costs can make it reliably negative, which is no edge either).
    market = result.agent.market(bars)
    start = market.position_of(bars.index[2000])
    for seed in range(3):
        run = run_backtest(
            result.agent.policy(deterministic=False, seed=seed), market, result.agent.config.env, start
        )
        sampled = compute_metrics(run)
        assert sampled["turnover"] > 0
        assert sampled["sharpe_ci_low"] <= 0.0


@pytest.mark.slow
def test_async_a3c_two_worker_processes_update_shared_weights_and_report_metrics(small_train_config) -> None:
    bars = regime_switching_bars(800, seed=3)
    config = small_train_config(mode="async", total_steps=6_000)
    result = train(config, bars)
    torch.manual_seed(config.seed)
    initial = LSTMActorCritic(result.agent.model.obs_dim, result.agent.model.n_actions, config.hidden_size)
    moved = [
        not torch.equal(a, b)
        for a, b in zip(initial.state_dict().values(), result.agent.model.state_dict().values(), strict=True)
    ]
    assert all(moved)  # every tensor of the global model was trained by the workers
    assert result.steps >= 6_000
    assert set(result.history["rank"]) == {0, 1}  # metrics arrived from both processes through the queue
    assert {"losses/policy", "losses/value", "losses/entropy", "charts/episode_return"} <= set(result.history)
    assert result.history["global_step"].max() == result.steps


@pytest.mark.slow
def test_async_a3c_also_runs_with_the_spawn_start_method(small_train_config) -> None:
    # Workers live in an importable module, so spawned children can unpickle them (DESIGN.md: fork is the
    # default because spawn dies under Airflow's LocalExecutor, but outside it spawn must work too).
    result = train(
        small_train_config(mode="async", start_method="spawn", total_steps=2_000), regime_switching_bars(600)
    )
    assert result.steps >= 2_000 and set(result.history["rank"]) == {0, 1}


def test_sync_training_is_reproducible_from_its_seed(small_train_config) -> None:
    bars = regime_switching_bars(600, seed=4)

    def weights(seed: int) -> list[torch.Tensor]:
        result = train(small_train_config(total_steps=1_600, seed=seed), bars)
        return list(result.agent.model.state_dict().values())

    first, again, other = weights(0), weights(0), weights(1)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, other, strict=True))


def test_a_time_budget_stops_training_and_the_history_logs_throughput_and_critic_fit(
    small_train_config,
) -> None:
    bars = regime_switching_bars(600, seed=5)
    result = train(small_train_config(total_steps=None, max_seconds=1.5), bars)
    assert result.steps > 0 and result.seconds < 5.0
    history = result.history
    assert history["charts/learning_rate"].iloc[-1] < history["charts/learning_rate"].iloc[0]
    assert (history["charts/steps_per_s"] > 0).all()
    assert (history["losses/explained_variance"].dropna() <= 1.0).all()


def test_a_saved_agent_reloads_and_acts_identically(small_train_config, tmp_path) -> None:
    bars = regime_switching_bars(700, seed=6)
    agent = train(small_train_config(total_steps=2_000), bars.iloc[:500]).agent
    loaded = TradingAgent.load(agent.save(tmp_path / "agent"))
    assert sorted(p.name for p in (tmp_path / "agent").iterdir()) == ["agent.json", "model.pt", "regimes"]
    runs = [run_backtest(a.policy(), a.market(bars), a.config.env) for a in (agent, loaded)]
    pd.testing.assert_frame_equal(runs[0].frame, runs[1].frame)
    assert agent.decide(bars) == loaded.decide(bars)
    assert loaded.decide(bars)["action"] in range(len(loaded.config.env.levels))


def test_an_agent_without_regimes_reports_no_regime(small_train_config) -> None:
    bars = regime_switching_bars(500, seed=8)
    config = small_train_config(total_steps=800, regimes=RegimeConfig(enabled=False))
    decision = train(config, bars.iloc[:400]).agent.decide(bars)
    assert decision["regime"] is None and decision["action"] in (0, 1)


def test_actions_up_to_t_do_not_change_when_future_bars_change(small_train_config) -> None:
    bars = regime_switching_bars(700, seed=7)
    agent = train(small_train_config(total_steps=3_000), bars.iloc[:400]).agent
    t = 550
    rng = np.random.default_rng(0)
    future = bars.copy()
    shock = np.exp(rng.normal(0, 0.05, len(bars) - t - 1))[:, None]
    cols = ["open", "high", "low", "close"]
    future.iloc[t + 1 :, future.columns.get_indexer(cols)] = future[cols].to_numpy()[t + 1 :] * shock
    future.iloc[t + 1 :, future.columns.get_loc("volume")] *= 3.0
    paths = [run_backtest(agent.policy(), agent.market(b), agent.config.env).frame for b in (bars, future)]
    # frame row k holds the action decided at bar k-1: rows up to bar t+1 carry the decisions at bars ≤ t.
    upto = paths[0].index.get_loc(bars.index[t + 1])
    np.testing.assert_array_equal(paths[0]["action"][: upto + 1], paths[1]["action"][: upto + 1])
    assert not np.allclose(paths[0]["equity"][upto + 1 :], paths[1]["equity"][upto + 1 :])
