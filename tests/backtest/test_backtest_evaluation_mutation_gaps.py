"""The real-data evaluation without training: ``run_walkforward`` is replaced by a stand-in that records what
it was asked and plays back chosen metrics rows and equity paths, so the yearly folds it gets, the returns
kept, every headline figure (folds and pairs beating buy-and-hold, drawdowns, Sharpe means, the deflated
Sharpe and the bootstrap interval), the files written and the report page are checked by hand in
milliseconds (gaps found by mutation testing, ``tools/mutation.py``)."""

from __future__ import annotations

import base64
import json
import math
import struct
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from pipeline.backtest import evaluation, walkforward
from pipeline.backtest.engine import BacktestResult
from pipeline.backtest.evaluation import (
    AgentEvaluation,
    AgentEvaluationConfig,
    evaluate_agent,
    load_through_store,
    quick_config,
    render_html,
    score,
    summary_table,
    write_outputs,
)
from pipeline.backtest.stats import bootstrap_ci, deflated_sharpe, sharpe_ratio
from pipeline.backtest.walkforward import Fold, WalkForwardConfig, WalkForwardResult
from pipeline.market import InstrumentKind
from pipeline.rl.instruments import instrument_spec
from pipeline.rl.market import MarketArrays
from pipeline.rl.train import TrainResult
from pipeline.store import get_engine

# ---- stand-ins ---------------------------------------------------------------------------------------------


def daily_bars(dates: pd.DatetimeIndex, price: float = 100.0) -> pd.DataFrame:
    close = price + np.arange(len(dates), dtype=float)
    return pd.DataFrame(
        {"open": close, "high": close + 1, "low": close - 1, "close": close, "volume": 1.0}, index=dates
    )


#: 20 bars in 2017 and 10 in 2018: with val 5, embargo 2, min train 10, only 2018 is a test year:
#: test rows [20, 30), val [13, 18), train [0, 11).
TWO_YEARS = pd.bdate_range("2017-01-02", periods=20).append(pd.bdate_range("2018-01-01", periods=10))
SMALL: dict[str, Any] = {"val_size": 5, "embargo": 2, "min_train_size": 10}
#: The headline figures in the order the report and the benchmark print them.
HEADLINE_KEYS = [
    "folds_beat_bh",
    "pairs_beat_bh",
    "mdd_not_worse",
    "mean_sharpe_agent",
    "mean_sharpe_bh",
    "dsr_prob",
]


def result(name: str, equity: list[float]) -> BacktestResult:
    frame = pd.DataFrame({"equity": equity}, index=pd.bdate_range("2018-01-01", periods=len(equity)))
    return BacktestResult(name=name, frame=frame, initial_cash=equity[0])


@dataclass
class Call:
    bars: pd.DataFrame
    config: Any
    wf: WalkForwardConfig
    folds: list[Fold]


class FakeWalkForward:
    """Stands in for ``run_walkforward``: records each call, shows ``on_backtest`` the ``paths``
    ((split, seed, name) -> equity) of every fold, and returns ``rows`` (one metrics row per dict, ``fold``
    filled in) as its metrics."""

    def __init__(self, paths: dict[tuple[str, int, str], list[float]], rows: list[dict[str, Any]]) -> None:
        self.paths = paths
        self.rows = rows
        self.calls: list[Call] = []

    def __call__(
        self, bars: Any, config: Any, wf: WalkForwardConfig, folds: Any = None, on_backtest: Any = None
    ) -> WalkForwardResult:
        self.calls.append(Call(bars, config, wf, list(folds)))
        rows = []
        for fold in folds:
            for (split, seed, name), equity in self.paths.items():
                on_backtest(fold, split, seed, result(name, equity))
            rows += [{"fold": fold.index, **row} for row in self.rows]
        return WalkForwardResult(metrics=pd.DataFrame(rows), folds=list(folds))


def row(split: str, strategy: str, seed: int, sharpe: float, mdd: float) -> dict[str, Any]:
    return {"split": split, "strategy": strategy, "seed": seed, "sharpe": sharpe, "max_drawdown": mdd}


PATHS = {
    ("val", 3, "agent"): [100.0, 125.0],
    ("test", 3, "agent"): [100.0, 110.0, 99.0],
    ("test", 3, "buy_and_hold"): [100.0, 50.0, 50.0],
    ("test", 4, "agent"): [100.0, 80.0, 100.0],
    ("test", -1, "ensemble"): [100.0, 125.0, 100.0],
    ("val", -1, "ensemble"): [100.0, 50.0],
}
ROWS = [
    row("test", "agent", 3, 0.5, 0.25),
    row("test", "agent", 4, 0.3, 0.125),
    row("test", "ensemble", -1, 0.9, 0.125),
    row("test", "buy_and_hold", 3, 0.4, 0.1875),
    row("val", "agent", 3, 9.0, 0.0),
    row("val", "buy_and_hold", 3, -9.0, 0.9),
]


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeWalkForward:
    fake = FakeWalkForward(PATHS, ROWS)
    monkeypatch.setattr(evaluation, "run_walkforward", fake)
    return fake


