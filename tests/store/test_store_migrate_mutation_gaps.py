"""Migrations: the Alembic config, the locks an upgrade holds, revisions, `krx db status` (mutation gaps)."""

from __future__ import annotations

import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import filelock
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from pipeline.config import get_settings
from pipeline.store import migrate
from pipeline.store.db import create_store_engine
from pipeline.store.migrate import (
    MIGRATIONS_DIR,
    StoreStatus,
    alembic_config,
    current_revision,
    head_revision,
    status,
    upgrade,
)
from pipeline.store.schema import metadata
from tests.conftest import PG_BASE_URL
from tests.store.test_store_db_mutation_gaps import _sqlite_write_locked

MIGRATION_LOCK = (
    "SELECT pg_try_advisory_xact_lock(hashtextextended("
    "'krx.migrate:' || current_database() || ':' || coalesce(current_schema(), ''), 0))"
)


@pytest.fixture(scope="module")
def migrated_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite store migrated to head once; tests work on copies of it."""
    path = tmp_path_factory.mktemp("template") / "store.db"
    engine = create_store_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()
    return path


@pytest.fixture(scope="module")
def pg_schema_url() -> Iterator[str]:
    """URL of an empty PostgreSQL schema of this module's own (never migrated), with a password in it."""
    schema = f"m_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_BASE_URL)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    url = sa.make_url(PG_BASE_URL).set(password="s3cret")  # trust auth: the password is never checked
    try:
        yield f"{url.render_as_string(hide_password=False)}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


class _FakeUpgrade:
    """Stands in for ``alembic.command.upgrade``: records what the migration would run with and under."""

    def __init__(self, probe: Any = None, fail: bool = False) -> None:
        self.calls: list[tuple[str, Connection]] = []
        self.seen: list[Any] = []
        self.probe, self.fail = probe, fail

    def __call__(self, cfg: Any, revision: str) -> None:
        conn = cfg.attributes["connection"]
        self.calls.append((revision, conn))
        assert cfg.get_main_option("script_location") == str(MIGRATIONS_DIR)
        if self.probe is not None:
            self.seen.append(self.probe())
        if self.fail:
            conn.exec_driver_sql("CREATE TABLE half_made (x integer)")
            raise RuntimeError("migration failed")


def _file_lock_held(path: Path) -> bool:
    other = filelock.FileLock(str(path), timeout=0)
    try:
        other.acquire()
    except filelock.Timeout:
        return True
    other.release()
    return False


def _tables(engine: Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names())


# --- alembic_config ---------------------------------------------------------------------------------------


def test_the_alembic_config_points_at_the_shipped_migrations_and_keeps_the_password() -> None:
    engine = create_store_engine("postgresql+psycopg://krx:p%25ss@db.example:5432/krx")
    cfg = alembic_config(engine)
    assert cfg.get_main_option("script_location") == str(MIGRATIONS_DIR)
    assert (MIGRATIONS_DIR / "env.py").is_file()
    # the password is kept (Alembic may need to connect), and "%" survives configparser's interpolation
    assert cfg.get_main_option("sqlalchemy.url") == "postgresql+psycopg://krx:p%25ss@db.example:5432/krx"


# --- upgrade ----------------------------------------------------------------------------------------------


def test_upgrade_without_an_engine_migrates_the_settings_store_to_head(tmp_path: Path) -> None:
    assert upgrade() == head_revision()
    path = tmp_path / "var" / "market.db"
    assert get_settings().resolved_database_url == f"sqlite:///{path.resolve()}"
    engine = create_store_engine(f"sqlite:///{path}")
    try:
        assert _tables(engine) == set(metadata.tables) | {"alembic_version"}
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_upgrade_stops_at_the_revision_asked_for_and_goes_on_later(tmp_path: Path) -> None:
    engine = create_store_engine(f"sqlite:///{tmp_path / 'r.db'}")
    try:
        assert current_revision(engine) is None
        assert upgrade(engine, "0004") == "0004"
        assert "regimes" in _tables(engine) and "decisions" not in _tables(engine)  # 0005 adds trading
        assert upgrade(engine) == head_revision() and "decisions" in _tables(engine)
    finally:
        engine.dispose()


def test_a_sqlite_upgrade_holds_the_file_lock_and_the_write_lock_on_its_own_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "store.db"
    engine = create_store_engine(f"sqlite:///{path}")
    lock = tmp_path / "store.db.migrate.lock"
    fake = _FakeUpgrade(probe=lambda: (_file_lock_held(lock), _sqlite_write_locked(path)))
    monkeypatch.setattr(migrate.command, "upgrade", fake)
    try:
        assert upgrade(engine, "0003") is None  # the fake migrated nothing
        assert fake.seen == [(True, True)] and [rev for rev, _ in fake.calls] == ["0003"]
        assert isinstance(fake.calls[0][1], Connection)
        assert not _file_lock_held(lock) and not _sqlite_write_locked(path)  # both released
    finally:
        engine.dispose()


def test_a_failed_sqlite_migration_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = create_store_engine(f"sqlite:///{tmp_path / 'f.db'}")
    monkeypatch.setattr(migrate.command, "upgrade", _FakeUpgrade(fail=True))
    try:
        with pytest.raises(RuntimeError, match="migration failed"):
            upgrade(engine)
        assert _tables(engine) == set()
    finally:
        engine.dispose()


def test_a_second_upgrade_gives_up_after_the_lock_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = create_store_engine(f"sqlite:///{tmp_path / 'w.db'}")
    monkeypatch.setattr(migrate, "LOCK_TIMEOUT_S", 0.05)
    fake = _FakeUpgrade()
    monkeypatch.setattr(migrate.command, "upgrade", fake)
    first = filelock.FileLock(str(tmp_path / "w.db.migrate.lock"))
    try:
        with first, pytest.raises(filelock.Timeout):  # the first upgrade is still running
            upgrade(engine)
        assert fake.calls == []
    finally:
        engine.dispose()


