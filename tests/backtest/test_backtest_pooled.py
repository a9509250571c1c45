"""Pooled evaluation (``AgentEvaluationConfig.pooled``): one agent per (year, seed) over every fund's bars
before the year's cut-off, judged on each fund's own fold exactly as the per-fund agents are."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pandas as pd
import pytest

from pipeline.backtest import evaluation
from pipeline.backtest.evaluation import AgentEvaluationConfig, evaluate_agent
from pipeline.rl.train import TrainResult
from tests.features.krx_data import krx_bars

#: KOSDAQ150 (listed 2015-10: too short a history for a 2018 fold) and TIGER Healthcare (listed 2011-07).
CODES = ("229200", "143860")
KEYS = ["symbol", "year", "split", "strategy", "seed"]


def _config(**overrides: Any) -> AgentEvaluationConfig:
    base = AgentEvaluationConfig(years=(2018, 2019), seeds=(0, 1), total_steps=600, n_workers=1)
    return replace(base, **overrides)


@pytest.mark.slow
def test_pooled_agents_train_on_every_fund_before_the_cut_off_and_are_judged_per_fund(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bars = {code: krx_bars(code) for code in CODES}
    trainings: list[tuple[int, dict[str, pd.Timestamp]]] = []
    real = evaluation.train

    def spy(config: Any, data: Any, instruments: Any = None, **kwargs: Any) -> TrainResult:
        assert set(instruments) == set(data)  # each fund trains with its own instrument's costs
        trainings.append((config.seed, {symbol: frame.index.max() for symbol, frame in data.items()}))
        return real(config, data, instruments, **kwargs)

    monkeypatch.setattr(evaluation, "train", spy)
    lines: list[str] = []
    pooled = evaluate_agent(bars, _config(pooled=True, splits=("val",)), progress=lines.append)

    # One training per (year, seed): 2018 on TIGER Healthcare alone (KOSDAQ150 has under 500 bars before
    # the cut-off), 2019 on both funds.
    assert [(seed, sorted(last)) for seed, last in trainings] == [
        (0, ["143860"]),
        (1, ["143860"]),
        (0, ["143860", "229200"]),
        (1, ["143860", "229200"]),
    ]
    val_starts = pooled.metrics.groupby("year")["start"].min()
    for n, (_, last) in enumerate(trainings):
        year = 2018 if n < 2 else 2019
        # The last training bar lies before the embargo that precedes every fund's validation window.
        for symbol, day in last.items():
            index = bars[symbol].index
            assert index.searchsorted(val_starts[year]) - index.searchsorted(day) > 5, (year, symbol)
    assert any(line.startswith("pooled 2019: 2 instruments") for line in lines)

    # The same folds, windows, strategies and seeds as the per-fund run; the baselines, which do not
    # depend on how the agent was trained, give the very same figures.
    alone = evaluate_agent(bars, _config(splits=("val",)))
    assert list(pooled.metrics.columns) == list(alone.metrics.columns)
    assert pooled.metrics[KEYS].equals(alone.metrics[KEYS])
    baselines = ~alone.metrics["strategy"].isin(["agent", "ensemble"])
    figures = ["start", "end", "n_bars", "sharpe", "total_return", "max_drawdown", "turnover"]
    same = pooled.metrics.loc[baselines, figures], alone.metrics.loc[baselines, figures]
    pd.testing.assert_frame_equal(*same)
    assert set(pooled.agent_returns) == set(alone.agent_returns)
    assert pooled.details["n_folds"] == alone.details["n_folds"] == 3  # 143860: 2018, 2019; 229200: 2019
    agent_rows = pooled.metrics[pooled.metrics["strategy"] == "agent"]
    assert (agent_rows["train_steps"] >= 600).all()
