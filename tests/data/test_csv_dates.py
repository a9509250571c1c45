"""CSV import reads only unambiguous dates, or the format it is told, and stamps daily bars at their
session (00:00 KST of the session date)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from pipeline.data.csv_import import import_csv_files
from pipeline.market import TZ_NAME
from pipeline.store import read_bars
from tests.factories import count_bars

HEADER = "date,open,high,low,close,volume\n"


def _import(
    store: Engine, tmp_path: Path, dates: list[str], **kwargs: object
) -> tuple[str | None, list[str]]:
    path = tmp_path / "005930.csv"
    path.write_text(HEADER + "".join(f"{d},100,110,90,105,1000\n" for d in dates))
    f = import_csv_files([path], engine=store, **kwargs).files[0]  # type: ignore[arg-type]
    bars = read_bars("005930", kwargs.get("interval", "1d"), engine=store)  # type: ignore[arg-type]
    return f.error, list(bars["ts"].dt.tz_convert(TZ_NAME).dt.strftime("%Y-%m-%d %H:%M"))


@pytest.mark.parametrize("ambiguous", ["09-01-2024", "05.01.2024", "01/02/24", "2/1/2024"])
def test_day_month_dates_are_refused_with_the_line_and_a_hint(
    store: Engine, tmp_path: Path, ambiguous: str
) -> None:
    error, stored = _import(store, tmp_path, ["2024-01-02", "2024-01-03", ambiguous])
    assert error is not None
    assert f"line 4: date {ambiguous!r} is ambiguous" in error and "--date-format" in error
    assert stored == [] and count_bars(store) == 0  # the file is all-or-nothing


def test_an_explicit_date_format_reads_day_first_dates(store: Engine, tmp_path: Path) -> None:
    error, stored = _import(store, tmp_path, ["05.01.2024", "08.01.2024"], date_format="%d.%m.%Y")
    assert error is None
    assert stored == ["2024-01-05 00:00", "2024-01-08 00:00"]


def test_a_value_not_matching_the_explicit_format_is_quarantined(store: Engine, tmp_path: Path) -> None:
    path = tmp_path / "005930.csv"
    path.write_text(HEADER + "05.01.2024,100,110,90,105,1000\n2024-01-08,100,110,90,105,1000\n")
    f = import_csv_files([path], engine=store, date_format="%d.%m.%Y").files[0]
    assert (f.error, f.inserted, f.rejected) == (None, 1, 1)
    assert f.problems == ["line 3: ts is missing or unparsable"]


@pytest.mark.parametrize(
    "written",
    [
        "2024-01-02",
        "20240102",
        "2024/01/02",
        "2024.01.02",
        "2024-01-02 15:30",
        "2024-01-02T09:00:00+09:00",
        "2024-01-01T15:00:00Z",
        "2024-01-02T00:00:00+00:00",
    ],
)
def test_a_daily_bar_is_stamped_at_its_session_whatever_the_time_of_day(
    store: Engine, tmp_path: Path, written: str
) -> None:
    error, stored = _import(store, tmp_path, [written])
    assert (error, stored) == (None, ["2024-01-02 00:00"])


def test_one_session_never_gets_two_daily_bars(store: Engine, tmp_path: Path) -> None:
    path = tmp_path / "005930.csv"
    path.write_text(HEADER + "2024-01-02,100,110,90,105,1000\n2024-01-02 15:30,100,110,90,106,1000\n")
    f = import_csv_files([path], engine=store).files[0]
    assert (f.inserted, f.rejected) == (0, 2)
    assert all("duplicate" in p for p in f.problems)


def test_minute_bars_keep_their_time_and_naive_times_are_read_in_the_given_zone(
    store: Engine, tmp_path: Path
) -> None:
    error, stored = _import(store, tmp_path, ["2024-03-04 09:01", "2024-03-04T09:02:00+09:00"], interval="1m")
    assert (error, stored) == (None, ["2024-03-04 09:01", "2024-03-04 09:02"])
    error, utc = _import(store, tmp_path, ["2024-03-04 00:03"], interval="1m", tz="UTC")
    assert (error, utc[-1]) == (None, "2024-03-04 09:03")


def test_an_invalid_date_format_is_refused_up_front(store: Engine, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="date format"):
        _import(store, tmp_path, ["2024-01-02"], date_format="%d")
