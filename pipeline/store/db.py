"""Engines for the market store: SQLite (embedded default) or PostgreSQL, TimescaleDB when installed."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, make_url

_ENGINES: dict[str, Engine] = {}
#: PostgreSQL advisory lock (per schema: one store) every bars writer holds shared, and a multi-batch
#: writer (a CSV file) exclusive.
BARS_WRITERS_LOCK = "hashtextextended('krx.bars.writers:' || coalesce(current_schema(), ''), 0)"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL lets readers run beside one writer; busy_timeout makes a second writer process wait for the
    # lock instead of failing at once, which is what concurrent upserts need.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=60000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def create_store_engine(url: str, *, echo: bool = False) -> Engine:
    """A new engine for ``url``; SQLite parent folders are created and pragmas applied."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        # a "file:" URI (``?uri=true``) is no path: making its "parent" would leave a file: folder here
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, echo=echo)
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if parsed.get_backend_name() != "postgresql":
        raise ValueError(
            f"unsupported database backend {parsed.get_backend_name()!r}: use sqlite or postgresql"
        )
    return sa.create_engine(url, echo=echo, pool_pre_ping=True)


def get_engine(url: str | None = None) -> Engine:
    """A process-wide cached engine for ``url`` (default: the settings' market store)."""
    if url is None:
        from pipeline.config import get_settings

        url = get_settings().resolved_database_url
    engine = _ENGINES.get(url)
    if engine is None:
        engine = _ENGINES[url] = create_store_engine(url)
    return engine


def dispose_engines() -> None:
    """Close every cached engine (tests, forked children)."""
    for engine in _ENGINES.values():
        engine.dispose()
    _ENGINES.clear()


def is_postgres(bind: Engine | Connection) -> bool:
    """True when ``bind`` talks to PostgreSQL."""
    return bind.dialect.name == "postgresql"


def timescale_available(conn: Connection) -> bool:
    """True when the server can load the ``timescaledb`` extension (installed or installable)."""
    if not is_postgres(conn):
        return False
    row = conn.execute(sa.text("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'")).first()
    return row is not None


def timescale_enabled(conn: Connection) -> bool:
    """True when ``timescaledb`` is created in this database."""
    if not is_postgres(conn):
        return False
    row = conn.execute(sa.text("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'")).first()
    return row is not None


def _write_transaction(engine: Engine, *, exclusive: bool = False) -> Iterator[Connection]:
    """One transaction for writes that must land together (a batch and its quarantine, a whole file).

    SQLite: ``BEGIN IMMEDIATE`` takes the write lock up front, so a second writer waits (busy timeout)
    instead of failing when it upgrades a read lock. PostgreSQL with ``exclusive``: no other bars writer
    runs until commit; needed when one transaction upserts several batches, whose per-symbol locks are
    not taken in one sorted order and could otherwise deadlock with another writer."""
    with engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        elif exclusive and is_postgres(conn):
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({BARS_WRITERS_LOCK})")
        yield conn


# Generator functions wrapped here rather than decorated: mutmut 3 does not mutate decorated functions.
write_transaction = contextmanager(_write_transaction)


def hold_writers_lock(conn: Connection) -> None:
    """PostgreSQL: take the bars writers' lock shared until the transaction ends (re-entrant; a no-op on
    SQLite, whose IMMEDIATE transaction already excludes other writers). Taken first by every writer, so
    all lock in the same order: writers' lock, quarantine keys, per-symbol locks."""
    if is_postgres(conn):
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock_shared({BARS_WRITERS_LOCK})")


def _in_transaction(bind: Engine | Connection) -> Iterator[Connection]:
    """``bind`` itself when it is a connection (the caller owns the transaction), else a new
    :func:`write_transaction` on the engine."""
    if isinstance(bind, Connection):
        yield bind
        return
    with write_transaction(bind) as conn:
        yield conn


in_transaction = contextmanager(_in_transaction)
