"""Load OHLCV CSV files into the market store: normalise, validate, quarantine bad rows, upsert the rest."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from sqlalchemy.engine import Engine

from pipeline.store import get_engine, load_bars

log = logging.getLogger(__name__)

#: Accepted header spellings (case-insensitive) for each store column.
ALIASES: dict[str, tuple[str, ...]] = {
    "symbol": ("symbol", "code", "ticker", "stck_shrn_iscd"),
    "ts": ("ts", "timestamp", "datetime", "date", "time", "stck_bsop_date"),
    "open": ("open", "stck_oprc"),
    "high": ("high", "stck_hgpr"),
    "low": ("low", "stck_lwpr"),
    "close": ("close", "stck_clpr", "stck_prpr"),
    "volume": ("volume", "vol", "acml_vol"),
    "turnover": ("turnover", "value", "amount", "acml_tr_pbmn"),
}


@dataclass
class FileSummary:
    """What importing one file did."""

    path: str
    rows: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    error: str | None = None


@dataclass
class ImportSummary:
    """Totals over all files of one import."""

    files: list[FileSummary] = field(default_factory=list)

    def total(self, name: str) -> int:
        return sum(int(getattr(f, name)) for f in self.files)

    @property
    def failed_files(self) -> list[FileSummary]:
        return [f for f in self.files if f.error]


def _rename(frame: pd.DataFrame, path: Path) -> tuple[pd.DataFrame, dict[str, str]]:
    lower = {str(c).strip().lower(): c for c in frame.columns}
    mapping = {}
    for target, names in ALIASES.items():
        found = next((lower[n] for n in names if n in lower), None)
        if found is not None:
            mapping[found] = target
    frame = frame.rename(columns=mapping)
    original = {target: str(source) for source, target in mapping.items()}
    missing = [c for c in ("ts", "open", "high", "low", "close", "volume") if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{path.name}: no column for {', '.join(missing)} (have {', '.join(map(str, lower))})"
        )
    return frame, original


def parse_timestamps(values: pd.Series, tz: str) -> pd.Series:
    """Parse timestamps; naive ones are read in ``tz`` (KRX: Asia/Seoul). Unparsable values become NaT."""
    text = values.astype("string").str.strip()
    compact = text.str.fullmatch(r"\d{8}").fillna(False)  # KIS style YYYYMMDD
    text = text.where(
        ~compact, text.str.slice(0, 4) + "-" + text.str.slice(4, 6) + "-" + text.str.slice(6, 8)
    )
    has_offset = text.str.contains(r"(?:Z|[+-]\d{2}:?\d{2})$", regex=True).fillna(False)
    aware = _to_datetime(text.where(has_offset), utc=True)
    naive = _to_datetime(text.where(~has_offset), utc=False)
    local = naive.dt.tz_localize(tz, ambiguous="NaT", nonexistent="NaT").dt.tz_convert("UTC")
    return aware.where(has_offset, local)


def _to_datetime(text: pd.Series, *, utc: bool) -> pd.Series:
    # ISO 8601 is parsed in C; anything else (e.g. 2024/01/02) falls back to the slower per-value parser.
    parsed = pd.to_datetime(text, errors="coerce", format="ISO8601", utc=utc)
    retry = parsed.isna() & text.notna()
    if retry.any():
        parsed[retry] = pd.to_datetime(text[retry], errors="coerce", format="mixed", utc=utc)
    return parsed


def _prepare(
    chunk: pd.DataFrame, path: Path, symbol: str | None, interval: str, tz: str
) -> tuple[pd.DataFrame, str]:
    """The chunk in store columns, and the name the file uses for its timestamp column."""
    frame, original = _rename(chunk, path)
    if symbol is not None:
        frame["symbol"] = symbol
    elif "symbol" not in frame.columns:
        frame["symbol"] = path.stem
    frame["interval"] = interval
    frame["ts"] = parse_timestamps(frame["ts"], tz)
    return frame, original["ts"]


def import_csv_files(
    paths: Sequence[Path],
    *,
    interval: str = "1d",
    symbol: str | None = None,
    tz: str = "Asia/Seoul",
    source: str = "csv",
    chunk_rows: int = 200_000,
    engine: Engine | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> ImportSummary:
    """Import each CSV: rows failing validation go to ``bars_quarantine`` with their reason, the rest
    are upserted. A file that cannot be read at all is reported in its summary and skipped.

    ``on_progress(n)`` is called with the number of rows handled after each chunk (for progress bars).
    """
    engine = engine or get_engine()
    summary = ImportSummary()
    for path in paths:
        file_summary = FileSummary(path=str(path))
        summary.files.append(file_summary)
        try:
            for chunk in pd.read_csv(path, chunksize=chunk_rows, dtype=str, keep_default_na=False):
                frame, ts_column = _prepare(chunk, path, symbol, interval, tz)
                result = load_bars(
                    frame,
                    source=source,
                    engine=engine,
                    raw=chunk,  # quarantine the file's rows verbatim
                    quarantine_source=f"{source}:{path.name}",
                    ts_column=ts_column,
                )
                file_summary.rows += result.rows
                file_summary.rejected += result.quarantined
                file_summary.inserted += result.inserted
                file_summary.updated += result.updated
                file_summary.unchanged += result.unchanged
                if on_progress:
                    on_progress(len(chunk))
        except (OSError, ValueError, pd.errors.ParserError) as exc:
            file_summary.error = str(exc)
            log.error("import of %s failed: %s", path, exc)
    return summary


def count_rows(path: Path) -> int:
    """Data rows in a CSV file (lines minus the header), cheaply, for a progress total."""
    with path.open("rb") as fh:
        return max(sum(buf.count(b"\n") for buf in iter(lambda: fh.read(1 << 20), b"")) - 1, 0)
