"""The real-data evaluation: yearly folds that never let a test year's bars into training or validation,
headline shares computed as the issue defines them (every seed counts, a flat agent never "beats"), and
``krx evaluate`` end to end on a real ETF: store import, walk-forward, files a person opens."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from pipeline.backtest.evaluation import AgentEvaluationConfig, score
from pipeline.backtest.walkforward import WalkForwardConfig, run_walkforward, yearly_folds
from pipeline.cli import SHARED_KRX_DATA, app
from pipeline.rl.config import TrainConfig
from tests.features.krx_data import krx_bars


def test_each_test_year_is_its_calendar_year_after_validation_and_embargoes() -> None:
    index = pd.DatetimeIndex(krx_bars("143860").index)  # TIGER Healthcare, listed 2011-07
    folds = yearly_folds(index, range(2010, 2021), val_size=126, embargo=5, min_train_size=500)
    # 2010-13: no bars or under 500 training bars before validation (2014 has 474); 2020: no bars.
    assert [f.index for f in folds] == list(range(2015, 2020))
    for fold in folds:
        test_days = index[fold.test]
        assert set(test_days.year) == {fold.index}
        assert len(test_days) == (index.year == fold.index).sum()  # the whole year, nothing else
        assert fold.val.stop + 5 == fold.test.start and fold.train.stop + 5 == fold.val.start
        assert index[fold.val].max() < test_days.min() and index[fold.train].max() < index[fold.val].min()
        assert fold.train.stop >= 500


def test_explicit_folds_are_for_one_symbol() -> None:
    bars = krx_bars("229200")
    with pytest.raises(ValueError, match="one symbol"):
        run_walkforward({"a": bars, "b": bars}, TrainConfig(), WalkForwardConfig(), folds=[])


def _rows(agent: dict[tuple[str, int], list[float]], bh: dict[tuple[str, int], float]) -> pd.DataFrame:
    rows = []
    for (symbol, year), sharpes in agent.items():
        for seed, sharpe in enumerate(sharpes):
            rows.append(("agent", symbol, year, seed, sharpe, 0.10))
        rows.append(("buy_and_hold", symbol, year, 0, bh[(symbol, year)], 0.20))
    frame = pd.DataFrame(rows, columns=["strategy", "symbol", "year", "seed", "sharpe", "max_drawdown"])
    return frame.assign(split="test")


def test_headline_shares_count_every_seed_and_never_a_nan() -> None:
    metrics = _rows(
        {("A", 2018): [1.0, 0.0, 0.5], ("A", 2019): [-1.0, -1.0, math.nan], ("B", 2019): [0.2, 0.3, 0.4]},
        {("A", 2018): 0.4, ("A", 2019): -0.5, ("B", 2019): 0.5},
    )
    rng = np.random.default_rng(0)
    returns = {
        (s, y, seed): rng.normal(0.0005, 0.01, 200)
        for s, y in [("A", 2018), ("A", 2019)]
        for seed in range(3)
    }
    config = AgentEvaluationConfig(seeds=(0, 1, 2))
    headline, details = score(metrics, returns, config)
    # Seed means: A2018 0.5 > 0.4 (beats); A2019 NaN (a flat seed: never beats); B2019 0.3 < 0.5.
    assert headline["folds_beat_bh"] == pytest.approx(1 / 3)
    # Pairs: A2018 seeds 1.0 and 0.5 beat 0.4; A2019 none beats -0.5; B2019 none beats 0.5 -> 2 of 9.
    assert headline["pairs_beat_bh"] == pytest.approx(2 / 9)
    assert headline["mdd_not_worse"] == 1.0  # 10 % against 20 % everywhere
    assert headline["mean_sharpe_bh"] == pytest.approx((0.4 - 0.5 + 0.5) / 3)
    assert 0.0 <= headline["dsr_prob"] <= 1.0
    assert details["n_trials"] == 3 and details["n_pairs"] == 9
    ci = details["sharpe_gap_ci"]
    assert ci["low"] <= ci["mean"] <= ci["high"]


def test_more_configurations_tried_deflate_the_sharpe() -> None:
    metrics = _rows({("A", 2019): [1.0, 1.2]}, {("A", 2019): 0.1})
    rng = np.random.default_rng(1)
    returns = {("A", 2019, seed): rng.normal(0.001, 0.01, 250) for seed in range(2)}
    one, _ = score(metrics, returns, AgentEvaluationConfig(seeds=(0, 1), configurations=1))
    many, _ = score(metrics, returns, AgentEvaluationConfig(seeds=(0, 1), configurations=50))
    assert many["dsr_prob"] < one["dsr_prob"]


@pytest.mark.slow
def test_krx_evaluate_quick_on_a_real_etf_writes_what_a_person_opens(
    tmp_path: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not (SHARED_KRX_DATA / "229200.csv").exists():
        pytest.skip(f"no shared KRX data at {SHARED_KRX_DATA}")
    monkeypatch.setenv("KRX_VAR_DIR", str(tmp_path))
    from pipeline.config import get_settings

    get_settings.cache_clear()
    result = CliRunner().invoke(app, ["evaluate", "--quick", "--symbol", "229200", "--years", "2019"])
    get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert "folds_beat_bh" in result.output and "INFO" not in result.output  # chatter went to the log
    out = tmp_path / "evaluate"
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["headline"]) >= {"folds_beat_bh", "pairs_beat_bh", "mdd_not_worse", "dsr_prob"}
    assert summary["n_folds"] == 1 and summary["n_pairs"] == 2  # 2019 only, two seeds
    metrics = pd.read_csv(out / "metrics.csv")
    test = metrics[metrics["split"] == "test"]
    assert set(test["strategy"]) == {
        "agent",
        "ensemble",
        "buy_and_hold",
        "sma_crossover",
        "momentum",
        "random",
    }
    assert set(pd.to_datetime(test["start"]).dt.year) == {2019}
    page = (out / "report.html").read_text()
    assert "the seeds' ensemble" in page and "agent (judged)" in page
    assert "data:image/png;base64," in page and not re.search(r"(src|href)=['\"]?https?://", page)
    assert (tmp_path / "logs" / "evaluate.log").read_text()  # the store import and training logged there


def test_krx_evaluate_names_a_bad_year_range(tmp_path: pytest.TempPathFactory) -> None:
    result = CliRunner().invoke(app, ["evaluate", "--years", "twenty", "--data", str(SHARED_KRX_DATA)])
    assert result.exit_code == 2 and "--years" in result.output