# ---- the configuration -------------------------------------------------------------------------------------


def test_the_defaults_are_the_documented_run() -> None:
    # Test years 2013-2019, five seeds, half a year of validation, a week's embargo, two years of training
    # at least, 20,000 steps, long/flat levels, two workers, one configuration, no penalties.
    c = AgentEvaluationConfig()
    assert c.years == (2013, 2014, 2015, 2016, 2017, 2018, 2019) and c.seeds == (0, 1, 2, 3, 4)
    assert (c.val_size, c.embargo, c.min_train_size, c.total_steps) == (126, 5, 500, 20_000)
    assert c.levels == (0.0, 0.5, 1.0) and c.n_workers == 2 and c.configurations == 1
    assert (c.drawdown_penalty, c.volatility_penalty, c.ent_coef) == (0.0, 0.0, 0.01)
    assert c.policy == "agent" and c.splits == ("val", "test") and c.scored_split == "test"
    assert AgentEvaluationConfig(splits=("val",)).scored_split == "val"
    assert AgentEvaluationConfig(splits=("test",)).scored_split == "test"
    assert AgentEvaluationConfig(policy="ensemble").policy == "ensemble"


def test_a_bad_policy_or_split_names_what_was_given() -> None:
    with pytest.raises(ValueError, match=r"^policy must be 'agent' or 'ensemble', got 'best'$"):
        AgentEvaluationConfig(policy="best")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^splits must be 'val' and/or 'test', got \(\)$"):
        AgentEvaluationConfig(splits=())
    with pytest.raises(ValueError, match=r"^splits must be 'val' and/or 'test', got \('val', 'train'\)$"):
        AgentEvaluationConfig(splits=("val", "train"))


def test_the_training_config_carries_the_instruments_costs_and_the_chosen_settings() -> None:
    c = AgentEvaluationConfig(
        levels=(0.0, 0.25, 1.0),
        drawdown_penalty=0.5,
        volatility_penalty=0.25,
        total_steps=1234,
        n_workers=3,
        ent_coef=0.05,
    )
    etf = c.train_config("069500")  # KODEX 200
    assert etf.env.instrument == instrument_spec(InstrumentKind.ETF)
    assert etf.env.levels == (0.0, 0.25, 1.0)  # not the env's default (0, 1)
    assert (etf.env.drawdown_penalty, etf.env.volatility_penalty) == (0.5, 0.25)
    assert (etf.total_steps, etf.n_workers, etf.ent_coef, etf.progress) == (1234, 3, 0.05, False)
    assert c.train_config("005930").env.instrument == instrument_spec(InstrumentKind.STOCK)


def test_the_quick_config_is_two_recent_years_two_seeds_and_a_tiny_budget() -> None:
    assert quick_config() == AgentEvaluationConfig(years=(2018, 2019), seeds=(0, 1), total_steps=2_000)
    mine = AgentEvaluationConfig(val_size=50, policy="ensemble", seeds=(0, 1, 2))
    quick = quick_config(mine)
    assert quick.val_size == 50 and quick.policy == "ensemble"
    assert (quick.years, quick.seeds, quick.total_steps) == ((2018, 2019), (0, 1), 2_000)


# ---- evaluate_agent: what the walk-forward is asked, what is kept ------------------------------------------


def test_each_symbol_gets_its_yearly_folds_its_costs_and_the_seeds(fake: FakeWalkForward) -> None:
    config = AgentEvaluationConfig(years=(2017, 2018), seeds=(3, 4), **SMALL)
    short = daily_bars(pd.bdate_range("2018-01-01", periods=10))  # 2018 only: no training bars before it
    bars = {"005930": short, "069500": daily_bars(TWO_YEARS)}
    lines: list[str] = []
    ev = evaluate_agent(bars, config, progress=lines.append)
    assert lines == [
        "005930: no test year with 10 training bars before it",
        "069500: 1 test years x 2 seeds",
    ]
    [call] = fake.calls
    assert call.bars is bars["069500"]
    assert call.folds == [Fold(2018, train=slice(0, 11), val=slice(13, 18), test=slice(20, 30))]
    assert call.config == config.train_config("069500")
    assert call.wf == WalkForwardConfig(
        seeds=(3, 4), embargo=2, val_size=5, splits=("val", "test"), ensemble=True
    )
    assert ev.config is config
    # The metrics rows: year for fold, the symbol added, a fresh index.
    assert list(ev.metrics.columns) == [
        "year",
        "split",
        "strategy",
        "seed",
        "sharpe",
        "max_drawdown",
        "symbol",
    ]
    assert ev.metrics["year"].tolist() == [2018] * 6 and set(ev.metrics["symbol"]) == {"069500"}
    assert ev.metrics.index.tolist() == list(range(6))


