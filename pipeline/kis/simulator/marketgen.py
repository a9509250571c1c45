"""Seeded KRX-like market generator: regime-switching daily bars and consistent intraday minute bars.

Ticks, price limits, session hours and the calendar are read from :mod:`pipeline.market`."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from typing import Literal

import numpy as np
import pandas as pd

from pipeline.market import (
    CONTINUOUS_FUTURES,
    INDEX_CODES,
    KST,
    InstrumentKind,
    front_contract,
    is_expiry_day,
    krx_sessions,
    price_limit,
    session_hours,
    tick_size,
)
from pipeline.market.costs import FUTURES_FIRST_STAGE_LIMIT

Kind = InstrumentKind | str
#: Generated history spans these years; every range inside gives the same bars for a seed.
HISTORY_START = date(2015, 1, 1)
HISTORY_END = date(2030, 12, 31)
#: Sub-steps simulated inside each minute (gives intraday highs/lows and a live in-progress bar).
SUBSTEPS = 4
REGIMES = ("trend", "mean_revert", "high_vol")
#: Every KOSPI200 futures code is served from one continuous series (the simulator does not roll contracts).
FUTURES_SERIES = CONTINUOUS_FUTURES
# Daily regime transition matrix (rows: from). Persistent regimes give weeks-long episodes.
_TRANSITIONS = np.array([[0.97, 0.02, 0.01], [0.02, 0.97, 0.01], [0.03, 0.04, 0.93]])
_VOL_MULT = np.array([0.8, 0.7, 2.2])
# Well-known KRX names start near realistic prices; anything else gets a hashed start price.
_STOCK_START = {
    "005930": 70_000.0,
    "000660": 180_000.0,
    "035420": 200_000.0,
    "005380": 220_000.0,
    "051910": 350_000.0,
}
_INDEX_START = {INDEX_CODES["KOSPI"]: 2_500.0, INDEX_CODES["KOSDAQ"]: 800.0, INDEX_CODES["KOSPI200"]: 330.0}
#: The index the futures track (generated once, the futures add a basis).
KOSPI200 = INDEX_CODES["KOSPI200"]


@dataclass(frozen=True)
class Instrument:
    """Static facts about one tradable or quoted code."""

    symbol: str
    kind: InstrumentKind
    start_price: float
    annual_vol: float
    limit_pct: float
    base_volume: float


def instrument_for(symbol: str, kind: Kind) -> Instrument:
    """Generator parameters; the daily limit is the market's (futures halt at the first-stage limit)."""
    kind = InstrumentKind(kind)
    if kind is InstrumentKind.FUTURES:
        # Contracts a day; served futures bars come from the KOSPI200 index plus a basis (futures_history).
        return Instrument(symbol, kind, 330.0, 0.18, FUTURES_FIRST_STAGE_LIMIT, base_volume=300_000.0)
    if kind is InstrumentKind.INDEX:
        start = _INDEX_START.get(symbol, 1_000.0)
        return Instrument(symbol, kind, start, 0.16, price_limit(kind), 400_000_000.0)
    start = _STOCK_START.get(symbol, 5_000.0 + (zlib.crc32(symbol.encode()) % 200) * 1_000.0)
    return Instrument(symbol, kind, start, 0.30, price_limit(kind), 8_000_000.0 / max(start / 50_000.0, 0.2))


def round_tick(price: float, kind: Kind, mode: Literal["nearest", "up", "down"] = "nearest") -> float:
    """Round to the tick grid of ``price``'s band."""
    tick = tick_size(price, kind)
    steps = price / tick
    # The epsilon keeps a price already on the grid from moving a tick through float error.
    if mode == "up":
        n = np.ceil(steps - 1e-9)
    elif mode == "down":
        n = np.floor(steps + 1e-9)
    else:
        n = np.round(steps)
    return round(float(n) * tick, 2)


def price_limits(prev_close: float, inst: Instrument) -> tuple[float, float]:
    """(lower, upper) daily price limits from the previous close, on the tick grid."""
    upper = round_tick(prev_close * (1 + inst.limit_pct), inst.kind, "down")
    lower = round_tick(prev_close * (1 - inst.limit_pct), inst.kind, "up")
    return lower, upper


@lru_cache(maxsize=1)
def trading_days() -> tuple[date, ...]:
    """KRX sessions over the generated history (XKRX calendar; weekdays outside its range)."""
    return tuple(d.date() for d in krx_sessions(HISTORY_START, HISTORY_END))


def session_window(kind: Kind, day: date) -> tuple[time, time]:
    """(open, close) of ``kind`` on ``day``: the market's session hours, with the futures expiry close."""
    hours = session_hours(kind)
    return hours.open, hours.close_on(is_expiry_day(day))


