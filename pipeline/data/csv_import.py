"""Load OHLCV CSV files into the market store: normalise, validate, quarantine bad rows, upsert the rest.

Each file is one transaction: it lands whole or not at all, and importing it again changes nothing
(bars are upserted, quarantined rows are keyed). Problems are reported by line number.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from pipeline.data.csv_reader import CsvChunk, CsvFileError, check_encoding, open_csv
from pipeline.data.keys import SeenKeys
from pipeline.data.parsing import check_date_format, check_time_zone, parse_numbers, parse_timestamps
from pipeline.market import TZ_NAME, SymbolError, validate_symbol
from pipeline.store import (
    LoadResult,
    get_engine,
    load_bars,
    quarantine_bars,
    validate_interval,
    validate_label,
    write_transaction,
)
from pipeline.store.schema import bars_quarantine
from pipeline.store.validation import SESSION_INTERVALS

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
_NUMBERS = ("open", "high", "low", "close", "volume", "turnover")
_REPEATED = "duplicate (symbol, interval, ts) in file: an earlier line has the same bar"
#: Problems kept per file for the summary (all of them are in ``bars_quarantine``).
MAX_PROBLEMS = 20


@dataclass
class FileSummary:
    """What importing one file did. On ``error`` nothing of the file was written and counts are 0."""

    path: str
    rows: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    error: str | None = None
    problems: list[str] = field(default_factory=list)
    """The first :data:`MAX_PROBLEMS` quarantined lines as ``"line N: reason"``."""

    def note(self, line: object, reason: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(f"line {line}: {reason}")


@dataclass
class ImportSummary:
    """Totals over all files of one import."""

    files: list[FileSummary] = field(default_factory=list)

    def total(self, name: str) -> int:
        return sum(int(getattr(f, name)) for f in self.files)

    @property
    def failed_files(self) -> list[FileSummary]:
        return [f for f in self.files if f.error]


@dataclass(frozen=True)
class ImportOptions:
    """How to read the files; :meth:`checked` refuses values the store could not hold, up front."""

    interval: str = "1d"
    symbol: str | None = None
    tz: str = TZ_NAME
    source: str = "csv"
    date_format: str | None = None
    encoding: str = "utf-8"

    def checked(self) -> ImportOptions:
        validate_interval(self.interval)
        validate_label(self.source)
        check_time_zone(self.tz)
        if self.symbol is not None:
            validate_symbol(self.symbol)
        if self.date_format is not None:
            check_date_format(self.date_format)
        check_encoding(self.encoding)
        return self

    def label(self, path: Path) -> str:
        """The quarantine source of ``path``'s rows: ``<source>:<file name>``."""
        label = f"{self.source}:{path.name}"
        try:
            return validate_label(label, bars_quarantine.c.source)
        except ValueError as exc:
            raise ValueError(f"{path.name}: the file name is too long to label its rows ({exc})") from exc


