"""A model spec's data: its stored bars up to a cut-off, its walk-forward folds on their calendar, the
dated windows every trial and the champion are judged on, and the window regimes are fitted on."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import pandas as pd
from sqlalchemy.engine import Engine

from pipeline.backtest.walkforward import Fold, common_calendar, make_folds
from pipeline.market import TZ_NAME
from pipeline.registry.specs import ModelSpec
from pipeline.registry.tracking import bars_fingerprint
from pipeline.rl.universe import BarsInput, Universe
from pipeline.store import read_bars

log = logging.getLogger(__name__)

OHLCV = ["open", "high", "low", "close", "volume"]


class NotEnoughData(ValueError):
    """The store has no bars of a spec, or too few for its walk-forward folds (ingest more history)."""


@dataclass(frozen=True)
class SpecData:
    """Bars of a spec's symbols (KST-indexed OHLCV per symbol) and its folds on their common calendar."""

    spec: ModelSpec
    universe: Universe
    """Bars per symbol, in the spec's symbol order (symbols without stored bars left out)."""
    calendar: pd.Index
    """Every timestamp any symbol has a bar at: the axis the folds' row slices index."""
    folds: list[Fold]
    fingerprint: dict[str, Any]
    """Row count, range and sha256 of the bars (``bars_fingerprint`` of the long frame)."""

    @property
    def many(self) -> bool:
        """One agent over several symbols (a ``symbol`` column in every row), else one series."""
        return len(self.spec.symbols) > 1

    @property
    def bars(self) -> BarsInput:
        """What :func:`pipeline.rl.train.train` takes: one symbol's bars, or ``{symbol: bars}``."""
        return self.universe if self.many else next(iter(self.universe.values()))

    def dates(self, fold: Fold) -> dict[str, tuple[pd.Timestamp, pd.Timestamp]]:
        """First and last timestamp of the fold's ``train``, ``val`` and ``test`` windows."""
        return fold.dates(self.calendar)

    def train_data(self, fold: Fold) -> BarsInput:
        """Every symbol's bars inside the fold's training window (no bar past it)."""
        first, last = self.dates(fold)["train"]
        window = {s: b[(b.index >= first) & (b.index <= last)] for s, b in self.universe.items()}
        return window if self.many else next(iter(window.values()))


def regime_window(folds: list[Fold], calendar: pd.Index) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The window a spec's regime model is fitted on: the first fold's training window.

    The rule: regimes are fitted on the bars before the first validation window of the spec's walk-forward,
    less the embargo between them — exactly ``folds[0].train`` — so no validation or test bar of any fold
    shapes the labels the report and the analysis use. (Each trained agent still fits its own regime model
    on its own fold's training window; with the same regime config, the first fold's agent and the stored
    labels come from the same fit.)"""
    first = folds[0].train
    return calendar[first.start], calendar[first.stop - 1]


def _series(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.set_index("ts")[OHLCV].astype("float64")
    out.index = pd.DatetimeIndex(out.index).tz_convert(TZ_NAME).rename("ts")
    return out.sort_index()


def spec_bars(spec: ModelSpec, end: Any = None, engine: Engine | None = None) -> pd.DataFrame:
    """The spec's stored bars with ``ts < end`` (UTC; None: all), long: symbol, ts (UTC) and OHLCV."""
    frame = read_bars(list(spec.symbols), spec.interval, end=end, engine=engine)
    return frame[["symbol", "ts", *OHLCV]]


def load_spec_data(spec: ModelSpec, end: Any = None, engine: Engine | None = None) -> SpecData:
    """Bars of ``spec`` (``ts < end``) split per symbol, and its folds; raises :class:`NotEnoughData`
    when the store has none of its symbols or too few bars for ``spec.walkforward_config()``."""
    return spec_data_from(spec, spec_bars(spec, end, engine))


def spec_data_from(spec: ModelSpec, long: pd.DataFrame) -> SpecData:
    """:class:`SpecData` of bars already read (:func:`spec_bars`)."""
    found = set(long["symbol"])
    universe = {s: _series(long[long["symbol"] == s]) for s in spec.symbols if s in found}
    missing = [s for s in spec.symbols if s not in found]
    if not universe:
        raise NotEnoughData(f"{spec.name}: no {spec.interval} bars of {list(spec.symbols)} in the store")
    if missing:
        log.warning("%s: no %s bars of %s in the store; left out", spec.name, spec.interval, missing)
    calendar = common_calendar(universe)
    try:
        folds = make_folds(len(calendar), spec.walkforward_config())
    except ValueError as exc:
        raise NotEnoughData(f"{spec.name}: {len(calendar)} {spec.interval} bars are too few: {exc}") from None
    fingerprint = bars_fingerprint(long.reset_index(drop=True))
    return SpecData(spec=spec, universe=universe, calendar=calendar, folds=folds, fingerprint=fingerprint)
