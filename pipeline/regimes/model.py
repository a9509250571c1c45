"""Regime model: scaled clustering with K chosen by BIC or silhouette, fitted on training bars only."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, TypeAlias

import joblib
import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score
from sklearn.mixture import GaussianMixture
from sklearn.preprocessing import StandardScaler

from pipeline.features import normalise_ohlcv
from pipeline.features.sets import OhlcvArrays
from pipeline.regimes.features import regime_feature_values, regime_features

Clusterer: TypeAlias = KMeans | GaussianMixture


@dataclass
class RegimeConfig:
    """How regimes are found."""

    enabled: bool = True
    """Use regimes at all; disabled, the observation carries no regime one-hot."""
    method: Literal["gmm", "kmeans"] = "gmm"
    """GaussianMixture (full covariance) or KMeans."""
    criterion: Literal["bic", "silhouette"] = "bic"
    """How K is chosen: lowest BIC (GMM only) or highest silhouette."""
    k_min: int = 2
    """Smallest K tried."""
    k_max: int = 4
    """Largest K tried."""
    vol_window: int = 20
    """Bars in the rolling volatility."""
    trend_window: int = 20
    """Bars in the trend return."""
    seed: int = 0
    """Random state of the clustering and of the silhouette sample."""
    silhouette_sample: int = 2000
    """Rows sampled to score silhouette (its cost is quadratic)."""


class RegimeModel:
    """Fit on the training window, then label any bars causally (each row from its own past-only features).

    Labels are ordered by cluster volatility: regime 0 is the calmest, so labels mean the same across refits.
    """

    def __init__(self, config: RegimeConfig | None = None) -> None:
        self.config = config or RegimeConfig()
        self.scaler: StandardScaler | None = None
        self.model: Clusterer | None = None
        self.order: np.ndarray = np.zeros(0, np.int64)  # order[raw_label] = label sorted by volatility
        self.scores: dict[int, float] = {}

    @property
    def n_regimes(self) -> int:
        """K of the fitted model (0 before fit)."""
        return len(self.order)

    def features(self, bars: pd.DataFrame) -> pd.DataFrame:
        """The model's causal input features of ``bars``."""
        return regime_features(bars, self.config.vol_window, self.config.trend_window)

    def fit(self, bars: pd.DataFrame) -> RegimeModel:
        """Choose K within [k_min, k_max] and fit on the training ``bars`` only."""
        cfg = self.config
        if cfg.method == "kmeans" and cfg.criterion == "bic":
            raise ValueError("BIC needs a likelihood: use method='gmm' or criterion='silhouette'")
        x = self.features(bars).dropna().to_numpy()
        if len(x) < 10 * cfg.k_max:
            raise ValueError(f"{len(x)} usable bars are too few to fit up to {cfg.k_max} regimes")
        self.scaler = StandardScaler().fit(x)
        z = self.scaler.transform(x)
        fitted = {k: self._make(k).fit(z) for k in range(cfg.k_min, cfg.k_max + 1)}
        self.scores = {k: self._score(m, z) for k, m in fitted.items()}
        best = min(self.scores, key=self.scores.__getitem__)  # scores are "lower is better"
        self.model = fitted[best]
        raw = self.model.predict(z)
        vol_by_raw = np.array([x[raw == i, 0].mean() if (raw == i).any() else np.inf for i in range(best)])
        self.order = np.empty(best, np.int64)
        self.order[np.argsort(vol_by_raw)] = np.arange(best)
        return self

    def _make(self, k: int) -> Clusterer:
        if self.config.method == "gmm":
            return GaussianMixture(k, covariance_type="full", n_init=2, random_state=self.config.seed)
        return KMeans(k, n_init=4, random_state=self.config.seed)

    def _score(self, model: Clusterer, z: np.ndarray) -> float:
        if self.config.criterion == "bic":
            assert isinstance(model, GaussianMixture)
            return float(model.bic(z))
        labels = model.predict(z)
        if len(np.unique(labels)) < 2:
            return np.inf
        sample = min(self.config.silhouette_sample, len(z))
        return -float(silhouette_score(z, labels, sample_size=sample, random_state=self.config.seed))

    def predict(self, bars: pd.DataFrame) -> np.ndarray:
        """Regime label per bar, int64; -1 where the features are still warming up."""
        return self.labels(self.features(bars).to_numpy())

    def predict_many(self, bars: Sequence[OhlcvArrays]) -> list[np.ndarray]:
        """:meth:`predict` of many series (e.g. one window per symbol) in one pass of the clustering: one
        int64 [T_i] array per series, the labels each gets alone."""
        cfg = self.config
        feats = regime_feature_values(
            [b.close for b in bars], [b.volume for b in bars], cfg.vol_window, cfg.trend_window
        )
        labels = self.labels(np.concatenate(feats)) if feats else np.zeros(0, np.int64)
        return np.split(labels, np.cumsum([len(f) for f in feats])[:-1])

    def labels(self, features: np.ndarray) -> np.ndarray:
        """Label of each row of regime ``features`` [N, 3] (``REGIME_COLUMNS``), -1 where one is NaN."""
        if self.model is None or self.scaler is None:
            raise RuntimeError("RegimeModel.predict before fit")
        ok = ~np.isnan(features).any(axis=1)
        labels = np.full(len(features), -1, np.int64)
        if ok.any():
            labels[ok] = self.order[self._cluster(self._scale(features[ok]))]
        return labels

    # The fitted scaler's and clusterer's own maths without sklearn's input validation, which costs more
    # than the maths on a window of bars (the model's own features need none): the same numbers.
    def _scale(self, x: np.ndarray) -> np.ndarray:
        scaler = self.scaler
        assert scaler is not None
        z = x - scaler.mean_ if scaler.with_mean else x.copy()  # StandardScaler.transform: X -= mean_
        return z / scaler.scale_ if scaler.with_std else z  # then X /= scale_

    def _cluster(self, z: np.ndarray) -> np.ndarray:
        if isinstance(self.model, GaussianMixture):  # GaussianMixture.predict after validate_data
            return np.asarray(self.model._estimate_weighted_log_prob(z).argmax(axis=1))
        assert self.model is not None
        return np.asarray(self.model.predict(z))

    def summary(self, bars: pd.DataFrame, periods_per_year: int = 252) -> pd.DataFrame:
        """Per regime: share of time, mean and annualised volatility of next-bar log returns, bar count."""
        labels = self.predict(bars)
        close = normalise_ohlcv(bars)["close"]
        nxt = np.log(close.astype(np.float64)).diff().shift(-1).to_numpy()  # the return the regime precedes
        rows = []
        valid = labels >= 0
        for k in range(self.n_regimes):
            r = nxt[(labels == k) & ~np.isnan(nxt)]
            rows.append(
                {
                    "regime": k,
                    "share": float((labels == k).sum() / max(valid.sum(), 1)),
                    "mean_return": float(r.mean()) if len(r) else np.nan,
                    "ann_volatility": float(r.std() * np.sqrt(periods_per_year)) if len(r) > 1 else np.nan,
                    "n_bars": int((labels == k).sum()),
                }
            )
        return pd.DataFrame(rows)

    # ---- persistence --------------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> None:
        """Write ``regime_config.json`` and ``regime_model.joblib`` (scaler, clusterer, label order)."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        (d / "regime_config.json").write_text(json.dumps(asdict(self.config), indent=2))
        joblib.dump(
            {"scaler": self.scaler, "model": self.model, "order": self.order, "scores": self.scores},
            d / "regime_model.joblib",
        )

    @classmethod
    def load(cls, directory: str | Path) -> RegimeModel:
        """Inverse of :meth:`save`."""
        d = Path(directory)
        obj = cls(RegimeConfig(**json.loads((d / "regime_config.json").read_text())))
        state: dict[str, Any] = joblib.load(d / "regime_model.joblib")
        obj.scaler, obj.model, obj.order, obj.scores = (
            state["scaler"],
            state["model"],
            state["order"],
            state["scores"],
        )
        return obj
