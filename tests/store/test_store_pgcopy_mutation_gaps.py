"""The binary COPY stream of the bars stage: PostgreSQL reads it back exactly, in blocks (mutation gaps)."""

from __future__ import annotations

import datetime as dt
import struct
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pipeline.store.pgcopy import SIGNATURE, STAGE_LAYOUT, TRAILER, encode_rows, timestamps_to_pg
from tests.conftest import PG_BASE_URL

ROW_BYTES = 2 + 10 * 4 + 4 + 4 + 8 + 4 * 8 + 8 + 8 + 4  # field count, lengths, values


def _columns(n: int) -> dict[str, np.ndarray]:
    i = np.arange(n)
    return {
        "sym": (i % 3 + 1).astype(np.int32),
        "iv": np.full(n, 2, dtype=np.int32),
        "ts": (i * 86_400_000_000 - 1).astype(np.int64),
        "open": 100.25 + i,
        "high": 101.5 + i,
        "low": 99.125 + i,
        "close": 100.75 + i,
        "volume": (i + 1) * 3_000_000_000,  # beyond int32
        "turnover": 1.5e12 + i,
        "src": np.full(n, 7, dtype=np.int32),
    }


@pytest.fixture(scope="module")
def pg() -> Iterator[Engine]:
    engine = sa.create_engine(PG_BASE_URL)
    yield engine
    engine.dispose()


def _copy_back(engine: Engine, blocks: list[bytes]) -> list[tuple[object, ...]]:
    """COPY ``blocks`` into a temporary table shaped like ``_bars_stage`` and read the rows back."""
    raw = engine.raw_connection()
    try:
        conn = raw.driver_connection
        with conn.cursor() as cur:  # type: ignore[union-attr]
            cur.execute(
                "CREATE TEMP TABLE stage (sym int4, iv int4, ts timestamptz, open float8, high float8, "
                "low float8, close float8, volume int8, turnover float8, src int4)"
            )
            with cur.copy("COPY stage FROM STDIN (FORMAT BINARY)") as copy:
                for block in blocks:
                    copy.write(block)
            cur.execute("SELECT * FROM stage")
            rows = cur.fetchall()
        raw.rollback()
    finally:
        raw.close()
    return rows


def test_timestamps_become_microseconds_since_the_postgres_epoch() -> None:
    stamps = [
        "2000-01-01 00:00:00",
        "2000-01-01 00:00:00.000001",
        "1999-12-31 23:59:59",
        "2024-01-02 06:00:00.123456",
    ]
    utc = pd.Series(pd.to_datetime(stamps, format="ISO8601").tz_localize("UTC"))
    epoch = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
    expected = [(t.to_pydatetime() - epoch) // dt.timedelta(microseconds=1) for t in utc]
    assert expected[:3] == [0, 1, -1_000_000]
    got = timestamps_to_pg(utc)
    assert got.dtype == np.int64 and got.tolist() == expected
    seoul = utc.dt.tz_convert("Asia/Seoul")  # the same instants in another zone
    assert timestamps_to_pg(seoul).tolist() == expected
    coarse = utc.astype("datetime64[s, UTC]")  # another resolution: still microseconds
    assert timestamps_to_pg(coarse).tolist() == [0, 0, -1_000_000, (expected[3] // 1_000_000) * 1_000_000]


def test_the_stream_is_signature_rows_of_big_endian_fields_and_trailer() -> None:
    columns = _columns(2)
    chunks = list(encode_rows(STAGE_LAYOUT, columns))
    assert chunks[0] == SIGNATURE == b"PGCOPY\n\xff\r\n\x00" + bytes(8)
    assert chunks[-1] == TRAILER == b"\xff\xff"
    assert [len(c) for c in chunks] == [19, 2 * ROW_BYTES, 2]
    fmt = ">h" + "".join(
        f"i{code}" for code in ("i", "i", "q", "d", "d", "d", "d", "q", "d", "i")
    )  # per field: int32 length, then the value
    first = struct.unpack_from(fmt, chunks[1])
    assert first == (
        10,
        *(4, 1),
        *(4, 2),
        *(8, -1),
        *(8, 100.25),
        *(8, 101.5),
        *(8, 99.125),
        *(8, 100.75),
        *(8, 3_000_000_000),
        *(8, 1.5e12),
        *(4, 7),
    )
    assert struct.unpack_from(fmt, chunks[1], ROW_BYTES)[:7] == (10, 4, 2, 4, 2, 8, 86_399_999_999)


def test_rows_come_in_blocks_of_the_size_asked_for_and_nothing_is_lost() -> None:
    columns = _columns(5)
    chunks = list(encode_rows(STAGE_LAYOUT, columns, rows_per_block=2))
    assert [len(c) for c in chunks] == [19, 2 * ROW_BYTES, 2 * ROW_BYTES, ROW_BYTES, 2]
    assert b"".join(chunks) == b"".join(encode_rows(STAGE_LAYOUT, columns))
    assert [len(c) for c in encode_rows(STAGE_LAYOUT, _columns(0))] == [19, 2]


def test_the_default_block_holds_a_hundred_thousand_rows() -> None:
    n = 100_001
    columns = {"sym": np.arange(n, dtype=np.int32)}
    chunks = list(encode_rows([("sym", ">i4")], columns))
    assert [len(c) for c in chunks] == [19, 100_000 * 10, 10, 2]  # int16 count, int32 length, int32 value
    assert chunks[2] == struct.pack(">hii", 1, 4, 100_000)


@pytest.mark.postgres
def test_postgres_reads_the_stream_back_exactly(pg: Engine) -> None:
    columns = _columns(5)
    rows = _copy_back(pg, list(encode_rows(STAGE_LAYOUT, columns, rows_per_block=2)))
    epoch = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
    assert len(rows) == 5
    for i, row in enumerate(rows):
        expected = [columns[name][i].item() for name, _ in STAGE_LAYOUT]
        expected[2] = epoch + dt.timedelta(microseconds=expected[2])
        assert list(row) == expected


@pytest.mark.postgres
def test_a_timestamp_survives_the_round_trip_through_postgres(pg: Engine) -> None:
    when = pd.Series(
        pd.to_datetime(["2024-06-10 15:30:00.250001", "1999-06-01 00:00:00.000000"]).tz_localize("Asia/Seoul")
    )
    columns = _columns(2) | {"ts": timestamps_to_pg(when)}
    rows = _copy_back(pg, list(encode_rows(STAGE_LAYOUT, columns)))
    assert [row[2] for row in rows] == [t.to_pydatetime() for t in when]
