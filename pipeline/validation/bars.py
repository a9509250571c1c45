"""Validate a batch of bars with the GX suite: good rows typed for the store, failing rows quarantined."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.market import (
    TZ_NAME,
    InstrumentKind,
    SessionHours,
    classify,
    krx_sessions,
    price_limit,
    validate_symbol,
)
from pipeline.store.times import TZ_SUFFIX
from pipeline.store.validation import validate_interval
from pipeline.validation.calendar import session_bounds
from pipeline.validation.suite import KEY, LIMIT_EPS, PRICES, run_suite

log = logging.getLogger(__name__)

#: Columns of ``BarsValidationReport.good`` (what ``pipeline.store.upsert_bars`` takes).
STORE_COLUMNS = [*KEY, *PRICES, "volume", "turnover", "source"]


@dataclass
class BarsValidationReport:
    """Outcome of one validation run; ``rows_in == len(good) + len(quarantined)`` always holds."""

    good: pd.DataFrame
    quarantined: pd.DataFrame
    rows_in: int
    failure_rate: float
    passed: bool
    missing_sessions: dict[str, list[dt.date]] = field(default_factory=dict)
    data_docs_path: Path | None = None
    expectation_results: list[dict[str, Any]] = field(default_factory=list)

    @property
    def failed_expectations(self) -> list[str]:
        return [r["name"] for r in self.expectation_results if not r["success"]]


def _to_float(values: pd.Series) -> pd.Series:
    # With errors="coerce", lists, dicts and other objects inside an object column become NaN as well.
    numbers = np.asarray(pd.to_numeric(values, errors="coerce"), dtype="float64")
    # "1e400" parses to inf: not a usable number either, so it fails the non-null expectation like "abc".
    return pd.Series(np.where(np.isfinite(numbers), numbers, np.nan), index=values.index)


def _one_ts(value: Any) -> pd.Timestamp:
    try:
        ts = pd.Timestamp(value)
    except (TypeError, ValueError, OverflowError):
        return pd.NaT
    # A timestamp without a zone is refused rather than guessed (the store does the same).
    return pd.NaT if pd.isna(ts) or ts.tzinfo is None else ts.tz_convert("UTC")


def coerce_ts(values: pd.Series) -> pd.Series:
    """Timestamps to tz-aware UTC; unparsable or naive values become NaT."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.tz_convert("UTC").astype("datetime64[ns, UTC]")
    if pd.api.types.is_datetime64_dtype(values.dtype):
        return pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns, UTC]")
    obj = values.astype(object)
    is_str = obj.map(lambda v: isinstance(v, str)).astype(bool)
    out = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns, UTC]")
    if is_str.any():
        text = obj[is_str].astype(str).str.strip()
        parsed = pd.to_datetime(text, errors="coerce", utc=True, format="ISO8601")
        out[is_str] = parsed.where(text.str.contains(TZ_SUFFIX)).astype("datetime64[ns, UTC]")
    others = ~is_str & obj.notna()
    if others.any():
        out[others] = _datetime_objects(obj[others])
    return out


def _datetime_objects(values: pd.Series) -> pd.Series:
    """Datetime-like objects to UTC: vectorised when all share a zone, else one by one."""
    try:
        parsed = pd.to_datetime(values)
    except (TypeError, ValueError, OverflowError):
        parsed = None
    if parsed is not None and isinstance(parsed.dtype, pd.DatetimeTZDtype):
        return parsed.dt.tz_convert("UTC").astype("datetime64[ns, UTC]")
    # Built with its dtype (not ``.astype``): an all-NaT object column would not convert.
    return pd.Series([_one_ts(v) for v in values], index=values.index, dtype="datetime64[ns, UTC]")


def _text(values: pd.Series) -> pd.Series:
    text = values.astype("string").str.strip()
    return text.mask(text == "")


def typed_bars(bars: pd.DataFrame) -> pd.DataFrame:
    """A typed copy (RangeIndex) of ``bars``: numbers via ``to_numeric(errors="coerce")``, ts to UTC;
    missing columns are added empty so that every row fails their non-null expectation."""
    raw = bars.reset_index(drop=True)
    empty = pd.Series(np.nan, index=raw.index, dtype=object)
    typed = pd.DataFrame(index=raw.index)
    typed["symbol"] = _text(raw.get("symbol", empty))
    typed["interval"] = _text(raw.get("interval", empty))
    typed["ts"] = coerce_ts(raw.get("ts", empty))
    for col in [*PRICES, "volume", "turnover"]:
        typed[col] = _to_float(raw.get(col, empty))
    if "source" in raw.columns:
        typed["source"] = _text(raw["source"])
    return typed


