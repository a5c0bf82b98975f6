"""A user's own multi-label data as a *long* CSV (``--dataset multilabel_csv``): one verified label per row,

    filename,label,value
    img_001.jpg,dog,1        # dog is in the image
    img_001.jpg,cat,0        # cat is verified absent
                             # every (image, class) pair without a row is unknown

The class list is the training file's labels, sorted, unless a ``--classes`` file (one name per line) fixes it and
its order. Parsing is vectorised (pandas over the whole column, no Python loop per cell), and every bad row is named
at once, before training: a value other than 1 / 0, an empty or unknown label, the same (image, label) twice (and
the worse case, one class verified both positive and negative for one image), a filename outside the image folder,
a missing or unreadable image.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .labels import FILENAME_COLUMN, BadRow, LabelFileError, check_filenames, read_csv_rows

LONG_COLUMNS = (FILENAME_COLUMN, "label", "value")
FIX_HINT = "(fix them and run again)"


@dataclass
class LongLabels:
    """Images of one long CSV with targets (N, C) in {-1 unknown, 0, 1} over ``class_names``."""

    filenames: list[str]
    targets: np.ndarray
    class_names: list[str]


def read_class_list(path: str | Path) -> list[str]:
    """Class names, one per line (blank lines skipped); a repeated name is refused with its lines."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--classes file not found: {path}")
    names = [(n, line.strip()) for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             if line.strip()]
    first: dict[str, int] = {}
    for number, name in names:
        if name in first:
            raise ValueError(f"{path}, line {number}: class {name!r} is listed twice (first on line {first[name]})")
        first[name] = number
    if not names:
        raise ValueError(f"{path}: no class names")
    return [name for _, name in names]


def _duplicate_problems(frame: pd.DataFrame, lines: np.ndarray, usable: np.ndarray, columns: tuple[str, ...]
                        ) -> list[BadRow]:
    """Rows that repeat an earlier row's (filename, label): a plain duplicate, or a conflict of 1 and 0."""
    keys = frame.loc[usable, [FILENAME_COLUMN, "label"]]
    repeated = keys.duplicated(keep="first")
    if not repeated.any():
        return []
    first_line = pd.Series(lines[usable], index=keys.index).groupby([keys[FILENAME_COLUMN], keys["label"]]).transform(
        "first")
    values = frame.loc[usable, "value"]
    conflicting = values.groupby([keys[FILENAME_COLUMN], keys["label"]]).transform("nunique") > 1
    problems = []
    for i in np.flatnonzero(repeated.to_numpy()):
        index = keys.index[i]
        why = ("verified both positive and negative for this image" if conflicting.loc[index]
               else "a duplicate row")
        problems.append(BadRow(int(lines[index]), columns[1], keys.loc[index, "label"],
                               f"{why} (first on line {first_line.loc[index]})"))
    return problems


def _row_problems(frame: pd.DataFrame, lines: np.ndarray, allowed: list[str] | None, allowed_what: str,
                  columns: tuple[str, ...]) -> list[BadRow]:
    value, label = frame["value"].to_numpy(dtype=object), frame["label"].to_numpy(dtype=object)
    checks = [((value != "0") & (value != "1"), "value", "expected 1 (positive) or 0 (verified negative)"),
              (label == "", "label", "empty label")]
    if allowed is not None:  # hashed lookups: pandas' isin on Arrow strings loops in Python
        checks.append(((label != "") & (pd.Index(allowed).get_indexer(label) < 0), "label",
                       f"not one of {allowed_what}"))
    problems = []
    for mask, column, reason in checks:
        name = columns[LONG_COLUMNS.index(column)]
        problems += [BadRow(int(lines[i]), name, frame.at[i, column], reason) for i in np.flatnonzero(mask)]
    return problems


def read_long_csv(csv_path: str | Path, image_dir: str | Path, class_names: list[str] | None = None, *,
                  columns: tuple[str, str, str] = LONG_COLUMNS, image_suffix: str = "",
                  vocabulary: list[str] | None = None) -> LongLabels:
    """Parse and validate a long CSV against ``image_dir`` (every image must exist and decode); with
    ``class_names`` each label must be one of them, else the classes are the file's labels (each one of
    ``vocabulary`` when given), sorted. ``columns`` names the file's (image, label, value) columns; an image's file is
    its name plus ``image_suffix`` (Open Images: ``ImageID`` + ``.jpg``)."""
    csv_path = Path(csv_path)
    table = read_csv_rows(csv_path)
    table.column_index(columns)  # CsvFormatError naming a missing column
    frame = table.frame()[list(columns)].set_axis(list(LONG_COLUMNS), axis=1).apply(lambda c: c.str.strip())
    frame[FILENAME_COLUMN] += image_suffix
    lines = np.asarray(table.lines)
    allowed = class_names if class_names is not None else vocabulary
    what = f"the {len(allowed or [])} classes of " + ("--classes / the checkpoint" if class_names is not None
                                                        else "the class descriptions")
    problems = list(table.ragged().values()) + _row_problems(frame, lines, allowed, what, columns)
    usable = np.setdiff1d(np.arange(len(frame)), [np.searchsorted(lines, p.line) for p in problems])
    problems += _duplicate_problems(frame, lines, usable, columns)
    names, first_rows = np.unique(frame[FILENAME_COLUMN].to_numpy(), return_index=True)
    order = np.argsort(first_rows)  # images in the order they first appear
    name_problems, _ = check_filenames([(int(lines[first_rows[i]]), names[i]) for i in order], image_dir)
    problems += [BadRow(p.line, columns[0], p.value, p.reason) for p in name_problems.values()]
    if problems:
        raise LabelFileError(csv_path, sorted(problems, key=lambda p: p.line), hint=FIX_HINT)
    if len(frame) == 0:
        raise ValueError(f"{csv_path}: no label rows")
    classes = class_names or sorted(frame["label"].unique())
    image_index = pd.Index(names[order]).get_indexer(frame[FILENAME_COLUMN])
    class_index = pd.Index(classes).get_indexer(frame["label"])
    targets = np.full((len(order), len(classes)), -1, dtype=np.int64)
    targets[image_index, class_index] = frame["value"].astype(np.int64).to_numpy()
    return LongLabels(list(names[order]), targets, list(classes))