def front_month(day: date) -> tuple[str, date]:
    """(short code like ``101W09``, last trading day) of the front KOSPI200 futures contract on ``day``."""
    front = front_contract(day, roll_days=0)
    return front.code, front.last_trading_day


def _rng(seed: int, *parts: object) -> np.random.Generator:
    key = [seed] + [zlib.crc32(str(p).encode()) for p in parts]
    return np.random.default_rng(key)


@lru_cache(maxsize=64)
def daily_history(symbol: str, kind: Kind, seed: int) -> pd.DataFrame:
    """Full generated daily history (HISTORY_START..HISTORY_END) indexed by date, with a ``regime`` column.

    Returns follow a 3-state Markov regime chain (trend / mean-reverting / high-volatility) with GARCH(1,1)
    volatility clustering and Student-t shocks; prices respect tick sizes and daily limits."""
    inst = instrument_for(symbol, kind)
    days = trading_days()
    n = len(days)
    rng = _rng(seed, symbol, kind)
    base = inst.annual_vol / np.sqrt(252.0)
    shocks = rng.standard_t(5, size=n) / np.sqrt(5.0 / 3.0)
    regimes = np.zeros(n, dtype=np.int64)
    closes = np.empty(n)
    var, prev, anchor, drift, regime = base**2, inst.start_price, np.log(inst.start_price), 0.0, 0
    for t in range(n):
        if t and rng.random() > _TRANSITIONS[regime, regime]:
            regime = int(rng.choice(3, p=_TRANSITIONS[regime]))
            anchor, drift = np.log(prev), rng.choice([-1.0, 1.0]) * base * 0.12
        mu = {0: drift, 1: -0.08 * (np.log(prev) - anchor), 2: -0.1 * base}[regime]
        sigma = np.sqrt(var) * _VOL_MULT[regime]
        ret = float(np.clip(mu + sigma * shocks[t], np.log(1 - inst.limit_pct), np.log(1 + inst.limit_pct)))
        lower, upper = price_limits(prev, inst)
        close = min(max(round_tick(prev * np.exp(ret), kind), lower), upper)
        var = 0.05 * base**2 + 0.10 * (ret / _VOL_MULT[regime]) ** 2 + 0.85 * var  # GARCH(1,1)
        regimes[t], closes[t], prev = regime, close, close
    return _ohlcv(inst, days, closes, regimes, rng, base)


def _ohlcv(
    inst: Instrument,
    days: tuple[date, ...],
    closes: np.ndarray,
    regimes: np.ndarray,
    rng: np.random.Generator,
    base: float,
) -> pd.DataFrame:
    """Opens, highs, lows and volumes around generated closes, inside each day's limits."""
    n = len(days)
    prev = np.concatenate([[inst.start_price], closes[:-1]])
    sig = base * _VOL_MULT[regimes]
    opens = np.empty(n)
    highs = np.empty(n)
    lows = np.empty(n)
    gaps, up, down = rng.normal(0, 0.3, n), np.abs(rng.normal(0, 0.6, n)), np.abs(rng.normal(0, 0.6, n))
    for t in range(n):
        lower, upper = price_limits(prev[t], inst)
        o = min(max(round_tick(prev[t] * np.exp(gaps[t] * sig[t]), inst.kind), lower), upper)
        hi = min(round_tick(max(o, closes[t]) * np.exp(up[t] * sig[t]), inst.kind, "up"), upper)
        lo = max(round_tick(min(o, closes[t]) * np.exp(-down[t] * sig[t]), inst.kind, "down"), lower)
        opens[t], highs[t], lows[t] = o, max(hi, o, closes[t]), min(lo, o, closes[t])
    moves = np.abs(np.log(closes / prev))
    volume = (
        inst.base_volume * np.exp(rng.normal(0, 0.3, n)) * (1 + 8 * moves) * np.where(regimes == 2, 1.6, 1)
    )
    frame = pd.DataFrame(
        {
            "open": opens,
            "high": highs,
            "low": lows,
            "close": closes,
            "volume": volume.astype(np.int64),
            "regime": regimes,
        },
        index=pd.Index(days, name="date"),
    )
    return frame


