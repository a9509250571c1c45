"""Per-symbol tables the env reads from a market of one or several symbols (segments): where decisions may
start and end, the cost of trading at each bar, and feature windows that never reach across a symbol."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from pipeline.rl.instruments import InstrumentSpec
from pipeline.rl.market import MarketArrays


@dataclass(frozen=True)
class DecisionRanges:
    """Bars each segment can be traded on; S' segments (those with room for at least one decision)."""

    first: np.ndarray
    """First row of each kept segment (its symbol's first bar), int64 [S'], increasing."""
    lo: np.ndarray
    """First decision bar of each segment (``window - 1`` bars of its own history before it), int64 [S']."""
    hi: np.ndarray
    """One past the segment's last usable bar; decisions at lo … hi-2, the last mark at hi-1, int64 [S']."""
    weights: np.ndarray
    """Chance that a random episode starts in each segment, ∝ its decision bars (hi-1-lo), float64 [S']."""

    def segment_of(self, rows: np.ndarray) -> np.ndarray:
        """Index into the kept segments of the segment holding each of ``rows`` [B] → int64 [B]."""
        seg = np.searchsorted(self.first, rows, side="right") - 1
        return np.clip(seg, 0, len(self.first) - 1)


def decision_ranges(market: MarketArrays, window: int, bounds: tuple[int, int] | None) -> DecisionRanges:
    """Per segment, the decision range inside ``bounds`` (rows [lo, hi) of the whole market; None: all).

    A decision at t needs bars t-window+1 … t of the same symbol and the next bar's open, so a segment
    [a, b) allows decisions at max(lo, a + window - 1) … min(hi, b) - 2; segments without one are dropped."""
    lo, hi = bounds if bounds is not None else (0, len(market))
    segs = [(a, max(lo, a + window - 1), min(hi, b)) for a, b in market.segment_bounds()]
    kept = [s for s in segs if s[2] - s[1] >= 2]
    if not kept:
        first_lo, last_hi = segs[0][1], segs[-1][2]
        raise ValueError(f"range [{first_lo}, {last_hi}) is too short for window {window}")
    first, seg_lo, seg_hi = (np.array(col, dtype=np.int64) for col in zip(*kept, strict=True))
    bars = (seg_hi - 1 - seg_lo).astype(np.float64)
    return DecisionRanges(first=first, lo=seg_lo, hi=seg_hi, weights=bars / bars.sum())


@dataclass(frozen=True)
class BarCosts:
    """What trading costs at each bar, from the instrument of the bar's segment; float64 [T] each."""

    slippage: np.ndarray
    """Price slippage per unit at each open (ticks of the segment's kind at that price)."""
    sell_tax: np.ndarray
    """Tax rate on a sell filled at each bar (the segment's kind, the rate in force that day)."""
    buy_fee: np.ndarray
    """Broker fee rate on a buy filled at each bar."""
    sell_fee: np.ndarray
    """Broker fee rate on a sell filled at each bar."""


def bar_costs(market: MarketArrays, default: InstrumentSpec) -> BarCosts:
    """Costs per bar: each segment trades as ``market.instruments[s]`` (or ``default`` when the market
    names none). Segments must agree with ``default`` on shorting, multiplier and margin, which give the
    action levels their meaning (stocks and ETFs mix; stocks and futures do not)."""
    bounds = market.segment_bounds()
    specs = market.instruments or (default,) * len(bounds)
    days = market.session_days()
    n = len(market)
    out = BarCosts(np.empty(n), np.empty(n), np.empty(n), np.empty(n))
    for (a, b), inst in zip(bounds, specs, strict=True):
        shape = (inst.allow_short, inst.multiplier, inst.margin_rate)
        if shape != (default.allow_short, default.multiplier, default.margin_rate):
            raise ValueError(
                f"segment instrument {inst.kind.value} trades unlike the env's {default.kind.value} "
                "(shorting, multiplier or margin differ): one env holds instruments with one action meaning"
            )
        out.slippage[a:b] = inst.slippage_ticks * inst.ticks(market.open[a:b])
        out.sell_tax[a:b] = inst.sell_taxes(None if days is None else days[a:b], b - a)
        out.buy_fee[a:b], out.sell_fee[a:b] = inst.buy_fee, inst.sell_fee
    return out


def feature_windows(market: MarketArrays, window: int) -> np.ndarray:
    """Row t = features of bars t-window+1 … t flattened oldest first, float32 [T, W*F]; computed per
    segment, so the first ``window - 1`` rows of each symbol (never observed) are zeros, not its
    neighbour's bars."""
    parts = [_windows(market.features[a:b], window) for a, b in market.segment_bounds()]
    return np.concatenate(parts) if len(parts) > 1 else parts[0]


def _windows(features: np.ndarray, window: int) -> np.ndarray:
    t, f = features.shape
    if t < window:
        return np.zeros((t, window * f), np.float32)
    view = sliding_window_view(features, window, axis=0)  # [T-W+1, F, W]
    flat = np.ascontiguousarray(view.transpose(0, 2, 1)).reshape(t - window + 1, window * f)
    return np.concatenate([np.zeros((window - 1, window * f), np.float32), flat]).astype(np.float32)
