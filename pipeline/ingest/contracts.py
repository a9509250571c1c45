"""What the data DAGs pass between tasks and runs — the ingest summary (XCom) with the minute backfill's
progress, the ``bars`` asset-event extra (the window an ingest stored) and the validation report (XCom) —
defined once for both sides.

Extras arrive from the metadata DB, written by any version of the producer or by hand: parse them with
:meth:`BarsWindow.from_extra`, which names what is wrong instead of failing later on a bad date.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NotRequired, TypedDict

#: Bar intervals the store holds and the validation knows how to window.
INTERVALS = ("1d", "1m")


class BarsWindowExtra(TypedDict):
    """The extra of a ``bars`` asset event: the KST days [start, end] an ingest stored bars in."""

    symbols: list[str]
    """Symbols with stored bars (empty: every symbol of the intervals)."""
    intervals: list[str]
    start: str
    """First KST day, ISO ``YYYY-MM-DD``."""
    end: str
    """Last KST day, ISO ``YYYY-MM-DD``."""


class InvalidWindow(ValueError):
    """An asset-event extra that does not describe a window of stored bars."""


@dataclass(frozen=True)
class BarsWindow:
    """A parsed, checked :class:`BarsWindowExtra`."""

    symbols: tuple[str, ...]
    intervals: tuple[str, ...]
    start: dt.date
    end: dt.date

    def to_extra(self) -> BarsWindowExtra:
        """The JSON-able extra of the asset event."""
        return BarsWindowExtra(
            symbols=list(self.symbols),
            intervals=list(self.intervals),
            start=self.start.isoformat(),
            end=self.end.isoformat(),
        )

    @classmethod
    def from_extra(cls, extra: object) -> BarsWindow:
        """Parse an asset-event extra; raise :class:`InvalidWindow` saying what is wrong with it."""
        if not isinstance(extra, Mapping) or not extra:
            raise InvalidWindow("the event carries no window (empty extra)")
        start, end = _day(extra, "start"), _day(extra, "end")
        if start > end:
            raise InvalidWindow(f"start {start} is after end {end}")
        intervals = _strings(extra, "intervals") or ("1d",)
        unknown = sorted(set(intervals) - set(INTERVALS))
        if unknown:
            raise InvalidWindow(f"unknown interval(s) {unknown}; known: {list(INTERVALS)}")
        return cls(_strings(extra, "symbols"), intervals, start, end)


def _day(extra: Mapping[object, object], key: str) -> dt.date:
    value = extra.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidWindow(f"{key} is missing or not a string: {value!r}")
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise InvalidWindow(f"{key} is not an ISO date: {value!r}") from None


def _strings(extra: Mapping[object, object], key: str) -> tuple[str, ...]:
    value = extra.get(key) or []
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) and v for v in value):
        raise InvalidWindow(f"{key} must be a list of names: {value!r}")
    return tuple(value)


class SymbolFailure(TypedDict):
    """A symbol whose fetch failed in an ingest run."""

    symbol: str
    interval: str
    start: str
    end: str
    error: str


class SessionNote(TypedDict):
    """A session of one intraday symbol the minute backfill fetched but got no storable bar for."""

    symbol: str
    day: str
    reason: str


class MinuteBackfill(TypedDict):
    """Progress of the minute ingest's backfill (``KRX_INGEST_MINUTE_SESSIONS``), counted in
    symbol-sessions: one intraday symbol on one session (futures: the continuous symbol, fetched through
    that session's front contract)."""

    requested: int
    """Past sessions asked for; the current session comes on top."""
    first: str
    """Oldest session covered (ISO date), after the retention clamp."""
    last: str
    """The current session (ISO date)."""
    fetched: int
    """Symbol-sessions fetched from the broker: missing or stored in part."""
    partial: int
    """Of ``fetched``: symbol-sessions that were stored in part (an earlier run before the close, or
    rows lost) and are now completed."""
    skipped: int
    """Symbol-sessions already stored up to the session's close: not fetched again."""
    empty: list[SessionNote]
    """Fetched symbol-sessions that stored no bar, with the reason."""
    clamped: list[str]
    """Why a symbol covers fewer sessions than asked (the broker's minute-bar retention)."""


class IngestSummary(TypedDict):
    """What one ingest task did (its XCom): totals, failures, warnings and the window it stored."""

    session: bool
    """False: the day is not a KRX session and nothing was fetched."""
    day: str
    fetched: int
    inserted: int
    updated: int
    unchanged: int
    quarantined: int
    symbols: list[str]
    intervals: list[str]
    failed: list[SymbolFailure]
    empty: list[str]
    """``symbol interval`` pairs the broker returned no bar for on the session."""
    warnings: list[str]
    window: BarsWindowExtra | None
    """What to validate; None when no bar landed (then no ``bars`` event is emitted)."""
    backfill: NotRequired[MinuteBackfill]
    """Minute ingests only: which past sessions were fetched, skipped or empty."""


class WindowReport(TypedDict):
    """Validation of one interval's window (an item of :class:`ValidationSummary`)."""

    interval: str
    start: str
    end: str
    rows_in: int
    """Bars of the window checked (look-back rows before ``start`` are not counted)."""
    good: int
    quarantined: int
    failure_rate: float
    failed_expectations: list[str]
    missing_sessions: dict[str, list[str]]
    data_docs: str | None
    passed: bool
    features_written: int
    feature_set: str | None


class SkippedEvent(TypedDict):
    """A triggering asset event that was not validated, and why."""

    extra: str
    reason: str


class ValidationSummary(TypedDict):
    """What one ``validate_and_featurize`` run did (its XCom)."""

    windows: list[WindowReport]
    skipped: list[SkippedEvent]
