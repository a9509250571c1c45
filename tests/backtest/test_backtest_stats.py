"""Honesty statistics (PSR, deflated Sharpe, PBO by CSCV, bootstrap CIs), checked against numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest

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

LN2 = math.log(2.0)


# --- Sharpe ratio and moments -------------------------------------------------------------------------------


def test_sharpe_is_per_period_unless_annualised_and_zero_for_a_flat_series() -> None:
    r = np.array([0.01, -0.02, 0.03, 0.0])
    per_period = r.mean() / r.std(ddof=1)
    assert sharpe_ratio(r) == pytest.approx(per_period)
    assert sharpe_ratio(r, periods_per_year=252) == pytest.approx(per_period * math.sqrt(252))
    assert sharpe_ratio(np.zeros(10)) == 0.0
    with pytest.raises(ValueError, match="NaN"):
        sharpe_ratio([0.01, math.nan, 0.02])


def test_moments_of_a_bernoulli_quarter_match_the_closed_form_and_kurtosis_is_not_excess() -> None:
    # Bernoulli(p = 1/4): skew = (1 − 2p)/sqrt(p(1 − p)) = 2/sqrt(3), kurtosis = 1/(p(1 − p)) − 3 = 7/3.
    x = [0.0, 0.0, 0.0, 1.0]
    assert skewness(x) == pytest.approx(2 / math.sqrt(3))
    assert kurtosis(x) == pytest.approx(7 / 3)
    normal = np.random.default_rng(0).normal(size=200_000)
    assert skewness(normal) == pytest.approx(0.0, abs=0.02)
    assert kurtosis(normal) == pytest.approx(3.0, abs=0.05)


# --- Probabilistic Sharpe ratio -----------------------------------------------------------------------------


def test_psr_of_a_normal_track_record_matches_a_hand_calculation() -> None:
    # SR = 0.1 per period over T = 101: z = 0.1·10 / sqrt(1 + 0.5·0.01) = 0.99751 → Φ(z) = 0.8407.
    assert psr_from_moments(0.1, 0.0, 101) == pytest.approx(0.8407, abs=1e-4)
    assert psr_from_moments(0.1, 0.1, 101) == pytest.approx(0.5)  # at the benchmark: a coin flip
    assert psr_from_moments(0.1, 0.0, 1001) > 0.99  # same SR, ten times the history


def test_negative_skew_and_fat_tails_lower_the_psr_of_the_same_sharpe() -> None:
    normal = psr_from_moments(0.1, 0.0, 250, skew=0.0, kurt=3.0)
    crashy = psr_from_moments(0.1, 0.0, 250, skew=-3.0, kurt=3.0 + 9.0)
    crashier = psr_from_moments(0.1, 0.0, 250, skew=-5.0, kurt=3.0 + 25.0)
    assert normal > crashy > crashier
    # z = 0.1·sqrt(249) / sqrt(1 + 0.3 + 11/4·0.01) = 1.3696 for the crashy one, 1.5741 for the Normal.
    assert normal == pytest.approx(0.9423, abs=1e-4) and crashy == pytest.approx(0.9146, abs=1e-4)
    with pytest.raises(ValueError, match="inconsistent moments"):
        psr_from_moments(1.0, 0.0, 250, skew=3.0, kurt=1.0)  # γ4 < 1 + γ3²: no distribution has these


def test_psr_of_a_return_series_uses_its_own_moments() -> None:
    r = np.random.default_rng(3).standard_t(df=4, size=1000) * 0.01 + 0.002
    expected = psr_from_moments(sharpe_ratio(r), 0.02, len(r), skewness(r), kurtosis(r))
    assert probabilistic_sharpe_ratio(r, sr_benchmark=0.02) == pytest.approx(expected)
    # True per-period SR = 0.2/sqrt(2) ≈ 0.14 over 1000 observations (z ≈ 4.5): clearly positive.
    assert probabilistic_sharpe_ratio(r) > 0.99


# --- Deflated Sharpe ratio ----------------------------------------------------------------------------------


def test_deflated_sharpe_reproduces_the_2014_papers_numerical_example() -> None:
    # Bailey & López de Prado (2014), numerical example: annualised SR 2.5 over T = 1250 daily observations
    # (250 a year), γ3 = −3, γ4 = 10, N = 100 trials whose Sharpe ratios have annualised variance 1/2.
    # The paper prints SR0 ≈ 0.1132 (per period) and DSR ≈ 0.9004 (quoted from memory of the paper; both
    # match our computation to 4 decimals). SR0 annualised is 0.1132·sqrt(250) ≈ 1.7894.
    sr = 2.5 / math.sqrt(250)
    sr0 = expected_max_sharpe(100, 0.5 / 250)
    assert sr0 == pytest.approx(0.1132, abs=5e-5)
    assert sr0 * math.sqrt(250) == pytest.approx(1.7894, abs=5e-4)
    assert psr_from_moments(sr, sr0, 1250, skew=-3.0, kurt=10.0) == pytest.approx(0.9004, abs=5e-5)


def test_expected_max_sharpe_approximates_the_simulated_maximum_of_n_lucky_trials() -> None:
    # Independent check of the SR0 formula: the mean maximum of N standard Normals, simulated.
    draws = np.random.default_rng(11).normal(size=(20_000, 100))
    for n in (10, 100):
        simulated = draws[:, :n].max(axis=1).mean()  # ≈ 1.539 (N = 10), ≈ 2.508 (N = 100)
        assert expected_max_sharpe(n, 1.0) == pytest.approx(simulated, rel=0.025)
    assert expected_max_sharpe(100, 4.0) == pytest.approx(2 * expected_max_sharpe(100, 1.0))  # ∝ sqrt(V)


def test_one_trial_has_no_selection_bias_so_dsr_equals_psr_against_zero() -> None:
    r = np.random.default_rng(5).normal(0.0005, 0.01, 500)
    d = deflated_sharpe(r, trial_sharpes=[sharpe_ratio(r)], n_trials=1)
    assert d.sr0 == 0.0 and d.n_trials == 1 and d.T == 500
    assert d.dsr_prob == pytest.approx(probabilistic_sharpe_ratio(r, 0.0))
    assert (d.sr, d.skew, d.kurtosis) == pytest.approx((sharpe_ratio(r), skewness(r), kurtosis(r)))


def test_more_trials_behind_the_same_pick_deflate_its_sharpe_further() -> None:
    rng = np.random.default_rng(8)
    best = rng.normal(0.002, 0.01, 750)  # per-period SR ≈ 0.2
    trials = rng.normal(0.0, 0.05, 20)  # Sharpe ratios of the other variants tried
    probs = [deflated_sharpe(best, trials, n_trials=n).dsr_prob for n in (2, 20, 200, 2000)]
    assert probs == sorted(probs, reverse=True) and probs[0] - probs[-1] > 0.1
    d = deflated_sharpe(best, trials)  # n_trials defaults to the number of trial Sharpes
    assert d.n_trials == 20
    assert d.sr0 == pytest.approx(expected_max_sharpe(20, float(np.var(trials, ddof=1))))
    assert d.dsr_prob == pytest.approx(psr_from_moments(d.sr, d.sr0, 750, d.skew, d.kurtosis))
    with pytest.raises(ValueError, match="at least 2 trials"):
        deflated_sharpe(best, [0.1], n_trials=50)


# --- Probability of backtest overfitting --------------------------------------------------------------------


def _blocks(*columns: list[float]) -> np.ndarray:
    """T×N matrix: each column given as one mean per block, plus the same ±0.01 wiggle inside every block."""
    wiggle = np.array([0.01, -0.01, 0.01, -0.01])
    return np.stack([np.concatenate([m + wiggle for m in col]) for col in columns], axis=1)


def test_pbo_of_a_hand_built_case_is_one_third() -> None:
    # S = 4 blocks, C(4, 2) = 6 splits. A is lucky (+5 %) in blocks 0 and 1 only; B earns a steady 1.5 %.
    # IS {0,1}: A wins (SR ≈ 4.7 vs 1.4), OOS {2,3}: A ≈ 0 < B → λ = ln((1/3)/(2/3)) = −ln 2.
    # IS {2,3}: B wins, OOS {0,1}: A beats B → −ln 2.  The 4 mixed splits: B wins IS and OOS → +ln 2.
    m = _blocks([0.05, 0.05, 0.0, 0.0], [0.015] * 4)
    res = probability_of_backtest_overfitting(m, n_splits=4)
    assert res.pbo == pytest.approx(2 / 6)
    assert np.sort(res.logits) == pytest.approx([-LN2, -LN2, LN2, LN2, LN2, LN2])
    assert list(res.chosen) == [0, 1, 1, 1, 1, 1]  # IS {0,1} picks A; every other split picks B
    assert res.prob_oos_loss == 0.0


def test_pbo_is_one_when_every_configuration_is_lucky_in_one_block() -> None:
    # Configuration k is +k·1 % in block k only: the IS winner is always flat OOS while others shine there.
    m = _blocks(*[[0.01 * (k + 1) if b == k else 0.0 for b in range(4)] for k in range(4)])
    res = probability_of_backtest_overfitting(m, n_splits=4)
    assert res.pbo == 1.0
    assert np.all(res.logits < 0)
    two = probability_of_backtest_overfitting(_blocks([0.02, 0.0], [0.0, 0.02]), n_splits=2)
    assert two.pbo == 1.0 and two.logits == pytest.approx([-LN2, -LN2])


def test_a_configuration_with_a_real_edge_in_every_block_gives_pbo_zero() -> None:
    m = np.random.default_rng(1).normal(0.0, 0.01, (800, 20))
    m[:, 7] += 0.003  # per-period SR ≈ 0.3 in every block, the noise columns ≈ 0
    res = probability_of_backtest_overfitting(m)  # S = 16: 12,870 splits
    assert len(res.logits) == math.comb(16, 8)
    assert res.pbo == 0.0 and np.all(res.chosen == 7)
    assert res.logits.min() == pytest.approx(math.log(20))  # always top of 20 OOS: ω = 20/21
    assert res.prob_oos_loss == 0.0


def test_pure_noise_configurations_overfit_half_the_time() -> None:
    # With no skill, the IS winner's OOS rank is uniform, so PBO → 1/2 for even N. One matrix's PBO is
    # very noisy (the splits share data), hence the average over 40 independent matrices.
    pbos = [
        probability_of_backtest_overfitting(np.random.default_rng(s).normal(0, 0.01, (400, 10)), 8).pbo
        for s in range(40)
    ]
    assert np.mean(pbos) == pytest.approx(0.5, abs=0.08)
    noise = probability_of_backtest_overfitting(np.random.default_rng(2).normal(0, 0.01, (1000, 50)))
    assert noise.degradation_slope < 0  # higher IS Sharpe of a lucky pick → worse OOS


def test_pbo_rejects_inputs_it_cannot_rank_or_split() -> None:
    with pytest.raises(ValueError, match="N >= 2"):
        probability_of_backtest_overfitting(np.zeros((100, 1)))
    with pytest.raises(ValueError, match="too few"):
        probability_of_backtest_overfitting(np.zeros((10, 3)), n_splits=16)
    with pytest.raises(ValueError, match="even"):
        probability_of_backtest_overfitting(np.zeros((100, 3)), n_splits=5)
    with pytest.raises(ValueError, match="T×N"):
        probability_of_backtest_overfitting(np.zeros(100))


# --- Bootstrap confidence intervals -------------------------------------------------------------------------


def test_percentile_interval_for_a_normal_mean_covers_the_truth_about_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(123)
    hits = 0
    for e in range(400):
        lo, _, hi = bootstrap_ci(rng.normal(1.0, 2.0, 30), n_resamples=1000, seed=e)
        hits += lo <= 1.0 <= hi
    # Binomial s.e. at 400 experiments is 0.011; n = 30 percentile intervals run slightly narrow.
    assert hits / 400 == pytest.approx(0.95, abs=0.03)


def test_bootstrap_is_deterministic_under_a_seed_and_the_point_is_the_statistic_of_the_data() -> None:
    x = np.random.default_rng(0).normal(0.3, 1.0, 25)
    a = bootstrap_ci(x, seed=42)
    assert a == bootstrap_ci(x, seed=42)
    assert a != bootstrap_ci(x, seed=43)
    assert a[1] == pytest.approx(x.mean()) and a[0] < a[1] < a[2]
    assert a[2] - a[0] == pytest.approx(2 * 1.96 * x.std(ddof=0) / 5, rel=0.1)  # ≈ normal-theory width
    lo80, _, hi80 = bootstrap_ci(x, level=0.80)
    assert a[0] < lo80 and hi80 < a[2]
    med = bootstrap_ci(x, statistic=np.median)
    assert med[1] == pytest.approx(float(np.median(x)))


def test_resampling_folds_first_widens_the_interval_when_seeds_share_a_fold() -> None:
    # 10 folds × 5 seeds; the fold (market regime) dominates. The true mean over folds is 0.
    rng = np.random.default_rng(7)
    folds = np.repeat(np.arange(10), 5)
    naive_hits = grouped_hits = 0
    for e in range(150):
        x = np.repeat(rng.normal(0.0, 1.0, 10), 5) + rng.normal(0.0, 0.3, 50)
        lo, _, hi = bootstrap_ci(x, n_resamples=1000, seed=e)
        naive_hits += lo <= 0.0 <= hi
        lo, _, hi = bootstrap_ci(x, n_resamples=1000, seed=e, groups=folds)
        grouped_hits += lo <= 0.0 <= hi
    assert naive_hits / 150 < 0.7  # treating 50 correlated runs as independent: overconfident
    assert grouped_hits / 150 > 0.8
    labels = np.r_[folds[:40], 9]  # 8 folds of 5 runs and one of 1: resamples differ in length
    lo, point, hi = bootstrap_ci(np.arange(41.0), groups=labels, n_resamples=500)
    assert lo < point == 20.0 < hi
    assert (lo, point, hi) == bootstrap_ci(np.arange(41.0), groups=labels, n_resamples=500)
    with pytest.raises(ValueError, match="labels"):
        bootstrap_ci(np.arange(5.0), groups=[0, 1])
