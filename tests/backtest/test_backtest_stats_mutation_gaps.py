"""Honesty statistics where the first tests could not tell right from wrong: the smallest inputs each check
allows, flat strategies, ties at the OOS median, CSCV against a slicing reference, and bootstrap intervals
whose resampling distribution is known exactly (issue 14)."""

from __future__ import annotations

import math
import warnings
from decimal import Decimal
from itertools import combinations

import numpy as np
import pytest
from scipy import stats as sps
from scipy.stats import norm

from pipeline.backtest.stats import (
    bootstrap_ci,
    deflated_sharpe,
    expected_max_sharpe,
    kurtosis,
    probabilistic_sharpe_ratio,
    probability_of_backtest_overfitting,
    psr_from_moments,
    sharpe_ratio,
    skewness,
)

# --- Inputs: the smallest allowed, flat series, exact error texts ------------------------------------------


def test_two_returns_are_enough_and_one_is_an_error() -> None:
    assert sharpe_ratio([0.01, 0.03]) == pytest.approx(0.02 / math.sqrt(2e-4))
    assert bootstrap_ci([1.0, 3.0], n_resamples=200)[1] == 2.0
    with pytest.raises(ValueError, match=r"^need at least 2 returns, got 1$"):
        sharpe_ratio([0.01])
    with pytest.raises(ValueError, match=r"^returns contain NaN or inf; drop or fill them explicitly"):
        skewness([0.01, math.inf])
    with pytest.raises(ValueError, match=r"^bootstrap_ci needs at least 2 finite values$"):
        bootstrap_ci([1.0])
    with pytest.raises(ValueError, match=r"^bootstrap_ci needs at least 2 finite values$"):
        bootstrap_ci([1.0, math.nan, 2.0])  # enough values, one of them missing


def test_returns_read_as_decimals_from_postgres_numeric_are_numbers() -> None:
    # pandas' read_sql gives a NUMERIC column as objects of Decimal; they are the floats they spell.
    r = np.array([Decimal("0.01"), Decimal("-0.02"), Decimal("0.03"), Decimal("0.005")], dtype=object)
    f = r.astype(float)
    assert sharpe_ratio(r) == pytest.approx(f.mean() / f.std(ddof=1))
    assert bootstrap_ci(r, n_resamples=500) == bootstrap_ci(f, n_resamples=500)
    m = np.array([[Decimal("0.01"), Decimal("0.0")], [Decimal("-0.01"), Decimal("0.02")]] * 4, dtype=object)
    res = probability_of_backtest_overfitting(m, n_splits=2)
    assert res.logits == pytest.approx(
        probability_of_backtest_overfitting(m.astype(float), n_splits=2).logits
    )


def test_a_strategy_that_never_moves_has_the_moments_of_a_normal() -> None:
    flat = np.full(50, 0.001)
    assert skewness(flat) == 0.0 and kurtosis(flat) == 3.0
    # SR = 0 against a benchmark of 0: a coin flip, not an error.
    assert probabilistic_sharpe_ratio(flat) == 0.5
    d = deflated_sharpe(flat, trial_sharpes=[0.1, -0.1, 0.05])
    z = (0.0 - d.sr0) * math.sqrt(49)  # 1 − γ3·0 + (3 − 1)/4·0 = 1
    assert d.dsr_prob == pytest.approx(norm.cdf(z))


def test_psr_needs_two_observations_and_consistent_moments() -> None:
    # T = 2: z = SR·sqrt(1) / sqrt(1 + 0.5·SR²)
    assert psr_from_moments(0.5, 0.0, 2) == pytest.approx(norm.cdf(0.5 / math.sqrt(1.125)))
    with pytest.raises(ValueError, match=r"^PSR needs n_obs >= 2, got 1$"):
        psr_from_moments(0.5, 0.0, 1)
    # γ3 = 2, γ4 = 5 = 1 + γ3² (a two-point distribution) and SR = 1 leave 1 − 2 + 4/4 = 0: no spread at all.
    with pytest.raises(ValueError, match="inconsistent moments"):
        psr_from_moments(1.0, 0.0, 100, skew=2.0, kurt=5.0)
    with pytest.raises(ValueError, match=r"^n_trials must be >= 1, got 0$"):
        expected_max_sharpe(0, 1.0)
    with pytest.raises(ValueError, match=r"^trial_sharpe_var must be >= 0, got -0.1$"):
        expected_max_sharpe(10, -0.1)


