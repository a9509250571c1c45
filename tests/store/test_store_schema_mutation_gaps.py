"""Store timestamps are tz-aware UTC in Python on both backends; what autogenerate skips (mutation gaps)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from pipeline.store.db import create_store_engine
from pipeline.store.schema import UTCDateTime, _now, _ts, include_in_autogenerate, instruments

SEOUL = dt.timezone(dt.timedelta(hours=9))
SQLITE, POSTGRES = sqlite.dialect(), postgresql.dialect()


def test_an_aware_time_is_stored_as_utc_naive_on_sqlite_and_aware_on_postgres() -> None:
    kind = UTCDateTime()
    local = dt.datetime(2024, 1, 2, 9, 0, 0, 250, tzinfo=SEOUL)
    on_sqlite = kind.process_bind_param(local, SQLITE)
    assert on_sqlite == dt.datetime(2024, 1, 2, 0, 0, 0, 250) and on_sqlite.tzinfo is None
    on_postgres = kind.process_bind_param(local, POSTGRES)
    assert on_postgres == dt.datetime(2024, 1, 2, 0, 0, 0, 250, tzinfo=dt.UTC)
    assert on_postgres.utcoffset() == dt.timedelta(0) and on_postgres.tzinfo is dt.UTC
    assert kind.process_bind_param(None, SQLITE) is None and kind.process_bind_param(None, POSTGRES) is None


def test_naive_times_and_non_datetimes_are_refused_with_what_was_wrong() -> None:
    kind = UTCDateTime()
    with pytest.raises(ValueError) as naive:
        kind.process_bind_param(dt.datetime(2024, 1, 2, 9, 30), SQLITE)
    assert str(naive.value) == "naive datetime 2024-01-02 09:30:00: timestamps must be timezone-aware"
    with pytest.raises(TypeError) as text:
        kind.process_bind_param("2024-01-02T09:30:00+09:00", POSTGRES)
    assert str(text.value) == "expected a datetime, got str"
    with pytest.raises(TypeError) as day:
        kind.process_bind_param(dt.date(2024, 1, 2), SQLITE)
    assert str(day.value) == "expected a datetime, got date"


def test_times_read_back_are_utc_aware() -> None:
    kind = UTCDateTime()
    assert kind.process_result_value(None, SQLITE) is None
    naive = kind.process_result_value(dt.datetime(2024, 1, 2, 0, 30), SQLITE)
    assert naive == dt.datetime(2024, 1, 2, 0, 30, tzinfo=dt.UTC) and naive.tzinfo is dt.UTC
    aware = kind.process_result_value(dt.datetime(2024, 1, 2, 9, 30, tzinfo=SEOUL), POSTGRES)
    assert aware == dt.datetime(2024, 1, 2, 0, 30, tzinfo=dt.UTC) and aware.tzinfo is dt.UTC
    assert (aware.hour, aware.minute) == (0, 30)


def test_a_stored_time_comes_back_as_the_same_instant_in_utc(tmp_path: Path) -> None:
    table = sa.Table("t", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True), _ts("at"))
    engine = create_store_engine(f"sqlite:///{tmp_path / 't.db'}")
    local = dt.datetime(2024, 6, 10, 15, 30, 0, 1, tzinfo=SEOUL)
    try:
        table.create(engine)
        with engine.begin() as conn:
            conn.execute(sa.insert(table), [{"id": 1, "at": local}, {"id": 2, "at": None}])
        with engine.connect() as conn:
            stored = conn.exec_driver_sql("SELECT at FROM t ORDER BY id").scalars().all()
            back = conn.execute(sa.select(table.c.at).order_by(table.c.id)).scalars().all()
    finally:
        engine.dispose()
    assert stored == ["2024-06-10 06:30:00.000001", None]  # naive UTC text, which sorts as time does
    assert back == [local, None] and back[0].tzinfo is dt.UTC


def test_now_is_aware_utc() -> None:
    before = dt.datetime.now(dt.UTC)
    now = _now()
    assert now.tzinfo is dt.UTC and before <= now <= dt.datetime.now(dt.UTC)


def test_a_timestamp_column_has_its_name_the_utc_type_and_the_options_given() -> None:
    column = _ts("seen_at", nullable=False, default=_now)
    assert column.name == "seen_at" and isinstance(column.type, UTCDateTime)
    assert column.nullable is False and column.default is not None and column.default.arg.__name__ == "_now"
    assert _ts("maybe").nullable is True
    assert instruments.c.created_at.type.impl.timezone is True  # timestamptz on PostgreSQL


@pytest.mark.parametrize(
    ("type_", "reflected", "compare_to", "included"),
    [
        ("index", True, None, False),  # a time index only the migrations make (BRIN / B-tree)
        ("index", True, object(), True),  # an index the metadata declares too
        ("index", False, None, True),  # an index the metadata has and the database lacks
        ("table", True, None, True),  # a table the metadata lacks: autogenerate reports it
        ("column", True, None, True),
    ],
)
def test_autogenerate_ignores_only_indexes_that_exist_in_the_database_alone(
    type_: str, reflected: bool, compare_to: object, included: bool
) -> None:
    assert include_in_autogenerate(object(), "ix_bars_ts", type_, reflected, compare_to) is included
