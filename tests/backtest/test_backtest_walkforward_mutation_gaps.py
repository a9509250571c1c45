"""Walk-forward folds and the walk-forward loop without training: ``train`` is replaced by a spy that records
the bars it got and returns a stand-in agent (flat, features from the bars, a warm-up it drops), so every
fold's windows, rows, hooks and figures are checked by hand in milliseconds."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest

from pipeline.backtest import walkforward
from pipeline.backtest.walkforward import (
    ENSEMBLE_SEED,
    Fold,
    WalkForwardConfig,
    common_calendar,
    make_folds,
    run_walkforward,
    yearly_folds,
)
from pipeline.rl.config import TrainConfig
from pipeline.rl.env import EnvConfig
from pipeline.rl.instruments import InstrumentSpec, etf_spec, kospi200_futures_spec, stock_spec
from pipeline.rl.market import MarketArrays
from pipeline.rl.train import TrainResult

WARM_UP = 2
"""Bars the stand-in agent's market drops at its start, as feature look-backs do."""
CONFIG = TrainConfig(env=EnvConfig(instrument=stock_spec(tick_size=1.0), window=1, episode_length=None))


def bars_of(n: int, start: str = "2024-01-01", price: float = 100.0) -> pd.DataFrame:
    close = price + np.arange(n, dtype=float)
    index = pd.bdate_range(start, periods=n)
    return pd.DataFrame(
        {"open": close, "high": close + 1, "low": close - 1, "close": close, "volume": 1.0}, index=index
    )


class Flat:
    name = "agent"

    def reset(self, market: MarketArrays, n_envs: int) -> None:
        pass

    def act(self, obs: np.ndarray, t: np.ndarray) -> np.ndarray:
        return np.zeros(len(t), dtype=np.int64)


class FakeAgent:
    def __init__(self, seed: int) -> None:
        self.model = f"model-{seed}"
        self.markets: list[pd.DataFrame] = []

    def market(self, bars: pd.DataFrame) -> MarketArrays:
        self.markets.append(bars)
        kept = bars.iloc[WARM_UP:]
        features = np.zeros((len(kept), 1), np.float32)
        return MarketArrays.from_arrays(
            kept["open"].to_numpy(), kept["close"].to_numpy(), features, index=kept.index
        )

    def policy(self) -> Flat:
        return Flat()


