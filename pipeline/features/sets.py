"""Feature sets an agent can be trained on, by name; a trained agent stores the name so serving recomputes
the same features: ``ta-v1`` (the TA-Lib set, the default) and ``basic`` (seven cheap causal features).
Each set is computed from a DataFrame (``get_feature_fn``) or, on the serving hot path, from the bars'
arrays (``feature_values``): the same numbers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.features.basic import basic_features
from pipeline.features.ohlcv import normalise_ohlcv
from pipeline.features.ta import FEATURE_COLUMNS, FEATURE_SET_VERSION, series_feature_values

FeatureFn = Callable[[pd.DataFrame], pd.DataFrame]
_OHLCV = ("open", "high", "low", "close", "volume")


@dataclass(frozen=True)
class OhlcvArrays:
    """One time-ordered OHLCV series as float64 arrays [T] and its index: what the hot paths compute on."""

    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    """Volume per bar; zeros when the bars have none."""
    index: pd.Index
    """Timestamps (or any labels) of the bars."""

    def __len__(self) -> int:
        return len(self.close)

    @classmethod
    def from_frame(cls, bars: pd.DataFrame) -> OhlcvArrays:
        """The arrays of ``bars`` read as :func:`normalise_ohlcv` reads them (any column case, volume 0
        when absent)."""
        names = list(bars.columns)
        plain = all(isinstance(c, str) and c == c.lower() for c in names) and {*_OHLCV[:4]} <= {*names}
        frame = bars if plain else normalise_ohlcv(bars)  # lower-case names need no renaming
        n = len(frame)
        cols = {k: frame[k].to_numpy(np.float64) if k in frame else np.zeros(n) for k in _OHLCV}
        return cls(**cols, index=bars.index)

    def frame(self) -> pd.DataFrame:
        """The bars as a DataFrame with lower-case OHLCV columns."""
        return pd.DataFrame({k: getattr(self, k) for k in _OHLCV}, index=self.index)


def ta_features(bars: pd.DataFrame) -> pd.DataFrame:
    """The project's TA-Lib feature set (version ``ta-v1``) of one OHLCV series, aligned to its index."""
    values, names = _ta_values(OhlcvArrays.from_frame(bars))
    return pd.DataFrame(values, index=bars.index, columns=list(names))


def _ta_values(bars: OhlcvArrays) -> tuple[np.ndarray, tuple[str, ...]]:
    return series_feature_values(bars.open, bars.high, bars.low, bars.close, bars.volume), (*FEATURE_COLUMNS,)


def _frame_values(fn: FeatureFn, bars: OhlcvArrays) -> tuple[np.ndarray, tuple[str, ...]]:
    out = fn(bars.frame())
    return out.to_numpy(np.float64), tuple(str(c) for c in out.columns)


FEATURE_SETS: dict[str, FeatureFn] = {FEATURE_SET_VERSION: ta_features, "basic": basic_features}
"""Feature builders by name: one OHLCV series (any column case) → one row of features per bar."""

#: Sets with an array implementation (the same numbers as their frame builder); the others run on a frame.
_ARRAY_SETS = {FEATURE_SET_VERSION: _ta_values}


def get_feature_fn(name: str) -> FeatureFn:
    """The registered feature builder called ``name``."""
    try:
        return FEATURE_SETS[name]
    except KeyError:
        raise ValueError(f"unknown feature set {name!r}; known: {sorted(FEATURE_SETS)}") from None


def feature_values(name: str, bars: OhlcvArrays) -> tuple[np.ndarray, tuple[str, ...]]:
    """Feature set ``name`` of ``bars`` as float64 [T, F] and the F column names: the numbers of
    ``get_feature_fn(name)`` on the same bars, without building frames where the set allows it."""
    fn = get_feature_fn(name)
    fast = _ARRAY_SETS.get(name)
    return fast(bars) if fast is not None else _frame_values(fn, bars)
