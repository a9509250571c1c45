"""Where bars come from: a protocol, and its implementation over the KIS client (real, paper, simulator)."""

from __future__ import annotations

import datetime as dt
from typing import Protocol, Self

import pandas as pd

from pipeline.kis import KisClient
from pipeline.kis.client import asset_of
from pipeline.kis.endpoints import MINUTE_RETENTION_DAYS
from pipeline.market import InstrumentKind

#: Columns a source returns; values may be malformed (strings, blanks): the ingest checks every row.
RAW_COLUMNS = ["ts", "open", "high", "low", "close", "volume", "turnover"]


class BarSource(Protocol):
    """Anything that can hand over raw bars for a symbol."""

    name: str

    def daily(self, symbol: str, start: dt.date, end: dt.date) -> pd.DataFrame:
        """Daily bars in [start, end] (KST session dates), columns ``RAW_COLUMNS``."""
        ...

    def minutes(self, symbol: str, day: dt.date) -> pd.DataFrame:
        """One session's 1-minute bars, columns ``RAW_COLUMNS``."""
        ...

    def minute_history_days(self, symbol: str) -> int:
        """How many calendar days back from the session asked for the source still serves ``symbol``'s
        1-minute bars (0: that session's only); the minute backfill never reaches further."""
        ...


class KisBarSource:
    """Bars from the KIS Open API through :class:`pipeline.kis.KisClient`."""

    def __init__(
        self, client: KisClient, name: str | None = None, minute_retention_days: int = MINUTE_RETENTION_DAYS
    ) -> None:
        self.client = client
        self.name = name or f"kis:{client.config.env}"
        self.minute_retention_days = minute_retention_days

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the client's HTTP connections."""
        self.client.close()

    def daily(self, symbol: str, start: dt.date, end: dt.date) -> pd.DataFrame:
        return _raw(self.client.fetch_daily_bars(symbol, start, end))

    def minutes(self, symbol: str, day: dt.date) -> pd.DataFrame:
        return _raw(self.client.fetch_minute_bars(symbol, day))

    def minute_history_days(self, symbol: str) -> int:
        """KIS keeps about a year of minute bars (spec §5); paper trading has no past-day stock minute
        TR, only today's (so a paper backfill of stocks would fetch nothing but cost 2-req/s calls)."""
        if self.client.config.paper and asset_of(symbol) is not InstrumentKind.FUTURES:
            return 0
        return self.minute_retention_days


def _raw(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.rename(columns={"value": "turnover"})
    for col in RAW_COLUMNS:
        if col not in out.columns:
            out[col] = None
    return out[RAW_COLUMNS]