class Spy:
    """Stands in for ``train``: records (seed, bars, instruments) and returns a :class:`FakeAgent`."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, object, object]] = []
        self.agents: list[FakeAgent] = []

    def __call__(self, config: TrainConfig, data: object, instruments: object = None) -> TrainResult:
        self.calls.append((config.seed, data, instruments))
        agent = FakeAgent(config.seed)
        self.agents.append(agent)
        return TrainResult(agent=agent, history=pd.DataFrame(), steps=100 + config.seed, seconds=0.5)  # type: ignore[arg-type]


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> Spy:
    spy = Spy()
    monkeypatch.setattr(walkforward, "train", spy)
    return spy


def wf_config(**overrides: object) -> WalkForwardConfig:
    base: dict[str, object] = {
        "n_folds": 2,
        "val_size": 5,
        "test_size": 6,
        "embargo": 2,
        "min_train_size": 10,
        "seeds": (3, 4),
        "baselines": ("buy_and_hold", "random"),
    }
    return WalkForwardConfig(**{**base, **overrides})  # type: ignore[arg-type]


# ---- folds ------------------------------------------------------------------------------------------------


def test_make_folds_by_hand_expanding_and_rolling() -> None:
    # 40 bars, 2 folds of 6 test bars: tests [28, 34) and [34, 40); val 5 bars ending 2 before each test.
    assert make_folds(40, wf_config()) == [
        Fold(0, train=slice(0, 19), val=slice(21, 26), test=slice(28, 34)),
        Fold(1, train=slice(0, 25), val=slice(27, 32), test=slice(34, 40)),
    ]
    rolling = make_folds(40, wf_config(rolling_train_size=12))
    assert [f.train for f in rolling] == [slice(7, 19), slice(13, 25)]
    # A rolling window longer than the history starts at bar 0.
    assert [f.train for f in make_folds(40, wf_config(rolling_train_size=22))] == [slice(0, 19), slice(3, 25)]


def test_make_folds_accepts_exactly_the_minimum_training_bars_and_names_the_short_fold() -> None:
    assert make_folds(40, wf_config(min_train_size=19))[0].train == slice(0, 19)
    with pytest.raises(ValueError, match=r"^fold 0 has 19 training bars < 20$"):
        make_folds(40, wf_config(min_train_size=20))
    with pytest.raises(ValueError, match=r"^fold 0 has 11 training bars < 12$"):
        make_folds(40, wf_config(rolling_train_size=11, min_train_size=12))


def test_yearly_folds_by_hand() -> None:
    index = pd.DatetimeIndex(
        [
            *pd.date_range("2020-01-01", periods=20, freq="D"),
            *pd.date_range("2021-01-01", periods=8, freq="D"),
            pd.Timestamp("2022-06-01"),
            *pd.date_range("2023-01-01", periods=3, freq="D"),
        ]
    )
    # 2021: rows 20..27; val = 4 bars ending 2 before row 20: [14, 18); train [0, 12).
    # 2022 has one bar only; 2023: rows 29..31, val [23, 27), train [0, 21); 2019 has none.
    folds = yearly_folds(index, [2019, 2021, 2022, 2023], val_size=4, embargo=2, min_train_size=12)
    assert folds == [
        Fold(2021, train=slice(0, 12), val=slice(14, 18), test=slice(20, 28)),
        Fold(2023, train=slice(0, 21), val=slice(23, 27), test=slice(29, 32)),
    ]
    assert isinstance(folds[0].index, int) and isinstance(folds[0].test.start, int)
    # 12 training bars are enough for 2021, 13 are not.
    assert [f.index for f in yearly_folds(index, [2021], 4, 2, 13)] == []


def test_yearly_folds_keep_a_year_of_exactly_two_bars() -> None:
    index = pd.DatetimeIndex([*pd.date_range("2020-01-01", periods=10, freq="D"), "2021-01-04", "2021-01-05"])
    assert yearly_folds(index, [2021], val_size=2, embargo=1, min_train_size=3) == [
        Fold(2021, train=slice(0, 6), val=slice(7, 9), test=slice(10, 12))
    ]


def test_fold_dates_are_the_first_and_last_bar_of_each_window() -> None:
    calendar = pd.bdate_range("2024-01-01", periods=40)
    fold = Fold(0, train=slice(3, 19), val=slice(21, 26), test=slice(28, 34))
    assert fold.dates(calendar) == {
        "train": (calendar[3], calendar[18]),
        "val": (calendar[21], calendar[25]),
        "test": (calendar[28], calendar[33]),
    }


def test_common_calendar_is_every_date_any_symbol_has_sorted() -> None:
    a = bars_of(5, "2024-01-08")
    b = bars_of(5, "2024-01-01").drop(pd.Timestamp("2024-01-03"))
    calendar = common_calendar({"A": a, "B": b})
    assert list(calendar) == list(pd.bdate_range("2024-01-01", "2024-01-12").drop(pd.Timestamp("2024-01-03")))


# ---- one symbol -------------------------------------------------------------------------------------------


def test_each_fold_and_seed_trains_on_its_training_bars_and_backtests_its_windows(spy: Spy) -> None:
    bars = bars_of(40)
    result = run_walkforward(bars, CONFIG, wf_config())
    assert [seed for seed, _, _ in spy.calls] == [3, 4, 3, 4]
    for (_, data, instruments), stop in zip(spy.calls, [19, 19, 25, 25], strict=True):
        assert isinstance(data, pd.DataFrame) and data.index.equals(bars.index[:stop]) and instruments is None
    # The agent's market runs up to the end of the fold's test window, never further.
    assert [len(a.markets[0]) for a in spy.agents] == [34, 34, 40, 40]
    m = result.metrics
    assert result.folds == make_folds(40, wf_config()) and result.calendar is None and result.figures == []
    # The deterministic baselines once per window (first seed), random per seed.
    per_window = m.groupby(["fold", "split", "seed"])["strategy"].apply(list).to_dict()
    for fold in (0, 1):
        for split in ("val", "test"):
            assert per_window[(fold, split, 3)] == ["agent", "buy_and_hold", "random"]
            assert per_window[(fold, split, 4)] == ["agent", "random"]
    assert len(m) == 2 * 2 * 5
    val0 = m[(m["fold"] == 0) & (m["split"] == "val")]
    assert (val0["start"] == bars.index[21]).all() and (val0["end"] == bars.index[25]).all()
    assert (val0["n_bars"] == 5).all()
    test1 = m[(m["fold"] == 1) & (m["split"] == "test")]
    assert (test1["start"] == bars.index[34]).all() and (test1["end"] == bars.index[39]).all()
    agent = m[m["strategy"] == "agent"]
    assert agent["train_steps"].tolist() == [103, 103, 104, 104] * 2 and (agent["train_seconds"] == 0.5).all()
    assert m.loc[m["strategy"] != "agent", "train_steps"].isna().all()
    # The flat agent neither gains nor pays; buy and hold gains on a rising path.
    assert (agent["total_return"] == 0.0).all()
    assert (m.loc[m["strategy"] == "buy_and_hold", "total_return"] > 0).all()
    assert "symbol" not in m.columns  # one symbol: no symbol column


def test_given_folds_replace_the_configured_ones_and_the_hook_sees_every_backtest(spy: Spy) -> None:
    bars = bars_of(40)
    seen: list[tuple[int, str, int, str, int]] = []

    def hook(fold: Fold, split: str, seed: int, res: walkforward.BacktestResult) -> None:
        seen.append((fold.index, split, seed, res.name, len(res.frame)))

    folds = [Fold(7, train=slice(0, 20), val=slice(22, 26), test=slice(28, 31))]
    result = run_walkforward(bars, CONFIG, wf_config(seeds=(3,)), folds=folds, on_backtest=hook)
    assert result.folds == folds and len(spy.calls) == 1
    assert spy.calls[0][1].index.equals(bars.index[:20])  # type: ignore[attr-defined]
    assert seen == [
        (7, "val", 3, "agent", 4),
        (7, "val", 3, "buy_and_hold", 4),
        (7, "val", 3, "random", 4),
        (7, "test", 3, "agent", 3),
        (7, "test", 3, "buy_and_hold", 3),
        (7, "test", 3, "random", 3),
    ]
    assert set(result.metrics["fold"]) == {7}


def test_validation_only_leaves_the_test_windows_unseen(spy: Spy) -> None:
    result = run_walkforward(bars_of(40), CONFIG, wf_config(splits=("val",)))
    assert set(result.metrics["split"]) == {"val"} and len(result.metrics) == 2 * 5


def test_one_figure_per_fold_of_its_test_window_for_the_first_seed(spy: Spy, tmp_path: Path) -> None:
    result = run_walkforward(bars_of(40), CONFIG, wf_config(figures_dir=str(tmp_path)))
    assert result.figures == [tmp_path / "fold_0_test.png", tmp_path / "fold_1_test.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fold_0_test.png", "fold_1_test.png"]


class FakeEnsemble(Flat):
    name = "ensemble"
    built: ClassVar[list[list[object]]] = []

    def __init__(self, members: Sequence[object]) -> None:
        FakeEnsemble.built.append(list(members))


def test_the_seeds_ensemble_is_backtested_once_per_window_as_seed_minus_one(
    spy: Spy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(walkforward, "EnsemblePolicy", FakeEnsemble)
    FakeEnsemble.built = []
    seen: list[tuple[int, str, int, str]] = []
    result = run_walkforward(
        bars_of(40),
        CONFIG,
        wf_config(ensemble=True, n_folds=1),
        on_backtest=lambda f, s, seed, r: seen.append((f.index, s, seed, r.name)),
    )
    assert FakeEnsemble.built == [["model-3", "model-4"], ["model-3", "model-4"]]
    ens = result.metrics[result.metrics["strategy"] == "ensemble"]
    assert ens["split"].tolist() == ["val", "test"] and (ens["seed"] == ENSEMBLE_SEED).all()
    assert ens["n_bars"].tolist() == [5, 6]
    assert [s for s in seen if s[3] == "ensemble"] == [
        (0, "val", -1, "ensemble"),
        (0, "test", -1, "ensemble"),
    ]
    # One seed has no ensemble to build.
    FakeEnsemble.built = []
    one = run_walkforward(bars_of(40), CONFIG, wf_config(ensemble=True, n_folds=1, seeds=(3,)))
    assert FakeEnsemble.built == [] and "ensemble" not in set(one.metrics["strategy"])


def test_options_for_the_other_case_are_refused(spy: Spy) -> None:
    bars = bars_of(40)
    many = {"A": bars, "B": bars}
    fold = Fold(0, slice(0, 20), slice(22, 26), slice(28, 31))
    with pytest.raises(
        ValueError, match=r"^folds and on_backtest are for one symbol; many symbols fold by date$"
    ):
        run_walkforward(many, CONFIG, wf_config(), folds=[fold])
    with pytest.raises(
        ValueError, match=r"^folds and on_backtest are for one symbol; many symbols fold by date$"
    ):
        run_walkforward(many, CONFIG, wf_config(), on_backtest=lambda *a: None)
    with pytest.raises(ValueError, match=r"^ensemble is for one symbol's walk-forward$"):
        run_walkforward(many, CONFIG, wf_config(ensemble=True))
    with pytest.raises(
        ValueError, match=r"^instruments need many symbols; one symbol trades as config\.env\.instrument$"
    ):
        run_walkforward(bars, CONFIG, wf_config(), instruments={"A": etf_spec()})
    assert spy.calls == []


def test_summary_averages_each_strategy_over_folds_and_seeds() -> None:
    rows = [
        {"fold": 0, "split": "test", "strategy": "agent", "seed": 3, "sharpe": 1.0, "symbol": "A"},
        {"fold": 1, "split": "test", "strategy": "agent", "seed": 4, "sharpe": 3.0, "symbol": "B"},
        {"fold": 0, "split": "test", "strategy": "random", "seed": 3, "sharpe": -1.0, "symbol": "A"},
        {"fold": 0, "split": "val", "strategy": "agent", "seed": 3, "sharpe": 9.0, "symbol": "A"},
    ]
    result = walkforward.WalkForwardResult(metrics=pd.DataFrame(rows), folds=[])
    summary = result.summary()
    assert list(summary.columns) == ["sharpe"]
    assert summary["sharpe"].to_dict() == {"agent": 2.0, "random": -1.0}
    assert result.summary("val")["sharpe"].to_dict() == {"agent": 9.0}
    by_symbol = result.summary(by_symbol=True)["sharpe"].to_dict()
    assert by_symbol == {("A", "agent"): 1.0, ("B", "agent"): 3.0, ("A", "random"): -1.0}
    # A table without the fold and seed columns (e.g. read back with only the metrics) summarises too.
    bare = walkforward.WalkForwardResult(metrics=pd.DataFrame(rows).drop(columns=["fold", "seed"]), folds=[])
    assert bare.summary()["sharpe"].to_dict() == {"agent": 2.0, "random": -1.0}


# ---- many symbols -----------------------------------------------------------------------------------------


def test_many_symbols_fold_by_date_and_train_one_agent_on_every_symbols_training_dates(
    spy: Spy, tmp_path: Path
) -> None:
    a = bars_of(40)  # 2024-01-01 .. 2024-02-23
    b = bars_of(30, price=50.0).set_axis(a.index[10:])  # listed ten bars later, same calendar after
    instruments: dict[str, InstrumentSpec] = {"B": kospi200_futures_spec()}
    result = run_walkforward(
        {"A": a, "B": b}, CONFIG, wf_config(figures_dir=str(tmp_path)), instruments=instruments
    )
    calendar = a.index
    assert result.calendar is not None and result.calendar.equals(calendar)
    assert result.folds == make_folds(40, wf_config())
    assert [seed for seed, _, _ in spy.calls] == [3, 4, 3, 4]
    for (_, data, inst), stop in zip(spy.calls, [19, 19, 25, 25], strict=True):
        assert isinstance(data, dict) and set(data) == {"A", "B"} and inst == instruments
        assert data["A"].index.equals(calendar[:stop]) and data["B"].index.equals(calendar[10:stop])
    # Each symbol's market runs up to the fold's last test date.
    assert [len(m) for m in spy.agents[0].markets] == [34, 24]
    m = result.metrics
    per_window = m.groupby(["fold", "split", "symbol", "seed"])["strategy"].apply(list).to_dict()
    assert per_window[(0, "val", "B", 3)] == ["agent", "buy_and_hold", "random"]
    assert per_window[(1, "test", "A", 4)] == ["agent", "random"]
    assert len(m) == 2 * 2 * 2 * 5
    val0 = m[(m["fold"] == 0) & (m["split"] == "val")]
    assert (val0["start"] == calendar[21]).all() and (val0["end"] == calendar[25]).all()
    agent = m[m["strategy"] == "agent"]
    assert set(agent["train_steps"]) == {103, 104} and (agent["train_seconds"] == 0.5).all()
    assert m.loc[m["strategy"] != "agent", ["train_steps", "train_seconds"]].isna().all().all()
    # B trades as futures (level 1 = one contract at about 63 * 250,000 of 100M) and A as config.env's
    # stock (level 1 = all of it); held over 4 of the window's 5 rows.
    hold = m[(m["strategy"] == "buy_and_hold") & (m["fold"] == 0) & (m["split"] == "val")].set_index("symbol")
    assert hold.loc["A", "exposure"] == pytest.approx(0.8, abs=0.01)
    assert hold.loc["B", "exposure"] == pytest.approx(0.8 * 63 * 250_000 / 1e8, rel=0.05)
    assert sorted(p.name for p in result.figures) == [
        "fold_0_test_A.png",
        "fold_0_test_B.png",
        "fold_1_test_A.png",
        "fold_1_test_B.png",
    ]


def test_a_symbol_without_enough_bars_in_a_window_gets_no_rows_there(spy: Spy) -> None:
    a = bars_of(40)
    # Fold: train [0, 25), val [27, 32), test [34, 40). B ends inside the val window (its market: rows 2..29),
    # C has a single bar past its warm-up (one window, no decision), D two (one decision) in the val window.
    b = bars_of(30).set_axis(a.index[:30])
    c = bars_of(3).set_axis(a.index[27:30])
    d = bars_of(4).set_axis(a.index[27:31])
    result = run_walkforward({"A": a, "B": b, "C": c, "D": d}, CONFIG, wf_config(seeds=(3,), n_folds=1))
    m = result.metrics
    b_rows = m[m["symbol"] == "B"]
    assert set(b_rows["split"]) == {"val"} and len(b_rows) == 3
    assert (b_rows["start"] == a.index[27]).all() and (b_rows["end"] == a.index[29]).all()
    assert (b_rows["n_bars"] == 3).all()
    assert "C" not in set(m["symbol"])
    d_rows = m[m["symbol"] == "D"]
    assert set(d_rows["split"]) == {"val"} and (d_rows["n_bars"] == 2).all()
    assert (d_rows["start"] == a.index[29]).all() and (d_rows["end"] == a.index[30]).all()


class PlotSpy:
    """Stands in for ``plot_backtests``: records (strategies, first and last bar, path, title)."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], pd.Timestamp, pd.Timestamp, str, str]] = []

    def __call__(self, results: list[walkforward.BacktestResult], path: Path, title: str = "") -> Path:
        first, last = results[0].frame.index[[0, -1]]
        self.calls.append(([r.name for r in results], first, last, Path(path).name, title))
        return Path(path)


