"""Store engines: SQLite pragmas and folders, the engine cache, the writers' locks (mutation gaps)."""

from __future__ import annotations

import logging
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pipeline.config import get_settings
from pipeline.store.db import (
    BARS_WRITERS_LOCK,
    create_store_engine,
    dispose_engines,
    get_engine,
    hold_writers_lock,
    in_transaction,
    is_postgres,
    timescale_available,
    timescale_enabled,
    write_transaction,
)
from tests.conftest import PG_BASE_URL


@pytest.fixture(scope="module")
def pg_engine() -> Iterator[Engine]:
    """An engine on an empty PostgreSQL schema of this module's own (its lock keys are this schema's)."""
    schema = f"d_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_BASE_URL)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
        conn.exec_driver_sql(f"CREATE TABLE {schema}.t (x integer)")
    engine = create_store_engine(f"{PG_BASE_URL}?options=-csearch_path%3D{schema}")
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


@pytest.fixture
def echo_handlers(monkeypatch: pytest.MonkeyPatch) -> None:
    """An engine made with ``echo=True`` adds a stdout handler to SQLAlchemy's engine logger: undo it."""
    monkeypatch.setattr(logging.getLogger("sqlalchemy.engine.Engine"), "handlers", [])


def _sqlite(tmp_path: Path) -> tuple[Engine, Path]:
    path = tmp_path / "s.db"
    engine = create_store_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (x integer)")
    return engine, path


def _rows(engine: Engine) -> list[int]:
    with engine.connect() as conn:
        return list(conn.exec_driver_sql("SELECT x FROM t ORDER BY x").scalars())


def _sqlite_write_locked(path: Path) -> bool:
    """Whether another process's writer would have to wait (no busy timeout: it is told at once)."""
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        assert "locked" in str(exc)
        return True
    else:
        other.execute("ROLLBACK")
        return False
    finally:
        other.close()


def _pg_try(engine: Engine, function: str) -> bool:
    """Whether another session gets the bars writers' lock (``function``: the try-lock to call) now."""
    with engine.connect() as conn:
        got = conn.exec_driver_sql(f"SELECT {function}({BARS_WRITERS_LOCK})").scalar_one()
        conn.rollback()
    return bool(got)


# --- create_store_engine ---------------------------------------------------------------------------------


def test_every_sqlite_connection_gets_the_pragmas_and_missing_folders_are_created(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "market.db"
    engine = create_store_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            pragmas = {
                name: conn.exec_driver_sql(f"PRAGMA {name}").scalar_one()
                for name in ("journal_mode", "busy_timeout", "foreign_keys", "synchronous")
            }
    finally:
        engine.dispose()
    assert pragmas == {"journal_mode": "wal", "busy_timeout": 60_000, "foreign_keys": 1, "synchronous": 1}
    assert path.exists()
    assert engine.echo is False


def test_a_sqlite_store_in_an_existing_folder_and_in_memory_needs_no_folder(
    tmp_path: Path, echo_handlers: None
) -> None:
    for url in (f"sqlite:///{tmp_path / 'x.db'}", "sqlite://", "sqlite:///:memory:"):
        engine = create_store_engine(url, echo=True)
        try:
            with engine.connect() as conn:
                assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1, url
            assert engine.echo is True
        finally:
            engine.dispose()
    assert {p.name for p in tmp_path.iterdir()} - {"var"} == {"x.db"}  # nothing for the memory stores


def test_a_sqlite_uri_store_leaves_no_stray_folder_in_the_working_directory(tmp_path: Path) -> None:
    path = tmp_path / "u" / "uri.db"
    path.parent.mkdir()
    engine = create_store_engine(f"sqlite:///file:{path}?uri=true")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
    finally:
        engine.dispose()
    assert path.exists()
    assert {p.name for p in tmp_path.iterdir()} - {"var"} == {"u"}  # the cwd: no "file:" folder


def test_sqlite_foreign_keys_are_enforced(tmp_path: Path) -> None:
    engine = create_store_engine(f"sqlite:///{tmp_path / 'fk.db'}")
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE p (id integer PRIMARY KEY)")
            conn.exec_driver_sql("CREATE TABLE c (p_id integer REFERENCES p(id))")
        with pytest.raises(sa.exc.IntegrityError, match="FOREIGN KEY"), engine.begin() as conn:
            conn.exec_driver_sql("INSERT INTO c VALUES (1)")
    finally:
        engine.dispose()


def test_other_backends_are_refused_with_the_two_that_work_named() -> None:
    with pytest.raises(ValueError) as err:
        create_store_engine("mysql://u@localhost/krx")
    assert str(err.value) == "unsupported database backend 'mysql': use sqlite or postgresql"


@pytest.mark.postgres
def test_a_postgres_engine_replaces_a_connection_the_server_dropped(
    pg_engine: Engine, echo_handlers: None
) -> None:
    assert pg_engine.echo is False and create_store_engine(str(PG_BASE_URL), echo=True).echo is True
    with pg_engine.connect() as conn:
        pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
    admin = sa.create_engine(PG_BASE_URL)
    try:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"SELECT pg_terminate_backend({pid})")
    finally:
        admin.dispose()
    with pg_engine.connect() as conn:  # the pooled connection is dead: pre-ping gives a fresh one
        assert conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one() != pid


# --- get_engine / dispose_engines -------------------------------------------------------------------------


def test_the_default_engine_is_the_settings_store_and_is_shared(tmp_path: Path) -> None:
    engine = get_engine()
    assert engine.url.render_as_string() == get_settings().resolved_database_url
    assert engine.url.database == str((tmp_path / "var" / "market.db").resolve())
    assert get_engine() is engine and get_engine(get_settings().resolved_database_url) is engine
    with engine.connect() as conn:  # a store engine: the pragmas are there
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"


