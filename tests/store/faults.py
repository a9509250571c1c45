"""Database faults injected into the bars table, the same on SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy.engine import Engine

#: Inserting a bar of this symbol into ``bars`` fails inside the database, mid-write.
BOOM = "BOOM"


def install_failing_trigger(engine: Engine, symbol: str = BOOM) -> None:
    """From now on every INSERT of a bar of ``symbol`` raises 'simulated crash' inside the database."""
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql(
                f"CREATE TRIGGER boom BEFORE INSERT ON bars WHEN NEW.symbol = '{symbol}' "
                "BEGIN SELECT RAISE(ABORT, 'simulated crash'); END"
            )
        else:
            conn.exec_driver_sql(
                "CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                f"IF NEW.symbol = '{symbol}' THEN RAISE EXCEPTION 'simulated crash'; END IF; "
                "RETURN NEW; END $$"
            )
            conn.exec_driver_sql(
                "CREATE TRIGGER boom BEFORE INSERT ON bars FOR EACH ROW EXECUTE FUNCTION boom()"
            )
