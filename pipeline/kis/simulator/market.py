"""Market data as of the simulator clock: daily and minute bars (generated or CSV), partial bars, quotes."""

from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass
from datetime import date, datetime, time

import numpy as np
import pandas as pd

from pipeline.kis.simulator import marketgen as mg
from pipeline.kis.simulator.simconfig import SimConfig
from pipeline.market import INDEX_CODES, KST, InstrumentKind, classify, is_contract_code, tick_size


@dataclass(frozen=True)
class DayBar:
    """One (possibly partial) daily bar."""

    day: date
    open: float
    high: float
    low: float
    close: float
    volume: int


@dataclass(frozen=True)
class MinuteBar:
    """One (possibly in-progress) minute bar; ``start`` is tz-aware KST."""

    start: datetime
    open: float
    high: float
    low: float
    close: float
    volume: int


@dataclass(frozen=True)
class Snapshot:
    """What a current-price TR shows: today's bar so far, previous close, limits and tick."""

    day: date
    bar: DayBar
    prev_close: float
    lower: float
    upper: float
    tick: float


class MarketData:
    """Bars for configured stocks and ETFs, any KOSPI200 futures contract code, and the KOSPI/KOSDAQ/KOSPI200
    index codes."""

    def __init__(self, cfg: SimConfig) -> None:
        self.cfg = cfg
        self._days = mg.trading_days()
        self._daily: dict[str, tuple[dict[date, int], np.ndarray]] = {}
        self._guard = threading.Lock()

    # --- instruments ---------------------------------------------------------------------------
    def kind_of(self, symbol: str) -> InstrumentKind | None:
        """The kind of ``symbol`` (:func:`pipeline.market.classify`), or None for an unknown code."""
        if symbol in self.cfg.stock_symbols or self._csv(symbol) is not None:
            kind = classify(symbol, futures=(), indices=(), etfs=self.cfg.etf_symbols)
            return kind if kind in (InstrumentKind.STOCK, InstrumentKind.ETF) else InstrumentKind.STOCK
        if is_contract_code(symbol):
            return InstrumentKind.FUTURES
        return InstrumentKind.INDEX if symbol in INDEX_CODES.values() else None

    def _series(self, symbol: str, kind: InstrumentKind) -> str:
        return mg.FUTURES_SERIES if kind is InstrumentKind.FUTURES else symbol

    def _csv(self, symbol: str, suffix: str = "") -> pd.DataFrame | None:
        if self.cfg.csv_dir is None:
            return None
        path = self.cfg.csv_dir / f"{symbol}{suffix}.csv"
        return pd.read_csv(path) if path.exists() else None

    def _history(self, symbol: str, kind: InstrumentKind) -> tuple[dict[date, int], np.ndarray]:
        key = self._series(symbol, kind)
        with self._guard:
            cached = self._daily.get(key)
            if cached is None:
                frame = self._csv(symbol)
                if frame is not None:
                    frame.index = pd.to_datetime(frame.get("date", frame.get("ts"))).dt.date
                elif kind is InstrumentKind.FUTURES:
                    frame = mg.futures_history(self.cfg.seed)
                else:
                    frame = mg.daily_history(key, kind, self.cfg.seed)
                values = frame[["open", "high", "low", "close", "volume"]].to_numpy(dtype=float)
                cached = ({d: i for i, d in enumerate(frame.index)}, values)
                self._daily[key] = cached
            return cached

    def is_trading_day(self, day: date) -> bool:
        """KRX session day (XKRX calendar)."""
        i = bisect.bisect_left(self._days, day)
        return i < len(self._days) and self._days[i] == day

    def previous_day(self, day: date) -> date:
        """The trading day before ``day``."""
        return self._days[max(bisect.bisect_left(self._days, day) - 1, 0)]

    # --- bars --------------------------------------------------------------------------------
    def full_day(self, symbol: str, kind: InstrumentKind, day: date) -> DayBar | None:
        """The complete daily bar of ``day`` (None on non-trading days or outside history)."""
        index, values = self._history(symbol, kind)
        i = index.get(day)
        if i is None:
            return None
        o, h, lo, c, v = values[i]
        return DayBar(day, o, h, lo, c, int(v))

    def intraday(self, symbol: str, kind: InstrumentKind, day: date) -> mg.Intraday | None:
        """The day's minute bars (CSV when ``<symbol>_1m.csv`` has them, else bridged from the daily bar)."""
        bar = self.full_day(symbol, kind, day)
        if bar is None:
            return None
        return mg.intraday(
            self._series(symbol, kind),
            kind,
            self.cfg.seed,
            day,
            (bar.open, bar.high, bar.low, bar.close, bar.volume),
        )

    def minutes_until(self, symbol: str, kind: InstrumentKind, day: date, now: datetime) -> list[MinuteBar]:
        """Minute bars of ``day`` visible at ``now``: complete ones plus the in-progress one, oldest first."""
        bars = self.intraday(symbol, kind, day)
        if bars is None:
            return []
        out: list[MinuteBar] = []
        for i, start in enumerate(bars.starts):
            elapsed = (now - start).total_seconds()
            if elapsed < 0:
                break
            if elapsed >= 60:
                out.append(
                    MinuteBar(
                        start,
                        float(bars.open[i]),
                        float(bars.high[i]),
                        float(bars.low[i]),
                        float(bars.close[i]),
                        int(bars.volume[i]),
                    )
                )
                continue
            k = int(elapsed / 60 * mg.SUBSTEPS)
            pts = bars.path[i * mg.SUBSTEPS : i * mg.SUBSTEPS + k + 1]
            out.append(
                MinuteBar(
                    start,
                    float(pts[0]),
                    float(pts.max()),
                    float(pts.min()),
                    float(pts[-1]),
                    int(bars.volume[i] * elapsed / 60),
                )
            )
        return out

    def day_until(self, symbol: str, kind: InstrumentKind, day: date, now: datetime) -> DayBar | None:
        """The daily bar of ``day`` as known at ``now`` (partial during the session)."""
        full = self.full_day(symbol, kind, day)
        if full is None:
            return None
        _, close_time = mg.session_window(kind, day)
        if now >= datetime.combine(day, close_time, KST):
            return full
        bars = self.intraday(symbol, kind, day)
        if bars is None:
            return None
        elapsed = (now - bars.starts[0]).total_seconds()
        if elapsed < 0:
            return None
        # Vectorised: complete minutes [0, i) plus the in-progress minute's sub-steps so far.
        i = min(int(elapsed // 60), len(bars.starts))
        k = int((elapsed - i * 60) / 60 * mg.SUBSTEPS) if i < len(bars.starts) else 0
        live = bars.path[i * mg.SUBSTEPS : i * mg.SUBSTEPS + k + 1]
        high = max(float(bars.high[:i].max()) if i else live[0], float(live.max()))
        low = min(float(bars.low[:i].min()) if i else live[0], float(live.min()))
        volume = int(bars.volume[:i].sum())
        if i < len(bars.starts):
            volume += int(bars.volume[i] * (elapsed - i * 60) / 60)
        return DayBar(day, float(bars.open[0]), high, low, float(live[-1]), volume)

    def daily_bars(
        self, symbol: str, kind: InstrumentKind, start: date, end: date, now: datetime
    ) -> list[DayBar]:
        """Daily bars in [start, min(end, today)], oldest first; today's is partial during the session."""
        today = now.date()
        lo = bisect.bisect_left(self._days, start)
        hi = bisect.bisect_right(self._days, min(end, today))
        out: list[DayBar] = []
        for day in self._days[lo:hi]:
            bar = self.day_until(symbol, kind, day, now) if day == today else self.full_day(symbol, kind, day)
            if bar is not None:
                out.append(bar)
        return out

    def minutes_back(
        self,
        symbol: str,
        kind: InstrumentKind,
        day: date,
        cursor: time,
        now: datetime,
        rows: int,
        *,
        oldest: date,
        cross_days: bool = False,
    ) -> list[MinuteBar]:
        """Up to ``rows`` minute bars starting at or before ``day`` ``cursor``, newest first (KIS order).
        Days before ``oldest`` are past KIS's retention: never served, not even when crossing days."""
        limit = min(datetime.combine(day, cursor, KST), now)
        out: list[MinuteBar] = []
        current = day
        while len(out) < rows and current >= oldest:
            bars = [b for b in self.minutes_until(symbol, kind, current, now) if b.start <= limit]
            out.extend(reversed(bars))
            if not cross_days or current <= self._days[0]:
                break
            current = self.previous_day(current)
            limit = datetime.combine(current, time(23, 59), KST)
        return out[:rows]

    def snapshot(self, symbol: str, kind: InstrumentKind, now: datetime) -> Snapshot | None:
        """Current-price view at ``now``: before the open it shows the previous session."""
        today = now.date()
        open_time, _ = mg.session_window(kind, today)
        live = self.is_trading_day(today) and now >= datetime.combine(today, open_time, KST)
        day = today if live else self.previous_day(today)
        bar = self.day_until(symbol, kind, day, now)
        for _ in range(10):  # CSV data may end before today: show the last day it has
            if bar is not None:
                break
            day = self.previous_day(day)
            bar = self.full_day(symbol, kind, day)
        if bar is None:
            return None
        prev = self.full_day(symbol, kind, self.previous_day(day))
        prev_close = prev.close if prev else bar.open
        inst = mg.instrument_for(symbol, kind)
        lower, upper = mg.price_limits(prev_close, inst)
        return Snapshot(day, bar, prev_close, lower, upper, tick_size(bar.close, kind))
