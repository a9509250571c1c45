"""Choosing the agent's configuration honestly: the seeds' ensemble acts on their mean probabilities, a
tuning run never backtests a test year, every (candidate, policy) is a trial the deflated Sharpe counts,
and ``krx evaluate --tune`` / ``--tuned`` tell a person what went wrong."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

import pipeline.backtest.walkforward as walkforward
from pipeline.backtest.engine import BacktestResult
from pipeline.backtest.evaluation import AgentEvaluationConfig, score
from pipeline.backtest.tuning import TUNING_FILE, chosen_config, tune_agent, write_tuning
from pipeline.cli import SHARED_KRX_DATA, app
from pipeline.rl.agent import AgentPolicy, EnsemblePolicy
from pipeline.rl.config import TrainConfig
from pipeline.rl.env import EnvConfig
from pipeline.rl.network import LSTMActorCritic
from pipeline.rl.train import train
from tests.features.krx_data import krx_bars


def _models(n: int, obs_dim: int = 6, n_actions: int = 3) -> list[LSTMActorCritic]:
    out = []
    for seed in range(n):
        torch.manual_seed(seed)
        model = LSTMActorCritic(obs_dim, n_actions, hidden_size=8)
        with torch.no_grad():  # spread the logits so the members disagree
            model.policy_head.weight.mul_(25.0)
        out.append(model.eval())
    return out


def test_ensemble_acts_on_the_members_mean_probabilities_carrying_each_state() -> None:
    models = _models(3)
    obs = np.random.default_rng(0).normal(size=(40, 4, 6)).astype(np.float32)  # 40 bars, 4 envs
    ensemble = EnsemblePolicy(models)
    ensemble.reset(None, 4)  # type: ignore[arg-type]
    singles = [AgentPolicy(m) for m in models]
    states = [m.initial_state(4) for m in models]
    disagreed = 0
    for t, x in enumerate(obs):
        got = ensemble.act(x, np.full(4, t))
        probs = []
        with torch.no_grad():
            for k, m in enumerate(models):
                start = torch.full((4,), 1.0 if t == 0 else 0.0)
                logits, states[k] = m.act_step(torch.from_numpy(x), states[k], start)
                probs.append(logits.softmax(-1))
        expected = torch.stack(probs).mean(0).argmax(-1).numpy()
        np.testing.assert_array_equal(got, expected)
        votes = np.stack([p.argmax(-1).numpy() for p in probs])
        disagreed += int((votes != votes[0]).any())
    assert disagreed > 0  # the case where averaging decides was exercised
    one = EnsemblePolicy(models[:1])
    one.reset(None, 4)  # type: ignore[arg-type]
    singles[0].reset(None, 4)  # type: ignore[arg-type]
    for t, x in enumerate(obs):  # one member: exactly that agent's greedy policy
        np.testing.assert_array_equal(one.act(x, np.full(4, t)), singles[0].act(x, np.full(4, t)))
    with pytest.raises(ValueError, match="at least one"):
        EnsemblePolicy([])


def test_agents_of_different_seeds_see_the_same_market() -> None:
    """The ensemble backtests every member on one market: features, regimes and scaling must not
    depend on the agent's seed."""
    bars = krx_bars("229200").iloc[:700]
    config = TrainConfig(mode="sync", total_steps=200, n_envs=2, n_steps=10, progress=False, env=EnvConfig())
    first, second = (train(replace(config, seed=s), bars.iloc[:600]).agent for s in (0, 7))
    a, b = first.market(bars), second.market(bars)
    np.testing.assert_array_equal(a.features, b.features)
    np.testing.assert_array_equal(a.regimes, b.regimes)
    assert not all(
        torch.equal(p, q) for p, q in zip(first.model.parameters(), second.model.parameters(), strict=True)
    )


