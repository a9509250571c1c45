"""What the served model computes (``TradingAgent.decide``/``decide_batch``, added for the pyfunc): the
position it assumes is the one a backtest over the same bars ends with, many windows decide like one at a
time, and the caller's position changes what the critic and the policy see."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.backtest.engine import run_backtest
from pipeline.rl.agent import TradingAgent
from tests.registry.factories import market_bars


def test_a_decision_assumes_the_position_a_backtest_over_the_same_bars_ends_with(agent: TradingAgent) -> None:
    bars = market_bars()
    for end in (280, 390, 500):
        window = bars.iloc[end - 250 : end]
        market = agent.market(window)
        backtest = run_backtest(agent.policy(), market, agent.config.env)
        decision = agent.decide(window)
        assert decision["simulated_position"] == backtest.frame["position"].iloc[-1]
        assert decision["timestamp"] == str(window.index[-1])
        assert sum(decision["probabilities"]) == pytest.approx(1.0)
        assert decision["action"] == int(np.argmax(decision["probabilities"]))


def test_windows_of_different_lengths_decide_in_input_order_like_one_at_a_time(agent: TradingAgent) -> None:
    bars = market_bars()
    windows = [bars.iloc[100:350], bars.iloc[50:350], bars.iloc[200:450], bars.iloc[0:300]]
    batch = agent.decide_batch(windows, positions=[None, 1.0, -1.0, None])
    single = [agent.decide(w, p) for w, p in zip(windows, [None, 1.0, -1.0, None], strict=True)]
    for got, want in zip(batch, single, strict=True):
        assert (got["action"], got["simulated_position"], got["timestamp"]) == (
            want["action"],
            want["simulated_position"],
            want["timestamp"],
        )
        assert np.allclose(got["probabilities"], want["probabilities"], atol=1e-6)
        assert got["value"] == pytest.approx(want["value"], abs=1e-5)


def test_the_callers_position_and_entry_price_change_what_the_agent_sees(agent: TradingAgent) -> None:
    window = market_bars().iloc[-250:]
    flat, long = agent.decide(window, position=0.0), agent.decide(window, position=1.0)
    losing = agent.decide(window, position=1.0, entry_price=float(window["close"].iloc[-1]) * 1.1)
    assert flat["value"] != long["value"] and long["value"] != losing["value"]
    assert flat["simulated_position"] == long["simulated_position"]  # the replay itself is unchanged


def test_a_window_too_short_for_the_feature_window_is_refused(agent: TradingAgent) -> None:
    bars = market_bars()
    with pytest.raises(ValueError, match="too short"):
        agent.decide_batch([bars.iloc[:250], bars.iloc[:3]])


def test_a_decision_carries_every_field_the_readme_promises(agent: TradingAgent) -> None:
    window = market_bars().iloc[-250:]
    decision = agent.decide(window)
    assert set(decision) >= {
        "action",
        "target_level",
        "probabilities",
        "value",
        "regime",
        "simulated_position",
        "timestamp",
    }
    levels = agent.config.env.levels
    assert decision["target_level"] == levels[decision["action"]]  # the level the action stands for
    assert len(decision["probabilities"]) == len(levels)
    assert np.isfinite(decision["value"])
    k = agent.regime_model.n_regimes if agent.regime_model is not None else 0
    assert decision["regime"] in range(k)  # the last bar's label from the saved regime model
