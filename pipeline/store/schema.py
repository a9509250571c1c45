"""SQLAlchemy 2 schema of the market store: bars, quarantine, features, regimes, orders, fills, positions."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timestamp that is always tz-aware UTC in Python.

    PostgreSQL stores ``timestamptz``; SQLite has no time zones, so values are stored as naive UTC text
    (``YYYY-MM-DD HH:MM:SS.ffffff``, which sorts correctly) and UTC is attached again on the way out.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        if not isinstance(value, dt.datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}")
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!s}: timestamps must be timezone-aware")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _ts(name: str, **kw: Any) -> sa.Column[Any]:
    return sa.Column(name, UTCDateTime(), **kw)


instruments = sa.Table(
    "instruments",
    metadata,
    sa.Column("symbol", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(128)),
    sa.Column("kind", sa.String(16), nullable=False, server_default="stock"),  # stock | future | index
    sa.Column("exchange", sa.String(16), nullable=False, server_default="XKRX"),
    sa.Column("currency", sa.String(3), nullable=False, server_default="KRW"),
    sa.Column("multiplier", sa.Float, nullable=False, server_default="1"),
    sa.Column("tick_size", sa.Float),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
    _ts("created_at", nullable=False, default=_now),
)

bars = sa.Table(
    "bars",
    metadata,
    sa.Column("symbol", sa.String(32), primary_key=True),
    sa.Column("interval", sa.String(8), primary_key=True),  # 1d, 1m, 5m, ...
    _ts("ts", primary_key=True),  # bar start, UTC
    sa.Column("open", sa.Float, nullable=False),
    sa.Column("high", sa.Float, nullable=False),
    sa.Column("low", sa.Float, nullable=False),
    sa.Column("close", sa.Float, nullable=False),
    sa.Column("volume", sa.BigInteger, nullable=False),
    sa.Column("turnover", sa.Float),
    sa.Column("source", sa.String(32), nullable=False, server_default="unknown"),
    _ts("ingested_at", nullable=False, default=_now),
)

bars_quarantine = sa.Table(
    "bars_quarantine",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("symbol", sa.String(32)),
    sa.Column("interval", sa.String(8)),
    sa.Column("ts_raw", sa.String(64)),
    sa.Column("raw", sa.JSON, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("source", sa.String(255), nullable=False, server_default="unknown"),  # e.g. csv:<file name>
    # sha256 of the row as received (see quarantine.row_key): with source, the natural key that makes
    # quarantining the same row again (a rerun, a retry, a second importer) a no-op.
    sa.Column("row_key", sa.String(64), nullable=False),
    _ts("quarantined_at", nullable=False, default=_now),
    sa.UniqueConstraint("source", "row_key"),
)

features = sa.Table(
    "features",
    metadata,
    sa.Column("symbol", sa.String(32), primary_key=True),
    sa.Column("interval", sa.String(8), primary_key=True),
    _ts("ts", primary_key=True),
    sa.Column("feature_set", sa.String(32), primary_key=True),  # feature-set version
    sa.Column("values", sa.JSON, nullable=False),
    _ts("computed_at", nullable=False, default=_now),
)

# The regime labels of each model spec's current regime model (one row per bar of the spec's symbols):
# a refit overwrites the spec's rows, so the key has no model in it; model_id and run_id say which fit
# (and which MLflow run) produced a label.
regimes = sa.Table(
    "regimes",
    metadata,
    sa.Column("symbol", sa.String(32), primary_key=True),
    sa.Column("interval", sa.String(8), primary_key=True),
    _ts("ts", primary_key=True),
    sa.Column("spec", sa.String(64), primary_key=True),  # model spec name, e.g. kospi200f-1d
    sa.Column("regime", sa.Integer, nullable=False),  # -1: features still warming up
    sa.Column("model_id", sa.String(64), nullable=False),  # content hash of the fitted regime model
    sa.Column("run_id", sa.String(64)),  # MLflow run that logged the fit
    _ts("computed_at", nullable=False, default=_now),
)

orders = sa.Table(
    "orders",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    # Idempotency key, a hash of (account, symbol, decision bar, side): committed before any HTTP call.
    sa.Column("client_order_id", sa.String(64), nullable=False, unique=True),
    sa.Column("account", sa.String(32), nullable=False),  # an alias, never the account number
    sa.Column("spec", sa.String(64)),  # model spec whose decision this order carries out
    sa.Column(
        "symbol", sa.String(32), nullable=False
    ),  # what the broker trades (a contract code for futures)
    sa.Column("side", sa.String(4), nullable=False),  # buy | sell
    sa.Column("quantity", sa.BigInteger, nullable=False),
    sa.Column("order_type", sa.String(8), nullable=False),  # market | limit
    sa.Column("limit_price", sa.Float),
    # intent | sent | partial | filled | cancelled | rejected | expired (pipeline.trading.orders)
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("broker_order_no", sa.String(32)),
    sa.Column("filled_quantity", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("avg_fill_price", sa.Float),
    _ts("decision_ts"),  # start of the bar whose close the decision saw
    sa.Column("decision_price", sa.Float),  # that bar's close: slippage is measured against it
    sa.Column("mode", sa.String(8), nullable=False),  # sim | vts | real | dry
    sa.Column("reason", sa.Text),
    _ts("created_at", nullable=False, default=_now),
    _ts("sent_at"),
    _ts("updated_at", nullable=False, default=_now, onupdate=_now),
    sa.CheckConstraint("quantity > 0", name="quantity_positive"),
    sa.CheckConstraint("side IN ('buy', 'sell')", name="side_valid"),
)

fills = sa.Table(
    "fills",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("order_id", sa.BigInteger, sa.ForeignKey("orders.id"), nullable=False),
    # <broker order no>:<cumulative filled quantity after this fill>: a fill seen twice is stored once.
    sa.Column("broker_fill_id", sa.String(64), nullable=False),
    sa.Column("symbol", sa.String(32), nullable=False),
    sa.Column("side", sa.String(4), nullable=False),
    sa.Column("quantity", sa.BigInteger, nullable=False),
    sa.Column("price", sa.Float, nullable=False),
    sa.Column("fee", sa.Float, nullable=False, server_default="0"),
    sa.Column("tax", sa.Float, nullable=False, server_default="0"),
    _ts("ts", nullable=False),
    sa.UniqueConstraint("order_id", "broker_fill_id"),
)

# One row per (account, spec, symbol, decision bar): what the model said and what became of it. A rerun of
# the same bar finds its row and decides nothing twice.
decisions = sa.Table(
    "decisions",
    metadata,
    sa.Column("account", sa.String(32), primary_key=True),
    sa.Column("spec", sa.String(64), primary_key=True),
    sa.Column("symbol", sa.String(32), primary_key=True),  # the spec's symbol (KOSPI200F, 005930, ...)
    _ts("bar_ts", primary_key=True),  # start of the bar the decision saw close
    sa.Column("instrument", sa.String(32), nullable=False),  # what is traded (the front contract for futures)
    sa.Column("model_version", sa.String(64)),
    sa.Column("action", sa.Integer),
    sa.Column("target_level", sa.Float),
    sa.Column("price", sa.Float, nullable=False),  # the bar's close
    sa.Column("position_before", sa.BigInteger, nullable=False),
    sa.Column("target_quantity", sa.BigInteger),
    sa.Column("client_order_id", sa.String(64)),
    sa.Column("outcome", sa.String(16), nullable=False),  # order | hold | rejected | no_model | dry
    sa.Column("reason", sa.Text),
    _ts("decided_at", nullable=False, default=_now),
)

# Everything the trading job refused, found or changed, with its reason: risk rejections, reconciliation
# differences, orders resolved after a crash, halts and resumes.
trading_events = sa.Table(
    "trading_events",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    _ts("ts", nullable=False, default=_now),
    sa.Column("account", sa.String(32), nullable=False),
    sa.Column("kind", sa.String(24), nullable=False),
    sa.Column("symbol", sa.String(32)),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("detail", sa.JSON),
)
sa.Index("ix_trading_events_account_ts", trading_events.c.account, trading_events.c.ts)

# The kill switch and the reconciliation streak, per account: survives restarts because it is data.
trading_state = sa.Table(
    "trading_state",
    metadata,
    sa.Column("account", sa.String(32), primary_key=True),
    sa.Column("halted", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("halt_reason", sa.Text),
    _ts("halted_at"),
    sa.Column("halted_by", sa.String(64)),
    sa.Column("mismatch_runs", sa.Integer, nullable=False, server_default="0"),
    _ts("updated_at", nullable=False, default=_now, onupdate=_now),
)

positions = sa.Table(
    "positions",
    metadata,
    sa.Column("account", sa.String(32), primary_key=True),
    sa.Column("symbol", sa.String(32), primary_key=True),
    sa.Column("quantity", sa.BigInteger, nullable=False),  # negative = short (futures)
    sa.Column("avg_price", sa.Float, nullable=False),
    _ts("updated_at", nullable=False, default=_now, onupdate=_now),
)

account_snapshots = sa.Table(
    "account_snapshots",
    metadata,
    sa.Column("account", sa.String(32), primary_key=True),
    _ts("ts", primary_key=True),
    sa.Column("cash", sa.Float, nullable=False),
    sa.Column("equity", sa.Float, nullable=False),
    sa.Column("margin_used", sa.Float, nullable=False, server_default="0"),
    sa.Column("source", sa.String(16), nullable=False, server_default="broker"),
)

futures_rolls = sa.Table(
    "futures_rolls",
    metadata,
    sa.Column("continuous_symbol", sa.String(32), primary_key=True),
    _ts("roll_ts", primary_key=True),  # the old contract's last session
    sa.Column("from_contract", sa.String(16), nullable=False),
    sa.Column("to_contract", sa.String(16), nullable=False),
    sa.Column("from_close", sa.Float, nullable=False),
    sa.Column("to_close", sa.Float, nullable=False),
    sa.Column("method", sa.String(16), nullable=False),  # difference | ratio
    sa.Column("adjustment", sa.Float, nullable=False),  # points added or factor applied at this roll
    _ts("recorded_at", nullable=False, default=_now),
)

#: Tables holding time series, turned into TimescaleDB hypertables when the extension is available.
HYPERTABLES = ("bars", "features")


def include_in_autogenerate(
    obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
) -> bool:
    """Alembic filter: time indexes (SQLite B-tree, PostgreSQL BRIN) come from migrations, not metadata."""
    return not (type_ == "index" and reflected and compare_to is None)
