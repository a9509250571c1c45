"""Read CSV text fields as the store's values: timestamps only in unambiguous formats, numbers with or
without thousands separators.

Accepted timestamps without ``date_format``: year first, ``YYYY-MM-DD``, ``YYYY/MM/DD`` or ``YYYY.MM.DD``,
optionally followed by ``T`` or a space and ``HH:MM[:SS[.fraction]]`` and an offset (``Z``, ``+09:00``,
``+0900``), and the KIS form ``YYYYMMDD``. Day-month forms such as ``09-01-2024`` or ``05.01.2024`` are
refused for the whole file (they read differently in different countries) unless ``date_format`` says
how to read them; any other unreadable value is left unparsed (NaT) for the store to quarantine.
"""

from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pandas as pd

from pipeline.market import TZ_NAME
from pipeline.store.times import CLOCK, UTC_OFFSET

_CLOCK = rf"(?:{CLOCK})"
_OFFSET = UTC_OFFSET
#: The common case, parsed in C: ISO 8601 with a 2-digit month and day, naive or with an offset.
_ISO_NAIVE = rf"\d{{4}}-\d{{2}}-\d{{2}}{_CLOCK}?"
_ISO_AWARE = rf"\d{{4}}-\d{{2}}-\d{{2}}{_CLOCK}{_OFFSET}"
_COMPACT = r"\d{8}"
#: The rest of the year-first family (``2024/1/2``, ``2024.01.02 09:00``), parsed value by value.
_YEAR_FIRST = re.compile(
    rf"(?P<y>\d{{4}})(?P<sep>[-/.])(?P<m>\d{{1,2}})(?P=sep)(?P<d>\d{{1,2}})"
    rf"(?:(?P<clock>{_CLOCK})\s*(?P<off>{_OFFSET})?)?"
)
_DAY_MONTH = r"\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}(?:$|[T ])"
_GROUPED = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
ACCEPTED = "YYYY-MM-DD[ HH:MM[:SS]][+09:00], YYYY/MM/DD, YYYY.MM.DD or YYYYMMDD"


class AmbiguousDateError(ValueError):
    """A date whose day and month order cannot be known without being told (``date_format``)."""


def check_date_format(date_format: str) -> str:
    """Return ``date_format`` if it names a year, a month and a day and reads back what it writes."""
    missing = [
        part
        for part, codes in (("year", ("%Y", "%y")), ("month", ("%m", "%b", "%B")), ("day", ("%d",)))
        if not any(code in date_format for code in codes)
    ]
    sample = dt.datetime(2024, 1, 23, 9, 30, 15, tzinfo=dt.UTC)
    try:
        read = dt.datetime.strptime(sample.strftime(date_format), date_format)
    except ValueError as exc:
        raise ValueError(f"date format {date_format!r} cannot be read back: {exc}") from exc
    if missing or read.date() != sample.date():
        raise ValueError(f"date format {date_format!r} must give year, month and day, e.g. %d.%m.%Y")
    return date_format


def check_time_zone(tz: str) -> str:
    """Return ``tz`` if it is an IANA zone name (``pipeline.market.TZ_NAME``, ``UTC``, ...)."""
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {tz!r}: use an IANA name such as {TZ_NAME} or UTC") from exc
    return tz


def parse_timestamps(
    values: pd.Series, tz: str = TZ_NAME, *, date_format: str | None = None, session: bool = False
) -> pd.Series:
    """Timestamps as tz-aware UTC; values without an offset are read in ``tz``. Unreadable values are NaT.

    ``session``: the bars are daily (or weekly), so each is stamped at 00:00 KST of its KST date, whatever
    time of day the file gives. Without ``date_format`` a day-month date raises
    :class:`AmbiguousDateError` naming the first such value's index (the line number in a CSV chunk)."""
    text = values.astype("string").str.strip()
    parsed = _parse_accepted(text, tz) if date_format is None else _parse_with_format(text, tz, date_format)
    if session:
        parsed = parsed.dt.tz_convert(TZ_NAME).dt.normalize().dt.tz_convert("UTC")
    return parsed


