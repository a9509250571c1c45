"""Timestamp rules of the store, defined once for the layers above it (validation, features, data)."""

from __future__ import annotations

import datetime as dt
import re

import pandas as pd

#: The clock time after a date: ``T09:00``, `` 09:00:00``, ``T09:00:00.123456``.
CLOCK = r"[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?"
#: A UTC offset: ``Z``, ``+09:00``, ``+0900``.
UTC_OFFSET = r"(?:Z|[+-]\d{2}:?\d{2})"
#: A UTC offset closing a timestamp that has a clock time: ``…09:00Z``, ``…09:00:00+09:00``, ``…+0900``.
#: A bare date never carries one, so the ``-2024`` of ``09-01-2024`` is not read as an offset.
TZ_SUFFIX = re.compile(rf"\d{{2}}:\d{{2}}(?::\d{{2}}(?:\.\d+)?)?\s*{UTC_OFFSET}$")


def has_tz_suffix(text: str) -> bool:
    """True when ``text`` ends in a UTC offset (see :data:`TZ_SUFFIX`)."""
    return TZ_SUFFIX.search(text.strip()) is not None


def to_utc(value: dt.datetime | pd.Timestamp | str) -> dt.datetime:
    """``value`` as a tz-aware UTC datetime; a naive value is read as UTC (range bounds of reads)."""
    ts = pd.Timestamp(value)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.to_pydatetime()
