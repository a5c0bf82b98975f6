"""Read and validate an attribute CSV (``filename,neck,sleeve_length,pattern``).

Column order is free and extra columns are ignored. A missing value is ``#N/A``, empty, ``NA``, ``N/A`` or ``NaN``
in any letter case; ``3`` and ``3.0`` both mean class 3. Every problem is collected before anything is raised, so
the user sees *all* bad rows at once, each with its physical line number (where the row starts), column and value.
The file is read by :func:`.csv_columns.read_csv_columns`: pyarrow for a simple file (one row per line), else
Python's ``csv`` module, never a reader that pads short rows, renames a duplicated column or loses the physical line
numbers; then each attribute column is parsed at once (:func:`_parse_column`).

With ``on_bad_rows="skip"`` the bad rows are left out and returned as :class:`BadRow` records; the caller writes them
to ``rejected_rows.csv`` (see :func:`write_rejected_rows`). The user's CSV and images are only ever read.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..safe_io import atomic_open
from .csv_columns import CsvColumns, read_csv_columns
from .csv_rows import read_csv_rows
from .filenames import check_filenames
from .problems import FILENAME_COLUMN, BadRow, LabelFileError
from .schema import UNKNOWN, AttributeSchema

#: Missing-value tokens, compared after stripping and case-folding (so ``nan``, ``NAN`` and ``NaN`` all count).
MISSING_TOKENS = frozenset({"#n/a", "", "na", "n/a", "nan"})
_DECIMAL = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


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


def _parse_column(raw: pd.Series, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(class index or -1, problem or None) of every cell of one attribute column, a column at a time.

    A cell is missing when it is one of :data:`MISSING_TOKENS` after stripping and case-folding; else it must be a
    decimal number (``_DECIMAL``, matched by Python's ``re`` so that its rules are the same everywhere), whole and
    in 0..num_classes - 1. Only the decimal cells are converted, by Python's ``float``.
    """
    text = raw.str.strip().to_numpy(dtype=object)
    folded = np.array([t.casefold() for t in text], dtype=object)
    missing = np.isin(folded, list(MISSING_TOKENS))
    decimal = ~missing & np.array([_DECIMAL.fullmatch(t) is not None for t in text], dtype=bool)
    number = np.full(len(text), np.nan)
    number[decimal] = [float(t) for t in text[decimal]]
    whole = np.isfinite(number) & (np.floor(number) == number)
    in_range = whole & (number >= 0) & (number < num_classes)
    problem = np.full(len(text), None, dtype=object)
    infinite = np.isin(np.array([f.lstrip("+-") for f in folded], dtype=object), ["inf", "infinity"])
    problem[~missing & ~decimal] = np.where(infinite[~missing & ~decimal], "not a whole number", "not a number")
    problem[decimal & ~whole] = "not a whole number"
    problem[whole & ~in_range] = f"out of range 0..{num_classes - 1}"
    return np.where(in_range, number, UNKNOWN).astype(np.int64), problem


def _parse_rows(table: CsvColumns, schema: AttributeSchema, image_dir: str | Path | None
                ) -> tuple[np.ndarray, list[BadRow], np.ndarray]:
    """(values (N, G), every problem in file order, bad-row mask) of the table's rows."""
    table.require([FILENAME_COLUMN, *schema.group_names])
    lines, frame = table.lines, table.frame
    per_row: dict[int, list[BadRow]] = {int(np.searchsorted(lines, p.line)): [p] for p in table.ragged}
    usable = np.setdiff1d(np.arange(len(frame)), list(per_row))
    names = frame[FILENAME_COLUMN].to_numpy(dtype=object)
    name_problems, _ = check_filenames(list(zip(lines[usable].tolist(), names[usable].tolist())), image_dir)
    for position, problem in name_problems.items():
        per_row.setdefault(int(usable[position]), []).append(problem)
    values = np.full((len(frame), len(schema.groups)), UNKNOWN, dtype=np.int64)
    is_usable = np.isin(np.arange(len(frame)), usable)
    for j, group in enumerate(schema.groups):
        parsed, problem = _parse_column(frame[group.name], group.num_classes)
        values[is_usable, j] = parsed[is_usable]
        cells = frame[group.name].to_numpy(dtype=object)
        for i in np.flatnonzero(is_usable & (problem != None)):  # noqa: E711 (an elementwise test)
            per_row.setdefault(int(i), []).append(BadRow(int(lines[i]), group.name, cells[i], problem[i]))
    bad = np.isin(np.arange(len(frame)), list(per_row))
    return values, [p for i in sorted(per_row) for p in per_row[i]], bad


def read_attribute_csv(csv_path: str | Path, schema: AttributeSchema, image_dir: str | Path | None = None,
                       on_bad_rows: str = "error") -> LabelTable:
    """Parse and validate ``csv_path``; with ``image_dir`` every image is checked to exist and decode."""
    if on_bad_rows not in ("error", "skip"):
        raise ValueError(f"on_bad_rows must be 'error' or 'skip', got {on_bad_rows!r}")
    csv_path = Path(csv_path)
    table = read_csv_columns(csv_path, strip=False)  # every column, as written (the splits write them back)
    values, problems, bad = _parse_rows(table, schema, image_dir)
    if problems and on_bad_rows == "error":
        raise LabelFileError(csv_path, problems)
    keep = np.flatnonzero(~bad)
    filenames = table.frame[FILENAME_COLUMN].str.strip().to_numpy(dtype=object)[keep].tolist()
    return LabelTable(schema, filenames, values[keep], table.lines[keep].tolist(), table.frame.iloc[keep], problems)


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
