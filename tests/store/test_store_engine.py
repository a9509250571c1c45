"""What the store promises beyond bars: SQLite in WAL with a busy timeout on every connection, orders
idempotent by ``client_order_id``, accounts kept by alias only."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pipeline.store.db import create_store_engine
from pipeline.store.schema import metadata, orders


def test_every_sqlite_connection_uses_wal_and_waits_a_minute_for_a_busy_writer(sqlite_url: str) -> None:
    engine = create_store_engine(sqlite_url)
    try:
        with engine.connect() as first, engine.connect() as second:  # two pooled connections
            for conn in (first, second):
                assert conn.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
                assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar_one() == 60_000
    finally:
        engine.dispose()


def test_a_second_sqlite_writer_waits_for_the_first_instead_of_failing(sqlite_url: str) -> None:
    engine = create_store_engine(sqlite_url)
    started, outcome = threading.Event(), []

    def second_writer() -> None:
        started.set()
        try:
            with engine.begin() as conn:
                conn.execute(sa.insert(orders), _order("second"))
            outcome.append("written")
        except sa.exc.OperationalError as exc:  # "database is locked" without the busy timeout
            outcome.append(str(exc))

    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("BEGIN IMMEDIATE")  # the first writer holds the write lock
            conn.execute(sa.insert(orders), _order("first"))
            writer = threading.Thread(target=second_writer)
            writer.start()
            started.wait()
            conn.exec_driver_sql("COMMIT")
        writer.join()
        with engine.connect() as conn:
            stored = conn.execute(sa.select(orders.c.client_order_id)).scalars().all()
    finally:
        engine.dispose()
    assert outcome == ["written"] and sorted(stored) == ["first", "second"]


def _order(client_order_id: str, account: str = "main-stock") -> dict[str, object]:
    return {
        "client_order_id": client_order_id,
        "account": account,
        "symbol": "005930",
        "side": "buy",
        "quantity": 10,
        "order_type": "market",
        "status": "intent",
        "mode": "sim",
    }


def test_an_order_is_stored_once_per_client_order_id(store: Engine) -> None:
    with store.begin() as conn:
        conn.execute(sa.insert(orders), _order("krx-20250610-0001"))
    with pytest.raises(sa.exc.IntegrityError), store.begin() as conn:  # a retried intent is refused
        conn.execute(sa.insert(orders), _order("krx-20250610-0001", account="other"))
    with store.connect() as conn:
        rows = conn.execute(sa.select(orders.c.client_order_id, orders.c.account)).all()
    assert rows == [("krx-20250610-0001", "main-stock")]


def test_accounts_are_kept_by_an_alias_and_no_table_has_room_for_an_account_number() -> None:
    holders = {name for name, table in metadata.tables.items() if "account" in table.c}
    assert holders == {
        "orders",
        "positions",
        "account_snapshots",
        "decisions",
        "trading_events",
        "trading_state",
    }
    for name in holders:
        assert metadata.tables[name].c.account.type.length == 32, name  # an alias such as "main-stock"
    columns = {f"{t.name}.{c.name}" for t in metadata.tables.values() for c in t.c}
    assert not {c for c in columns if any(w in c.split(".")[1] for w in ("account_no", "cano", "acnt"))}