def import_csv_files(
    paths: Sequence[Path],
    *,
    interval: str = "1d",
    symbol: str | None = None,
    tz: str = TZ_NAME,
    source: str = "csv",
    date_format: str | None = None,
    encoding: str = "utf-8",
    chunk_rows: int = 200_000,
    engine: Engine | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> ImportSummary:
    """Import each CSV in one transaction: malformed lines and rows failing validation go to
    ``bars_quarantine`` with their reason and line number, the rest are upserted. A file that cannot be
    read (bad header, ambiguous dates, a database error) is reported in its summary and nothing of it is
    written; the other files still load. Options the store could not hold raise ``ValueError`` (or
    ``SymbolError``, ``LookupError`` for an unknown encoding) before any file is read.

    ``on_progress(n)`` is called with the number of lines handled after each chunk (for progress bars).
    """
    options = ImportOptions(interval, symbol, tz, source, date_format, encoding).checked()
    engine = engine or get_engine()
    summary = ImportSummary()
    for path in paths:
        summary.files.append(_import_file(path, options, engine, chunk_rows, on_progress))
    return summary


def _import_file(
    path: Path,
    options: ImportOptions,
    engine: Engine,
    chunk_rows: int,
    on_progress: Callable[[int], None] | None,
) -> FileSummary:
    done = FileSummary(path=str(path))
    try:
        label = options.label(path)
        with open_csv(path, options.encoding) as csv_file:
            columns = _columns(csv_file.header, path)
            fixed_symbol = options.symbol or (None if "symbol" in columns.values() else _symbol_of(path))
            # exclusive: this one transaction upserts several batches (see store.write_transaction)
            with write_transaction(engine, exclusive=True) as conn:
                load = _FileLoad(conn, columns, fixed_symbol, options, label, done)
                for chunk in csv_file.chunks(chunk_rows):
                    load.chunk(chunk)
                    if on_progress:
                        on_progress(len(chunk))
    except (OSError, ValueError, LookupError, sa.exc.SQLAlchemyError) as exc:
        log.error("import of %s failed, nothing of it was written: %s", path, exc)
        message = str(exc).split("\n[SQL:")[0].strip()
        return FileSummary(path=str(path), error=f"{message}; nothing from this file was written")
    return done


def _columns(header: list[str], path: Path) -> dict[str, str]:
    """File column -> store column, from :data:`ALIASES`."""
    lower = {name.lower(): name for name in header}
    mapping = {}
    for target, names in ALIASES.items():
        found = next((lower[n] for n in names if n in lower), None)
        if found is not None:
            mapping[found] = target
    missing = [c for c in ("ts", "open", "high", "low", "close", "volume") if c not in mapping.values()]
    if missing:
        raise CsvFileError(f"{path.name}: no column for {', '.join(missing)} (have {', '.join(header)})")
    return mapping


def _symbol_of(path: Path) -> str:
    try:
        return validate_symbol(path.stem)
    except SymbolError as exc:
        raise ValueError(
            f"{path.name}: no symbol column, and the file name {path.stem!r} is no symbol ({exc}); "
            "pass --symbol"
        ) from exc


@dataclass
class _FileLoad:
    """One file's chunks into the store, inside the file's transaction, counted into ``done``."""

    conn: Connection
    columns: dict[str, str]
    symbol: str | None
    options: ImportOptions
    label: str
    done: FileSummary
    seen: SeenKeys = field(default_factory=SeenKeys)

    def chunk(self, chunk: CsvChunk) -> None:
        frame = self._store_frame(chunk.rows)
        raw = chunk.rows.assign(_line=chunk.rows.index)  # quarantined verbatim, with their line number
        refused: list[pd.Series] = []  # reasons, indexed by line
        repeated = self.seen.repeated(frame["symbol"], frame["ts"])
        if repeated.any():
            dups = raw[repeated].assign(symbol=frame["symbol"], interval=frame["interval"])
            refused.append(self._quarantine(dups.assign(reason=_REPEATED)))
            frame, raw = frame[~repeated], raw[~repeated]
        result = load_bars(
            frame,
            source=self.options.source,
            engine=self.conn,
            raw=raw,
            quarantine_source=self.label,
            ts_column=self._ts_column,
        )
        refused.append(result.reasons)
        if chunk.bad:
            lines = pd.DataFrame(
                {
                    "_line": [b.line for b in chunk.bad],
                    "_fields": [b.fields for b in chunk.bad],
                    "reason": [b.reason for b in chunk.bad],
                },
                index=pd.Index([b.lines or b.line for b in chunk.bad]),
            )
            refused.append(self._quarantine(lines.assign(symbol=self.symbol, interval=self.options.interval)))
        self._count(len(chunk), result, refused)

    def _count(self, lines: int, result: LoadResult, refused: list[pd.Series]) -> None:
        done = self.done
        done.rows += lines
        done.inserted += result.inserted
        done.updated += result.updated
        done.unchanged += result.unchanged
        done.rejected += sum(len(r) for r in refused)
        notes = [(line, str(why)) for reasons in refused for line, why in reasons.items()]
        for line, why in sorted(notes, key=lambda note: int(str(note[0]).split("-")[0])):
            done.note(line, why)

    @property
    def _ts_column(self) -> str:
        return next(name for name, target in self.columns.items() if target == "ts")

    def _quarantine(self, rows: pd.DataFrame) -> pd.Series:
        quarantine_bars(rows, source=self.label, engine=self.conn, ts_column=self._ts_column)
        return rows["reason"]

    def _store_frame(self, rows: pd.DataFrame) -> pd.DataFrame:
        """The chunk in store columns: symbol, interval, ts (UTC), prices and volume as numbers."""
        named = {target: rows[name] for name, target in self.columns.items()}
        opts = self.options
        frame = pd.DataFrame(index=rows.index)
        frame["symbol"] = self.symbol if self.symbol is not None else named["symbol"].astype("string")
        frame["interval"] = opts.interval
        frame["ts"] = parse_timestamps(
            named["ts"], opts.tz, date_format=opts.date_format, session=opts.interval in SESSION_INTERVALS
        )
        for column in _NUMBERS:
            if column in named:
                frame[column] = parse_numbers(named[column])
        return frame


def count_rows(path: Path) -> int:
    """Data rows in a CSV file (lines minus the header), cheaply, for a progress total."""
    with path.open("rb") as fh:
        return max(sum(buf.count(b"\n") for buf in iter(lambda: fh.read(1 << 20), b"")) - 1, 0)
