"""KOSPI200 futures ingest: per-contract bars, the back-adjusted continuous series and its roll log."""

from __future__ import annotations

import datetime as dt
import logging

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pipeline.ingest.adjust import AdjustMethod, back_adjust
from pipeline.ingest.bars import IngestReport, SymbolIngest, daily_window, fetch_and_store, store_fetched
from pipeline.ingest.sources import BarSource
from pipeline.market import TZ_NAME, contract_schedule, front_contract, is_contract_code
from pipeline.store import read_bars, upsert_bars
from pipeline.store.schema import bars as bars_table
from pipeline.store.schema import futures_rolls

log = logging.getLogger(__name__)
_OVERLAP = dt.timedelta(days=7)  # fetch a little before each segment so the roll day has both contracts


def ingest_futures_daily(
    source: BarSource,
    day: dt.date,
    *,
    engine: Engine,
    continuous_symbol: str,
    roll_days: int,
    method: AdjustMethod,
    history_days: int = 730,
) -> IngestReport:
    """Fetch the front contracts' daily bars up to ``day``, store each under its own code, then rebuild
    the back-adjusted continuous series under ``continuous_symbol`` and its roll log."""
    start, end = daily_window(continuous_symbol, day, history_days, engine)
    report = IngestReport()
    for contract, first, last in contract_schedule(start, end, roll_days):
        item = SymbolIngest(contract.code, "1d", (first - _OVERLAP).isoformat(), last.isoformat())
        fetch = lambda c=contract.code, a=first - _OVERLAP, b=last: source.daily(c, a, b)  # noqa: E731
        report.items.append(fetch_and_store(item, fetch, source.name, engine))
    if report.failed:
        return report  # a partial contract history would give a wrong adjustment: retry the run instead
    rebuilt = rebuild_continuous(
        engine, continuous_symbol=continuous_symbol, end=day, roll_days=roll_days, method=method
    )
    report.items.append(rebuilt)
    return report


def stored_contract_codes(engine: Engine) -> list[str]:
    """Codes of the single futures contracts with stored daily bars."""
    query = sa.select(bars_table.c.symbol).distinct().where(bars_table.c.interval == "1d")
    with engine.connect() as conn:
        return sorted(s for s in conn.execute(query).scalars() if is_contract_code(s))


def rebuild_continuous(
    engine: Engine, *, continuous_symbol: str, end: dt.date, roll_days: int, method: AdjustMethod
) -> SymbolIngest:
    """Recompute the continuous series over all stored contract history (adjustments change older
    prices at every roll) and upsert it; unchanged bars are left alone. Reads only contract bars."""
    item = SymbolIngest(continuous_symbol, "1d", end.isoformat(), end.isoformat())
    codes = stored_contract_codes(engine)
    if not codes:
        return item
    contracts = read_bars(codes, "1d", engine=engine)
    first = contracts["ts"].min().tz_convert(TZ_NAME).date()
    segments = []
    prev_last: dt.date | None = None
    for contract, seg_first, seg_last in contract_schedule(first, end, roll_days):
        own = contracts[contracts["symbol"] == contract.code]
        kst = own["ts"].dt.tz_convert(TZ_NAME).dt.date
        lo = prev_last or seg_first
        part = own[(kst >= lo) & (kst <= seg_last)]
        if not part.empty:
            segments.append((contract.code, part))
        prev_last = seg_last
    if not segments:
        return item
    series, rolls = back_adjust(segments, method)
    item.start = first.isoformat()
    result = upsert_bars(
        series.assign(symbol=continuous_symbol).drop(columns=["contract", "source"]),
        engine,
        source=f"continuous:{method}",
    )
    item.fetched, item.inserted, item.updated, item.unchanged = (
        len(series),
        result.inserted,
        result.updated,
        result.unchanged,
    )
    _store_rolls(engine, continuous_symbol, rolls)
    log.info(
        "%s: %d bars over %d contracts, %d rolls (%s)",
        continuous_symbol,
        len(series),
        len(segments),
        len(rolls),
        method,
    )
    return item


def _store_rolls(engine: Engine, symbol: str, rolls: pd.DataFrame) -> None:
    records = [
        {**r, "continuous_symbol": symbol, "roll_ts": pd.Timestamp(r["roll_ts"]).to_pydatetime()}
        for r in rolls.to_dict("records")
    ]
    with engine.begin() as conn:  # replace the whole log: adjustments are recomputed each time
        conn.execute(sa.delete(futures_rolls).where(futures_rolls.c.continuous_symbol == symbol))
        if records:
            conn.execute(sa.insert(futures_rolls), records)


def ingest_futures_minutes(
    source: BarSource, day: dt.date, *, engine: Engine, continuous_symbol: str, roll_days: int
) -> IngestReport:
    """The front contract's 1-minute bars for ``day``, stored under its code and, unadjusted, under
    ``continuous_symbol`` (intraday decisions trade the live front contract)."""
    contract = front_contract(day, roll_days)
    item = SymbolIngest(contract.code, "1m", day.isoformat(), day.isoformat())
    fetch = lambda: source.minutes(contract.code, day)  # noqa: E731
    report = IngestReport([fetch_and_store(item, fetch, source.name, engine)])
    if not item.error:
        raw = read_bars(
            contract.code,
            "1m",
            start=_kst_midnight(day),
            end=_kst_midnight(day + dt.timedelta(1)),
            engine=engine,
        )
        alias = SymbolIngest(continuous_symbol, "1m", day.isoformat(), day.isoformat())
        report.items.append(
            store_fetched(
                raw.drop(columns=["symbol", "interval", "source"]),
                alias,
                source=f"front:{contract.code}",
                engine=engine,
            )
        )
    return report


def _kst_midnight(day: dt.date) -> pd.Timestamp:
    return pd.Timestamp(day).tz_localize(TZ_NAME)
