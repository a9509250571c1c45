"""The simulator's ledger in SQLite (accounts, orders, fills, positions, tokens): a restart loses nothing."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (cano TEXT, prdt TEXT, cash REAL NOT NULL, PRIMARY KEY (cano, prdt));
CREATE TABLE IF NOT EXISTS orders (
    odno TEXT PRIMARY KEY, org_no TEXT, cano TEXT, prdt TEXT, market TEXT, symbol TEXT, side TEXT,
    ord_type TEXT, qty INTEGER, price REAL, filled_qty INTEGER DEFAULT 0, avg_price REAL DEFAULT 0,
    status TEXT, orgn_odno TEXT DEFAULT '', placed_at TEXT, ord_dt TEXT, ord_tmd TEXT,
    last_bar TEXT DEFAULT '', cancelled INTEGER DEFAULT 0, rejected_qty INTEGER DEFAULT 0);
CREATE INDEX IF NOT EXISTS orders_account ON orders (cano, prdt, ord_dt);
CREATE TABLE IF NOT EXISTS fills (
    id INTEGER PRIMARY KEY AUTOINCREMENT, odno TEXT, ts TEXT, qty INTEGER, price REAL, fee REAL);
CREATE TABLE IF NOT EXISTS positions (
    cano TEXT, prdt TEXT, symbol TEXT, qty INTEGER, avg_price REAL, realized REAL DEFAULT 0,
    PRIMARY KEY (cano, prdt, symbol));
CREATE TABLE IF NOT EXISTS tokens (token TEXT PRIMARY KEY, key_hash TEXT, issued_at REAL, expires_at REAL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
"""
ORG_NO = "00950"
OPEN, FILLED, CANCELLED, EXPIRED = "open", "filled", "cancelled", "expired"


@dataclass
class Order:
    """One order row."""

    odno: str
    org_no: str
    cano: str
    prdt: str
    market: str
    symbol: str
    side: str
    ord_type: str
    qty: int
    price: float
    filled_qty: int
    avg_price: float
    status: str
    orgn_odno: str
    placed_at: str
    ord_dt: str
    ord_tmd: str
    last_bar: str
    cancelled: int
    rejected_qty: int

    @property
    def remaining(self) -> int:
        """Quantity still working (0 once filled, cancelled or expired)."""
        return self.qty - self.filled_qty if self.status == OPEN else 0


class Ledger:
    """Thread-safe SQLite ledger. Every write commits immediately (WAL journal)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self.lock = threading.RLock()

    def close(self) -> None:
        """Close the database."""
        with self.lock:
            self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic unit of work (order placement, a fill and its cash/position effects)."""
        with self.lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def query(self, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        """Read rows."""
        with self.lock:
            return list(self._db.execute(sql, args))

    # --- accounts ----------------------------------------------------------------------------
    def cash(self, cano: str, prdt: str, initial: float) -> float:
        """Account cash, opening the account with ``initial`` on first use."""
        with self.lock:
            self._db.execute("INSERT OR IGNORE INTO accounts VALUES (?, ?, ?)", (cano, prdt, initial))
            row = self._db.execute(
                "SELECT cash FROM accounts WHERE cano=? AND prdt=?", (cano, prdt)
            ).fetchone()
            return float(row["cash"])

    def next_order_no(self, db: sqlite3.Connection) -> str:
        """Sequential 10-digit order numbers, persisted so a restart never reuses one."""
        row = db.execute("SELECT value FROM meta WHERE key='odno'").fetchone()
        value = int(row["value"]) + 1 if row else 1
        db.execute("INSERT OR REPLACE INTO meta VALUES ('odno', ?)", (str(value),))
        return f"{value:010d}"

    # --- orders ------------------------------------------------------------------------------
    def orders(self, where: str = "1=1", args: tuple[Any, ...] = ()) -> list[Order]:
        """Orders matching a WHERE clause, in placement order."""
        rows = self.query(f"SELECT * FROM orders WHERE {where} ORDER BY odno", args)
        return [Order(**dict(r)) for r in rows]

    def order(self, odno: str) -> Order | None:
        """One order by number."""
        found = self.orders("odno=?", (odno,))
        return found[0] if found else None

    def positions(self, cano: str, prdt: str) -> list[sqlite3.Row]:
        """Positions of one account (zero rows kept, as KIS shows sold-out lines until D+2)."""
        return self.query("SELECT * FROM positions WHERE cano=? AND prdt=? ORDER BY symbol", (cano, prdt))

    # --- tokens ------------------------------------------------------------------------------
    def save_token(self, token: str, key_hash: str, issued_at: float, expires_at: float) -> None:
        """Persist an issued token so clients' cached tokens survive a simulator restart."""
        with self.lock:
            self._db.execute(
                "INSERT OR REPLACE INTO tokens VALUES (?, ?, ?, ?)", (token, key_hash, issued_at, expires_at)
            )

    def tokens(self) -> list[sqlite3.Row]:
        """All persisted tokens."""
        return self.query("SELECT * FROM tokens")
