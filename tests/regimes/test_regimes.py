"""Regime model: recovers planted regimes, orders them by volatility, stays causal, persists."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.regimes.model import RegimeConfig, RegimeModel
from pipeline.rl.synthetic import regime_switching_bars


@pytest.fixture(scope="module")
def bars():
    return regime_switching_bars(
        2500, seed=11, drifts=(0.001, -0.001), vols=(0.005, 0.025), mean_duration=150
    )


def test_bic_choice_separates_the_planted_regimes_with_calm_first(bars) -> None:
    model = RegimeModel(RegimeConfig(k_min=1, k_max=4)).fit(bars.iloc[:2000])
    assert model.n_regimes == min(model.scores, key=model.scores.__getitem__) and 1 < model.n_regimes <= 4
    labels = model.predict(bars)
    truth = bars["regime"].to_numpy()
    ok = labels >= 0
    # Every found regime should be (almost) all calm or all volatile bars: BIC may split one planted regime
    # into several clusters (trend and volume vary within it), but should not mix the two.
    majority = sum(np.bincount(truth[ok & (labels == k)], minlength=2).max() for k in range(model.n_regimes))
    assert majority / ok.sum() > 0.85
    assert (truth[ok & (labels == 0)] == 0).mean() > 0.85  # regime 0 is the calm one (vol 0.5 % vs 2.5 %)


def test_kmeans_with_silhouette_and_the_bic_kmeans_mistake(bars) -> None:
    model = RegimeModel(RegimeConfig(method="kmeans", criterion="silhouette", k_min=2, k_max=4)).fit(bars)
    assert 2 <= model.n_regimes <= 4
    with pytest.raises(ValueError, match="BIC"):
        RegimeModel(RegimeConfig(method="kmeans", criterion="bic")).fit(bars)


def test_labels_up_to_t_do_not_depend_on_later_bars(bars) -> None:
    model = RegimeModel(RegimeConfig(k_max=3)).fit(bars.iloc[:1500])
    t = 1800
    changed = bars.copy()
    changed.iloc[t + 1 :, changed.columns.get_loc("close")] *= 1.5
    changed.iloc[t + 1 :, changed.columns.get_loc("volume")] *= 10
    a, b = model.predict(bars), model.predict(changed)
    np.testing.assert_array_equal(a[: t + 1], b[: t + 1])
    assert (a[t + 1 :] != b[t + 1 :]).any()


def test_predicting_later_bars_does_not_refit(bars) -> None:
    model = RegimeModel(RegimeConfig(k_max=3)).fit(bars.iloc[:1000])
    means = model.model.means_.copy()
    model.predict(bars)
    np.testing.assert_array_equal(model.model.means_, means)


def test_summary_reports_share_return_and_volatility_per_regime(bars) -> None:
    model = RegimeModel(RegimeConfig(k_min=2, k_max=2)).fit(bars)
    summary = model.summary(bars)
    assert list(summary.columns) == ["regime", "share", "mean_return", "ann_volatility", "n_bars"]
    assert summary["share"].sum() == pytest.approx(1.0)
    calm, wild = summary.iloc[0], summary.iloc[1]
    assert calm["ann_volatility"] < wild["ann_volatility"] / 2
    assert calm["mean_return"] > 0 > wild["mean_return"]


def test_saved_model_predicts_the_same_labels(bars, tmp_path) -> None:
    model = RegimeModel(RegimeConfig(k_max=3)).fit(bars.iloc[:1500])
    model.save(tmp_path / "regimes")
    loaded = RegimeModel.load(tmp_path / "regimes")
    np.testing.assert_array_equal(loaded.predict(bars), model.predict(bars))
    assert loaded.config == model.config


def test_too_little_history_is_refused(bars) -> None:
    with pytest.raises(ValueError, match="too few"):
        RegimeModel(RegimeConfig(k_max=4)).fit(bars.iloc[:40])
