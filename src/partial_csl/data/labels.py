"""Read and validate an attribute CSV (``filename,neck,sleeve_length,pattern``).

Column order is free and extra columns are ignored. A missing value is ``#N/A``, empty, ``NA``, ``N/A`` or ``NaN``
in any letter case; ``3`` and ``3.0`` both mean class 3. Every problem is collected before anything is raised, so
the user sees *all* bad rows at once, each with its physical line number (where the row starts), column and value.
We parse with the ``csv`` module, not pandas, because pandas hides what the user must hear about: it pads short rows
with missing values, renames a duplicated column and loses the physical line numbers.

With ``on_bad_rows="skip"`` the bad rows are left out and returned as :class:`BadRow` records; the caller writes them
to ``rejected_rows.csv`` (see :func:`write_rejected_rows`). The user's CSV and images are only ever read.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..safe_io import atomic_open
from .filenames import check_filenames
from .problems import FILENAME_COLUMN, BadRow, CsvFormatError, LabelFileError
from .schema import UNKNOWN, AttributeSchema

#: Missing-value tokens, compared after stripping and case-folding (so ``nan``, ``NAN`` and ``NaN`` all count).
MISSING_TOKENS = frozenset({"#n/a", "", "na", "n/a", "nan"})
_DECIMAL = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


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


@dataclass
class LabelTable:
    """Validated labels: one row per image, ``values`` (N, G) with -1 for unknown."""

    schema: AttributeSchema
    filenames: list[str]
    values: np.ndarray
    lines: list[int]
    raw: pd.DataFrame = field(repr=False)
    rejected: list[BadRow] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.filenames)

    @property
    def targets(self) -> np.ndarray:
        return self.schema.encode(self.values)

    def subset(self, index: np.ndarray) -> LabelTable:
        index = np.asarray(index, dtype=np.int64)
        return LabelTable(self.schema, [self.filenames[i] for i in index], self.values[index],
                          [self.lines[i] for i in index], self.raw.iloc[index], [])


def _parse_value(value: str, num_classes: int) -> tuple[int, str | None]:
    text = value.strip()
    if text.casefold() in MISSING_TOKENS:
        return UNKNOWN, None
    if not _DECIMAL.fullmatch(text):
        infinite = text.lstrip("+-").casefold() in ("inf", "infinity")
        return UNKNOWN, "not a whole number" if infinite else "not a number"
    number = float(text)
    if not math.isfinite(number) or not number.is_integer():
        return UNKNOWN, "not a whole number"
    if not 0 <= number < num_classes:
        return UNKNOWN, f"out of range 0..{num_classes - 1}"
    return int(number), None


def _parse_rows(table: CsvRows, schema: AttributeSchema, image_dir: str | Path | None
                ) -> tuple[np.ndarray, list[BadRow], np.ndarray]:
    """(values (N, G), every problem in file order, bad-row mask) of the table's rows."""
    columns = table.column_index([FILENAME_COLUMN, *schema.group_names])
    ragged = table.ragged()
    usable = [i for i in range(len(table.rows)) if i not in ragged]
    entries = [(table.lines[i], table.rows[i][columns[0]]) for i in usable]
    name_problems, _ = check_filenames(entries, image_dir)
    per_row: dict[int, list[BadRow]] = {i: [p] for i, p in ragged.items()}
    for position, problem in name_problems.items():
        per_row.setdefault(usable[position], []).append(problem)
    values = np.full((len(table.rows), len(schema.groups)), UNKNOWN, dtype=np.int64)
    for i in usable:
        for j, group in enumerate(schema.groups):
            cell = table.rows[i][columns[j + 1]]
            values[i, j], reason = _parse_value(cell, group.num_classes)
            if reason:
                per_row.setdefault(i, []).append(BadRow(table.lines[i], group.name, cell, reason))
    bad = np.isin(np.arange(len(table.rows)), list(per_row))
    return values, [p for i in sorted(per_row) for p in per_row[i]], bad


def read_attribute_csv(csv_path: str | Path, schema: AttributeSchema, image_dir: str | Path | None = None,
                       on_bad_rows: str = "error") -> LabelTable:
    """Parse and validate ``csv_path``; with ``image_dir`` every image is checked to exist and decode."""
    if on_bad_rows not in ("error", "skip"):
        raise ValueError(f"on_bad_rows must be 'error' or 'skip', got {on_bad_rows!r}")
    csv_path = Path(csv_path)
    table = read_csv_rows(csv_path)
    values, problems, bad = _parse_rows(table, schema, image_dir)
    if problems and on_bad_rows == "error":
        raise LabelFileError(csv_path, problems)
    keep = np.flatnonzero(~bad)
    name_column = table.header.index(FILENAME_COLUMN)
    filenames = [table.rows[i][name_column].strip() for i in keep]
    return LabelTable(schema, filenames, values[keep], [table.lines[i] for i in keep], table.frame().iloc[keep],
                      problems)


def read_filename_column(csv_path: str | Path, image_dir: str | Path) -> list[tuple[int, str, Path]]:
    """(line, filename, path) of each row, for prediction: :func:`read_attribute_csv`'s parsing and name checks (no
    image opened, duplicates allowed), every problem in one LabelFileError."""
    csv_path = Path(csv_path)
    table = read_csv_rows(csv_path)
    [column] = table.column_index([FILENAME_COLUMN])
    ragged = table.ragged()
    problems, paths = check_filenames([(line, row[column] if len(row) > column else "")
                                       for line, row in zip(table.lines, table.rows)], image_dir,
                                      check_images=False, duplicates=False)
    found = sorted({**problems, **ragged}.items())
    if found:
        raise LabelFileError(csv_path, [p for _, p in found], hint="(fix them and run again)")
    return [(line, row[column].strip(), path) for line, row, path in zip(table.lines, table.rows, paths)]


def write_rejected_rows(problems: list[BadRow], path: str | Path) -> Path:
    """The rejected rows as a CSV (line, column, value, reason), written as a new file."""
    with atomic_open(path, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["line", "column", "value", "reason"])
        writer.writerows([p.line, p.column, p.value, p.reason] for p in problems)
    return Path(path)


def write_label_csv(raw: pd.DataFrame, path: str | Path) -> Path:
    """Write rows exactly as they were read (strings untouched, same columns), as a new file (temp + rename)."""
    with atomic_open(path, "w", newline="") as f:
        raw.to_csv(f, index=False, lineterminator="\n")
    return Path(path)
