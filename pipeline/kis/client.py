"""KisClient: every typed TR plus DataFrame helpers (``fetch_daily_bars``, ``fetch_minute_bars``)."""

from __future__ import annotations

from datetime import date

import httpx
import pandas as pd

from pipeline.config import Settings
from pipeline.kis.charts import INDEX_DAILY, to_bar, walk_daily, yyyymmdd
from pipeline.kis.config import KisConfig
from pipeline.kis.endpoints import DAILY_ROWS
from pipeline.kis.futures import FuturesApi
from pipeline.kis.models import Bar, HolidayInfo, IndexQuote
from pipeline.kis.stock import StockApi
from pipeline.market import INDEX_CODES, InstrumentKind, classify

BAR_COLUMNS = ["ts", "symbol", "open", "high", "low", "close", "volume", "value"]


def asset_of(symbol: str) -> InstrumentKind:
    """The kind of a KIS code (:func:`pipeline.market.classify`): a contract code such as ``101W09`` is
    futures, an index name or code an index; a continuous series name is no KIS code, so not futures."""
    return classify(symbol, futures=())


def bars_frame(symbol: str, bars: list[Bar]) -> pd.DataFrame:
    """Bars as a DataFrame sorted by ``ts`` (tz-aware KST), one row per bar."""
    frame = pd.DataFrame([b.model_dump() for b in bars], columns=[c for c in BAR_COLUMNS if c != "symbol"])
    frame.insert(1, "symbol", symbol)
    frame = frame.astype(
        {
            "open": "float64",
            "high": "float64",
            "low": "float64",
            "close": "float64",
            "volume": "float64",
            "value": "float64",
        }
    )
    # Exact repeats are cursor overlap; conflicting rows for one ts stay for the ingest to quarantine.
    return frame.drop_duplicates().sort_values("ts", kind="stable").reset_index(drop=True)


class KisClient(StockApi, FuturesApi):
    """The one KIS client (real, VTS or the local simulator). Build with ``KisClient.from_settings()``."""

    @classmethod
    def from_settings(
        cls,
        settings: Settings | None = None,
        transport: httpx.BaseTransport | None = None,
        **overrides: object,
    ) -> KisClient:
        """A client for ``settings.kis_env`` (KRX_ env vars); ``overrides`` replace KisConfig fields."""
        return cls(KisConfig.from_settings(settings, **overrides), transport=transport)

    # --- market-wide ---------------------------------------------------------------------------
    def holiday(self, day: date) -> HolidayInfo:
        """Is ``day`` a trading day (CTCA0903R)? KIS asks for about one call per day (spec §8)."""
        rows, _ = self.paged("holiday", {"BASS_DT": yyyymmdd(day)}, rows_key="output", summary_key="-")
        wanted = yyyymmdd(day)
        for row in rows:
            if str(row.get("bass_dt", "")).strip() == wanted:
                return HolidayInfo.model_validate(row)
        return HolidayInfo.model_validate(rows[0] if rows else {"bass_dt": wanted})

    def index_price(self, index: str) -> IndexQuote:
        """Current KOSPI / KOSDAQ / KOSPI200 level (name or code)."""
        code = INDEX_CODES.get(index.upper(), index)
        resp = self.get("index_price", {"FID_COND_MRKT_DIV_CODE": "U", "FID_INPUT_ISCD": code})
        return IndexQuote.model_validate(resp.output())

    def index_daily_bars(self, index: str, start: date, end: date) -> list[Bar]:
        """Daily index bars in [start, end], 100 rows per call."""
        code = INDEX_CODES.get(index.upper(), index)

        def fetch(lo: date, hi: date) -> list[Bar]:
            resp = self.get(
                "index_daily",
                {
                    "FID_COND_MRKT_DIV_CODE": "U",
                    "FID_INPUT_ISCD": code,
                    "FID_INPUT_DATE_1": yyyymmdd(lo),
                    "FID_INPUT_DATE_2": yyyymmdd(hi),
                    "FID_PERIOD_DIV_CODE": "D",
                },
            )
            return [b for b in (to_bar(r, INDEX_DAILY) for r in resp.rows("output2")) if b]

        return walk_daily(fetch, start, end, DAILY_ROWS, self.config.max_pages)

    # --- DataFrame helpers -----------------------------------------------------------------------
    def fetch_daily_bars(
        self, symbol: str, start: date, end: date, asset: InstrumentKind | str | None = None
    ) -> pd.DataFrame:
        """Daily OHLCV of a stock or ETF, futures contract or index in [start, end] as a DataFrame."""
        kind = InstrumentKind(asset) if asset else asset_of(symbol)
        if kind is InstrumentKind.FUTURES:
            bars = self.futures_daily_bars(symbol, start, end)
        elif kind is InstrumentKind.INDEX:
            bars = self.index_daily_bars(symbol, start, end)
        else:
            bars = self.stock_daily_bars(symbol, start, end)
        return bars_frame(symbol, bars)

    def fetch_minute_bars(
        self, symbol: str, day: date, asset: InstrumentKind | str | None = None
    ) -> pd.DataFrame:
        """One day's 1-minute OHLCV of a stock, ETF or futures contract. On VTS only today's stock bars
        exist (the past-day TR is real-only), so the today TR is used there."""
        kind = InstrumentKind(asset) if asset else asset_of(symbol)
        if kind is InstrumentKind.FUTURES:
            bars = self.futures_minute_bars(symbol, day)
        elif self.config.paper:
            bars = [b for b in self.stock_minute_bars_today(symbol) if b.ts.date() == day]
        else:
            bars = self.stock_minute_bars(symbol, day)
        return bars_frame(symbol, bars)
