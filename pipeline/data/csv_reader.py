"""Read a CSV file in chunks of rows that know their line numbers; malformed records are set aside, not
fatal.

A record is malformed when it does not decode in the file's encoding or has another number of fields
than the header. Such records come back with their line number, fields and reason, to be quarantined;
the rest of the file is read on. Only an unreadable header fails the file.
"""

from __future__ import annotations

import codecs
import csv
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

#: Bytes that did not decode come back as lone surrogates (``errors="surrogateescape"``).
_UNDECODED = re.compile("[\udc80-\udcff]")


class CsvFileError(ValueError):
    """The file cannot be read as CSV at all (empty, bad header)."""


@dataclass(frozen=True)
class BadLine:
    """A malformed record: its first line, its fields (undecodable bytes shown as ``\\xNN``), and why."""

    line: int
    fields: list[str]
    reason: str
    lines: str = ""
    """``"5-9"`` when a quoted field ran over several lines, else the line number."""


@dataclass
class CsvChunk:
    """Up to ``chunk_rows`` records: well-formed rows as strings indexed by line number, and bad lines."""

    rows: pd.DataFrame
    bad: list[BadLine] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rows) + len(self.bad)


@dataclass
class CsvFile:
    """An open CSV file: its header, then its records in chunks (see :func:`open_csv`)."""

    header: list[str]
    encoding: str
    _reader: Any

    def chunks(self, chunk_rows: int) -> Iterator[CsvChunk]:
        """The remaining records, ``chunk_rows`` at a time (blank lines are skipped)."""
        numbers: list[int] = []
        rows: list[list[str]] = []
        bad: list[BadLine] = []
        width = len(self.header)
        for first, last, fields, error in self._records():
            if error or len(fields) != width:
                span = str(first) if last == first else f"{first}-{last}"
                why = error or f"expected {width} fields, found {len(fields)}"
                bad.append(BadLine(first, self._shown(fields), why, span))
            else:
                numbers.append(first)
                rows.append(fields)
            if len(rows) + len(bad) >= chunk_rows:
                yield self._chunk(numbers, rows, bad)
                numbers, rows, bad = [], [], []
        if rows or bad:
            yield self._chunk(numbers, rows, bad)

    def _records(self) -> Iterator[tuple[int, int, list[str], str | None]]:
        """(first line, last line, fields, why the csv module refused it) per non-blank record."""
        reader = self._reader
        last = reader.line_num
        while True:
            first = last + 1
            try:
                fields, error = next(reader), None
            except StopIteration:
                return
            except csv.Error as exc:
                if reader.line_num == last:  # the reader did not move on: stop rather than loop
                    raise CsvFileError(f"line {first}: {exc}") from exc
                fields, error = [], f"unreadable CSV: {exc}"
            last = reader.line_num
            if fields or error:
                yield first, last, fields, error

    def _chunk(self, numbers: list[int], rows: list[list[str]], bad: list[BadLine]) -> CsvChunk:
        index = pd.Index(numbers, name="line", dtype="int64")
        frame = pd.DataFrame(rows, columns=self.header, index=index, dtype=object)
        if not _all_ascii(rows):  # rare: look for undecoded bytes row by row
            undecoded = [i for i, row in enumerate(rows) if _undecodable(row, self.encoding)]
            for i in undecoded:
                reason = _undecodable(rows[i], self.encoding) or ""
                bad.append(BadLine(numbers[i], self._shown(rows[i]), reason, str(numbers[i])))
            frame = frame.drop(index=[numbers[i] for i in undecoded])
        return CsvChunk(frame, sorted(bad, key=lambda b: b.line))

    def _shown(self, fields: list[str]) -> list[str]:
        return [
            f.encode(self.encoding, "surrogateescape").decode(self.encoding, "backslashreplace")
            for f in fields
        ]


def _all_ascii(rows: list[list[str]]) -> bool:
    return "".join(map("".join, rows)).isascii()


def _undecodable(fields: list[str], encoding: str) -> str | None:
    for number, text in enumerate(fields, start=1):
        found = None if text.isascii() else _UNDECODED.search(text)
        if found:
            return f"not valid {encoding}: byte 0x{ord(found.group()) - 0xDC00:02x} in field {number}"
    return None


def check_encoding(encoding: str) -> str:
    """Return ``encoding`` if Python knows it and it is ASCII-compatible (UTF-8, CP949, EUC-KR, Latin-1)."""
    try:
        name = codecs.lookup(encoding).name
    except LookupError as exc:
        raise ValueError(f"unknown encoding {encoding!r}: use e.g. utf-8 or cp949") from exc
    if name.startswith(("utf-16", "utf-32")):
        raise ValueError(f"encoding {encoding!r} is not supported: save the file as UTF-8")
    return encoding


@contextmanager
def open_csv(path: Path, encoding: str = "utf-8") -> Iterator[CsvFile]:
    """Open ``path`` and read its header; :class:`CsvFileError` if it has none or it does not decode.
    A UTF-8 byte-order mark is dropped."""
    with path.open(encoding=encoding, errors="surrogateescape", newline="") as fh:
        reader = csv.reader(fh)
        try:
            header = next(reader)
        except StopIteration:
            raise CsvFileError(f"{path.name}: the file is empty") from None
        except csv.Error as exc:
            raise CsvFileError(f"{path.name}: line 1 (header): {exc}") from exc
        problem = _undecodable(header, encoding)
        if problem:
            raise CsvFileError(
                f"{path.name}: line 1 (header) is {problem}; pass the file's encoding (cp949?)"
            )
        names = [h.strip().removeprefix("\ufeff") for h in header]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise CsvFileError(f"{path.name}: line 1 (header) names column(s) twice: {', '.join(repeated)}")
        yield CsvFile(names, encoding, reader)
