"""CSV import, line by line: malformed lines are quarantined with their line number, a file is written
all-or-nothing, and reruns or long names change nothing on either backend."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pipeline.data.csv_import import import_csv_files
from pipeline.market import TZ_NAME
from pipeline.store import read_bars
from tests.factories import count_bars
from tests.store.faults import BOOM, install_failing_trigger

HEADER = "date,open,high,low,close,volume\n"
GOOD = [f"2024-01-{d:02d},100,110,90,105,1000\n" for d in range(2, 12)]  # 10 lines: 2..11


def _quarantine(engine: Engine) -> list[tuple[str, dict[str, object]]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT reason, raw FROM bars_quarantine ORDER BY id")).all()
    return [(reason, raw if isinstance(raw, dict) else json.loads(raw)) for reason, raw in rows]


def _write(tmp_path: Path, name: str, body: bytes | str) -> Path:
    path = tmp_path / name
    path.write_bytes(body if isinstance(body, bytes) else body.encode())
    return path


def test_a_non_utf8_byte_quarantines_only_its_line_and_names_the_line(store: Engine, tmp_path: Path) -> None:
    lines = [HEADER.encode(), *(line.encode() for line in GOOD)]
    lines[7] = b"2024-01-08,100,110,90,105,1000\xff\n"  # line 8 of the file
    path = _write(tmp_path, "005930.csv", b"".join(lines))
    f = import_csv_files([path], engine=store, chunk_rows=3).files[0]
    assert (f.error, f.rows, f.inserted, f.rejected) == (None, 10, 9, 1)
    assert f.problems == ["line 8: not valid utf-8: byte 0xff in field 6"]
    [(reason, raw)] = _quarantine(store)
    assert reason == "not valid utf-8: byte 0xff in field 6"
    assert (raw["_line"], raw["_fields"]) == (8, ["2024-01-08", "100", "110", "90", "105", "1000\\xff"])
    days = read_bars("005930", engine=store)["ts"].dt.tz_convert(TZ_NAME).dt.day
    assert list(days) == [2, 3, 4, 5, 6, 7, 9, 10, 11]  # the good lines after the bad one landed too


def test_a_line_with_the_wrong_number_of_fields_is_quarantined_not_fatal(
    store: Engine, tmp_path: Path
) -> None:
    body = HEADER + "".join(GOOD[:5]) + "2024-01-07,100,110,90,105,1000,7,8\n" + "".join(GOOD[6:])
    path = _write(tmp_path, "005930.csv", body)
    f = import_csv_files([path], engine=store, chunk_rows=4).files[0]
    assert (f.error, f.rows, f.inserted, f.rejected) == (None, 10, 9, 1)
    assert f.problems == ["line 7: expected 6 fields, found 8"]
    [(reason, raw)] = _quarantine(store)
    assert (reason, raw["_line"]) == ("expected 6 fields, found 8", 7)
    assert raw["_fields"] == ["2024-01-07", "100", "110", "90", "105", "1000", "7", "8"]


def test_quarantined_rows_carry_their_line_number(store: Engine, tmp_path: Path) -> None:
    body = HEADER + "".join(GOOD[:3]) + "2024-01-05,100,90,90,105,1000\n" + "".join(GOOD[4:])
    f = import_csv_files([_write(tmp_path, "005930.csv", body)], engine=store, chunk_rows=2).files[0]
    assert f.problems == ["line 5: high < max(open, close)"]
    [(reason, raw)] = _quarantine(store)
    assert (reason, raw["_line"], raw["high"]) == ("high < max(open, close)", 5, "90")


def test_a_database_failure_late_in_a_file_writes_nothing_of_that_file(store: Engine, tmp_path: Path) -> None:
    install_failing_trigger(store)
    rows = [f"005930,{line}" for line in GOOD] + ["005930,2024-01-12,1,1,-1,1,1\n", f"{BOOM},{GOOD[0]}"]
    failing = _write(tmp_path, "late.csv", "symbol," + HEADER + "".join(rows))
    fine = _write(tmp_path, "000660.csv", HEADER + "".join(GOOD))
    summary = import_csv_files([failing, fine], engine=store, chunk_rows=4)
    bad, good = summary.files
    assert bad.error is not None and "simulated crash" in bad.error
    assert "nothing from this file was written" in bad.error
    assert (bad.inserted, bad.rejected) == (0, 0)
    assert set(read_bars(engine=store)["symbol"]) == {"000660"}  # the first 2 chunks were rolled back
    assert _quarantine(store) == []  # and so was the quarantined row of chunk 3
    assert (good.error, good.inserted) == (None, 10)


def test_reimporting_a_file_with_a_bad_row_keeps_one_quarantined_copy(store: Engine, tmp_path: Path) -> None:
    path = _write(tmp_path, "005930.csv", HEADER + "".join(GOOD) + "2024-01-12,1,1,1,-1,1\n")
    for _ in range(3):
        f = import_csv_files([path], engine=store).files[0]
        assert (f.rows, f.rejected) == (11, 1)
    assert len(_quarantine(store)) == 1
    assert count_bars(store) == 10


def test_thousands_separators_are_read_as_numbers(store: Engine, tmp_path: Path) -> None:
    body = (
        HEADER + '2024-01-02,"75,900","76,500","75,100","76,000","1,234,567"\n2024-01-03,"7,59,00",1,1,1,1\n'
    )
    f = import_csv_files([_write(tmp_path, "005930.csv", body)], engine=store).files[0]
    assert (f.inserted, f.rejected) == (1, 1)  # "7,59,00" is not a grouped number: quarantined
    bar = read_bars("005930", engine=store).iloc[0]
    assert (bar["open"], bar["high"], bar["low"], bar["close"], bar["volume"]) == (
        75900,
        76500,
        75100,
        76000,
        1234567,
    )


def test_a_symbol_longer_than_the_rule_is_quarantined_alike_on_both_backends(
    store: Engine, tmp_path: Path
) -> None:
    long = "X" * 40
    body = "symbol," + HEADER + f"{long},{GOOD[0]}" + f"005930,{GOOD[1]}"
    f = import_csv_files([_write(tmp_path, "mixed.csv", body)], engine=store).files[0]
    assert (f.error, f.inserted, f.rejected) == (None, 1, 1)
    [(reason, raw)] = _quarantine(store)
    assert "invalid symbol" in reason and raw["symbol"] == long


def test_a_long_file_name_imports_on_both_backends(store: Engine, tmp_path: Path) -> None:
    path = _write(tmp_path, "d" * 200 + ".csv", HEADER + "".join(GOOD) + "2024-01-12,1,1,1,-1,1\n")
    f = import_csv_files([path], symbol="005930", engine=store).files[0]
    assert (f.error, f.inserted, f.rejected) == (None, 10, 1)


def test_a_file_name_too_long_to_label_its_rows_fails_that_file_alike_on_both_backends(
    store: Engine, tmp_path: Path
) -> None:
    path = _write(tmp_path, "d" * 251 + ".csv", HEADER + "".join(GOOD))  # 255 bytes: the most Linux allows
    f = import_csv_files([path], symbol="005930", engine=store).files[0]
    assert f.error is not None and "the file name is too long to label its rows" in f.error
    assert "at most 255 fit bars_quarantine.source" in f.error
    assert count_bars(store) == 0


def test_a_file_name_that_is_no_symbol_fails_that_file_with_a_hint(store: Engine, tmp_path: Path) -> None:
    path = _write(tmp_path, "samsung electronics daily.csv", HEADER + "".join(GOOD))
    f = import_csv_files([path], engine=store).files[0]
    assert f.error is not None and "--symbol" in f.error and "samsung electronics daily" in f.error
    assert count_bars(store) == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"interval": "1minute"}, "unknown interval '1minute'"),
        ({"source": "s" * 40}, "source label"),
        ({"symbol": "S" * 40}, "invalid symbol"),
    ],
)
def test_options_outside_the_rules_are_refused_before_anything_is_read(
    store: Engine, tmp_path: Path, kwargs: dict[str, str], message: str
) -> None:
    path = _write(tmp_path, "005930.csv", HEADER + "".join(GOOD))
    with pytest.raises(ValueError, match=message):
        import_csv_files([path], engine=store, **kwargs)  # type: ignore[arg-type]
    assert count_bars(store) == 0


def test_a_bar_repeated_far_apart_in_a_big_file_is_caught_too(store: Engine, tmp_path: Path) -> None:
    body = HEADER + "".join(GOOD) + "2024-01-03,100,110,90,106,1000\n"  # line 12 repeats line 3
    f = import_csv_files([_write(tmp_path, "005930.csv", body)], engine=store, chunk_rows=3).files[0]
    assert (f.rows, f.inserted, f.rejected) == (11, 10, 1)
    assert f.problems == [
        "line 12: duplicate (symbol, interval, ts) in file: an earlier line has the same bar"
    ]
    assert read_bars("005930", engine=store)["close"].iloc[1] == 105  # the first one stays


def test_a_file_in_another_encoding_is_read_with_encoding_and_refused_without(
    store: Engine, tmp_path: Path
) -> None:
    body = "종목명,date,open,high,low,close,volume\n" + "".join(f"삼성전자,{line}" for line in GOOD)
    path = _write(tmp_path, "005930.csv", body.encode("cp949"))
    refused = import_csv_files([path], engine=store).files[0]
    assert refused.error is not None and "line 1 (header) is not valid utf-8" in refused.error
    f = import_csv_files([path], engine=store, encoding="cp949").files[0]
    assert (f.error, f.inserted, f.rejected) == (None, 10, 0)


def test_a_quoted_field_running_over_lines_is_reported_with_its_span(store: Engine, tmp_path: Path) -> None:
    body = HEADER + GOOD[0] + '2024-01-03,"100\n110",90,105,1000\n' + "".join(GOOD[2:])
    f = import_csv_files([_write(tmp_path, "005930.csv", body)], engine=store).files[0]
    assert (f.inserted, f.rejected) == (9, 1)
    assert f.problems == ["line 3-4: expected 6 fields, found 5"]


def _import_in_process(url: str, path: str, barrier: object) -> None:
    from pipeline.store.db import create_store_engine

    engine = create_store_engine(url)
    barrier.wait()  # type: ignore[attr-defined]
    summary = import_csv_files([Path(path)], engine=engine, chunk_rows=3)
    engine.dispose()
    assert not summary.failed_files, summary.failed_files[0].error


@pytest.mark.integration
def test_two_processes_importing_the_same_file_store_and_quarantine_it_once(
    store_url: str, tmp_path: Path
) -> None:
    import multiprocessing as mp

    from pipeline.store.db import create_store_engine

    rows = [f"{s},{line}" for line in GOOD for s in ("005930", "000660")] + ["000660,2024-01-12,1,1,1,-1,1\n"]
    path = _write(tmp_path, "two.csv", "symbol," + HEADER + "".join(rows))
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_import_in_process, args=(store_url, str(path), barrier)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    engine = create_store_engine(store_url)
    assert (count_bars(engine), len(_quarantine(engine))) == (20, 1)
    engine.dispose()