def test_the_lock_files_folder_is_made_before_the_database_is_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "new" / "deeper" / "m.db"
    engine = sa.create_engine(f"sqlite:///{path}")  # a plain engine: nothing made the folder yet
    fake = _FakeUpgrade()
    monkeypatch.setattr(migrate.command, "upgrade", fake)
    try:
        assert upgrade(engine) is None and len(fake.calls) == 1
        assert path.exists() and (path.parent / "m.db.migrate.lock").exists()
    finally:
        engine.dispose()


def test_memory_and_uri_sqlite_stores_take_no_file_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = _FakeUpgrade()
    monkeypatch.setattr(migrate.command, "upgrade", fake)
    uri = tmp_path / "u" / "uri.db"
    uri.parent.mkdir()
    for url in ("sqlite://", "sqlite:///:memory:", f"sqlite:///file:{uri}?uri=true"):
        engine = create_store_engine(url)
        try:
            assert upgrade(engine) is None, url
        finally:
            engine.dispose()
    assert len(fake.calls) == 3
    assert {p.name for p in tmp_path.iterdir()} - {"var"} == {"u"}  # cwd: no ":memory:" or "file:" lock
    assert {p.name for p in uri.parent.iterdir()} <= {"uri.db", "uri.db-wal", "uri.db-shm"}


@pytest.mark.postgres
def test_a_postgres_upgrade_holds_the_schemas_migration_lock_and_no_file_lock(
    pg_schema_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = create_store_engine(pg_schema_url)

    def other_session_gets_the_lock() -> bool:
        with engine.connect() as conn:
            got = bool(conn.exec_driver_sql(MIGRATION_LOCK).scalar_one())
            conn.rollback()
        return got

    fake = _FakeUpgrade(probe=other_session_gets_the_lock)
    monkeypatch.setattr(migrate.command, "upgrade", fake)
    try:
        assert upgrade(engine, "0002") is None
        assert fake.seen == [False] and [rev for rev, _ in fake.calls] == ["0002"]
        assert other_session_gets_the_lock()  # released at commit
    finally:
        engine.dispose()
    assert {p.name for p in tmp_path.iterdir()} - {"var"} == set()  # no "test.migrate.lock" in the cwd


# --- revisions and status ---------------------------------------------------------------------------------


def test_the_head_is_the_newest_shipped_revision() -> None:
    revisions, parents = set(), set()
    for path in (MIGRATIONS_DIR / "versions").glob("*.py"):
        text = path.read_text(encoding="utf-8")
        revisions.add(re.search(r'^revision = "(\w+)"', text, re.M).group(1))  # type: ignore[union-attr]
        parents.add(re.search(r"^down_revision = (.+)$", text, re.M).group(1).strip('"'))  # type: ignore[union-attr]
    assert revisions - parents == {head_revision()}


@pytest.mark.parametrize(
    ("current", "head", "up_to_date"),
    [("0005", "0005", True), ("0004", "0005", False), (None, "0005", False), (None, None, False)],
)
def test_a_store_is_up_to_date_only_at_the_head(
    current: str | None, head: str | None, up_to_date: bool
) -> None:
    st = StoreStatus(
        url="u",
        backend="sqlite",
        current=current,
        head=head,
        timescale_available=False,
        timescale_enabled=False,
    )
    assert st.up_to_date is up_to_date and st.row_counts == {}


def test_status_counts_the_rows_of_every_store_table(migrated_template: Path, tmp_path: Path) -> None:
    path = tmp_path / "var" / "market.db"  # the settings' store, so status() finds it without an engine
    path.parent.mkdir(parents=True)
    shutil.copy(migrated_template, path)
    engine = create_store_engine(f"sqlite:///{path}")
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.insert(metadata.tables["instruments"]), [{"symbol": "005930"}, {"symbol": "000660"}]
            )
            conn.execute(
                sa.insert(metadata.tables["trading_state"]), {"account": "main-stock", "halted": False}
            )
        st = status()
    finally:
        engine.dispose()
    assert st == StoreStatus(
        url=get_settings().resolved_database_url,
        backend="sqlite",
        current=head_revision(),
        head=head_revision(),
        timescale_available=False,
        timescale_enabled=False,
        row_counts={name: 0 for name in metadata.tables} | {"instruments": 2, "trading_state": 1},
    )
    assert all(type(n) is int for n in st.row_counts.values())


def test_status_counts_only_the_store_tables_that_exist(tmp_path: Path) -> None:
    engine = create_store_engine(f"sqlite:///{tmp_path / 'p.db'}")
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE bars (x integer)")
            conn.exec_driver_sql("CREATE TABLE not_ours (x integer)")
            conn.exec_driver_sql("INSERT INTO bars VALUES (1), (2), (3)")
        st = status(engine)
    finally:
        engine.dispose()
    assert (st.current, st.up_to_date, st.row_counts) == (None, False, {"bars": 3})


@pytest.mark.postgres
def test_postgres_status_hides_the_password(pg_schema_url: str) -> None:
    engine = create_store_engine(pg_schema_url)
    try:
        st = status(engine)
    finally:
        engine.dispose()
    assert "s3cret" not in st.url and st.url.startswith(
        "postgresql+psycopg://postgres:***@127.0.0.1:5432/test"
    )
    assert (st.backend, st.current, st.head, st.row_counts) == ("postgresql", None, head_revision(), {})
    assert (st.timescale_available, st.timescale_enabled) == (False, False)