def _parse_accepted(text: pd.Series, tz: str) -> pd.Series:
    _refuse_day_month(text)
    out = pd.Series(pd.NaT, index=text.index, dtype="datetime64[us, UTC]")
    compact = _fullmatch(text, _COMPACT)
    if compact.any():
        text = text.where(~compact, text.str[:4] + "-" + text.str[4:6] + "-" + text.str[6:8])
    naive, aware = _fullmatch(text, _ISO_NAIVE), _fullmatch(text, _ISO_AWARE)
    if naive.any():
        out[naive] = _localize(pd.to_datetime(text[naive], format="ISO8601", errors="coerce"), tz)
    if aware.any():
        out[aware] = pd.to_datetime(text[aware], format="ISO8601", errors="coerce", utc=True)
    rest = ~(naive | aware) & text.notna()
    if rest.any():
        out[rest] = pd.to_datetime(text[rest].map(lambda value: _year_first(value, tz)), utc=True)
    return out


def _fullmatch(text: pd.Series, pattern: str) -> pd.Series:
    return text.str.fullmatch(pattern).fillna(False).astype(bool)


def _year_first(value: str, tz: str) -> pd.Timestamp:
    """One ``YYYY/M/D[ HH:MM[:SS]][offset]`` value (``-``, ``/`` or ``.`` between the date parts) in UTC,
    read in ``tz`` when it has no offset; NaT when it is no such value or no such day."""
    found = _YEAR_FIRST.fullmatch(value.strip())
    if found is None:
        return pd.NaT
    clock = (found["clock"] or "").replace(" ", "T")
    try:
        ts = pd.Timestamp(
            f"{found['y']}-{int(found['m']):02d}-{int(found['d']):02d}{clock}{found['off'] or ''}"
        )
    except ValueError:
        return pd.NaT
    if ts.tzinfo is None:
        ts = ts.tz_localize(tz, ambiguous="NaT", nonexistent="NaT")
    return ts.tz_convert("UTC")


def _refuse_day_month(text: pd.Series) -> None:
    suspect = text.str.match(_DAY_MONTH).fillna(False).astype(bool)
    if suspect.any():
        where, value = suspect.idxmax(), text[suspect.idxmax()]
        raise AmbiguousDateError(
            f"line {where}: date {value!r} is ambiguous (day-month or month-day?); accepted: {ACCEPTED}, "
            "or give the file's format with --date-format, e.g. --date-format '%d.%m.%Y'"
        )


def _localize(local: pd.Series, tz: str) -> pd.Series:
    return local.dt.tz_localize(tz, ambiguous="NaT", nonexistent="NaT").dt.tz_convert("UTC")


def _parse_with_format(text: pd.Series, tz: str, date_format: str) -> pd.Series:
    if "%z" in date_format or "%Z" in date_format:
        return pd.to_datetime(text, format=date_format, errors="coerce", utc=True)
    return _localize(pd.to_datetime(text, format=date_format, errors="coerce"), tz)


def parse_numbers(values: pd.Series) -> pd.Series:
    """Numbers as float64 (NaN when unreadable); ``"75,900"`` and ``"1,234,567.5"`` are read with their
    thousands separators. A comma anywhere else (``"7,59,00"``, a decimal comma ``"1,5"``) is unreadable."""
    raw = values.to_numpy(dtype=object)
    try:
        numbers = pd.Series(raw.astype("float64"), index=values.index)  # the common, all-clean case
    except (TypeError, ValueError):
        numbers = pd.Series(pd.to_numeric(raw, errors="coerce"), index=values.index).astype("float64")
    retry = numbers.isna() & values.notna()
    if retry.any():
        numbers[retry] = values[retry].map(_grouped_number)
    return numbers


def _grouped_number(value: object) -> float:
    text = str(value).strip()
    if _GROUPED.fullmatch(text):
        text = text.replace(",", "")
    try:
        return float(text)
    except ValueError:
        return float("nan")
