"""Precomputed market arrays the env steps on (prices, float32 features, regimes), one symbol or several
laid end to end as segments, and feature scaling."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from itertools import pairwise
from typing import Any

import numpy as np
import pandas as pd

from pipeline.features import normalise_ohlcv
from pipeline.market import TZ_NAME
from pipeline.rl.instruments import InstrumentSpec


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
    offsets: tuple[int, ...] = ()
    """Several symbols laid end to end: segment s (one symbol's bars, time-ordered) is rows
    ``offsets[s]:offsets[s+1]``, from 0 to T. Empty: one symbol, rows 0..T. The env never lets an episode or
    a feature window cross a segment boundary; build with :meth:`concat`."""
    symbols: tuple[str, ...] = ()
    """Symbol of each segment (empty, or one per segment)."""
    instruments: tuple[InstrumentSpec, ...] = ()
    """What each segment trades (its kind's ticks, fees and sell tax); empty: the env config's instrument
    for every segment."""

    def __post_init__(self) -> None:
        n = len(self.close)
        for name in ("open", "high", "low", "regimes"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} has {len(getattr(self, name))} rows, close has {n}")
        if self.features.ndim != 2 or self.features.shape[0] != n:
            raise ValueError(f"features must be [T={n}, F], got {self.features.shape}")
        if n and self.n_regimes and (self.regimes.min() < 0 or self.regimes.max() >= self.n_regimes):
            raise ValueError("regime labels must lie in [0, n_regimes)")
        if self.offsets and (
            self.offsets[0] != 0 or self.offsets[-1] != n or any(np.diff(self.offsets) <= 0)
        ):
            raise ValueError(f"offsets must rise strictly from 0 to T={n}, got {self.offsets}")
        for name in ("symbols", "instruments"):
            if len(getattr(self, name)) not in (0, self.n_segments):
                raise ValueError(f"{name} must be empty or one per segment ({self.n_segments})")

    def __len__(self) -> int:
        return len(self.close)

    @property
    def n_features(self) -> int:
        """F, the number of feature columns."""
        return int(self.features.shape[1])

    @property
    def n_segments(self) -> int:
        """S, the number of symbols laid end to end (1 for a plain market)."""
        return max(len(self.offsets) - 1, 1)

    def segment_bounds(self) -> list[tuple[int, int]]:
        """Row range ``(start, stop)`` of each segment, in order."""
        edges = self.offsets or (0, len(self))
        return list(pairwise(edges))

    def segment(self, key: int | str) -> MarketArrays:
        """One segment (by position or symbol) as a plain single-symbol market."""
        s = self.symbols.index(key) if isinstance(key, str) else key
        a, b = self.segment_bounds()[s]
        return replace(
            self,
            **{name: getattr(self, name)[a:b] for name in ("open", "high", "low", "close", "regimes")},
            features=self.features[a:b],
            index=None if self.index is None else self.index[a:b],
            offsets=(),
            symbols=self.symbols[s : s + 1],
            instruments=self.instruments[s : s + 1],
        )

    @classmethod
    def concat(
        cls,
        markets: Sequence[MarketArrays],
        symbols: Sequence[str] = (),
        instruments: Sequence[InstrumentSpec] = (),
    ) -> MarketArrays:
        """Single-symbol markets laid end to end as segments (same features and regimes in each).

        ``symbols`` and ``instruments`` name each segment (default: theirs, when every market has one)."""
        if not markets:
            raise ValueError("concat needs at least one market")
        first = markets[0]
        for m in markets:
            if m.n_segments != 1 or len(m) == 0:
                raise ValueError("concat takes non-empty single-symbol markets")
            if (m.n_features, m.n_regimes, m.feature_names) != (
                first.n_features,
                first.n_regimes,
                first.feature_names,
            ):
                raise ValueError("markets differ in features or regimes")
        indexes = [m.index for m in markets]
        return cls(
            **{n: np.concatenate([getattr(m, n) for m in markets]) for n in ("open", "high", "low", "close")},
            features=np.ascontiguousarray(np.concatenate([m.features for m in markets])),
            regimes=np.concatenate([m.regimes for m in markets]),
            n_regimes=first.n_regimes,
            index=None if any(i is None for i in indexes) else _append_indexes(indexes),
            feature_names=first.feature_names,
            offsets=tuple(int(x) for x in np.cumsum([0, *(len(m) for m in markets)])),
            symbols=tuple(symbols) or _all_or_none([m.symbols for m in markets]),
            instruments=tuple(instruments) or _all_or_none([m.instruments for m in markets]),
        )

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
        """Row of the first bar at or after ``timestamp`` (needs ``index``; one symbol: take
        :meth:`segment` of a multi-symbol market first)."""
        if self.index is None:
            raise ValueError("market has no index")
        if self.n_segments > 1:
            raise ValueError("a multi-symbol market has no single time axis: use market.segment(symbol)")
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


def _append_indexes(indexes: Sequence[pd.Index | None]) -> pd.Index:
    first, *rest = [i for i in indexes if i is not None]
    return first.append(rest) if rest else first


def _all_or_none(per_market: Sequence[tuple[Any, ...]]) -> tuple[Any, ...]:
    # One name per market when every market has one, else none at all.
    return tuple(x[0] for x in per_market) if all(len(x) == 1 for x in per_market) else ()


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