def test_only_the_scored_splits_agent_and_ensemble_returns_are_kept(fake: FakeWalkForward) -> None:
    config = AgentEvaluationConfig(years=(2018,), seeds=(3, 4), **SMALL)
    ev = evaluate_agent({"069500": daily_bars(TWO_YEARS)}, config)  # no progress callback: fine
    assert set(ev.agent_returns) == {("069500", 2018, 3), ("069500", 2018, 4), ("069500", 2018, -1)}
    np.testing.assert_allclose(ev.agent_returns[("069500", 2018, 3)], [0.1, -0.1])
    np.testing.assert_allclose(ev.agent_returns[("069500", 2018, 4)], [-0.2, 0.25])
    np.testing.assert_allclose(ev.agent_returns[("069500", 2018, -1)], [0.25, -0.2])
    val = evaluate_agent(
        {"069500": daily_bars(TWO_YEARS)},
        AgentEvaluationConfig(years=(2018,), seeds=(3, 4), splits=("val",), **SMALL),
    )
    assert fake.calls[-1].wf.splits == ("val",)
    assert set(val.agent_returns) == {("069500", 2018, 3), ("069500", 2018, -1)}
    np.testing.assert_allclose(val.agent_returns[("069500", 2018, 3)], [0.25])
    np.testing.assert_allclose(val.agent_returns[("069500", 2018, -1)], [-0.5])


def test_the_headline_of_an_evaluation_is_its_scored_split(fake: FakeWalkForward) -> None:
    config = AgentEvaluationConfig(years=(2018,), seeds=(3, 4), **SMALL)
    ev = evaluate_agent({"069500": daily_bars(TWO_YEARS)}, config)
    # test: agent seed mean 0.4 == buy-and-hold 0.4 (not beaten); drawdown 0.1875 == 0.1875 (not worse).
    assert ev.headline["folds_beat_bh"] == 0.0 and ev.headline["mdd_not_worse"] == 1.0
    assert ev.headline["pairs_beat_bh"] == 0.5  # seed 3: 0.5 > 0.4
    assert ev.headline["mean_sharpe_agent"] == pytest.approx(0.4) and ev.headline["mean_sharpe_bh"] == 0.4
    assert ev.details["n_folds"] == 1 and ev.details["n_pairs"] == 2 and ev.details["split"] == "test"


def test_two_symbols_are_walked_forward_each_on_its_own_and_their_rows_joined(fake: FakeWalkForward) -> None:
    config = AgentEvaluationConfig(years=(2018,), seeds=(3, 4), **SMALL)
    bars = {"069500": daily_bars(TWO_YEARS), "102110": daily_bars(TWO_YEARS, price=50.0)}
    ev = evaluate_agent(bars, config)
    assert [call.bars is bars[s] for call, s in zip(fake.calls, bars, strict=True)] == [True, True]
    assert [call.config for call in fake.calls] == [config.train_config(s) for s in bars]
    assert ev.metrics["symbol"].tolist() == ["069500"] * 6 + ["102110"] * 6
    assert ev.metrics.index.tolist() == list(range(12))  # one fresh index over both symbols' rows
    assert {key[0] for key in ev.agent_returns} == {"069500", "102110"}
    assert ev.details["n_folds"] == 2 and ev.details["n_pairs"] == 4


def test_one_seed_asks_for_no_ensemble_and_no_symbol_gives_nan_figures(fake: FakeWalkForward) -> None:
    one = AgentEvaluationConfig(years=(2018,), seeds=(3,), **SMALL)
    evaluate_agent({"069500": daily_bars(TWO_YEARS)}, one)
    assert fake.calls[-1].wf.ensemble is False and fake.calls[-1].wf.seeds == (3,)
    short = daily_bars(pd.bdate_range("2018-01-01", periods=10))
    skipped = evaluate_agent({"005930": short}, one)  # no test year, no progress callback: just no rows
    assert skipped.metrics.empty and len(fake.calls) == 1
    none = evaluate_agent({}, AgentEvaluationConfig(), progress=print)
    assert none.metrics.empty and none.agent_returns == {}
    assert list(none.headline) == HEADLINE_KEYS and all(math.isnan(v) for v in none.headline.values())
    assert none.details == {}


class FlatAgent:
    name = "agent"

    def reset(self, market: MarketArrays, n_envs: int) -> None:
        pass

    def act(self, obs: np.ndarray, t: np.ndarray) -> np.ndarray:
        return np.zeros(len(t), dtype=np.int64)


class FlatEnsemble(FlatAgent):
    name = "ensemble"

    def __init__(self, members: object) -> None:
        pass


class StandInAgent:
    model = "model"

    def market(self, bars: pd.DataFrame) -> MarketArrays:
        features = np.zeros((len(bars), 1), np.float32)
        return MarketArrays.from_arrays(
            bars["open"].to_numpy(), bars["close"].to_numpy(), features, index=bars.index
        )

    def policy(self) -> FlatAgent:
        return FlatAgent()


