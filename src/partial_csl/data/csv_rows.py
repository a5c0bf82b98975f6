"""The exact CSV reader: Python's ``csv`` module, each row with the physical line it starts on, every ragged row
kept to be named. Slower than :mod:`.csv_columns`' fast path (which falls back to it), exact for any file."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .problems import BadRow, CsvFormatError

# Python's csv refuses fields over 131,072 characters; pyarrow's fast path has no such limit, and a file must not
# be refused or accepted depending on which reader it went to
csv.field_size_limit(2**31 - 1)


@dataclass
class CsvRows:
    """A CSV's header and rows as strings, each row with the physical line it starts on."""

    path: Path
    header: list[str]
    header_line: int
    rows: list[list[str]]
    lines: list[int]

    def column_index(self, wanted: Sequence[str]) -> list[int]:
        """Positions of the ``wanted`` columns; CsvFormatError naming the missing ones."""
        missing = [c for c in wanted if c not in self.header]
        if missing:
            raise CsvFormatError(self.path, f"missing column(s) {missing}; found {self.header}", self.header_line)
        return [self.header.index(c) for c in wanted]

    def ragged(self) -> dict[int, BadRow]:
        """Rows whose number of fields differs from the header's, by row position."""
        width = len(self.header)
        return {i: BadRow(line, "", ",".join(row), f"has {len(row)} fields, the header has {width}")
                for i, (line, row) in enumerate(zip(self.lines, self.rows)) if len(row) != width}

    def frame(self) -> pd.DataFrame:
        """The rows as strings under the header (ragged rows padded or cut; they are bad rows anyway)."""
        width = len(self.header)
        return pd.DataFrame([(row + [""] * width)[:width] for row in self.rows], columns=self.header, dtype=str)


def _decode(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        raise CsvFormatError(path, f"not UTF-8 text (byte 0x{data[err.start]:02x}); save the file as UTF-8",
                             line) from None


def _is_blank(row: list[str]) -> bool:
    return not row or (len(row) == 1 and not row[0].strip())


def read_csv_rows(path: str | Path) -> CsvRows:
    """Parse a UTF-8 CSV with its physical line numbers; CsvFormatError for an unreadable or header-less file.

    Blank lines are skipped. Header names are stripped of surrounding spaces and must be unique.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CSV file not found: {path}")
    reader = csv.reader(io.StringIO(_decode(path, path.read_bytes()), newline=""))
    records, start = [], 1
    try:
        for row in reader:
            if not _is_blank(row):
                records.append((start, row))
            start = reader.line_num + 1
    except csv.Error as err:
        raise CsvFormatError(path, f"not a valid CSV ({err})", reader.line_num) from None
    if not records:
        raise CsvFormatError(path, "empty file: no header line")
    header_line, header = records[0][0], [c.strip() for c in records[0][1]]
    _refuse_duplicate_columns(path, header, header_line)
    return CsvRows(path, header, header_line, [r for _, r in records[1:]], [n for n, _ in records[1:]])


def _refuse_duplicate_columns(path: Path, header: list[str], line: int) -> None:
    seen: dict[str, int] = {}
    for position, name in enumerate(header, start=1):
        if name in seen:
            raise CsvFormatError(path, f"duplicated column {name!r} (columns {seen[name]} and {position} of the "
                                       "header); rename or remove one", line)
        seen[name] = position