# --- Deflated Sharpe by hand --------------------------------------------------------------------------------


def test_deflated_sharpe_of_two_trials_matches_the_2014_formula_by_hand() -> None:
    r = np.random.default_rng(21).standard_t(df=5, size=300) * 0.01 + 0.001
    trials = [0.12, 0.02]
    d = deflated_sharpe(r, trials)
    # Bailey & López de Prado (2014), eqs. for SR0 and DSR, with scipy's moments (biased, non-excess).
    sr = r.mean() / r.std(ddof=1)
    g3, g4 = sps.skew(r), sps.kurtosis(r, fisher=False)
    v = np.var(trials, ddof=1)  # 0.005
    sr0 = math.sqrt(v) * (
        (1 - np.euler_gamma) * norm.ppf(1 - 1 / 2) + np.euler_gamma * norm.ppf(1 - 1 / (2 * math.e))
    )
    dsr = norm.cdf((sr - sr0) * math.sqrt(299) / math.sqrt(1 - g3 * sr + (g4 - 1) / 4 * sr**2))
    assert d.sr0 == pytest.approx(sr0) and sr0 > 0.0
    assert (d.sr, d.skew, d.kurtosis, d.T, d.n_trials) == pytest.approx((sr, g3, g4, 300, 2))
    assert d.dsr_prob == pytest.approx(dsr)


def test_two_trials_need_two_trial_sharpes() -> None:
    r = np.random.default_rng(4).normal(0.001, 0.01, 100)
    with pytest.raises(
        ValueError, match=r"^need the Sharpe ratios of at least 2 trials to estimate their variance$"
    ):
        deflated_sharpe(r, [0.1], n_trials=2)


