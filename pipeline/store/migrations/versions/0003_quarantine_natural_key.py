"""quarantine natural key

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30

``bars_quarantine`` gets ``row_key`` (sha256 of the row as received, ``pipeline.store.quarantine.row_key``)
and a unique (source, row_key) so that quarantining the same row again is a no-op. Copies left by earlier
reruns and retries are removed first, keeping the oldest of each. ``source`` widens to 255 characters so a
``csv:<file name>`` label fits.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from alembic import op

from pipeline.store.quarantine import row_key

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_quarantine = sa.table(
    "bars_quarantine",
    sa.column("id", sa.BigInteger),
    sa.column("symbol", sa.String),
    sa.column("interval", sa.String),
    sa.column("ts_raw", sa.String),
    sa.column("raw", sa.JSON),
    sa.column("source", sa.String),
    sa.column("row_key", sa.String),
)


def upgrade() -> None:
    op.add_column("bars_quarantine", sa.Column("row_key", sa.String(length=64), nullable=True))
    _key_and_dedupe(op.get_bind())
    with op.batch_alter_table("bars_quarantine") as batch:
        batch.alter_column("row_key", existing_type=sa.String(length=64), nullable=False)
        batch.alter_column(
            "source",
            existing_type=sa.String(length=64),
            type_=sa.String(length=255),
            existing_nullable=False,
            existing_server_default="unknown",
        )
        batch.create_unique_constraint(op.f("uq_bars_quarantine_source_row_key"), ["source", "row_key"])


def _key_and_dedupe(bind: sa.Connection) -> None:
    kept: dict[tuple[str, str], int] = {}
    duplicates: list[int] = []
    keys: list[dict[str, Any]] = []
    for row in _rows(bind):
        key = row_key(row.symbol, row.interval, row.ts_raw, row.raw if isinstance(row.raw, dict) else {})
        if (row.source, key) in kept:
            duplicates.append(row.id)
            continue
        kept[(row.source, key)] = row.id
        keys.append({"k_id": row.id, "k_key": key})
    for start in range(0, len(duplicates), 1000):
        bind.execute(sa.delete(_quarantine).where(_quarantine.c.id.in_(duplicates[start : start + 1000])))
    if keys:
        stmt = (
            sa.update(_quarantine)
            .where(_quarantine.c.id == sa.bindparam("k_id"))
            .values(row_key=sa.bindparam("k_key"))
        )
        bind.execute(stmt, keys)


def _rows(bind: sa.Connection) -> Iterator[Any]:
    query = sa.select(_quarantine).order_by(_quarantine.c.id)  # the oldest copy is the one kept
    yield from bind.execute(query).all()


def downgrade() -> None:
    with op.batch_alter_table("bars_quarantine") as batch:
        batch.drop_constraint(op.f("uq_bars_quarantine_source_row_key"), type_="unique")
        batch.alter_column(
            "source",
            existing_type=sa.String(length=255),
            type_=sa.String(length=64),
            existing_nullable=False,
            existing_server_default="unknown",
        )
        batch.drop_column("row_key")
