"""Statistics that keep us honest: PSR, deflated Sharpe, backtest-overfitting probability, bootstrap CIs."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import norm

EULER_GAMMA = 0.5772156649015329
"""Euler–Mascheroni constant γ, used by the expected-maximum-Sharpe approximation."""


def _as_returns(returns: ArrayLike) -> np.ndarray:
    """A 1-D float64 copy of ``returns``; NaN/inf or fewer than two observations are errors, not zeros."""
    r = np.asarray(returns, dtype=np.float64).ravel()
    if len(r) < 2:
        raise ValueError(f"need at least 2 returns, got {len(r)}")
    if not np.all(np.isfinite(r)):
        raise ValueError("returns contain NaN or inf; drop or fill them explicitly before testing")
    return r


# ---------------------------------------------------------------------------------------------------------
# Sharpe ratio and the moments PSR needs
# ---------------------------------------------------------------------------------------------------------


def sharpe_ratio(returns: ArrayLike, periods_per_year: float | None = None) -> float:
    """Sharpe ratio mean / std (ddof=1) of per-period returns, annualised by sqrt(periods_per_year) if given.

    Returns are taken as excess returns (no risk-free rate is subtracted). A series that never moves has
    Sharpe 0, the convention of :func:`pipeline.backtest.metrics.sharpe_ci`.
    """
    r = _as_returns(returns)
    sd = float(r.std(ddof=1))
    sr = float(r.mean()) / sd if sd > 0.0 else 0.0
    return sr * math.sqrt(periods_per_year) if periods_per_year is not None else sr


def _standardised_moment(returns: ArrayLike, order: int, degenerate: float) -> float:
    r = _as_returns(returns)
    dev = r - r.mean()
    m2 = float(np.mean(dev**2))
    # Moments of a point mass are undefined; the Normal's keep PSR finite (and with SR = 0 they cancel).
    return float(np.mean(dev**order)) / m2 ** (order / 2) if m2 > 0.0 else degenerate


def skewness(returns: ArrayLike) -> float:
    """Sample skewness γ3 = m3 / m2^1.5 (population moments, as in the PSR papers' code); 0 for a Normal."""
    return _standardised_moment(returns, 3, 0.0)


def kurtosis(returns: ArrayLike) -> float:
    """Sample kurtosis γ4 = m4 / m2² — *not* excess: 3 for a Normal (what the PSR formula expects)."""
    return _standardised_moment(returns, 4, 3.0)


# ---------------------------------------------------------------------------------------------------------
# Probabilistic and deflated Sharpe ratio
# ---------------------------------------------------------------------------------------------------------


def psr_from_moments(
    sr: float, sr_benchmark: float, n_obs: int, skew: float = 0.0, kurt: float = 3.0
) -> float:
    """Probabilistic Sharpe ratio from summary statistics: P(true SR > ``sr_benchmark``).

    Bailey & López de Prado (2012), "The Sharpe Ratio Efficient Frontier", J. of Risk 15(2), Sec. 3:

        PSR(SR*) = Z[ (SR^ − SR*)·sqrt(T − 1) / sqrt(1 − γ3·SR^ + (γ4 − 1)/4·SR^²) ]

    with Z the standard Normal CDF, T = ``n_obs``, γ3 = ``skew`` and γ4 = ``kurt`` (non-excess).
    Both ``sr`` and ``sr_benchmark`` are **per period** (not annualised): the formula is the asymptotic
    distribution of the Sharpe ratio of T observations at the sampling frequency; annualised inputs give
    nonsense.
    """
    if n_obs < 2:
        raise ValueError(f"PSR needs n_obs >= 2, got {n_obs}")
    var_term = 1.0 - skew * sr + (kurt - 1.0) / 4.0 * sr**2
    # Always > 0 when γ4 >= 1 + γ3² (true of any real distribution); otherwise the moments are inconsistent.
    if var_term <= 0.0:
        raise ValueError(f"inconsistent moments: 1 - γ3·SR + (γ4-1)/4·SR² = {var_term:.4g} <= 0")
    return float(norm.cdf((sr - sr_benchmark) * math.sqrt(n_obs - 1) / math.sqrt(var_term)))


def probabilistic_sharpe_ratio(returns: ArrayLike, sr_benchmark: float = 0.0) -> float:
    """PSR of a return series against a **per-period** benchmark Sharpe (see :func:`psr_from_moments`)."""
    r = _as_returns(returns)
    return psr_from_moments(sharpe_ratio(r), sr_benchmark, len(r), skewness(r), kurtosis(r))


def expected_max_sharpe(n_trials: int, trial_sharpe_var: float) -> float:
    """SR0: the Sharpe the best of ``n_trials`` skill-less trials is expected to reach by luck alone.

    Bailey & López de Prado (2014), "The Deflated Sharpe Ratio: Correcting for Selection Bias, Backtest
    Overfitting and Non-Normality", J. Portfolio Management 40(5), the threshold of the DSR:

        SR0 = sqrt(V[{SR_n}]) · ( (1 − γ)·Z⁻¹[1 − 1/N] + γ·Z⁻¹[1 − 1/(N·e)] )

    γ the Euler–Mascheroni constant, N = ``n_trials``, V = ``trial_sharpe_var`` (variance across trials of
    their Sharpe ratios, in the same per-period units as the SR that is tested). The trials are centred at
    zero (the null of no skill). One trial has no selection: SR0 = 0 (the formula's limit, Z⁻¹[0] = −∞,
    is not used).
    """
    if n_trials < 1:
        raise ValueError(f"n_trials must be >= 1, got {n_trials}")
    if trial_sharpe_var < 0.0:
        raise ValueError(f"trial_sharpe_var must be >= 0, got {trial_sharpe_var}")
    if n_trials == 1:
        return 0.0
    n = float(n_trials)
    z_max = (1.0 - EULER_GAMMA) * norm.ppf(1.0 - 1.0 / n) + EULER_GAMMA * norm.ppf(1.0 - 1.0 / (n * math.e))
    return float(math.sqrt(trial_sharpe_var) * z_max)


@dataclass(frozen=True)
class DeflatedSharpe:
    """The deflated Sharpe ratio of one selected strategy and what went into it (all Sharpes per period)."""

    dsr_prob: float
    """DSR = PSR(SR0): probability that the true Sharpe beats what the best of N lucky trials would show."""
    sr0: float
    """Expected maximum Sharpe of ``n_trials`` skill-less trials (per period)."""
    sr: float
    """Observed Sharpe of the selected strategy (per period, not annualised)."""
    n_trials: int
    """Trials the selection was made from (seeds × configurations tried)."""
    skew: float
    """Skewness γ3 of the selected strategy's returns."""
    kurtosis: float
    """Kurtosis γ4 (non-excess, Normal = 3) of the selected strategy's returns."""
    T: int
    """Number of return observations of the selected strategy."""


def deflated_sharpe(
    returns: ArrayLike, trial_sharpes: ArrayLike, n_trials: int | None = None
) -> DeflatedSharpe:
    """Deflated Sharpe ratio (Bailey & López de Prado 2014, J. Portfolio Management 40(5)): PSR(SR0).

    ``returns``: per-period returns of the strategy that was picked. ``trial_sharpes``: the **per-period**
    Sharpe ratios of every trial the pick was made from (the picked one included); their variance (ddof=1)
    is V[{SR_n}] in :func:`expected_max_sharpe`. ``n_trials`` defaults to ``len(trial_sharpes)``; pass a
    larger number when more was tried than was kept (an undercount flatters the result).
    """
    r = _as_returns(returns)
    trials = np.asarray(trial_sharpes, dtype=np.float64).ravel()
    n = len(trials) if n_trials is None else int(n_trials)
    if n > 1 and len(trials) < 2:
        raise ValueError("need the Sharpe ratios of at least 2 trials to estimate their variance")
    var = float(trials.var(ddof=1)) if len(trials) > 1 else 0.0
    sr0 = expected_max_sharpe(n, var)
    sr, g3, g4 = sharpe_ratio(r), skewness(r), kurtosis(r)
    return DeflatedSharpe(
        dsr_prob=psr_from_moments(sr, sr0, len(r), g3, g4),
        sr0=sr0,
        sr=sr,
        n_trials=n,
        skew=g3,
        kurtosis=g4,
        T=len(r),
    )


# ---------------------------------------------------------------------------------------------------------
# Probability of backtest overfitting (CSCV)
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BacktestOverfitting:
    """Result of combinatorially symmetric cross-validation over ``n_combinations`` IS/OOS splits."""

    pbo: float
    """Share of splits whose in-sample winner ranks at or below the out-of-sample median (logit <= 0)."""
    logits: np.ndarray
    """λ_c = ln(ω_c / (1 − ω_c)) per split, ω_c the winner's relative OOS rank in (0, 1); shape (C,)."""
    is_sharpe: np.ndarray
    """In-sample Sharpe (per period) of each split's winner; shape (C,)."""
    oos_sharpe: np.ndarray
    """Out-of-sample Sharpe (per period) of the same configuration; shape (C,)."""
    chosen: np.ndarray
    """Column index of each split's in-sample winner; shape (C,)."""
    degradation_slope: float
    """OLS slope of OOS on IS Sharpe of the winners: < 0 means higher IS Sharpe predicts worse OOS."""
    degradation_intercept: float
    """OLS intercept of the same fit."""
    prob_oos_loss: float
    """Share of splits whose winner has a negative OOS Sharpe."""


def _split_sharpes(matrix: np.ndarray, n_splits: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-column Sharpe (ddof=1) on the IS and OOS halves of every combination; each of shape (C, N).

    Moments of each block are summed instead of slicing rows 12,870 times (S = 16); centring on the column
    mean first keeps the sum-of-squares variance free of cancellation.
    """
    centre = matrix.mean(axis=0)
    blocks = np.array_split(matrix - centre, n_splits, axis=0)
    s1 = np.stack([b.sum(axis=0) for b in blocks])  # (S, N)
    s2 = np.stack([(b**2).sum(axis=0) for b in blocks])  # (S, N)
    size = np.array([len(b) for b in blocks], dtype=np.float64)  # (S,)
    ind = np.zeros((math.comb(n_splits, n_splits // 2), n_splits))
    for c, chosen in enumerate(combinations(range(n_splits), n_splits // 2)):
        ind[c, list(chosen)] = 1.0
    out = []
    for mask in (ind, 1.0 - ind):
        n = (mask @ size)[:, None]
        sum1, sum2 = mask @ s1, mask @ s2
        var = np.maximum(sum2 - sum1**2 / n, 0.0) / (n - 1.0)
        sd = np.sqrt(var)
        mean = centre + sum1 / n
        out.append(np.divide(mean, sd, out=np.zeros_like(mean), where=sd > 0.0))
    return out[0], out[1]


def probability_of_backtest_overfitting(returns: ArrayLike, n_splits: int = 16) -> BacktestOverfitting:
    """PBO by combinatorially symmetric cross-validation (CSCV), performance measured by Sharpe ratio.

    Bailey, Borwein, López de Prado & Zhu (2017), "The Probability of Backtest Overfitting", J. Computational
    Finance 20(4): split the T×N matrix of per-period returns (rows = time, columns = configurations) into
    S = ``n_splits`` contiguous blocks; for each of the C(S, S/2) ways to pick half the blocks as in-sample
    (IS, the rest out-of-sample, OOS) take the IS-best column n*, its relative OOS rank
    ω = rank(R̄_n*) / (N + 1) (average rank on ties) and the logit λ = ln(ω / (1 − ω)).
    PBO = #{λ <= 0} / C: how often the IS winner is no better than the OOS median. Row blocks differ by at
    most one row when S does not divide T. IS ties go to the lowest column index.
    """
    m = np.asarray(returns, dtype=np.float64)
    if m.ndim != 2:
        raise ValueError(f"returns must be a T×N matrix (time × configurations), got shape {m.shape}")
    t, n_cfg = m.shape
    if n_cfg < 2:
        raise ValueError(f"PBO needs N >= 2 configurations to rank, got {n_cfg}")
    if n_splits < 2 or n_splits % 2:
        raise ValueError(f"n_splits must be an even number >= 2, got {n_splits}")
    if t < n_splits or (t // n_splits) * (n_splits // 2) < 2:
        raise ValueError(
            f"T = {t} rows is too few for {n_splits} blocks (need T >= S and >= 2 rows per half)"
        )
    if not np.all(np.isfinite(m)):
        raise ValueError("returns contain NaN or inf")
    is_sr, oos_sr = _split_sharpes(m, n_splits)
    chosen = np.argmax(is_sr, axis=1)
    rows = np.arange(len(chosen))
    is_best, oos_best = is_sr[rows, chosen], oos_sr[rows, chosen]
    below = (oos_sr < oos_best[:, None]).sum(axis=1)
    equal = (oos_sr == oos_best[:, None]).sum(axis=1)  # includes the winner itself
    omega = (below + (equal + 1) / 2.0) / (n_cfg + 1.0)
    logits = np.log(omega / (1.0 - omega))
    slope, intercept = _ols(is_best, oos_best)
    return BacktestOverfitting(
        pbo=float(np.mean(logits <= 0.0)),
        logits=logits,
        is_sharpe=is_best,
        oos_sharpe=oos_best,
        chosen=chosen,
        degradation_slope=slope,
        degradation_intercept=intercept,
        prob_oos_loss=float(np.mean(oos_best < 0.0)),
    )


def _ols(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Slope and intercept of y on x; NaN slope when x does not vary (the same winner score every split)."""
    dx = x - x.mean()
    sxx = float(dx @ dx)
    if sxx <= 1e-300:
        return math.nan, float(y.mean())
    slope = float(dx @ (y - y.mean())) / sxx
    return slope, float(y.mean() - slope * x.mean())


# ---------------------------------------------------------------------------------------------------------
# Bootstrap confidence intervals
# ---------------------------------------------------------------------------------------------------------


def _grouped_resample(rng: np.random.Generator, labels: np.ndarray, n_resamples: int) -> list[np.ndarray]:
    """Index arrays of a two-stage bootstrap: groups with replacement, then members within each drawn group.

    Built for all resamples at once: group g occupies ``order[start_g : start_g + n_g]`` after a stable
    sort by label, so a member draw is ``start_g + floor(u · n_g)`` with u ~ U[0, 1).
    """
    order = np.argsort(labels, kind="stable")
    _, counts = np.unique(labels[order], return_counts=True)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    picks = rng.integers(0, len(counts), size=(n_resamples, len(counts))).ravel()  # (R·G,)
    sizes = counts[picks]
    slot_start = np.repeat(starts[picks], sizes)
    slot_size = np.repeat(sizes, sizes)
    flat = order[slot_start + (rng.random(len(slot_size)) * slot_size).astype(np.int64)]
    totals = sizes.reshape(n_resamples, len(counts)).sum(axis=1)
    return np.split(flat, np.cumsum(totals)[:-1])


def bootstrap_ci(
    values: ArrayLike,
    statistic: Callable[..., Any] = np.mean,
    n_resamples: int = 10_000,
    level: float = 0.95,
    seed: int = 0,
    groups: ArrayLike | None = None,
) -> tuple[float, float, float]:
    """Percentile bootstrap interval ``(low, point, high)`` of ``statistic`` over per-(fold, seed) scores.

    Efron & Tibshirani (1993), "An Introduction to the Bootstrap", ch. 13 (percentile interval): the
    (1 − level)/2 and (1 + level)/2 quantiles of the statistic over resamples; ``point`` is the statistic of
    the data. ``statistic`` must be a NumPy-style reduction taking ``axis=`` (np.mean, np.median, …): the
    resamples are evaluated as one (n_resamples, n) matrix.

    ``groups`` (one label per value, e.g. the fold) switches to a two-stage (hierarchical) bootstrap — draw
    folds with replacement, then seeds within each drawn fold (Davison & Hinkley 1997, "Bootstrap Methods
    and their Application", Sec. 3.8). Seeds of one fold share its market regime, so resampling them as if
    independent gives intervals that are too narrow. Unequal group sizes evaluate resamples one by one.
    """
    x = np.asarray(values, dtype=np.float64).ravel()
    if len(x) < 2 or not np.all(np.isfinite(x)):
        raise ValueError("bootstrap_ci needs at least 2 finite values")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    rng = np.random.default_rng(seed)
    point = float(statistic(x[None, :], axis=-1)[0])
    if groups is None:
        stats = np.asarray(statistic(x[rng.integers(0, len(x), size=(n_resamples, len(x)))], axis=-1))
    else:
        labels = np.asarray(groups).ravel()
        if len(labels) != len(x):
            raise ValueError(f"groups has {len(labels)} labels for {len(x)} values")
        idx = _grouped_resample(rng, labels, n_resamples)
        if len({len(i) for i in idx}) == 1:  # balanced folds × seeds: one matrix, one vectorised call
            stats = np.asarray(statistic(x[np.stack(idx)], axis=-1))
        else:
            stats = np.array([statistic(x[i][None, :], axis=-1)[0] for i in idx])
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(stats, [alpha, 1.0 - alpha])
    return float(low), point, float(high)