def test_each_url_gets_its_own_engine_until_the_engines_are_disposed(tmp_path: Path) -> None:
    first, second = f"sqlite:///{tmp_path / 'one.db'}", f"sqlite:///{tmp_path / 'two.db'}"
    one, two = get_engine(first), get_engine(second)
    assert one is not two and get_engine(first) is one and get_engine(second) is two
    pools = (one.pool, two.pool)
    dispose_engines()
    assert one.pool is not pools[0] and two.pool is not pools[1]  # disposed: the old pools are dropped
    assert get_engine(first) is not one and get_engine(second) is not two  # and forgotten


# --- is_postgres / timescale ------------------------------------------------------------------------------


class _FakePostgres:
    """A connection that says it is PostgreSQL and answers every query with ``row``."""

    dialect = SimpleNamespace(name="postgresql")

    def __init__(self, row: tuple[int] | None) -> None:
        self.row, self.sql = row, []

    def execute(self, clause: Any) -> Any:
        self.sql.append(str(clause))
        return SimpleNamespace(first=lambda: self.row)


def test_sqlite_has_no_timescale_and_is_not_postgres(tmp_path: Path) -> None:
    engine, _ = _sqlite(tmp_path)
    try:
        with engine.connect() as conn:
            assert (is_postgres(engine), is_postgres(conn)) == (False, False)
            assert (timescale_available(conn), timescale_enabled(conn)) == (False, False)
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_postgres_without_timescaledb_says_so(pg_engine: Engine) -> None:
    with pg_engine.connect() as conn:
        assert (is_postgres(pg_engine), is_postgres(conn)) == (True, True)
        assert (timescale_available(conn), timescale_enabled(conn)) == (False, False)


def test_timescale_is_available_when_the_server_lists_it_and_enabled_when_created() -> None:
    conn = _FakePostgres((1,))
    assert timescale_available(conn) is True  # type: ignore[arg-type]
    assert timescale_enabled(conn) is True  # type: ignore[arg-type]
    assert conn.sql == [
        "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'",
        "SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'",
    ]
    missing = _FakePostgres(None)
    assert (timescale_available(missing), timescale_enabled(missing)) == (False, False)  # type: ignore[arg-type]


# --- write_transaction / hold_writers_lock / in_transaction -----------------------------------------------


def test_a_sqlite_write_transaction_takes_the_write_lock_up_front_and_commits(tmp_path: Path) -> None:
    engine, path = _sqlite(tmp_path)
    try:
        assert not _sqlite_write_locked(path)
        with write_transaction(engine) as conn:
            assert _sqlite_write_locked(path)  # before anything was written
            conn.exec_driver_sql("INSERT INTO t VALUES (1)")
        assert not _sqlite_write_locked(path) and _rows(engine) == [1]
        with pytest.raises(RuntimeError, match="undo"), write_transaction(engine, exclusive=True) as conn:
            assert _sqlite_write_locked(path)
            conn.exec_driver_sql("INSERT INTO t VALUES (2)")
            hold_writers_lock(conn)  # a no-op on SQLite
            raise RuntimeError("undo")
        assert _rows(engine) == [1]
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_an_exclusive_postgres_write_transaction_keeps_every_other_bars_writer_out(pg_engine: Engine) -> None:
    with write_transaction(pg_engine, exclusive=True) as conn:
        conn.exec_driver_sql("INSERT INTO t VALUES (1)")
        assert not _pg_try(pg_engine, "pg_try_advisory_xact_lock_shared")
    assert _pg_try(pg_engine, "pg_try_advisory_xact_lock")  # released at commit
    with pg_engine.begin() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM t").scalar_one() == 1
        conn.exec_driver_sql("DELETE FROM t")


@pytest.mark.postgres
def test_a_plain_postgres_write_transaction_and_a_shared_hold_let_other_writers_in(pg_engine: Engine) -> None:
    with write_transaction(pg_engine) as conn:
        assert _pg_try(pg_engine, "pg_try_advisory_xact_lock")  # no lock taken
        hold_writers_lock(conn)
        hold_writers_lock(conn)  # re-entrant
        assert _pg_try(pg_engine, "pg_try_advisory_xact_lock_shared")  # other writers hold it shared too
        assert not _pg_try(pg_engine, "pg_try_advisory_xact_lock")  # a whole-file writer waits
    assert _pg_try(pg_engine, "pg_try_advisory_xact_lock")


def test_in_transaction_on_a_connection_leaves_the_transaction_to_the_caller(tmp_path: Path) -> None:
    engine, _ = _sqlite(tmp_path)
    try:
        with engine.connect() as conn:
            with in_transaction(conn) as inner:
                assert inner is conn
                inner.exec_driver_sql("INSERT INTO t VALUES (1)")
            assert conn.in_transaction()  # not committed for the caller
            conn.rollback()
        assert _rows(engine) == []
        with in_transaction(engine) as conn:
            conn.exec_driver_sql("INSERT INTO t VALUES (2)")
        assert _rows(engine) == [2]  # a transaction of its own, committed
    finally:
        engine.dispose()


def test_in_transaction_on_an_engine_is_a_write_transaction(tmp_path: Path) -> None:
    engine, path = _sqlite(tmp_path)
    try:
        with in_transaction(engine):
            assert _sqlite_write_locked(path)
        with pytest.raises(RuntimeError, match="undo"), in_transaction(engine) as conn:
            conn.exec_driver_sql("INSERT INTO t VALUES (3)")
            raise RuntimeError("undo")
        assert _rows(engine) == []
    finally:
        engine.dispose()
