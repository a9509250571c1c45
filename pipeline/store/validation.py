"""Row-level checks every bar must pass before it reaches the store; failures carry a reason per row."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd
import sqlalchemy as sa

from pipeline.market import TZ_NAME, SymbolError, validate_symbol
from pipeline.store.schema import bars
from pipeline.store.times import has_tz_suffix

KEY = ["symbol", "interval", "ts"]
PRICES = ["open", "high", "low", "close"]
REQUIRED = [*KEY, *PRICES, "volume"]
COLUMNS = [*REQUIRED, "turnover", "source"]
#: Bar intervals the store accepts: KIS minute-chart steps, daily and weekly bars.
INTERVALS = ("1m", "3m", "5m", "10m", "15m", "30m", "60m", "1d", "1w")
#: Intervals whose bars are stamped at 00:00 KST of their (first) session date, not at a clock time.
SESSION_INTERVALS = frozenset({"1d", "1w"})


def validate_interval(interval: object) -> str:
    """Return ``interval`` if it is one of :data:`INTERVALS`; raise ``ValueError`` naming them otherwise."""
    if isinstance(interval, str) and interval in INTERVALS:
        return interval
    raise ValueError(f"unknown interval {interval!r}: use one of {', '.join(INTERVALS)}")


def _width(column: sa.Column[str]) -> int | None:
    return getattr(column.type, "length", None)


def validate_label(value: str, column: sa.Column[str] | None = None) -> str:
    """Return ``value`` if it fits ``column`` (default ``bars.source``); raise a ``ValueError`` that says
    how long it is and what fits. Checked before writing, so every backend answers the same."""
    column = bars.c.source if column is None else column
    limit = _width(column)
    if not value:
        raise ValueError(f"{column.name} label must not be empty")
    if limit is not None and len(value) > limit:
        shown = value if len(value) <= 40 else value[:37] + "..."
        raise ValueError(
            f"{column.name} label {shown!r} is {len(value)} characters; at most {limit} fit "
            f"{column.table.name}.{column.name}"
        )
    return value


class BarValidationError(ValueError):
    """A batch of bars was refused; ``rejected`` holds the offending rows with a ``reason`` column."""

    def __init__(self, rejected: pd.DataFrame, total: int) -> None:
        self.rejected = rejected
        self.total = total
        lines = [
            f"  row {idx}: {row.get('symbol')!s} {row.get('ts')!s}: {row['reason']}"
            for idx, row in rejected.head(20).iterrows()
        ]
        more = f"\n  ... and {len(rejected) - 20} more" if len(rejected) > 20 else ""
        super().__init__(
            f"{len(rejected)} of {total} bars rejected, nothing was written:\n" + "\n".join(lines) + more
        )


@dataclass(frozen=True)
class CheckedBars:
    """A batch split into rows fit to store (normalised dtypes) and rejected rows with reasons."""

    good: pd.DataFrame
    rejected: pd.DataFrame


def _add(reasons: pd.Series, mask: pd.Series | np.ndarray, text: str) -> pd.Series:
    mask = np.asarray(mask, dtype=bool)
    if mask.any():
        reasons = reasons.copy()
        reasons[mask] = reasons[mask] + text + "; "
    return reasons


def _coerce_ts(values: pd.Series) -> tuple[pd.Series, np.ndarray, np.ndarray]:
    """Timestamps as UTC, plus masks of values that carried no time zone and of bare numbers (both refused,
    not guessed: a number's epoch unit, seconds to nanoseconds, is anyone's guess)."""
    none = np.zeros(len(values), dtype=bool)
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.tz_convert("UTC"), none, none
    if pd.api.types.is_datetime64_dtype(values.dtype):
        raise ValueError(f"column 'ts' is timezone-naive: localise it (e.g. {TZ_NAME}) before storing")
    # Mixed input from a broker or a file (Timestamps, strings, numbers, blanks): judge each value on its own.
    naive = np.array([_is_naive(v) for v in values], dtype=bool)
    number = np.array([_is_number(v) for v in values], dtype=bool)
    parsed = pd.to_datetime(values.where(~naive & ~number), errors="coerce", utc=True, format="mixed")
    return parsed, naive, number


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float, np.number)) and not isinstance(value, bool) and not pd.isna(value)


def _is_naive(value: object) -> bool:
    if isinstance(value, dt.datetime):
        return value.tzinfo is None
    if isinstance(value, str):
        text = value.strip()
        parsable = not pd.isna(pd.to_datetime(text, errors="coerce"))
        return bool(text) and not has_tz_suffix(text) and parsable
    return False


def _rule_reasons(reasons: pd.Series, out: pd.DataFrame) -> pd.Series:
    """Reasons from the symbol rule, the interval set and the source width (judged per distinct value)."""
    for column, judge in (("symbol", _symbol_problem), ("interval", _interval_problem)):
        values = out[column].dropna()
        for value in values[values != ""].unique():
            problem = judge(str(value))
            if problem:
                reasons = _add(reasons, (out[column] == value).fillna(False), problem)
    limit = _width(bars.c.source)
    if limit is None:
        return reasons
    too_long = (out["source"].str.len() > limit).fillna(False)
    return _add(reasons, too_long, f"source is longer than {limit} characters")


def _symbol_problem(symbol: str) -> str | None:
    try:
        validate_symbol(symbol)
    except SymbolError as exc:
        return str(exc)
    return None


def _interval_problem(interval: str) -> str | None:
    return None if interval in INTERVALS else f"unknown interval {interval!r} (known: {', '.join(INTERVALS)})"


def check_bars(df: pd.DataFrame, *, source: str = "unknown") -> CheckedBars:
    """Split ``df`` into storable bars and rejected rows (each with every reason it failed).

    Rejected: missing symbol/interval/ts, a symbol outside ``pipeline.market.validate_symbol``'s rule, an
    interval outside :data:`INTERVALS`, a source longer than ``bars.source``, prices that are not finite
    or not positive, ``high < max(open, close)``, ``low > min(open, close)``, volume missing, negative or
    fractional, and keys (symbol, interval, ts) that appear more than once in the batch.
    """
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise ValueError(f"bars are missing required column(s): {', '.join(missing)}")
    out = pd.DataFrame(index=df.index)
    out["symbol"] = df["symbol"].astype("string").str.strip()
    out["interval"] = df["interval"].astype("string").str.strip()
    out["ts"], naive_ts, number_ts = _coerce_ts(df["ts"])
    for col in [*PRICES, "volume"]:
        out[col] = pd.to_numeric(df[col], errors="coerce").astype("float64")
    turnover = df["turnover"] if "turnover" in df.columns else pd.Series(np.nan, index=df.index)
    out["turnover"] = pd.to_numeric(turnover, errors="coerce").astype("float64")
    src = df["source"].astype("string") if "source" in df.columns else pd.Series(source, index=df.index)
    out["source"] = src.fillna(source).astype("string")

    reasons = pd.Series("", index=df.index, dtype=object)
    reasons = _add(reasons, out["symbol"].isna() | (out["symbol"] == ""), "symbol is empty")
    reasons = _add(reasons, out["interval"].isna() | (out["interval"] == ""), "interval is empty")
    reasons = _rule_reasons(reasons, out)
    reasons = _add(reasons, naive_ts, "ts has no time zone")
    reasons = _add(reasons, number_ts, "ts is a bare number, not a time with a zone")
    reasons = _add(reasons, out["ts"].isna() & ~naive_ts & ~number_ts, "ts is missing or unparsable")
    prices = out[PRICES].to_numpy()
    finite = np.isfinite(prices)
    for i, col in enumerate(PRICES):
        reasons = _add(reasons, ~finite[:, i], f"{col} is not a finite number")
        reasons = _add(reasons, finite[:, i] & (prices[:, i] <= 0), f"{col} is not positive")
    with np.errstate(invalid="ignore"):
        o, h, lo, c = prices.T
        reasons = _add(reasons, h < np.maximum(o, c), "high < max(open, close)")
        reasons = _add(reasons, lo > np.minimum(o, c), "low > min(open, close)")
        vol = out["volume"].to_numpy()
        reasons = _add(reasons, ~np.isfinite(vol), "volume is not a finite number")
        reasons = _add(reasons, vol < 0, "volume is negative")
        reasons = _add(reasons, np.isfinite(vol) & (vol != np.round(vol)), "volume is not a whole number")
    dup = out.duplicated(KEY, keep=False) & out["ts"].notna()
    reasons = _add(reasons, dup, "duplicate (symbol, interval, ts) in batch")

    bad = reasons != ""
    rejected = df.loc[bad].copy()
    rejected["reason"] = reasons[bad].str.rstrip("; ")
    good = out.loc[~bad].copy() if bad.any() else out  # the common all-good batch skips a copy
    good["volume"] = good["volume"].astype("int64")
    return CheckedBars(good=good, rejected=rejected)