def test_figures_show_the_test_window_of_the_first_seed_titled_by_fold_and_seed(
    spy: Spy, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    plots = PlotSpy()
    monkeypatch.setattr(walkforward, "plot_backtests", plots)
    bars = bars_of(40)
    run_walkforward(bars, CONFIG, wf_config(figures_dir=str(tmp_path)))
    assert plots.calls == [
        (
            ["agent", "buy_and_hold", "random"],
            bars.index[28],
            bars.index[33],
            "fold_0_test.png",
            "fold 0 test (seed 3)",
        ),
        (
            ["agent", "buy_and_hold", "random"],
            bars.index[34],
            bars.index[39],
            "fold_1_test.png",
            "fold 1 test (seed 3)",
        ),
    ]
    plots.calls.clear()
    run_walkforward(
        bars, CONFIG, wf_config(figures_dir=str(tmp_path), seeds=(4,), splits=("test",), n_folds=1)
    )
    assert [c[3:] for c in plots.calls] == [("fold_0_test.png", "fold 0 test (seed 4)")]
    plots.calls.clear()
    many = {"A": bars, "B": bars_of(30).set_axis(bars.index[:30]), "E": bars_of(8).set_axis(bars.index[32:])}
    # B has no bar in the test window (no figure); E none in the val window (a figure of its test window).
    run_walkforward(many, CONFIG, wf_config(figures_dir=str(tmp_path), seeds=(4, 3), n_folds=1))
    assert plots.calls == [
        (
            ["agent", "buy_and_hold", "random"],
            bars.index[34],
            bars.index[39],
            "fold_0_test_A.png",
            "A fold 0 test (seed 4)",
        ),
        (
            ["agent", "buy_and_hold", "random"],
            bars.index[34],
            bars.index[39],
            "fold_0_test_E.png",
            "E fold 0 test (seed 4)",
        ),
    ]


def random_actions(market: MarketArrays, seed: int, start: int, end: int) -> list[int]:
    policy = walkforward.make_baseline("random", CONFIG.env, seed)
    return walkforward.run_backtest(policy, market, CONFIG.env, start, end).frame["action"].tolist()


def test_the_random_baseline_is_seeded_with_each_agent_seed(spy: Spy) -> None:
    bars = bars_of(120)
    wf = wf_config(n_folds=1, val_size=40, test_size=40, seeds=(3, 4))
    # Fold: train [0, 36), val [38, 78), test [80, 120); the stand-in market drops 2 bars: val is rows 36..75.
    market = FakeAgent(0).market(bars)
    expected = {seed: random_actions(market, seed, 36, 75) for seed in (3, 4)}
    assert expected[3] != expected[4] != random_actions(market, 0, 36, 75)  # the seeds draw different paths
    seen: dict[int, list[int]] = {}

    def hook(fold: Fold, split: str, seed: int, res: walkforward.BacktestResult) -> None:
        if split == "val" and res.name == "random":
            seen[seed] = res.frame["action"].tolist()

    run_walkforward(bars, CONFIG, wf, on_backtest=hook)
    assert seen == expected
    many = run_walkforward({"A": bars, "B": bars}, CONFIG, wf).metrics
    rand = many[(many["strategy"] == "random") & (many["split"] == "val") & (many["symbol"] == "A")]
    trades = {seed: float(np.sum(np.diff([0, *actions[1:]]) != 0)) for seed, actions in expected.items()}
    assert dict(zip(rand["seed"], rand["n_trades"], strict=True)) == trades


def test_metrics_are_annualised_with_the_configured_bars_per_year(spy: Spy) -> None:
    bars = bars_of(40)
    daily = run_walkforward(bars, CONFIG, wf_config(n_folds=1, seeds=(3,))).metrics
    quarterly = run_walkforward(bars, CONFIG, wf_config(n_folds=1, seeds=(3,), periods_per_year=63.0)).metrics
    hold = daily["strategy"] == "buy_and_hold"
    ratio = daily.loc[hold, "volatility"].to_numpy() / quarterly.loc[hold, "volatility"].to_numpy()
    assert ratio == pytest.approx([2.0, 2.0])  # sqrt(252 / 63)


def test_a_year_without_enough_training_bars_is_skipped_and_later_years_kept() -> None:
    index = pd.DatetimeIndex(
        [
            *pd.date_range("2020-06-01", periods=5, freq="D"),
            *pd.date_range("2021-01-01", periods=30, freq="D"),
            *pd.date_range("2022-01-01", periods=4, freq="D"),
        ]
    )
    # 2021 starts at row 5: train would end at 5 - 1 - 2 - 1 = 1 < 3; 2022 starts at row 35: train [0, 31).
    assert yearly_folds(index, [2021, 2022], val_size=2, embargo=1, min_train_size=3) == [
        Fold(2022, train=slice(0, 31), val=slice(32, 34), test=slice(35, 39))
    ]


WINDOW3 = TrainConfig(env=EnvConfig(instrument=stock_spec(tick_size=1.0), window=3, episode_length=None))


def test_a_window_with_no_decision_after_the_feature_window_is_skipped_not_run_into_the_next(
    spy: Spy,
) -> None:
    a = bars_of(40)
    # G's market starts at calendar row 29: the val window [27, 32) holds its rows 0..2, all still filling the
    # 3-bar feature window, so no decision fits in it; its test window [34, 40) does.
    g = bars_of(13).set_axis(a.index[27:])
    result = run_walkforward({"A": a, "G": g}, WINDOW3, wf_config(seeds=(3,), n_folds=1))
    g_rows = result.metrics[result.metrics["symbol"] == "G"]
    assert set(g_rows["split"]) == {"test"}
    assert (g_rows["start"] == a.index[34]).all() and (g_rows["end"] == a.index[39]).all()
