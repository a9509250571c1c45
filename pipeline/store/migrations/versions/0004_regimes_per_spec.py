"""regime labels per model spec

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02

``regimes`` was keyed by a ``model_version`` nobody wrote. It becomes the labels of each model spec's
current regime model: keyed by (symbol, interval, ts, spec), with the ``model_id`` of the fit and the
MLflow ``run_id`` that logged it, so a refit overwrites a spec's labels instead of piling up copies. The
table held no data (no writer existed before this revision); it is recreated.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import pipeline.store.schema

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_table("regimes")
    op.create_table(
        "regimes",
        sa.Column("symbol", sa.String(length=32), nullable=False),
        sa.Column("interval", sa.String(length=8), nullable=False),
        sa.Column("ts", pipeline.store.schema.UTCDateTime(timezone=True), nullable=False),
        sa.Column("spec", sa.String(length=64), nullable=False),
        sa.Column("regime", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.String(length=64), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=True),
        sa.Column("computed_at", pipeline.store.schema.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("symbol", "interval", "ts", "spec", name=op.f("pk_regimes")),
    )


def downgrade() -> None:
    op.drop_table("regimes")
    op.create_table(
        "regimes",
        sa.Column("symbol", sa.String(length=32), nullable=False),
        sa.Column("interval", sa.String(length=8), nullable=False),
        sa.Column("ts", pipeline.store.schema.UTCDateTime(timezone=True), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=False),
        sa.Column("regime", sa.Integer(), nullable=False),
        sa.Column("probabilities", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("symbol", "interval", "ts", "model_version", name=op.f("pk_regimes")),
    )