@lru_cache(maxsize=8)
def futures_history(seed: int, basis: float = 0.003) -> pd.DataFrame:
    """KOSPI200 front-month futures: the generated KOSPI200 index (``2001``) plus a small basis, on the
    0.05-point grid, with contract-sized volumes."""
    index = daily_history(KOSPI200, InstrumentKind.INDEX, seed)
    frame = index.copy()
    for col in ("open", "high", "low", "close"):
        frame[col] = [round_tick(p * (1 + basis), InstrumentKind.FUTURES) for p in index[col]]
    frame["volume"] = (index["volume"] // 1_000).clip(lower=1_000)
    return frame


@dataclass(frozen=True)
class Intraday:
    """One day's minute bars plus the sub-minute price path (for live, in-progress bars)."""

    starts: tuple[datetime, ...]
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    path: np.ndarray


@lru_cache(maxsize=512)
def intraday(
    symbol: str, kind: Kind, seed: int, day: date, ohlcv: tuple[float, float, float, float, int]
) -> Intraday:
    """Minute bars whose aggregate is exactly the daily bar ``ohlcv``: a Brownian bridge from open to close,
    mapped monotonically so its extremes land on the day's high and low, then rounded to ticks."""
    o, h, lo, c, v = ohlcv
    start, end = session_window(kind, day)
    minutes = (datetime.combine(day, end) - datetime.combine(day, start)).seconds // 60
    steps = minutes * SUBSTEPS
    rng = _rng(seed, symbol, kind, day.isoformat())
    walk = np.concatenate([[0.0], np.cumsum(rng.normal(0, 1, steps))])
    frac = np.linspace(0, 1, steps + 1)
    bridge = walk - frac * walk[-1]
    raw = np.log(o) + (np.log(c) - np.log(o)) * frac + bridge * 0.01 / np.sqrt(steps)
    lo_oc, hi_oc = min(np.log(o), np.log(c)), max(np.log(o), np.log(c))
    hi_x = max(hi_oc, lo_oc + 1e-9)
    xp = [min(raw.min(), lo_oc - 1e-6), lo_oc, hi_x, max(raw.max(), hi_x + 1e-6)]
    prices = np.exp(np.interp(raw, xp, [np.log(lo), lo_oc, hi_x, np.log(h)]))
    prices[1 + int(np.argmin(raw[1:-1]))] = lo
    prices[1 + int(np.argmax(raw[1:-1]))] = h
    prices = np.array([round_tick(p, kind) for p in np.clip(prices, lo, h)])
    prices[0], prices[-1] = o, c
    blocks = np.lib.stride_tricks.sliding_window_view(prices, SUBSTEPS + 1)[::SUBSTEPS]
    shape = 1.0 + 2.0 * (np.linspace(-1, 1, minutes) ** 2)  # U-shaped intraday volume
    weights = shape * np.exp(rng.normal(0, 0.3, minutes))
    volume = rng.multinomial(int(v), weights / weights.sum())
    first = datetime.combine(day, start, KST)
    starts = tuple(first + timedelta(minutes=i) for i in range(minutes))
    return Intraday(
        starts,
        blocks[:, 0].copy(),
        blocks.max(axis=1),
        blocks.min(axis=1),
        blocks[:, -1].copy(),
        volume,
        prices,
    )


def minute_frame(symbol: str, kind: Kind, seed: int, day: date) -> pd.DataFrame:
    """One trading day's 1-minute bars (empty on non-trading days)."""
    hist = futures_history(seed) if kind == InstrumentKind.FUTURES else daily_history(symbol, kind, seed)
    if day not in hist.index:
        return pd.DataFrame(columns=["ts", "open", "high", "low", "close", "volume"])
    row = hist.loc[day]
    bars = intraday(
        FUTURES_SERIES if kind == InstrumentKind.FUTURES else symbol,
        kind,
        seed,
        day,
        (float(row.open), float(row.high), float(row.low), float(row.close), int(row.volume)),
    )
    return pd.DataFrame(
        {
            "ts": pd.DatetimeIndex(bars.starts),
            "open": bars.open,
            "high": bars.high,
            "low": bars.low,
            "close": bars.close,
            "volume": bars.volume,
        }
    )


def generate_bars(
    symbol: str,
    interval: Literal["1d", "1m"],
    start: date,
    end: date,
    seed: int = 7,
    kind: Kind = InstrumentKind.STOCK,
    with_regime: bool = False,
) -> pd.DataFrame:
    """Public entry point: OHLCV bars for ``symbol`` in [start, end] (``ts`` tz-aware KST, bar start).

    The same seed always gives the same bars, whatever the requested range."""
    hist = futures_history(seed) if kind == InstrumentKind.FUTURES else daily_history(symbol, kind, seed)
    if interval == "1d":
        part = hist.loc[(hist.index >= start) & (hist.index <= end)]
        frame = part.reset_index()
        frame.insert(0, "ts", pd.DatetimeIndex([datetime.combine(d, time(0), KST) for d in frame["date"]]))
        cols = ["ts", "open", "high", "low", "close", "volume"] + (["regime"] if with_regime else [])
        return frame[cols].reset_index(drop=True)
    days = [d for d in hist.index if start <= d <= end]
    frames = [minute_frame(symbol, kind, seed, d) for d in days]
    if not frames:
        return pd.DataFrame(columns=["ts", "open", "high", "low", "close", "volume"])
    return pd.concat(frames, ignore_index=True)
