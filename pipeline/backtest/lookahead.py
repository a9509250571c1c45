"""No look-ahead, checked rather than argued: give a computation the same bars up to t and a different future
after t; whatever it says about bars at or before t must not move.

Works for anything that maps bars to per-bar outputs indexed by the bars' timestamps: features, regime
labels, and the decisions of a policy (the agent or a baseline) through :func:`policy_decisions`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeAlias

import numpy as np
import pandas as pd

from pipeline.backtest.engine import run_backtest
from pipeline.backtest.policies import Policy
from pipeline.rl.env import EnvConfig
from pipeline.rl.market import MarketArrays

PerBar: TypeAlias = pd.Series | pd.DataFrame
"""Outputs indexed by bar timestamp (a subset of the bars' index, e.g. without the warm-up)."""


@dataclass(frozen=True)
class LookAhead:
    """A change at or before bar ``cut`` caused by changing only the bars after it."""

    cut: pd.Timestamp
    """The last bar left as it was."""
    first_changed: pd.Timestamp
    """The earliest bar whose output moved."""


def perturb_after(bars: pd.DataFrame, t: int, seed: int = 0) -> pd.DataFrame:
    """``bars`` (OHLCV, time-ordered) with every bar after row ``t`` replaced by another valid path: each
    later bar's prices scaled by its own random factor in [0.5, 2] (so high >= open, close >= low still
    hold) and a random volume."""
    changed = bars.copy()
    later = np.arange(len(bars)) > t
    rng = np.random.default_rng(seed)
    scale = rng.uniform(0.5, 2.0, int(later.sum()))
    for column in ("open", "high", "low", "close"):
        changed.loc[later, column] = changed.loc[later, column].to_numpy() * scale
    changed.loc[later, "volume"] = rng.integers(0, 10_000_000, int(later.sum())).astype(float)
    return changed


def find_lookahead(
    fn: Callable[[pd.DataFrame], PerBar], bars: pd.DataFrame, cuts: Sequence[int], seed: int = 0
) -> list[LookAhead]:
    """For each row ``t`` in ``cuts``: ``fn`` of :func:`perturb_after` ``(bars, t)`` against ``fn(bars)`` on
    the bars up to ``t``; returns one :class:`LookAhead` per cut whose earlier outputs changed (none: no
    look-ahead seen). Outputs compare exactly, NaN equal to NaN."""
    base = fn(bars)
    found = []
    for t in cuts:
        cut = bars.index[t]
        other = fn(perturb_after(bars, t, seed + t))
        before, after = base.loc[:cut], other.loc[:cut]
        if not before.index.equals(after.index):
            found.append(LookAhead(cut, min(before.index.symmetric_difference(after.index))))
            continue
        same = _rows_equal(before, after)
        if not same.all():
            found.append(LookAhead(cut, before.index[int(np.argmin(same))]))
    return found


def _rows_equal(a: PerBar, b: PerBar) -> np.ndarray:
    x, y = a.to_numpy(), b.to_numpy()
    if x.ndim == 1:
        x, y = x[:, None], y[:, None]
    # pd.isna, not np.isnan of floats: object outputs (labels, mixed frames) carry NaN too.
    both_nan = pd.isna(x) & pd.isna(y)
    return ((x == y) | both_nan).all(axis=1)  # type: ignore[no-any-return]


def policy_decisions(policy: Policy, market: MarketArrays, config: EnvConfig) -> pd.Series:
    """The action ``policy`` decides at each bar of a backtest over ``market``, indexed by the decision bar's
    timestamp (a decision at t fills at t+1's open, so the last bar has none)."""
    if market.index is None:
        raise ValueError("policy_decisions needs a market with timestamps")
    frame = run_backtest(policy, market, config).frame
    decided_at = frame["t"].to_numpy()[1:] - 1  # row k>0 holds the action decided at the bar before
    return pd.Series(frame["action"].to_numpy()[1:], index=market.index[decided_at], name=policy.name)
