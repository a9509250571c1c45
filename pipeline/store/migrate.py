"""Schema migrations of the market store (Alembic), driven from code and from ``krx db``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

from pipeline.store.db import get_engine, is_postgres, timescale_available, timescale_enabled
from pipeline.store.schema import metadata

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
#: How long a second ``krx db upgrade`` waits for the first one before giving up (seconds).
LOCK_TIMEOUT_S = 600
# One lock per database and schema, so migrations of other schemas (tests) do not wait on each other.
_PG_MIGRATION_LOCK = (
    "SELECT pg_advisory_xact_lock(hashtextextended("
    "'krx.migrate:' || current_database() || ':' || coalesce(current_schema(), ''), 0))"
)


def alembic_config(engine: Engine) -> Config:
    """An Alembic config bound to ``engine`` (no alembic.ini needed)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%"))
    return cfg


def upgrade(engine: Engine | None = None, revision: str = "head") -> str | None:
    """Migrate the store to ``revision``; returns the revision it is at afterwards.

    Serialised: concurrent upgrades of one store (several ``krx db upgrade``, DAG tasks starting
    together) run one after the other, and the later ones find nothing to do. PostgreSQL: a
    transaction-scoped advisory lock per database and schema, taken before Alembic reads its version
    table. SQLite: a file lock beside the database file, and the migration runs in one ``BEGIN
    IMMEDIATE`` transaction, so a failed one leaves no half-made schema behind."""
    engine = engine or get_engine()
    cfg = alembic_config(engine)
    with _sqlite_file_lock(engine), engine.begin() as conn:
        if is_postgres(conn):
            conn.exec_driver_sql(_PG_MIGRATION_LOCK)
        elif conn.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
    return current_revision(engine)


def _sqlite_file_lock_held(engine: Engine) -> Iterator[None]:
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:" or database.startswith("file:"):
        yield
        return
    from filelock import FileLock

    path = Path(database).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path.with_name(path.name + ".migrate.lock")), timeout=LOCK_TIMEOUT_S):
        yield


# Wrapped rather than decorated: mutmut 3 does not mutate decorated functions.
_sqlite_file_lock = contextmanager(_sqlite_file_lock_held)


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None when it was never migrated."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str | None:
    """The newest revision this code ships."""
    return ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()


@dataclass
class StoreStatus:
    """What ``krx db status`` reports."""

    url: str
    backend: str
    current: str | None
    head: str | None
    timescale_available: bool
    timescale_enabled: bool
    row_counts: dict[str, int] = field(default_factory=dict)

    @property
    def up_to_date(self) -> bool:
        return self.current is not None and self.current == self.head


def status(engine: Engine | None = None) -> StoreStatus:
    """Revision, backend, TimescaleDB state and row counts of every table that exists."""
    engine = engine or get_engine()
    current = current_revision(engine)
    with engine.connect() as conn:
        existing = set(sa.inspect(conn).get_table_names())
        counts = {
            t.name: int(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one())
            for t in metadata.sorted_tables
            if t.name in existing
        }
        ts_avail, ts_on = timescale_available(conn), timescale_enabled(conn)
    return StoreStatus(
        url=engine.url.render_as_string(hide_password=True),
        backend=engine.dialect.name,
        current=current,
        head=head_revision(),
        timescale_available=ts_avail,
        timescale_enabled=ts_on,
        row_counts=counts,
    )