def _is_daily(interval: pd.Series) -> np.ndarray:
    return np.asarray(interval.fillna("").str.lower().str.endswith("d"), dtype=bool)


def kinds_of(symbols: pd.Series, kinds: Mapping[str, InstrumentKind | str] | None) -> pd.Series:
    """The kind of each row's symbol: from ``kinds``, else :func:`pipeline.market.classify`; a value in
    ``kinds`` that is not an :class:`InstrumentKind` raises ``ValueError``."""
    given = {s: InstrumentKind(k) for s, k in (kinds or {}).items()}
    known = {s: given.get(str(s)) or classify(str(s)) for s in symbols.dropna().unique()}
    return symbols.map(known).fillna(InstrumentKind.STOCK)  # no symbol: the row fails non-null anyway


def _in_session(
    typed: pd.DataFrame,
    sessions: pd.DatetimeIndex,
    kinds: pd.Series,
    fixed_hours: Mapping[InstrumentKind, SessionHours] | None,
) -> np.ndarray:
    """1.0 inside the session, 0.0 outside, NaN when ts is unknown. Daily bars must be stamped 00:00 KST
    of a session date; intraday bars must start between the session's open and close (inclusive)."""
    local = typed["ts"].dt.tz_convert(TZ_NAME).dt.tz_localize(None)
    days = local.dt.normalize()
    minute = ((local - days) / pd.Timedelta(minutes=1)).to_numpy(dtype=float)
    opens, closes = session_bounds(days, kinds, fixed_hours)
    is_session = days.isin(sessions).to_numpy()
    daily = _is_daily(typed["interval"])
    intraday_ok = (minute >= opens) & (minute <= closes)
    ok = is_session & np.where(daily, minute == 0, intraday_ok)
    return np.where(typed["ts"].isna().to_numpy(), np.nan, ok.astype(float))


def _max_move_over_limit(
    typed: pd.DataFrame,
    sessions: pd.DatetimeIndex,
    limit: pd.Series,
    exclude: np.ndarray | None = None,
) -> np.ndarray:
    """Largest |price / reference - 1| over high, low and close, divided by the symbol's daily limit.

    The reference is the last close of the previous session (KRX limits are set from the previous day's
    close); it is NaN — and the check skipped — when that session is absent from the batch, unknown, or
    its close is in ``exclude``.
    """
    frame = typed.loc[typed["ts"].notna(), ["symbol", "interval", "ts", "high", "low", "close"]].copy()
    if frame.empty:
        return np.full(len(typed), np.nan)
    frame["day"] = frame["ts"].dt.tz_convert(TZ_NAME).dt.tz_localize(None).dt.normalize()
    usable = frame["close"] > 0
    if exclude is not None:
        usable &= ~exclude[frame.index.to_numpy()]
    frame["good_close"] = frame["close"].where(usable)
    frame = frame.sort_values(["symbol", "interval", "ts"], kind="stable")
    last = frame.groupby(["symbol", "interval", "day"], dropna=False)["good_close"].last().reset_index()
    grouped = last.groupby(["symbol", "interval"], dropna=False)
    last["ref"] = grouped["good_close"].shift(1)
    last["prev_day"] = grouped["day"].shift(1)
    position = pd.Series(np.arange(len(sessions), dtype=float), index=sessions)
    adjacent = last["day"].map(position) - last["prev_day"].map(position) == 1
    last["ref"] = last["ref"].where(adjacent)
    ref = frame.merge(
        last[["symbol", "interval", "day", "ref"]], on=["symbol", "interval", "day"], how="left"
    )
    ref.index = frame.index
    moves = [(frame[col] / ref["ref"] - 1).abs() for col in ("high", "low", "close")]
    ratio = pd.concat(moves, axis=1).max(axis=1, skipna=False) / limit.loc[frame.index]
    return ratio.reindex(typed.index).to_numpy(dtype=float)