def test_with_the_real_walk_forward_a_flat_agent_never_beats_a_rising_market(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    trained: list[int] = []

    def fake_train(config: Any, data: Any, instruments: Any = None) -> TrainResult:
        trained.append(config.seed)
        return TrainResult(agent=StandInAgent(), history=pd.DataFrame(), steps=1, seconds=0.0)  # type: ignore[arg-type]

    monkeypatch.setattr(walkforward, "train", fake_train)
    monkeypatch.setattr(walkforward, "EnsemblePolicy", FlatEnsemble)
    dates = pd.bdate_range("2017-01-02", periods=40).append(pd.bdate_range("2018-01-01", periods=15))
    config = AgentEvaluationConfig(years=(2018,), seeds=(0, 1), **SMALL)
    ev = evaluate_agent({"069500": daily_bars(dates)}, config)
    assert trained == [0, 1]
    test = ev.metrics[ev.metrics["split"] == "test"]
    assert set(test["strategy"]) == {
        "agent",
        "ensemble",
        "buy_and_hold",
        "sma_crossover",
        "momentum",
        "random",
    }
    assert set(ev.metrics["year"]) == {2018} and set(ev.metrics["symbol"]) == {"069500"}
    assert set(ev.agent_returns) == {("069500", 2018, 0), ("069500", 2018, 1), ("069500", 2018, -1)}
    for returns in ev.agent_returns.values():  # flat: 15 test bars, 14 bar-to-bar returns, all zero
        np.testing.assert_array_equal(returns, np.zeros(14))
    assert ev.headline["folds_beat_bh"] == 0.0 and ev.headline["pairs_beat_bh"] == 0.0


# ---- score: the headline by hand ---------------------------------------------------------------------------


def metrics_by_hand() -> pd.DataFrame:
    """Three (symbol, year) folds, two seeds, the seeds' ensemble, buy-and-hold; rows of other splits and
    baselines that must not count."""
    rows = []
    table = {
        # (symbol, year): (agent sharpes, agent drawdowns, ensemble (sharpe, mdd), buy-and-hold (sharpe, mdd))
        ("A", 2018): ([0.5, 0.3], [0.25, 0.125], (0.9, 0.125), (0.4, 0.1875)),
        ("A", 2019): ([1.0, 0.0], [0.5, 0.5], (-0.2, 0.25), (0.1, 0.25)),
        ("B", 2019): ([0.5, math.nan], [0.125, 0.125], (0.6, 1.0), (0.5, 0.5)),
    }
    for (symbol, year), (sharpes, mdds, ens, bh) in table.items():
        for seed, (s, m) in enumerate(zip(sharpes, mdds, strict=True)):
            rows.append(("test", "agent", seed, symbol, year, s, m))
        rows.append(("test", "ensemble", -1, symbol, year, *ens))
        rows.append(("test", "buy_and_hold", 0, symbol, year, *bh))
        rows.append(("test", "random", 0, symbol, year, 5.0, 0.0))
        rows.append(("val", "agent", 0, symbol, year, 7.0, 0.0))
        rows.append(("val", "buy_and_hold", 0, symbol, year, -7.0, 0.9))
    columns = ["split", "strategy", "seed", "symbol", "year", "sharpe", "max_drawdown"]
    return pd.DataFrame(rows, columns=columns)


LENGTHS = {("A", 2018): 5, ("A", 2019): 4, ("B", 2019): 6}


def returns_by_hand(ensemble: bool = True) -> dict[tuple[str, int, int], np.ndarray]:
    rng = np.random.default_rng(7)
    out = {(s, y, seed): rng.normal(0.001, 0.01, n) for (s, y), n in LENGTHS.items() for seed in (0, 1)}
    if ensemble:
        out |= {(s, y, -1): rng.normal(0.002, 0.01, n) for (s, y), n in LENGTHS.items()}
    return out


def expected_dsr(
    pooled: np.ndarray, returns: dict[tuple[str, int, int], np.ndarray], n: int
) -> dict[str, Any]:
    seeds = [np.concatenate([returns[(s, y, seed)] for s, y in sorted(LENGTHS)]) for seed in (0, 1)]
    return asdict(deflated_sharpe(pooled, [sharpe_ratio(r) for r in seeds], n))


def test_the_agents_headline_by_hand() -> None:
    returns = returns_by_hand()
    config = AgentEvaluationConfig(seeds=(0, 1), configurations=3)
    headline, details = score(metrics_by_hand(), returns, config)
    # Seed means: A2018 0.4 == buy-and-hold 0.4 (not beaten), A2019 0.5 > 0.1, B2019 0.5 (NaN seed
    # skipped) == 0.5 (not beaten).
    assert headline["folds_beat_bh"] == pytest.approx(1 / 3)
    # Pairs: A2018 0.5 > 0.4, A2019 1.0 > 0.1; 0.3, 0.0, 0.5 (== 0.5) and NaN do not beat: 2 of 6.
    assert headline["pairs_beat_bh"] == pytest.approx(2 / 6)
    # Drawdown seed means: A2018 0.1875 == 0.1875 (not worse), A2019 0.5 > 0.25, B2019 0.125 < 0.5.
    assert headline["mdd_not_worse"] == pytest.approx(2 / 3)
    assert headline["mean_sharpe_agent"] == pytest.approx((0.4 + 0.5 + 0.5) / 3)
    assert headline["mean_sharpe_bh"] == pytest.approx((0.4 + 0.1 + 0.5) / 3)
    assert list(headline) == HEADLINE_KEYS
    assert details["split"] == "test" and details["policy"] == "agent"
    assert (details["n_folds"], details["n_pairs"], details["n_trials"]) == (3, 6, 6)  # 2 seeds x 3 configs
    # The deflated Sharpe of the equal-weight mix of the seeds, per (symbol, year), against both seeds.
    mix = np.concatenate([(returns[(s, y, 0)] + returns[(s, y, 1)]) / 2 for s, y in sorted(LENGTHS)])
    assert details["dsr"] == pytest.approx(expected_dsr(mix, returns, 6))
    assert headline["dsr_prob"] == pytest.approx(details["dsr"]["dsr_prob"])
    # The bootstrap interval of each finite (seed, fold) gap, resampled by (symbol, year).
    gaps = [0.5 - 0.4, 0.3 - 0.4, 1.0 - 0.1, 0.0 - 0.1, 0.5 - 0.5]
    low, mean, high = bootstrap_ci(gaps, groups=["A:2018", "A:2018", "A:2019", "A:2019", "B:2019"])
    assert details["sharpe_gap_ci"] == pytest.approx({"low": low, "mean": mean, "high": high})
    assert mean == pytest.approx(sum(gaps) / 5) and low < mean < high
    by_fold = details["by_fold"]
    assert list(by_fold.columns) == [
        "symbol",
        "year",
        "sharpe",
        "max_drawdown",
        "sharpe_bh",
        "max_drawdown_bh",
    ]
    assert by_fold[["symbol", "year"]].values.tolist() == [["A", 2018], ["A", 2019], ["B", 2019]]
    np.testing.assert_allclose(by_fold["sharpe"], [0.4, 0.5, 0.5])
    np.testing.assert_allclose(by_fold["max_drawdown_bh"], [0.1875, 0.25, 0.5])


def test_both_policies_are_measured_whichever_is_judged() -> None:
    returns = returns_by_hand()
    agent, details = score(metrics_by_hand(), returns, AgentEvaluationConfig(seeds=(0, 1)))
    ensemble, ens_details = score(
        metrics_by_hand(), returns, AgentEvaluationConfig(seeds=(0, 1), policy="ensemble")
    )
    # The ensemble: A2018 0.9 > 0.4 and B2019 0.6 > 0.5 beat; drawdowns 0.125 <= 0.1875,
    # 0.25 == 0.25 (not worse), 1.0 > 0.5.
    want = {"folds_beat_bh": 2 / 3, "mdd_not_worse": 2 / 3, "mean_sharpe": 1.3 / 3, "mean_sharpe_bh": 1.0 / 3}
    assert ens_details["policies"]["ensemble"] == pytest.approx(want)
    assert details["policies"]["ensemble"] == pytest.approx(want)
    assert details["policies"]["agent"] == pytest.approx(
        {"folds_beat_bh": 1 / 3, "mdd_not_worse": 2 / 3, "mean_sharpe": 1.4 / 3, "mean_sharpe_bh": 1.0 / 3}
    )
    assert ensemble["folds_beat_bh"] == pytest.approx(2 / 3) and ensemble["mdd_not_worse"] == pytest.approx(
        2 / 3
    )
    assert ensemble["mean_sharpe_agent"] == pytest.approx(1.3 / 3)
    assert ensemble["pairs_beat_bh"] == agent["pairs_beat_bh"] == pytest.approx(2 / 6)  # each seed's own
    assert ens_details["policy"] == "ensemble"
    # The ensemble's deflated Sharpe is on its own returns (seed -1), deflated by both seeds' trials.
    pooled = np.concatenate([returns[(s, y, -1)] for s, y in sorted(LENGTHS)])
    assert ens_details["dsr"] == pytest.approx(expected_dsr(pooled, returns, 2))
    # Judging the agents with the ensemble's returns present still uses the seeds' mix.
    mix = np.concatenate([(returns[(s, y, 0)] + returns[(s, y, 1)]) / 2 for s, y in sorted(LENGTHS)])
    assert details["dsr"] == pytest.approx(expected_dsr(mix, returns, 2))


def test_asking_for_the_ensemble_without_one_judges_the_agents() -> None:
    metrics = metrics_by_hand()
    metrics = metrics[metrics["strategy"] != "ensemble"]
    returns = returns_by_hand(ensemble=False)
    headline, details = score(metrics, returns, AgentEvaluationConfig(seeds=(0, 1), policy="ensemble"))
    assert headline["folds_beat_bh"] == pytest.approx(1 / 3)
    assert list(details["policies"]) == ["agent"]
    mix = np.concatenate([(returns[(s, y, 0)] + returns[(s, y, 1)]) / 2 for s, y in sorted(LENGTHS)])
    assert details["dsr"] == pytest.approx(expected_dsr(mix, returns, 2))


def test_a_fold_without_buy_and_hold_still_counts_and_is_not_beaten() -> None:
    metrics = metrics_by_hand()
    metrics = metrics[
        ~((metrics["strategy"] == "buy_and_hold") & (metrics["year"] == 2019) & (metrics["symbol"] == "A"))
    ]
    headline, details = score(metrics, returns_by_hand(), AgentEvaluationConfig(seeds=(0, 1)))
    assert (details["n_folds"], details["n_pairs"]) == (3, 6)
    # A2019 (seed mean 0.5, nothing to beat) now beats nothing: no fold and no pair beats buy-and-hold.
    assert headline["folds_beat_bh"] == 0.0 and headline["pairs_beat_bh"] == pytest.approx(1 / 6)
    assert headline["mdd_not_worse"] == pytest.approx(2 / 3)
    assert headline["mean_sharpe_bh"] == pytest.approx((0.4 + 0.5) / 2)  # over the folds that have it


def one_fold(sharpes: list[float], bh: float = 0.0) -> pd.DataFrame:
    rows = [("test", "agent", seed, "A", 2019, s, 0.1) for seed, s in enumerate(sharpes)]
    rows.append(("test", "buy_and_hold", 0, "A", 2019, bh, 0.2))
    return pd.DataFrame(
        rows, columns=["split", "strategy", "seed", "symbol", "year", "sharpe", "max_drawdown"]
    )


def test_the_deflated_sharpe_needs_three_pooled_returns_and_two_trials() -> None:
    two_seeds = AgentEvaluationConfig(seeds=(0, 1), configurations=1)
    three = {("A", 2019, 0): np.array([0.01, 0.03, -0.02]), ("A", 2019, 1): np.array([0.02, -0.01, 0.04])}
    _, details = score(one_fold([0.1, 0.2]), three, two_seeds)
    assert details["dsr"]["T"] == 3 and details["n_trials"] == 2
    two = {k: v[:2] for k, v in three.items()}
    headline, details = score(one_fold([0.1, 0.2]), two, two_seeds)
    assert details["dsr"] is None and math.isnan(headline["dsr_prob"])
    one_seed = {("A", 2019, 0): three[("A", 2019, 0)]}
    headline, details = score(one_fold([0.1]), one_seed, AgentEvaluationConfig(seeds=(0,), configurations=1))
    assert details["dsr"] is None and math.isnan(headline["dsr_prob"])
    no_returns = score(one_fold([0.1, 0.2]), {}, two_seeds)[1]
    assert no_returns["dsr"] is None


def test_a_seed_with_two_returns_is_a_trial_and_one_with_one_is_not() -> None:
    # Seed 0 ran two windows, seed 1 three, seed 2 only the first (one return): the mix is one return per
    # window, each the mean of the seeds that ran it.
    returns = {
        ("A", 2017, 0): np.array([0.01]),
        ("A", 2018, 0): np.array([0.03]),
        ("A", 2017, 1): np.array([0.03]),
        ("A", 2018, 1): np.array([-0.01]),
        ("A", 2019, 1): np.array([0.02]),
        ("A", 2017, 2): np.array([0.05]),
    }
    _, details = score(one_fold([0.1, 0.2, 0.3]), returns, AgentEvaluationConfig(seeds=(0, 1, 2)))
    mix = np.array([0.03, 0.01, 0.02])
    trials = [sharpe_ratio([0.01, 0.03]), sharpe_ratio([0.03, -0.01, 0.02])]
    assert details["dsr"] == pytest.approx(asdict(deflated_sharpe(mix, trials, 3)))


def test_the_gap_interval_needs_two_finite_gaps() -> None:
    config = AgentEvaluationConfig(seeds=(0, 1, 2))
    _, details = score(one_fold([0.1, 0.3, math.nan]), {}, config)
    low, mean, high = bootstrap_ci([0.1, 0.3], groups=["A:2019", "A:2019"])
    assert details["sharpe_gap_ci"] == pytest.approx({"low": low, "mean": mean, "high": high})
    assert mean == pytest.approx(0.2)
    _, details = score(one_fold([0.1, math.nan, math.nan]), {}, config)
    assert all(math.isnan(v) for v in details["sharpe_gap_ci"].values())
    assert list(details["sharpe_gap_ci"]) == ["low", "mean", "high"]


# ---- what a person opens -----------------------------------------------------------------------------------


def evaluation_by_hand(policy: str = "agent") -> AgentEvaluation:
    config = AgentEvaluationConfig(seeds=(0, 1), policy=policy)  # type: ignore[arg-type]
    metrics = metrics_by_hand().assign(total_return=0.25, turnover=2.0)
    returns = returns_by_hand()
    ev = AgentEvaluation(config=config, metrics=metrics, agent_returns=returns)
    ev.headline, ev.details = score(metrics, returns, config)
    return ev


def test_the_summary_table_averages_seeds_per_symbol_year_and_strategy() -> None:
    table = summary_table(evaluation_by_hand())
    assert list(table.index) == [("A", 2018), ("A", 2019), ("B", 2019)]
    assert table[("sharpe", "agent")].tolist() == pytest.approx([0.4, 0.5, 0.5])
    assert table[("sharpe", "random")].tolist() == [5.0, 5.0, 5.0]  # test rows only
    assert table[("max_drawdown", "buy_and_hold")].tolist() == [0.1875, 0.25, 0.5]
    assert set(table.columns.get_level_values(0)) == {"sharpe", "total_return", "max_drawdown", "turnover"}
    val = evaluation_by_hand()
    val.config = AgentEvaluationConfig(seeds=(0, 1), splits=("val",))
    assert summary_table(val)[("sharpe", "agent")].tolist() == [7.0, 7.0, 7.0]


def test_outputs_are_the_rows_the_headline_and_the_page(tmp_path: Path) -> None:
    ev = evaluation_by_hand()
    out = tmp_path / "runs" / "evaluate"  # parents made
    paths = write_outputs(ev, out)
    assert paths == {
        "metrics": out / "metrics.csv",
        "summary": out / "summary.json",
        "report": out / "report.html",
    }
    metrics = pd.read_csv(paths["metrics"])
    assert list(metrics.columns) == list(ev.metrics.columns)  # no index column
    assert len(metrics) == len(ev.metrics)
    text = paths["summary"].read_text()
    assert text.startswith('{\n  "headline": {\n    "folds_beat_bh": ')
    summary = json.loads(text)
    assert list(summary) == [
        "headline",
        "split",
        "policy",
        "policies",
        "n_folds",
        "n_pairs",
        "n_trials",
        "sharpe_gap_ci",
        "dsr",
        "config",
    ]
    assert summary["headline"] == pytest.approx(ev.headline)
    assert summary["dsr"] == pytest.approx(ev.details["dsr"])
    assert summary["config"]["seeds"] == [0, 1] and summary["config"]["policy"] == "agent"
    assert paths["report"].read_text() == render_html(ev)
    write_outputs(ev, out)  # a second run writes over the first


def png_size(page: str) -> tuple[int, int]:
    encoded = page.split("data:image/png;base64,")[1].split('"')[0]
    header = base64.b64decode(encoded)[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", header[16:24])


def test_the_page_shows_the_headline_the_gap_both_policies_and_the_configuration() -> None:
    ev = evaluation_by_hand()
    page = render_html(ev)
    assert page.startswith(
        "<!doctype html><html><head><meta charset='utf-8'>"
        "<title>Agent evaluation on KRX data</title><style>body{"
    )
    assert "<h1>Agent evaluation on real KRX bars</h1><h2>Headline (test)</h2><table>" in page
    assert (
        "<tr><th>folds_beat_bh</th><td>0.333</td></tr><tr><th>pairs_beat_bh</th><td>0.333</td></tr>" in page
    )
    assert f"<tr><th>dsr_prob</th><td>{ev.headline['dsr_prob']:.3f}</td></tr></table>" in page
    ci = ev.details["sharpe_gap_ci"]
    assert (
        "<p>Agent minus buy-and-hold test Sharpe, mean over (instrument, year, seed): "
        f"+0.160 (95% bootstrap interval over years and seeds {ci['low']:+.3f} to {ci['high']:+.3f}).</p>"
    ) in page
    assert (
        "<h2>Each seed's agent and the seeds' ensemble</h2><table><tr><th>policy</th><th>folds_beat_bh</th>"
        "<th>mdd_not_worse</th><th>mean Sharpe</th></tr>"
        "<tr><th>agent (judged)</th><td>0.333</td><td>0.667</td><td>0.467</td></tr>"
        "<tr><th>ensemble</th><td>0.667</td><td>0.667</td><td>0.433</td></tr></table>"
    ) in page
    assert (
        '<h2>Test Sharpe per instrument and year</h2><img alt="test Sharpe per instrument and year"' in page
    )
    assert "<h2>Per instrument and year (seeds averaged)</h2><div style='overflow-x:auto'><table" in page
    assert "<td>0.400</td>" in page  # the table's figures with three decimals
    cfg = json.dumps(asdict(ev.config)).replace('"', "&quot;")
    assert page.endswith(f"<h2>Configuration</h2><pre>{cfg}</pre></body></html>")
    assert png_size(page) == (600, 350)
    judged = render_html(evaluation_by_hand("ensemble"))
    assert "<tr><th>agent</th><td>" in judged and "<tr><th>ensemble (judged)</th>" in judged


def test_a_page_without_figures_says_so() -> None:
    ev = AgentEvaluation(config=AgentEvaluationConfig(splits=("val",)), metrics=pd.DataFrame())
    page = render_html(ev)  # a fresh evaluation: no headline, no details yet
    assert "<h2>Headline (val)</h2>" in page and "<tr><th>folds_beat_bh</th><td>nan</td></tr>" in page
    # No gap paragraph and no policy table: the headline table is followed by the (empty) figure.
    nothing = "<h2>Test Sharpe per instrument and year</h2><p>No fold was evaluated.</p><h2>Per instrument"
    assert "<tr><th>dsr_prob</th><td>nan</td></tr></table>" + nothing in page
    assert "<div style='overflow-x:auto'><table" in page  # an empty table
    ev.details = {"by_fold": pd.DataFrame(columns=["symbol", "year", "sharpe", "sharpe_bh"])}
    assert nothing in render_html(ev)


def test_the_sharpe_figure_shows_both_bars_per_fold(monkeypatch: pytest.MonkeyPatch) -> None:
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    seen: list[Figure] = []
    real = Figure.savefig

    def capture(self: Figure, *args: Any, **kwargs: Any) -> None:
        seen.append(self)
        assert kwargs == {"format": "png", "dpi": 100}
        real(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", capture)
    render_html(evaluation_by_hand())
    [fig] = seen
    [ax] = fig.axes
    bars = [
        (round(p.get_x() + p.get_width() / 2, 6), round(p.get_width(), 6), round(p.get_height(), 6))
        for p in ax.patches
        if isinstance(p, Rectangle)
    ]
    assert bars == [
        (0.0 - 0.2, 0.4, 0.4),
        (1.0 - 0.2, 0.4, 0.5),
        (2.0 - 0.2, 0.4, 0.5),
        (0.2, 0.4, 0.4),
        (1.2, 0.4, 0.1),
        (2.2, 0.4, 0.5),
    ]
    legend = ax.get_legend()
    assert legend is not None and len(ax.patches) == 6
    assert [t.get_text() for t in legend.get_texts()] == ["agent (seed mean)", "buy-and-hold"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["A\n2018", "A\n2019", "B\n2019"]
    assert ax.get_ylabel() == "test Sharpe (annualised)"
    assert {t.get_fontsize() for t in ax.get_xticklabels()} == {7.0}
    assert {t.get_fontsize() for t in legend.get_texts()} == {8.0}
    [zero] = ax.lines
    assert np.asarray(zero.get_ydata()).tolist() == [0.0, 0.0] and zero.get_color() == "#888"
    assert zero.get_linewidth() == 0.8
    seen.clear()
    render_html(evaluation_by_hand("ensemble"))
    ensemble_legend = seen[0].axes[0].get_legend()
    assert ensemble_legend is not None
    assert [t.get_text() for t in ensemble_legend.get_texts()] == [
        "seeds' ensemble",
        "buy-and-hold",
    ]


def test_a_wide_figure_grows_with_the_folds() -> None:
    ev = evaluation_by_hand()
    folds = pd.DataFrame({"symbol": ["A"] * 14, "year": range(2000, 2014), "sharpe": 0.1, "sharpe_bh": 0.2})
    ev.details = {**ev.details, "by_fold": folds}
    assert png_size(render_html(ev)) == (700, 350)  # 0.5 inch per fold at 100 dpi


def test_bars_go_through_the_store_and_come_back_per_symbol_in_kst(tmp_path: Path) -> None:
    body = "symbol,date,open,high,low,close,volume\n"
    for symbol in ("069500", "005930"):
        for day in ("2024-01-02", "2024-01-03"):
            body += f"{symbol},{day},100,110,90,105,1000\n"
    path = tmp_path / "bars.csv"
    path.write_text(body)
    engine = get_engine(f"sqlite:///{tmp_path / 'store.db'}")
    bars, summary = load_through_store([path], engine)
    assert list(bars) == ["005930", "069500"]
    assert summary.files[0].inserted == 4
    frame = bars["069500"]
    assert list(frame.columns) == ["open", "high", "low", "close", "volume"]
    assert (frame.dtypes == np.float64).all()
    assert frame.index.name == "ts" and str(frame.index.tz) == "Asia/Seoul"
    assert [ts.date().isoformat() for ts in frame.index] == ["2024-01-02", "2024-01-03"]
    assert frame["close"].tolist() == [105.0, 105.0] and frame["volume"].tolist() == [1000.0, 1000.0]
