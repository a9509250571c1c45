"""Several symbols for one agent: split multi-symbol bars per symbol, fit regimes on all of them pooled, and
lay the per-symbol markets (features computed per symbol, never across one) end to end for the env."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import TypeAlias

import pandas as pd

from pipeline.regimes.model import RegimeConfig, RegimeModel
from pipeline.rl.agent import prepare_market
from pipeline.rl.instruments import InstrumentSpec
from pipeline.rl.market import FeatureNormaliser, MarketArrays

log = logging.getLogger(__name__)

Universe: TypeAlias = dict[str, pd.DataFrame]
"""OHLCV bars per symbol, each time-ordered on its own timestamp index, in a fixed symbol order."""
BarsInput: TypeAlias = pd.DataFrame | Mapping[str, pd.DataFrame]
"""One symbol's bars, ``{symbol: bars}``, or a long frame with a ``symbol`` column (or index level)."""


def split_universe(data: BarsInput) -> Universe | None:
    """Bars per symbol, or None when ``data`` is one symbol's bars (a frame without a ``symbol`` column).

    A long frame is grouped by ``symbol`` (symbols sorted); its time axis is the index, or a ``ts`` column
    when it has one. A mapping keeps its order."""
    if isinstance(data, Mapping):
        if not data:
            raise ValueError("no symbols: the mapping of bars is empty")
        return {str(symbol): bars for symbol, bars in data.items()}
    frame = data.reset_index("symbol") if "symbol" in (data.index.names or ()) else data
    if "symbol" not in frame.columns:
        return None
    if "ts" in frame.columns:
        frame = frame.set_index("ts")
    return {
        str(symbol): group.drop(columns="symbol").sort_index(kind="stable")
        for symbol, group in frame.groupby("symbol", sort=True)
    }


class _FeaturesGiven(RegimeModel):
    """A regime model whose input already is its features (rows of many symbols, each computed alone)."""

    def features(self, bars: pd.DataFrame) -> pd.DataFrame:
        return bars


def fit_pooled_regimes(config: RegimeConfig, frames: Iterable[pd.DataFrame]) -> RegimeModel:
    """One regime model fitted on every symbol's training bars pooled: the regime features are computed per
    symbol (no rolling window spans two symbols), stacked, then clustered by :meth:`RegimeModel.fit`, so
    label k means the same volatility rank on every stock. One symbol gives exactly ``RegimeModel.fit``."""
    model = RegimeModel(config)
    pooled = pd.concat([model.features(bars) for bars in frames], ignore_index=True)
    fitted = _FeaturesGiven(config).fit(pooled)
    model.scaler, model.model, model.order, model.scores = (
        fitted.scaler,
        fitted.model,
        fitted.order,
        fitted.scores,
    )
    return model


def prepare_universe(
    universe: Universe,
    feature_set: str,
    regime_model: RegimeModel | None,
    normaliser: FeatureNormaliser | None = None,
    instruments: Mapping[str, InstrumentSpec] | None = None,
    default: InstrumentSpec | None = None,
) -> MarketArrays:
    """Each symbol's market exactly as :func:`prepare_market` builds it alone, laid end to end (one segment
    per symbol). Symbols with no bar past the feature warm-up are left out (logged).

    ``instruments``: what each symbol trades as (ticks, fees, tax); symbols it does not name trade as
    ``default``. Both None: the segments name no instrument and the env config's applies to all."""
    markets, symbols = [], []
    for symbol, bars in universe.items():
        market = prepare_market(bars, feature_set, regime_model, normaliser)
        if len(market) == 0:
            log.warning("%s: no bars after the feature warm-up (%d raw bars), left out", symbol, len(bars))
            continue
        markets.append(market)
        symbols.append(symbol)
    if not markets:
        raise ValueError(f"no symbol of {list(universe)} has bars past the feature warm-up")
    named = instruments is not None or default is not None
    specs = tuple(_instrument(s, instruments or {}, default) for s in symbols) if named else ()
    return MarketArrays.concat(markets, symbols=symbols, instruments=specs)


def _instrument(
    symbol: str, instruments: Mapping[str, InstrumentSpec], default: InstrumentSpec | None
) -> InstrumentSpec:
    spec = instruments.get(symbol, default)
    if spec is None:
        raise ValueError(f"no instrument for {symbol} and no default")
    return spec