def _limits(
    symbols: pd.Series, kinds: pd.Series, price_limits: float | Mapping[str, float] | None
) -> pd.Series:
    """The daily price limit of each row: one for all, per symbol (missing symbols: unchecked, NaN), or by
    default the limit of the row's kind (:func:`pipeline.market.price_limit`)."""
    if price_limits is None:
        return kinds.map(price_limit).astype(float)
    if isinstance(price_limits, Mapping):
        return symbols.map(lambda s: price_limits.get(str(s), np.nan)).astype(float)
    return pd.Series(float(price_limits), index=symbols.index)


def _limit_moves(
    typed: pd.DataFrame, context: pd.DataFrame, sessions: pd.DatetimeIndex, limit: pd.Series
) -> np.ndarray:
    """``max_move_over_limit`` of the batch rows, with the ``context`` rows (earlier sessions, never
    validated themselves) available as the previous close."""
    both = pd.concat([context, typed], ignore_index=True)
    if len(context):
        first = both["ts"].dropna().min()
        sessions = sessions.union(krx_sessions(first, sessions.min() if len(sessions) else both["ts"].max()))
    # Two passes: a bad print (a spike) must not make the next, correct bar look like a limit breach, so
    # closes that break the limit against their own reference are not used as a reference.
    first_pass = _max_move_over_limit(both, sessions, limit)
    with np.errstate(invalid="ignore"):
        breached = np.nan_to_num(first_pass, nan=0.0) > 1 + LIMIT_EPS
    return _max_move_over_limit(both, sessions, limit, breached)[len(context) :]


def _derived(
    typed: pd.DataFrame, context: pd.DataFrame, sessions: pd.DatetimeIndex, **kw: Any
) -> pd.DataFrame:
    out = typed.copy()
    both = pd.concat([context["symbol"], typed["symbol"]], ignore_index=True)
    kinds = kinds_of(both, kw["kinds"])
    limit = _limits(both, kinds, kw["price_limit"])
    out["ts_in_session"] = _in_session(typed, sessions, kinds.iloc[len(context) :], kw["fixed_hours"])
    out["max_move_over_limit"] = _limit_moves(typed, context, sessions, limit)
    out["volume_fraction"] = typed["volume"] - np.floor(typed["volume"])
    out["symbol_valid"] = _accepted(typed["symbol"], validate_symbol)
    out["interval_known"] = _accepted(typed["interval"], validate_interval)
    return out


def _accepted(values: pd.Series, rule: Callable[[str], object]) -> pd.Series:
    """1.0 where ``rule`` accepts the value, 0.0 where it raises ``ValueError``, NaN where it is missing."""

    def judge(value: str) -> float:
        try:
            rule(value)
        except ValueError:
            return 0.0
        return 1.0

    verdicts = {v: judge(str(v)) for v in values.dropna().unique()}
    return values.map(verdicts).astype(float)


def _calendar(typed: pd.DataFrame, sessions: pd.DatetimeIndex | None) -> pd.DatetimeIndex:
    if sessions is not None:
        idx = pd.DatetimeIndex(sessions)
        idx = idx.tz_convert(TZ_NAME).tz_localize(None) if idx.tz is not None else idx
        return pd.DatetimeIndex(idx.normalize().unique().sort_values())
    ts = typed["ts"].dropna()
    if ts.empty:
        return pd.DatetimeIndex([])
    return krx_sessions(ts.min(), ts.max())


def missing_sessions(
    good: pd.DataFrame, typed: pd.DataFrame, sessions: pd.DatetimeIndex, explicit: bool
) -> dict[str, list[dt.date]]:
    """Per symbol, the sessions with no stored bar: all of ``sessions`` when the caller gave the calendar,
    else the sessions between the symbol's first and last bar in the batch. Reported, never quarantined."""
    out: dict[str, list[dt.date]] = {}
    have = pd.DataFrame(
        {
            "symbol": good["symbol"],
            "day": good["ts"].dt.tz_convert(TZ_NAME).dt.tz_localize(None).dt.normalize(),
        }
    )
    have_days = {s: pd.DatetimeIndex(rows["day"].unique()) for s, rows in have.groupby("symbol")}
    valid = typed.dropna(subset=["symbol", "ts"])
    local = valid["ts"].dt.tz_convert(TZ_NAME).dt.tz_localize(None)
    span = local.groupby(valid["symbol"]).agg(["min", "max"])
    for symbol, first, last in span.itertuples():
        expected = sessions if explicit else sessions[(sessions >= first.normalize()) & (sessions <= last)]
        gaps = expected.difference(have_days.get(symbol, pd.DatetimeIndex([])))
        if len(gaps):
            out[str(symbol)] = [d.date() for d in gaps]
    return out


