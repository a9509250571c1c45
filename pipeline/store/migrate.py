"""Schema migrations of the market store (Alembic), driven from code and from ``krx db``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

from pipeline.store.db import get_engine, timescale_available, timescale_enabled
from pipeline.store.schema import metadata

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def alembic_config(engine: Engine) -> Config:
    """An Alembic config bound to ``engine`` (no alembic.ini needed)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%"))
    return cfg


def upgrade(engine: Engine | None = None, revision: str = "head") -> str | None:
    """Migrate the store to ``revision``; returns the revision it is at afterwards."""
    engine = engine or get_engine()
    cfg = alembic_config(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
    return current_revision(engine)


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