def test_one_trial_estimates_no_variance_and_warns_about_nothing() -> None:
    # The variance of one Sharpe (ddof = 1) is undefined; with one trial there is no selection to correct.
    r = np.random.default_rng(4).normal(0.001, 0.01, 100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's "Degrees of freedom <= 0" would surface in every report
        d = deflated_sharpe(r, [sharpe_ratio(r)])
    assert d.n_trials == 1 and d.sr0 == 0.0


# --- CSCV (PBO) ---------------------------------------------------------------------------------------------


def _sharpe_or_zero(block: np.ndarray) -> np.ndarray:
    sd = block.std(axis=0, ddof=1)
    return np.where(sd > 0, block.mean(axis=0) / np.where(sd > 0, sd, 1.0), 0.0)


def _cscv_by_slicing(m: np.ndarray, s: int) -> dict[str, np.ndarray]:
    """Bailey et al. (2017) CSCV, the slow way: slice the rows of every split and rank with scipy."""
    blocks = np.array_split(np.arange(len(m)), s)
    out: dict[str, list[float]] = {"is": [], "oos": [], "chosen": [], "logit": []}
    for is_blocks in combinations(range(s), s // 2):
        is_rows = np.concatenate([blocks[b] for b in is_blocks])
        oos_rows = np.concatenate([blocks[b] for b in range(s) if b not in is_blocks])
        is_sr, oos_sr = _sharpe_or_zero(m[is_rows]), _sharpe_or_zero(m[oos_rows])
        n_star = int(np.argmax(is_sr))
        omega = sps.rankdata(oos_sr)[n_star] / (m.shape[1] + 1)
        out["is"].append(is_sr[n_star])
        out["oos"].append(oos_sr[n_star])
        out["chosen"].append(n_star)
        out["logit"].append(math.log(omega / (1 - omega)))
    return {k: np.array(v) for k, v in out.items()}


@pytest.mark.parametrize(
    ("rows", "edge"),
    [(10, 0.004), (400, 0.0)],  # S = 4: blocks of 3, 3, 2, 2 rows; and long noise, IS Sharpes all near 0
)
def test_cscv_matches_slicing_every_split(rows: int, edge: float) -> None:
    m = np.random.default_rng(17).normal(0.001, 0.01, (rows, 3))
    m[:, 1] += edge
    res = probability_of_backtest_overfitting(m, n_splits=4)
    ref = _cscv_by_slicing(m, 4)
    assert res.is_sharpe == pytest.approx(ref["is"], rel=1e-9)
    assert res.oos_sharpe == pytest.approx(ref["oos"], rel=1e-9)
    assert res.chosen.tolist() == ref["chosen"].tolist()
    assert res.logits == pytest.approx(ref["logit"])
    assert res.pbo == pytest.approx(np.mean(ref["logit"] <= 0))
    slope, intercept = np.polyfit(ref["is"], ref["oos"], 1)
    assert res.degradation_slope == pytest.approx(slope, rel=1e-9)
    assert res.degradation_intercept == pytest.approx(intercept, rel=1e-9, abs=1e-12)
    assert res.prob_oos_loss == pytest.approx(np.mean(ref["oos"] < 0))


def test_cscv_sharpes_stay_exact_for_configurations_far_apart_in_level() -> None:
    # Per-period P&L in won: one configuration earns ~10⁸ a bar with a spread of ~1, the other ~0.
    rng = np.random.default_rng(9)
    m = np.stack([1e8 + rng.normal(0, 1, 12), rng.normal(0, 1, 12)], axis=1)
    res = probability_of_backtest_overfitting(m, n_splits=2)
    ref = _cscv_by_slicing(m, 2)
    assert res.is_sharpe == pytest.approx(ref["is"], rel=1e-6)
    assert res.oos_sharpe == pytest.approx(ref["oos"], rel=1e-6)


def test_the_winner_exactly_at_the_oos_median_counts_as_overfit() -> None:
    # S = 2, N = 3, 4 rows per block with the same ±1/128 wiggle, so Sharpe orders as the block means do.
    w = np.array([1, -1, 1, -1]) / 128
    col = lambda a, b: np.concatenate([a + w, b + w])  # noqa: E731
    m = np.stack([col(3 / 64, 1 / 64), col(0.0, 2 / 64), col(2 / 64, 0.0)], axis=1)
    res = probability_of_backtest_overfitting(m, n_splits=2)
    # IS {0}: A wins, OOS {1}: A is 2nd of 3 → ω = 2/4, λ = 0.  IS {1}: B wins, OOS {0}: last → ω = 1/4.
    assert res.chosen.tolist() == [0, 1]
    assert res.logits == pytest.approx([0.0, math.log(1 / 3)])
    assert res.pbo == 1.0  # λ = 0 is "no better than the median"


def test_a_winner_that_goes_flat_out_of_sample_did_not_lose() -> None:
    # A earns in block 0 and does nothing (exactly 0) in block 1; B the reverse. Dyadic values keep it exact.
    w = np.array([1, -1, 1, -1]) / 128
    z = np.zeros(4)
    m = np.stack([np.r_[4 / 128 + w, z], np.r_[z, 2 / 128 + w]], axis=1)
    res = probability_of_backtest_overfitting(m, n_splits=2)
    assert res.chosen.tolist() == [0, 1]  # a flat IS half has Sharpe 0, not NaN, and never wins
    assert res.oos_sharpe.tolist() == [0.0, 0.0]
    assert res.prob_oos_loss == 0.0
    assert res.logits == pytest.approx([math.log(1 / 2)] * 2)  # flat OOS: below the other's positive SR


def test_the_same_winner_score_every_split_has_no_degradation_slope() -> None:
    w = np.array([1, -1, 1, -1]) / 128
    a = np.r_[4 / 128 + w, 4 / 128 + w]  # identical blocks: the same IS (and OOS) Sharpe in both splits
    b = np.r_[1 / 128 + w, 0.0 + w]
    res = probability_of_backtest_overfitting(np.stack([a, b], axis=1), n_splits=2)
    assert res.chosen.tolist() == [0, 0]
    assert math.isnan(res.degradation_slope)
    assert res.degradation_intercept == pytest.approx(res.oos_sharpe[0])


def test_pbo_needs_two_rows_per_half_and_finite_returns() -> None:
    m = np.random.default_rng(2).normal(0, 0.01, (4, 2))
    assert len(probability_of_backtest_overfitting(m, n_splits=4).logits) == 6  # 1 row a block, 2 a half
    with pytest.raises(ValueError, match="too few"):
        probability_of_backtest_overfitting(np.ones((3, 2)), n_splits=2)  # 1 row per half
    m[1, 1] = math.nan
    with pytest.raises(ValueError, match=r"^returns contain NaN or inf$"):
        probability_of_backtest_overfitting(m, n_splits=4)


# --- Bootstrap intervals with a known resampling distribution -----------------------------------------------


def test_percentile_interval_of_two_values_follows_the_exact_bootstrap_distribution() -> None:
    # The mean of 2 draws from {0, 1} is 0, 1/2, 1 with probabilities 1/4, 1/2, 1/4 (Efron & Tibshirani,
    # ch. 13): the 2.5/97.5 % quantiles are 0 and 1; the 30/70 % ones (level 0.4) both fall at 1/2.
    assert bootstrap_ci([0.0, 1.0]) == (0.0, 0.5, 1.0)
    assert bootstrap_ci([0.0, 1.0], level=0.4) == (0.5, 0.5, 0.5)
    # Two folds of two runs, each fold constant: the same distribution, drawn fold by fold.
    assert bootstrap_ci([0.0, 0.0, 1.0, 1.0], groups=[0, 0, 1, 1]) == (0.0, 0.5, 1.0)
    assert bootstrap_ci([0.0, 0.0, 1.0, 1.0], groups=["a", "a", "b", "b"], level=0.4) == (0.5, 0.5, 0.5)


def test_unequal_folds_weigh_each_run_once() -> None:
    # Fold A: one run at 0; fold B: three runs at 1. Two folds drawn: AA → 0, AB/BA → 3/4, BB → 1
    # (1/4, 1/2, 1/4); the 30/70 % quantiles both fall in the mass at 3/4.
    x, labels = [0.0, 1.0, 1.0, 1.0], ["A", "B", "B", "B"]
    assert bootstrap_ci(x, groups=labels, level=0.4) == pytest.approx((0.75, 0.75, 0.75))
    assert bootstrap_ci(x, groups=labels) == pytest.approx((0.0, 0.75, 1.0))


def test_one_fold_resamples_its_runs_like_the_ordinary_bootstrap() -> None:
    x = np.random.default_rng(6).normal(0.0, 1.0, 30)
    naive = bootstrap_ci(x, seed=1)
    one_fold = bootstrap_ci(x, groups=np.zeros(30), seed=2)
    assert one_fold[1] == naive[1]
    assert one_fold[0] == pytest.approx(naive[0], abs=0.05) and one_fold[2] == pytest.approx(
        naive[2], abs=0.05
    )


def test_balanced_folds_are_resampled_whole_and_evaluated_in_one_call() -> None:
    # 3 folds × 2 runs, run values unique per fold: every resample is 3 drawn folds of 2 runs from that fold.
    x = np.array([0.0, 1.0, 10.0, 11.0, 20.0, 21.0])
    fold_of = {v: int(v // 10) for v in x}
    seen: list[np.ndarray] = []

    def spy_mean(a: np.ndarray, axis: int) -> np.ndarray:
        seen.append(np.array(a))
        return np.mean(a, axis=axis)

    bootstrap_ci(x, statistic=spy_mean, n_resamples=300, groups=[0, 0, 1, 1, 2, 2])
    assert [s.shape for s in seen] == [(1, 6), (300, 6)]  # the data, then all resamples as one matrix
    drawn = [fold_of[v] for row in seen[1] for v in row]
    assert all(drawn[i] == drawn[i + 1] for i in range(0, len(drawn), 2))  # members stay in their fold
    assert set(drawn) == {0, 1, 2} and set(seen[1].ravel()) == set(x)  # every fold and run can be drawn


def test_defaults_are_seed_0_and_10000_resamples_and_level_must_be_inside_0_1() -> None:
    x = np.random.default_rng(3).normal(0.0, 1.0, 20)
    assert bootstrap_ci(x) == bootstrap_ci(x, n_resamples=10_000, seed=0, level=0.95)
    for level in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match=rf"^level must be in \(0, 1\), got {level}$"):
            bootstrap_ci(x, level=level)