def _reasons(flagged: Mapping[str, list[int]], n: int) -> pd.Series:
    reasons: list[list[str]] = [[] for _ in range(n)]
    for label, rows in flagged.items():
        for row in rows:
            reasons[row].append(label)
    return pd.Series(["; ".join(r) for r in reasons], dtype=object)


def _good_rows(typed: pd.DataFrame, keep: np.ndarray, source: str | None) -> pd.DataFrame:
    good = typed.loc[keep].copy()
    good["volume"] = good["volume"].astype("int64")
    if "source" not in good.columns or source is not None:
        good["source"] = source or "unknown"
    good["source"] = good["source"].fillna(source or "unknown").astype(object)
    good["symbol"] = good["symbol"].astype(object)
    good["interval"] = good["interval"].astype(object)
    return good[STORE_COLUMNS].reset_index(drop=True)


def _log_report(report: BarsValidationReport, name: str, max_failure_rate: float) -> None:
    log.info(
        "validated %d bars (%s): %d good, %d quarantined (%.2f%%, threshold %.2f%%) -> %s; data docs: %s",
        report.rows_in,
        name,
        len(report.good),
        len(report.quarantined),
        100 * report.failure_rate,
        100 * max_failure_rate,
        "passed" if report.passed else "FAILED",
        report.data_docs_path,
    )


def validate_bars(
    bars: pd.DataFrame,
    *,
    context: pd.DataFrame | None = None,
    sessions: pd.DatetimeIndex | None = None,
    price_limit: float | Mapping[str, float] | None = None,
    kinds: Mapping[str, InstrumentKind | str] | None = None,
    fixed_hours: Mapping[InstrumentKind, SessionHours] | None = None,
    data_docs_dir: Path | None = None,
    max_failure_rate: float = 0.05,
    run_name: str | None = None,
    source: str | None = None,
) -> BarsValidationReport:
    """Run the bars suite on a typed copy of ``bars``; never raises on malformed values.

    ``context``: bars of the sessions just before the batch, only used as the previous close of the
    price-limit check — never validated, counted or quarantined. ``sessions``: the batch's calendar
    (session dates; default KRX sessions spanning the batch; context days are looked up in the KRX
    calendar). ``price_limit``: the daily limit as a fraction, one for all or per symbol (symbols missing
    from a mapping are not checked); default the limit of each symbol's kind. ``kinds``: symbol ->
    :class:`~pipeline.market.InstrumentKind` (others are classified by :func:`pipeline.market.classify`;
    an unknown kind raises ``ValueError``); ``fixed_hours``: kind -> hours replacing the KRX schedule.
    ``source`` overrides the rows' source column in ``good``. The run passes while the share of
    quarantined rows is at most ``max_failure_rate``; with ``data_docs_dir`` GX Data Docs are rendered there.
    """
    rows_in = len(bars)
    typed = typed_bars(bars)
    calendar = _calendar(typed, sessions)
    before = typed_bars(context if context is not None else pd.DataFrame(columns=STORE_COLUMNS))
    checked = _derived(typed, before, calendar, kinds=kinds, fixed_hours=fixed_hours, price_limit=price_limit)
    name = run_name or f"bars-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S%fZ}"
    run = run_suite(checked, docs_dir=data_docs_dir, run_name=name)
    reasons = _reasons(run.flagged, rows_in)
    bad = (reasons != "").to_numpy()
    quarantined = bars.iloc[np.flatnonzero(bad)].copy()
    quarantined["reason"] = reasons[bad].to_numpy()
    good = _good_rows(typed, ~bad, source)
    failure_rate = float(bad.sum()) / rows_in if rows_in else 0.0
    report = BarsValidationReport(
        good=good,
        quarantined=quarantined,
        rows_in=rows_in,
        failure_rate=failure_rate,
        passed=failure_rate <= max_failure_rate,
        missing_sessions=missing_sessions(good, typed, calendar, explicit=sessions is not None),
        data_docs_path=run.data_docs_path,
        expectation_results=run.results,
    )
    _log_report(report, name, max_failure_rate)
    return report
