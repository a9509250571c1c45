"""CSV import: good rows land, bad rows are quarantined with reasons, re-imports change nothing."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pipeline.data.csv_import import import_csv_files
from pipeline.store import read_bars
from tests.factories import count_bars

CSV = """Date,Open,High,Low,Close,Volume,Adj Close
2024-01-02,78200,79800,78200,79600,17142847,79600
2024-01-03,78500,78800,77000,77000,21753644,77000
2024-01-04,76100,77300,76100,76600,15324439,76600
2024-01-05,76700,77100,76400,76600,11304316,76600
20240108,76700,77500,76400,76500,11088724,76500
2024-01-09,77400,77700,74300,74700,0,74700
2024-01-10,75000,,74300,74700,100,74700
2024-01-11,abc,75000,74000,74500,100,74500
not-a-date,75000,75100,74000,74500,100,74500
2024-01-12,75000,74000,74000,74500,100,74500
2024-01-15,0,75000,74000,74500,100,74500
2024-01-16,75000,75500,74000,74500,-3,74500
2024-01-16,75000,75500,74000,74600,10,74600
"""


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_import_stores_good_rows_and_quarantines_each_bad_one(store: Engine, tmp_path: Path) -> None:
    path = _write(tmp_path, "005930.csv", CSV)
    summary = import_csv_files([path], engine=store)
    f = summary.files[0]
    assert (f.rows, f.inserted, f.rejected, f.error) == (13, 6, 7, None)
    assert f.rows == f.inserted + f.updated + f.unchanged + f.rejected  # nothing lost
    bars = read_bars("005930", engine=store)
    assert len(bars) == 6
    # naive dates are KST midnight; the compact KIS form 20240108 is understood too
    assert str(bars["ts"].iloc[4]) == "2024-01-07 15:00:00+00:00"
    with store.connect() as conn:
        reasons = dict(conn.execute(sa.text("SELECT ts_raw, reason FROM bars_quarantine")).all())
    assert "high is not a finite number" in reasons["2024-01-10"]
    assert "open is not a finite number" in reasons["2024-01-11"]
    assert "ts is missing or unparsable" in reasons["not-a-date"]
    assert "high < max(open, close)" in reasons["2024-01-12"]
    assert "open is not positive" in reasons["2024-01-15"]
    assert "duplicate" in reasons["2024-01-16"]


def test_reimporting_the_same_file_changes_nothing(store: Engine, tmp_path: Path) -> None:
    path = _write(tmp_path, "000660.csv", CSV)
    import_csv_files([path], engine=store)
    again = import_csv_files([path], engine=store).files[0]
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 6)
    assert count_bars(store) == 6


def test_symbol_column_timezone_offsets_and_intervals(store: Engine, tmp_path: Path) -> None:
    text = (
        "symbol,timestamp,open,high,low,close,volume\n"
        "005930,2024-03-04T09:00:00+09:00,100,101,99,100,5\n"
        "000660,2024-03-04 09:01:00,200,201,199,200,6\n"
    )
    path = _write(tmp_path, "mixed.csv", text)
    summary = import_csv_files([path], interval="1m", engine=store)
    assert summary.total("inserted") == 2
    bars = read_bars(interval="1m", engine=store)
    assert list(bars["symbol"]) == ["000660", "005930"]
    assert list(bars["ts"].astype(str)) == ["2024-03-04 00:01:00+00:00", "2024-03-04 00:00:00+00:00"]


def test_a_file_missing_a_column_is_reported_and_others_still_load(store: Engine, tmp_path: Path) -> None:
    broken = _write(tmp_path, "broken.csv", "date,open,high,low\n2024-01-02,1,2,1\n")
    good = _write(tmp_path, "005930.csv", CSV)
    summary = import_csv_files([broken, good], engine=store)
    assert summary.failed_files[0].path == str(broken)
    assert "no column for close, volume" in (summary.failed_files[0].error or "")
    assert summary.total("inserted") == 6
