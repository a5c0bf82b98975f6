"""Read and validate an attribute CSV (``filename,neck,sleeve_length,pattern``).

Column order is free and extra columns are ignored. A missing value is ``#N/A``, empty, ``NA``, ``NaN`` or ``nan``;
``3`` and ``3.0`` both mean class 3. Every problem in the file is collected before anything is raised, so the user
sees *all* bad rows at once, each with its line number (the header is line 1), column and value.

With ``on_bad_rows="skip"`` the bad rows are left out and returned as :class:`BadRow` records; the caller writes them
to ``rejected_rows.csv`` (see :func:`write_rejected_rows`). The user's CSV and images are only ever read.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from .schema import UNKNOWN, AttributeSchema

MISSING_TOKENS = frozenset({"#N/A", "", "NA", "NaN", "nan", "N/A"})
FILENAME_COLUMN = "filename"


@dataclass(frozen=True)
class BadRow:
    line: int
    column: str
    value: str
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}, column {self.column!r}, value {self.value!r}: {self.reason}"


class LabelFileError(ValueError):
    """A CSV with bad rows; ``problems`` holds every one of them."""

    def __init__(self, path: Path, problems: list[BadRow]):
        self.path, self.problems = path, problems
        lines = "\n".join(f"  {p}" for p in problems[:50])
        more = f"\n  ... and {len(problems) - 50} more" if len(problems) > 50 else ""
        super().__init__(
            f"{path}: {len(problems)} bad row(s):\n{lines}{more}\n"
            "(fix them, or pass --on-bad-rows skip to leave them out and list them in rejected_rows.csv)"
        )


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


def resolve_image_path(image_dir: Path, filename: str) -> Path:
    """Path of ``filename`` inside ``image_dir``; refuses names that point outside it (``../x``, absolute paths)."""
    root = image_dir.resolve()
    path = (root / filename).resolve()
    if not path.is_relative_to(root):
        raise ValueError(f"filename {filename!r} points outside the image folder {image_dir}")
    return path


def _parse_value(value: str, num_classes: int) -> tuple[int, str | None]:
    if value.strip() in MISSING_TOKENS:
        return UNKNOWN, None
    try:
        number = float(value)
    except ValueError:
        return UNKNOWN, "not a number"
    if not number.is_integer():
        return UNKNOWN, "not a whole number"
    if not 0 <= number < num_classes:
        return UNKNOWN, f"out of range 0..{num_classes - 1}"
    return int(number), None


def _check_image(image_dir: Path, filename: str) -> str | None:
    try:
        path = resolve_image_path(image_dir, filename)
    except ValueError:
        return "points outside the image folder"
    if not path.is_file():
        return f"image file not found in {image_dir}"
    try:
        with Image.open(path) as img:
            img.verify()
    except Exception as err:  # PIL raises many types for corrupt files
        return f"unreadable or corrupt image ({type(err).__name__})"
    return None


def read_attribute_csv(csv_path: str | Path, schema: AttributeSchema, image_dir: str | Path | None = None,
                       on_bad_rows: str = "error") -> LabelTable:
    """Parse and validate ``csv_path``; with ``image_dir`` every image is checked to exist and decode."""
    if on_bad_rows not in ("error", "skip"):
        raise ValueError(f"on_bad_rows must be 'error' or 'skip', got {on_bad_rows!r}")
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FileNotFoundError(f"attribute CSV not found: {csv_path}")
    raw = pd.read_csv(csv_path, dtype=str, keep_default_na=False, na_filter=False)
    raw.columns = [c.strip() for c in raw.columns]
    wanted = [FILENAME_COLUMN, *schema.group_names]
    missing = [c for c in wanted if c not in raw.columns]
    if missing:
        raise ValueError(f"{csv_path}: missing column(s) {missing}; found {list(raw.columns)}")

    problems: list[BadRow] = []
    values = np.full((len(raw), len(schema.groups)), UNKNOWN, dtype=np.int64)
    bad = np.zeros(len(raw), dtype=bool)
    first_line: dict[str, int] = {}
    for i, row in enumerate(raw[wanted].itertuples(index=False)):
        line = i + 2
        name = row[0].strip()
        if not name:
            problems.append(BadRow(line, FILENAME_COLUMN, row[0], "empty filename"))
            bad[i] = True
        elif name in first_line:
            problems.append(BadRow(line, FILENAME_COLUMN, name, f"duplicate filename (first on line {first_line[name]})"))
            bad[i] = True
        else:
            first_line[name] = line
            if image_dir is not None and (reason := _check_image(Path(image_dir), name)):
                problems.append(BadRow(line, FILENAME_COLUMN, name, reason))
                bad[i] = True
        for j, group in enumerate(schema.groups):
            values[i, j], reason = _parse_value(row[j + 1], group.num_classes)
            if reason:
                problems.append(BadRow(line, group.name, row[j + 1], reason))
                bad[i] = True

    if problems and on_bad_rows == "error":
        raise LabelFileError(csv_path, problems)
    keep = np.flatnonzero(~bad)
    filenames = raw[FILENAME_COLUMN].str.strip().tolist()
    return LabelTable(schema, [filenames[i] for i in keep], values[keep], [int(i) + 2 for i in keep],
                      raw.iloc[keep], problems)


def write_rejected_rows(problems: list[BadRow], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["line", "column", "value", "reason"])
        for p in problems:
            writer.writerow([p.line, p.column, p.value, p.reason])
    return path


def write_label_csv(raw: pd.DataFrame, path: str | Path) -> Path:
    """Write rows exactly as they were read (strings untouched, same columns), to a new file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    raw.to_csv(path, index=False, lineterminator="\n")
    return path
