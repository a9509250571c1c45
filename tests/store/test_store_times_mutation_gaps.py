"""The store's timestamp rules: which texts carry a UTC offset, and reading bounds as UTC (mutation gaps)."""

from __future__ import annotations

import datetime as dt
import re

import pandas as pd
import pytest

from pipeline.store.times import CLOCK, UTC_OFFSET, has_tz_suffix, to_utc


@pytest.mark.parametrize(
    "text",
    [
        "2024-01-02T09:00Z",
        "2024-01-02 09:00:00+09:00",
        "2024-01-02T09:00+0900",
        "2024-01-02T09:00:00.123456-05:00",
        "2024-01-02T09:00 Z",
        "  2024-01-02T09:00:00Z  ",
    ],
)
def test_a_clock_time_followed_by_an_offset_has_a_tz_suffix(text: str) -> None:
    assert has_tz_suffix(text)


@pytest.mark.parametrize(
    "text",
    [
        "2024-01-02",
        "09-01-2024",  # the -2024 of a bare date is not an offset
        "2024-01-02T09:00",
        "2024-01-02T09:00:00",
        "2024-01-02T09:00Zx",
        "2024-01-02T09:00+9:00",
        "2024-01-02T09:00:+09:00",
        "",
    ],
)
def test_text_without_an_offset_after_a_clock_time_has_none(text: str) -> None:
    assert not has_tz_suffix(text)


@pytest.mark.parametrize("text", ["T09:00", " 09:00", "T09:00:00", " 09:00:00.123456", "T09:00:00.1"])
def test_the_clock_pattern_takes_a_separator_and_hours_minutes_and_optional_seconds(text: str) -> None:
    assert re.fullmatch(CLOCK, text)


@pytest.mark.parametrize("text", ["09:00", "T9:00", "T09:00:", "T09:00:00.", "T09:00:0", "X09:00", "T09-00"])
def test_the_clock_pattern_refuses_what_is_not_a_clock_time(text: str) -> None:
    assert not re.fullmatch(CLOCK, text)


@pytest.mark.parametrize("text", ["Z", "+09:00", "+0900", "-05:00", "-0500"])
def test_the_offset_pattern_takes_z_and_signed_hours_minutes(text: str) -> None:
    assert re.fullmatch(UTC_OFFSET, text)


@pytest.mark.parametrize("text", ["z", "+9:00", "09:00", "+09:0", "*09:00", "UTC"])
def test_the_offset_pattern_refuses_the_rest(text: str) -> None:
    assert not re.fullmatch(UTC_OFFSET, text)


def test_a_naive_bound_is_read_as_utc_and_an_aware_one_is_converted() -> None:
    utc = dt.datetime(2024, 1, 2, 0, 0, tzinfo=dt.UTC)
    for value in (
        "2024-01-02 00:00",
        dt.datetime(2024, 1, 2),
        pd.Timestamp("2024-01-02 09:00", tz="Asia/Seoul"),
        "2024-01-02T09:00+09:00",
        dt.datetime(2024, 1, 1, 19, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
    ):
        got = to_utc(value)
        assert got == utc and got.utcoffset() == dt.timedelta(0), value
        assert type(got) is not str and isinstance(got, dt.datetime)
