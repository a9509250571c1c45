"""Precomputed market arrays the env steps on (prices, float32 features, regimes) and feature scaling."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from pipeline.features import normalise_ohlcv
from pipeline.market import TZ_NAME


@dataclass(frozen=True)
class MarketArrays:
    """Aligned per-bar arrays: no pandas on the hot path. ``T`` bars, ``F`` features."""

    open: np.ndarray
    """Open prices, float64 [T]."""
    high: np.ndarray
    """High prices, float64 [T]."""
    low: np.ndarray
    """Low prices, float64 [T]."""
    close: np.ndarray
    """Close prices, float64 [T]."""
    features: np.ndarray
    """Feature matrix, float32 [T, F]; row t may only use bars ≤ t."""
    regimes: np.ndarray
    """Regime label per bar, int64 [T] in ``[0, n_regimes)``; zeros when there are no regimes."""
    n_regimes: int = 0
    """Number of regimes (size of the observation's one-hot); 0 disables the one-hot."""
    index: pd.Index | None = None
    """Timestamps of the bars: reports, and the date of each fill (the sell tax in force that day)."""
    feature_names: tuple[str, ...] = ()
    """Names of the feature columns."""

    def __post_init__(self) -> None:
        n = len(self.close)
        for name in ("open", "high", "low", "regimes"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} has {len(getattr(self, name))} rows, close has {n}")
        if self.features.ndim != 2 or self.features.shape[0] != n:
            raise ValueError(f"features must be [T={n}, F], got {self.features.shape}")
        if n and self.n_regimes and (self.regimes.min() < 0 or self.regimes.max() >= self.n_regimes):
            raise ValueError("regime labels must lie in [0, n_regimes)")

    def __len__(self) -> int:
        return len(self.close)

    @property
    def n_features(self) -> int:
        """F, the number of feature columns."""
        return int(self.features.shape[1])

    def session_days(self) -> np.ndarray | None:
        """KST calendar date of each bar, datetime64[D] [T]; None without a DatetimeIndex. Naive timestamps
        are read as KST; tz-aware ones (the store's UTC) are converted, so a 00:00 KST daily bar keeps its
        day."""
        if not isinstance(self.index, pd.DatetimeIndex):
            return None
        local = self.index if self.index.tz is None else self.index.tz_convert(TZ_NAME).tz_localize(None)
        return local.to_numpy(dtype="datetime64[D]")

    def with_features(self, features: np.ndarray) -> MarketArrays:
        """Same bars, other features (e.g. normalised)."""
        return replace(self, features=np.ascontiguousarray(features, dtype=np.float32))

    def position_of(self, timestamp: Any) -> int:
        """Row of the first bar at or after ``timestamp`` (needs ``index``)."""
        if self.index is None:
            raise ValueError("market has no index")
        return int(self.index.searchsorted(timestamp, side="left"))

    @classmethod
    def from_arrays(
        cls,
        open_: np.ndarray,
        close: np.ndarray,
        features: np.ndarray,
        regimes: np.ndarray | None = None,
        n_regimes: int = 0,
        high: np.ndarray | None = None,
        low: np.ndarray | None = None,
        index: pd.Index | None = None,
    ) -> MarketArrays:
        """Build from plain arrays; high/low default to max/min of open and close. Without ``index`` the
        bars have no dates, and a stock's dated sell tax cannot be charged (see ``InstrumentSpec``)."""
        o = np.asarray(open_, dtype=np.float64)
        c = np.asarray(close, dtype=np.float64)
        return cls(
            open=o,
            high=np.maximum(o, c) if high is None else np.asarray(high, dtype=np.float64),
            low=np.minimum(o, c) if low is None else np.asarray(low, dtype=np.float64),
            close=c,
            features=np.ascontiguousarray(features, dtype=np.float32),
            regimes=np.zeros(len(c), np.int64) if regimes is None else np.asarray(regimes, np.int64),
            n_regimes=n_regimes,
            index=index,
        )

    @classmethod
    def from_frames(
        cls, bars: pd.DataFrame, features: pd.DataFrame, regimes: np.ndarray | None = None, n_regimes: int = 0
    ) -> MarketArrays:
        """Align OHLCV bars with a feature frame (and labels); rows with any NaN feature are dropped."""
        b = normalise_ohlcv(bars)
        labels = np.zeros(len(b), np.int64) if regimes is None else np.asarray(regimes, np.int64)
        keep = features.notna().all(axis=1).to_numpy() & (labels >= 0)
        return cls(
            open=b["open"].to_numpy(np.float64)[keep],
            high=b["high"].to_numpy(np.float64)[keep],
            low=b["low"].to_numpy(np.float64)[keep],
            close=b["close"].to_numpy(np.float64)[keep],
            features=np.ascontiguousarray(features.to_numpy(np.float32)[keep]),
            regimes=labels[keep],
            n_regimes=n_regimes,
            index=b.index[keep],
            feature_names=tuple(str(c) for c in features.columns),
        )


@dataclass
class FeatureNormaliser:
    """Per-feature z-scoring with statistics of the training window only, clipped to ±``clip``."""

    mean: np.ndarray
    """Per-feature mean, float64 [F]."""
    std: np.ndarray
    """Per-feature standard deviation (1 where it is 0), float64 [F]."""
    clip: float = 5.0
    """Absolute bound on a normalised value (keeps crash days from saturating the LSTM)."""

    @classmethod
    def fit(cls, features: np.ndarray, clip: float = 5.0) -> FeatureNormaliser:
        """Statistics of ``features`` [T, F] (the training rows)."""
        x = np.asarray(features, dtype=np.float64)
        std = x.std(axis=0)
        return cls(mean=x.mean(axis=0), std=np.where(std > 0, std, 1.0), clip=clip)

    def transform(self, features: np.ndarray) -> np.ndarray:
        """Normalised float32 copy of ``features`` [T, F]."""
        z = (np.asarray(features, dtype=np.float64) - self.mean) / self.std
        return np.clip(z, -self.clip, self.clip).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {"mean": self.mean.tolist(), "std": self.std.tolist(), "clip": self.clip}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureNormaliser:
        """Inverse of :meth:`to_dict`."""
        return cls(mean=np.asarray(data["mean"]), std=np.asarray(data["std"]), clip=float(data["clip"]))
