"""Regular KRX session hours (KST) per instrument kind, and the futures expiry-day close.

Sources: KIS_API_SPEC.md §8 (official samples): stocks 09:00-15:30; KOSPI200 futures 08:45-15:45, closing
at 15:20 on the last trading day. ETFs and indices follow the stock session. Special days (the later open
of the first session of a year, the 15:00 close before 2016-08-01) come from the XKRX schedule in
:mod:`pipeline.market.calendar`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from pipeline.market.kinds import InstrumentKind


@dataclass(frozen=True)
class SessionHours:
    """Regular session of one kind, local KST clock times."""

    open: dt.time
    close: dt.time
    expiry_close: dt.time | None = None
    """Close on a futures contract's last trading day (None: same as ``close``)."""

    def close_on(self, expiry_day: bool) -> dt.time:
        """The close, the expiry-day one when ``expiry_day``."""
        return self.expiry_close if expiry_day and self.expiry_close else self.close


STOCK_HOURS = SessionHours(dt.time(9, 0), dt.time(15, 30))
FUTURES_HOURS = SessionHours(dt.time(8, 45), dt.time(15, 45), expiry_close=dt.time(15, 20))

SESSION_HOURS: dict[InstrumentKind, SessionHours] = {
    InstrumentKind.STOCK: STOCK_HOURS,
    InstrumentKind.ETF: STOCK_HOURS,
    InstrumentKind.INDEX: STOCK_HOURS,
    InstrumentKind.FUTURES: FUTURES_HOURS,
}
#: Futures open this many minutes before the stock market and close this many after it.
FUTURES_SHIFT = dt.timedelta(minutes=15)


def session_hours(kind: InstrumentKind | str) -> SessionHours:
    """Regular hours of ``kind``; an unknown kind raises instead of falling back to stock hours."""
    return SESSION_HOURS[InstrumentKind(kind)]
