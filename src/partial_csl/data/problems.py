"""The errors of a label file, each naming the file, and each bad row with its line, column and value."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

FILENAME_COLUMN = "filename"
SKIP_HINT = "(fix them, or pass --on-bad-rows skip to leave them out and list them in rejected_rows.csv)"


@dataclass(frozen=True)
class BadRow:
    line: int
    column: str
    value: str
    reason: str

    def __str__(self) -> str:
        if not self.column:  # a problem of the whole row (its number of fields)
            return f"line {self.line} {self.reason}: {self.value!r}"
        return f"line {self.line}, column {self.column!r}, value {self.value!r}: {self.reason}"


class LabelFileError(ValueError):
    """A CSV with bad rows; ``problems`` holds every one of them."""

    def __init__(self, path: Path, problems: list[BadRow], hint: str = SKIP_HINT):
        self.path, self.problems = path, problems
        lines = "\n".join(f"  {p}" for p in problems[:50])
        more = f"\n  ... and {len(problems) - 50} more" if len(problems) > 50 else ""
        super().__init__(f"{path}: {len(problems)} bad row(s):\n{lines}{more}\n{hint}")


class CsvFormatError(LabelFileError):
    """A CSV that cannot be read as a table at all: not UTF-8, empty, a duplicated or missing column."""

    def __init__(self, path: Path, reason: str, line: int | None = None):
        self.path, self.problems, self.line = path, [], line
        where = f", line {line}" if line is not None else ""
        ValueError.__init__(self, f"{path}{where}: {reason}")
