"""The one self-contained pyfunc: registered, loaded by alias, it decides exactly like the agent in process,
for one window or many symbols at once, with the caller's position; it pins its requirements."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml

from pipeline.registry.promotion import CHAMPION
from pipeline.registry.pyfunc import AgentModel, load_agent, load_pyfunc, to_model_input
from pipeline.registry.register import register_agent
from pipeline.registry.tracking import Tracker
from pipeline.rl.agent import TradingAgent
from tests.registry.factories import market_bars, tiny_spec

#: MLflow's own SQLAlchemy mappings warn once per process; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy:DeprecationWarning")

DECISION_KEYS = ("action", "target_level", "value", "regime", "simulated_position")


def _register(tracker: Tracker, agent: TradingAgent) -> tuple[str, str]:
    spec = tiny_spec("kospi200f-1d")
    version = register_agent(agent, spec, tracker, example=market_bars().iloc[-250:])
    tracker.client.set_registered_model_alias(spec.registered_model_name, CHAMPION, version)
    return spec.registered_model_name, version


def _same(row: pd.Series, expected: dict) -> None:
    for key in DECISION_KEYS:
        assert row[key] == expected[key], (key, row[key], expected[key])
    assert np.array_equal(np.asarray(row["probabilities"]), np.asarray(expected["probabilities"]))


def test_the_champion_loaded_by_alias_decides_exactly_like_the_agent_in_process(
    tracker: Tracker, agent: TradingAgent
) -> None:
    name, version = _register(tracker, agent)
    model = load_pyfunc(name, "champion", tracker.client)
    bars = market_bars()
    for end in (300, 420, 500):
        window = bars.iloc[end - 250 : end]
        out = model.predict(to_model_input(window))
        assert len(out) == 1 and out.loc[0, "model_version"] == version
        _same(out.iloc[0], agent.decide(window))
    plain = mlflow.pyfunc.load_model(f"models:/{name}@champion")  # what any MLflow consumer does
    _same(plain.predict(to_model_input(bars.iloc[-250:])).iloc[0], agent.decide(bars.iloc[-250:]))
    assert isinstance(plain.unwrap_python_model(), AgentModel)  # the class of the installed package


def test_many_symbols_in_one_call_give_one_row_each_equal_to_one_window_at_a_time(
    tracker: Tracker, agent: TradingAgent
) -> None:
    name, _ = _register(tracker, agent)
    model = load_pyfunc(name, "champion", tracker.client)
    bars = market_bars()
    windows = {f"S{k}": bars.iloc[200 + 37 * k : 450 + 37 * k] for k in range(3)}
    batch = pd.concat([to_model_input(w, symbol=s) for s, w in windows.items()], ignore_index=True)
    out = model.predict(batch.sample(frac=1.0, random_state=0))  # row order within a window is irrelevant
    assert sorted(out["symbol"]) == sorted(windows)
    for row in out.itertuples():
        expected = agent.decide(windows[str(row.symbol)])
        assert row.action == expected["action"] and row.simulated_position == expected["simulated_position"]
        assert np.allclose(row.probabilities, expected["probabilities"], atol=1e-6)


def test_the_callers_position_replaces_the_simulated_one(tracker: Tracker, agent: TradingAgent) -> None:
    name, _ = _register(tracker, agent)
    model = load_pyfunc(name, "champion", tracker.client)
    window = market_bars().iloc[-250:]
    short = model.predict(to_model_input(window, position=-1.0)).iloc[0]
    long = model.predict(to_model_input(window), params={"position": 1.0}).iloc[0]
    _same(short, agent.decide(window, position=-1.0))
    _same(long, agent.decide(window, position=1.0))
    assert not np.array_equal(short["probabilities"], long["probabilities"])


def test_the_logged_model_pins_its_requirements_and_carries_a_signature_and_an_example(
    tracker: Tracker, agent: TradingAgent, tmp_path: Path
) -> None:
    name, version = _register(tracker, agent)
    local = Path(mlflow.artifacts.download_artifacts(f"models:/{name}/{version}", dst_path=str(tmp_path)))
    requirements = (local / "requirements.txt").read_text().split()
    assert "torch==2.13.0" in requirements and not any("+cpu" in r for r in requirements)
    assert any(r.startswith("TA-Lib==") for r in requirements)
    mlmodel = yaml.safe_load((local / "MLmodel").read_text())
    inputs = mlmodel["signature"]["inputs"]
    assert '"ts"' in inputs and '"position"' in inputs and "probabilities" in mlmodel["signature"]["outputs"]
    assert (local / "input_example.json").exists()
    reloaded = load_agent(f"models:/{name}@{CHAMPION}")
    window = market_bars().iloc[-250:]
    assert reloaded.decide(window) == agent.decide(window)