def _frame(rows: list[tuple[str, int, float, float]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["strategy", "seed", "sharpe", "max_drawdown"])
    return frame.assign(symbol="A", year=2019, split="test")


def test_the_headline_judges_the_chosen_policy_and_pairs_count_each_seed() -> None:
    metrics = pd.concat(
        [
            _frame([("agent", 0, 0.1, 0.1), ("agent", 1, 0.2, 0.1), ("ensemble", -1, 0.9, 0.3)]),
            _frame([("buy_and_hold", 0, 0.5, 0.2)]),
        ]
    )
    rng = np.random.default_rng(0)
    returns = {("A", 2019, seed): rng.normal(0.001, 0.01, 100) for seed in (0, 1, -1)}
    agent, details = score(metrics, returns, AgentEvaluationConfig(seeds=(0, 1)))
    ensemble, _ = score(metrics, returns, AgentEvaluationConfig(seeds=(0, 1), policy="ensemble"))
    assert agent["folds_beat_bh"] == 0.0 and agent["mdd_not_worse"] == 1.0  # seed mean 0.15 < 0.5
    assert ensemble["folds_beat_bh"] == 1.0 and ensemble["mdd_not_worse"] == 0.0  # 0.9 > 0.5; 30 % > 20 %
    assert agent["pairs_beat_bh"] == ensemble["pairs_beat_bh"] == 0.0  # each seed's own agent
    assert ensemble["mean_sharpe_agent"] == pytest.approx(0.9)
    assert details["policies"]["ensemble"]["folds_beat_bh"] == 1.0  # both measured, whichever is judged
    assert details["policies"]["agent"]["mean_sharpe"] == pytest.approx(0.15)
    val = score(metrics.assign(split="val"), returns, AgentEvaluationConfig(seeds=(0, 1), splits=("val",)))
    assert val[0]["folds_beat_bh"] == 0.0 and val[1]["split"] == "val"
    with pytest.raises(ValueError, match="policy"):
        AgentEvaluationConfig(policy="best-seed")  # type: ignore[arg-type]


@pytest.mark.slow
def test_tuning_never_backtests_a_test_year_and_counts_every_trial(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bars = {"229200": krx_bars("229200")}
    seen: list[pd.Timestamp] = []
    real = walkforward.run_backtest

    def spy(*args: Any, **kwargs: Any) -> BacktestResult:
        result = real(*args, **kwargs)
        seen.append(result.frame.index[-1])
        return result

    monkeypatch.setattr(walkforward, "run_backtest", spy)
    base = AgentEvaluationConfig(years=(2019,), seeds=(0, 1), total_steps=600, n_workers=1)
    lines: list[str] = []
    tuning = tune_agent(bars, base, ["base", "levels5"], progress=lines.append)
    first_test_day = bars["229200"].index[bars["229200"].index.year == 2019][0]
    assert seen and max(seen) < first_test_day  # validation windows only
    assert {(t.candidate, t.policy) for t in tuning.trials} == {
        (c, p) for c in ("base", "levels5") for p in ("agent", "ensemble")
    }
    assert tuning.best.rank_key() == max(t.rank_key() for t in tuning.trials)
    assert any("candidate 2/2 levels5" in line for line in lines)

    path = write_tuning(tuning, tmp_path)
    saved = json.loads(path.read_text())
    assert saved["configurations"] == 4 and saved["split"] == "val" and len(saved["trials"]) == 4
    chosen = chosen_config(path, AgentEvaluationConfig())
    assert chosen.configurations == 4 and chosen.policy == tuning.best.policy
    expected_levels = (0.0, 0.25, 0.5, 0.75, 1.0) if tuning.best.candidate == "levels5" else (0.0, 0.5, 1.0)
    assert chosen.levels == expected_levels and chosen.splits == ("val", "test")
    assert chosen_config(path, replace(AgentEvaluationConfig(), configurations=9)).configurations == 9
    with pytest.raises(ValueError, match="known: base"):
        tune_agent(bars, base, ["nope"])


def _invoke(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *args: str) -> Any:
    monkeypatch.setenv("KRX_VAR_DIR", str(tmp_path))
    from pipeline.config import get_settings

    get_settings.cache_clear()
    try:
        return CliRunner().invoke(app, ["evaluate", "--symbol", "229200", *args])
    finally:
        get_settings.cache_clear()


def test_krx_evaluate_tuned_needs_a_tuning_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not (SHARED_KRX_DATA / "229200.csv").exists():
        pytest.skip(f"no shared KRX data at {SHARED_KRX_DATA}")
    result = _invoke(tmp_path, monkeypatch, "--tuned", "--ledger", str(tmp_path / "no-ledger.json"))
    assert result.exit_code == 1 and "krx evaluate --tune" in result.output
    assert not (tmp_path / "evaluate" / "summary.json").exists()
    both = _invoke(tmp_path, monkeypatch, "--tune", "--tuned")
    assert both.exit_code == 2 and "give one" in both.output
    unknown = _invoke(tmp_path, monkeypatch, "--tune", "--candidates", "base,wild", "--ledger", "none")
    assert unknown.exit_code == 2 and "wild" in unknown.output and "levels5" in unknown.output
    assert not (tmp_path / "evaluate" / TUNING_FILE).exists()


def test_a_budget_candidate_scales_the_base_budget_it_is_tuned_against() -> None:
    from pipeline.backtest.tuning import CANDIDATES, resolve

    assert resolve(AgentEvaluationConfig(total_steps=3_000), CANDIDATES["budget_2x"]) == {
        "total_steps": 6_000
    }
    assert resolve(AgentEvaluationConfig(), CANDIDATES["levels5"]) == {"levels": (0.0, 0.25, 0.5, 0.75, 1.0)}
    for name, overrides in CANDIDATES.items():  # every candidate is a valid, different configuration
        config = AgentEvaluationConfig(**resolve(AgentEvaluationConfig(), overrides))
        assert (config != AgentEvaluationConfig()) == (name != "base"), name
        config.train_config("229200")


def _trial(candidate: str, policy: str, folds: float, run: str = "3 seeds") -> Any:
    from pipeline.backtest.tuning import Trial

    return Trial(candidate, policy, {}, folds, 1.0, 0.1, 0.0, 0.5, 47, run=run)


def test_trials_of_earlier_tunings_stay_counted(tmp_path: Path) -> None:
    from pipeline.backtest.tuning import Tuning, load_trials, merge_trials

    first = Tuning(AgentEvaluationConfig(), [_trial("base", "agent", 0.5), _trial("base", "ensemble", 0.55)])
    path = write_tuning(first, tmp_path)
    assert load_trials(path) == first.trials
    rerun = _trial("base", "agent", 0.52)  # the same candidate, policy and run: replaces its trial
    other = _trial("levels5", "agent", 0.45)
    wider = _trial("base", "agent", 0.6, run="5 seeds")  # another run of it: a trial of its own
    merged = merge_trials(load_trials(path), [rerun, other, wider])
    assert len(merged) == 4 and rerun in merged and first.trials[0] not in merged
    second = Tuning(AgentEvaluationConfig(), merged)
    assert second.best == wider
    assert chosen_config(write_tuning(second, tmp_path), AgentEvaluationConfig()).configurations == 4
    assert load_trials(tmp_path / "absent.json") == []


def test_a_new_machine_starts_from_the_repository_ledger_of_trials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline.backtest.tuning import CANDIDATES, Tuning, load_trials
    from pipeline.cli import TUNING_LEDGER

    # The ledger committed with the code holds the trials run so far, each a known candidate or a point
    # of a search.
    committed = load_trials(TUNING_LEDGER)
    named = {t.candidate for t in committed if not t.candidate.startswith("search-")}
    assert len(committed) >= 12 and named <= set(CANDIDATES)
    # A ledger of three trials; --tune with a bad candidate stops before any run, but the ledger has
    # already started this machine's tuning.json; a second --tune does not overwrite it.
    trials = [_trial("base", "agent", 0.5), _trial("base", "ensemble", 0.6), _trial("levels5", "agent", 0.4)]
    ledger = write_tuning(Tuning(AgentEvaluationConfig(), trials), tmp_path / "repo")
    result = _invoke(tmp_path, monkeypatch, "--tune", "--candidates", "wild", "--ledger", str(ledger))
    assert result.exit_code == 2 and "3 earlier trials from" in result.output
    mine = tmp_path / "evaluate" / TUNING_FILE
    assert load_trials(mine) == trials
    write_tuning(Tuning(AgentEvaluationConfig(), trials[:1]), mine.parent)
    again = _invoke(tmp_path, monkeypatch, "--tune", "--candidates", "wild", "--ledger", str(ledger))
    assert "earlier trials from" not in again.output and len(load_trials(mine)) == 1
