"""trading: orders that carry their decision, decisions, trading events and the kill switch

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30

``orders`` gains what exactly-once trading needs (the spec, the decision bar and price, filled quantity,
average fill price, when it was sent); ``fills`` is recreated with it (its foreign key). Neither table held
data (no writer existed before this revision). New: ``decisions`` (one per account, spec, symbol and
decision bar), ``trading_events`` (risk rejections, reconciliation differences, resolved orders, halts) and
``trading_state`` (the persisted kill switch and the reconciliation mismatch streak).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import pipeline.store.schema

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TS = pipeline.store.schema.UTCDateTime(timezone=True)


def _id() -> sa.Column:
    return sa.Column(
        "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
    )


def _fills() -> None:
    op.create_table(
        "fills",
        _id(),
        sa.Column("order_id", sa.BigInteger(), nullable=False),
        sa.Column("broker_fill_id", sa.String(length=64), nullable=False),
        sa.Column("symbol", sa.String(length=32), nullable=False),
        sa.Column("side", sa.String(length=4), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("price", sa.Float(), nullable=False),
        sa.Column("fee", sa.Float(), server_default="0", nullable=False),
        sa.Column("tax", sa.Float(), server_default="0", nullable=False),
        sa.Column("ts", TS, nullable=False),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], name=op.f("fk_fills_order_id_orders")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fills")),
        sa.UniqueConstraint("order_id", "broker_fill_id", name=op.f("uq_fills_order_id_broker_fill_id")),
    )


def _orders(extended: bool) -> None:
    more = (
        [
            sa.Column("spec", sa.String(length=64), nullable=True),
            sa.Column("filled_quantity", sa.BigInteger(), server_default="0", nullable=False),
            sa.Column("avg_fill_price", sa.Float(), nullable=True),
            sa.Column("decision_ts", TS, nullable=True),
            sa.Column("decision_price", sa.Float(), nullable=True),
            sa.Column("sent_at", TS, nullable=True),
        ]
        if extended
        else []
    )
    op.create_table(
        "orders",
        _id(),
        sa.Column("client_order_id", sa.String(length=64), nullable=False),
        sa.Column("account", sa.String(length=32), nullable=False),
        sa.Column("symbol", sa.String(length=32), nullable=False),
        sa.Column("side", sa.String(length=4), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("order_type", sa.String(length=8), nullable=False),
        sa.Column("limit_price", sa.Float(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("broker_order_no", sa.String(length=32), nullable=True),
        sa.Column("mode", sa.String(length=8), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        *more,
        sa.CheckConstraint("side IN ('buy', 'sell')", name=op.f("ck_orders_side_valid")),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_orders_quantity_positive")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_orders")),
        sa.UniqueConstraint("client_order_id", name=op.f("uq_orders_client_order_id")),
    )


def upgrade() -> None:
    op.drop_table("fills")
    op.drop_table("orders")
    _orders(extended=True)
    _fills()
    op.create_table(
        "decisions",
        sa.Column("account", sa.String(length=32), nullable=False),
        sa.Column("spec", sa.String(length=64), nullable=False),
        sa.Column("symbol", sa.String(length=32), nullable=False),
        sa.Column("bar_ts", TS, nullable=False),
        sa.Column("instrument", sa.String(length=32), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=True),
        sa.Column("action", sa.Integer(), nullable=True),
        sa.Column("target_level", sa.Float(), nullable=True),
        sa.Column("price", sa.Float(), nullable=False),
        sa.Column("position_before", sa.BigInteger(), nullable=False),
        sa.Column("target_quantity", sa.BigInteger(), nullable=True),
        sa.Column("client_order_id", sa.String(length=64), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("decided_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("account", "spec", "symbol", "bar_ts", name=op.f("pk_decisions")),
    )
    op.create_table(
        "trading_events",
        _id(),
        sa.Column("ts", TS, nullable=False),
        sa.Column("account", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("symbol", sa.String(length=32), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trading_events")),
    )
    op.create_index("ix_trading_events_account_ts", "trading_events", ["account", "ts"])
    op.create_table(
        "trading_state",
        sa.Column("account", sa.String(length=32), nullable=False),
        sa.Column("halted", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("halt_reason", sa.Text(), nullable=True),
        sa.Column("halted_at", TS, nullable=True),
        sa.Column("halted_by", sa.String(length=64), nullable=True),
        sa.Column("mismatch_runs", sa.Integer(), server_default="0", nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("account", name=op.f("pk_trading_state")),
    )


def downgrade() -> None:
    op.drop_table("trading_state")
    op.drop_index("ix_trading_events_account_ts", table_name="trading_events")
    op.drop_table("trading_events")
    op.drop_table("decisions")
    op.drop_table("fills")
    op.drop_table("orders")
    _orders(extended=False)
    _fills()
