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

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import sparse

from .csv_columns import read_csv_columns
from .filenames import check_filenames
from .problems import FILENAME_COLUMN, BadRow, LabelFileError
from .sparse_targets import SparseTargets

LONG_COLUMNS = (FILENAME_COLUMN, "label", "value")
FIX_HINT = "(fix them and run again)"


@dataclass
class LongLabels:
    """Images of one long CSV with their verified labels over ``class_names``, stored sparsely (``labels``)."""

    filenames: list[str]
    labels: SparseTargets
    class_names: list[str]
    other_class_rows: int = 0  # rows of a known class outside ``class_names``, left out (see parse_long_labels)

    @property
    def targets(self) -> np.ndarray:
        """The dense (N, C) targets in {-1 unknown, 0, 1}; refused, naming the memory, when they would not fit."""
        return self.labels.to_dense()


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


def _duplicate_problems(keys: np.ndarray, values: np.ndarray, lines: np.ndarray, labels: pd.Series,
                        label_column: str) -> list[BadRow]:
    """Rows that repeat an earlier row's (image, label) pair, given as one integer key per usable row: a plain
    duplicate, or a conflict of 1 and 0. ``labels`` is the label column, read only at the rows named."""
    order = np.argsort(keys, kind="stable")
    repeated = np.zeros(len(keys), dtype=bool)
    ranked = keys[order]
    repeated[order[1:]] = ranked[1:] == ranked[:-1]
    if not repeated.any():
        return []
    group_start = np.maximum.accumulate(np.where(~repeated[order], np.arange(len(order)), 0))
    first = np.empty_like(order)
    first[order] = order[group_start]  # each row's first row with the same key
    conflict_keys = set(keys[(values != values[first])].tolist())
    problems = []
    for i in np.flatnonzero(repeated):
        why = ("verified both positive and negative for this image" if keys[i] in conflict_keys
               else "a duplicate row")
        problems.append(BadRow(int(lines[i]), label_column, labels.iat[i], f"{why} (first on line {lines[first[i]]})"))
    return problems


def _per_value(column: pd.Series, test: Callable[[pd.Index], np.ndarray]) -> np.ndarray:
    """``test`` of each row of a categorical column, computed once per distinct value."""
    return np.asarray(test(column.cat.categories), dtype=bool)[column.cat.codes.to_numpy()]


def _row_problems(frame: pd.DataFrame, lines: np.ndarray, allowed: list[str] | None, allowed_what: str,
                  columns: tuple[str, ...]) -> list[BadRow]:
    value, label = frame["value"], frame["label"]
    checks = [(_per_value(value, lambda v: ~v.isin(["0", "1"])), "value",
               "expected 1 (positive) or 0 (verified negative)"),
              (_per_value(label, lambda v: v == ""), "label", "empty label")]
    if allowed is not None:
        checks.append((_per_value(label, lambda v: (v != "") & (pd.Index(allowed).get_indexer(v) < 0)), "label",
                       f"not one of {allowed_what}"))
    problems = []
    for mask, column, reason in checks:
        name = columns[LONG_COLUMNS.index(column)]
        problems += [BadRow(int(lines[i]), name, frame.at[i, column], reason) for i in np.flatnonzero(mask)]
    return problems


def _encode(frame: pd.DataFrame, lines: np.ndarray, problems: list[BadRow], class_names: list[str] | None,
            columns: tuple[str, ...], image_suffix: str) -> tuple[LongLabels, np.ndarray, list[BadRow]]:
    """The labels of the rows without problems (an image's file: its name plus ``image_suffix``), each image's first
    line, and the duplicate problems."""
    bad = np.zeros(len(frame), dtype=bool)
    bad[np.searchsorted(lines, [p.line for p in problems]).astype(np.int64)] = True
    image_codes, images = pd.factorize(frame[FILENAME_COLUMN], sort=False)  # images in the order they first appear
    label_codes, labels = pd.factorize(frame["label"], sort=False)
    image_codes, label_codes = image_codes.astype(np.int32), label_codes.astype(np.int32)  # half the memory
    values = _per_value(frame["value"], lambda v: v == "1").astype(np.int8)
    usable = np.flatnonzero(~bad) if bad.any() else slice(None)  # a slice: no copies of tens of millions of rows
    used = np.bincount(label_codes[usable], minlength=len(labels)) > 0
    classes = list(class_names) if class_names is not None else sorted(labels[used])
    class_of_label = pd.Index(classes).get_indexer(labels).astype(np.int32)
    codes = sparse.csr_matrix((values[usable] + 1, (image_codes[usable], class_of_label[label_codes[usable]])),
                              shape=(len(images), len(classes)), dtype=np.int8)  # 2 positive, 1 negative
    duplicates = []
    if codes.nnz < len(values[usable]):  # the matrix merged repeated (image, label) pairs: find and name them
        keys = image_codes[usable].astype(np.int64) * max(len(labels), 1) + label_codes[usable]
        duplicates = _duplicate_problems(keys, values[usable], lines[usable], frame["label"].iloc[usable],
                                         columns[1])
    first_lines = np.full(len(images), -1, dtype=np.int64)
    first_lines[image_codes[::-1]] = lines[::-1]
    filenames = (images.astype(str) + image_suffix).tolist()  # one Python string per image, not per row
    return LongLabels(filenames, SparseTargets(codes), classes), first_lines, duplicates


def _leave_out_other_classes(frame: pd.DataFrame, lines: np.ndarray, ragged: list[BadRow], class_names: list[str],
                             vocabulary: list[str]) -> tuple[pd.DataFrame, np.ndarray, int]:
    """The rows without the (well-formed) rows of a ``vocabulary`` class outside ``class_names``, and their count."""
    other = _per_value(frame["label"], lambda v: v.isin(vocabulary) & ~v.isin(class_names))
    other = other & ~np.isin(lines, [p.line for p in ragged])  # a ragged row stays, to be named
    return frame[~other].reset_index(drop=True), lines[~other], int(other.sum())


def parse_long_labels(csv_path: str | Path, class_names: list[str] | None = None, *,
                      columns: tuple[str, str, str] = LONG_COLUMNS, image_suffix: str = "",
                      vocabulary: list[str] | None = None, image_dir: str | Path | None = None) -> LongLabels:
    """Parse and validate a long CSV; with ``class_names`` each label must be one of them, else the classes are the
    file's labels (each one of ``vocabulary`` when given), sorted. With both, a label of ``vocabulary`` outside
    ``class_names`` is a class the run does not train (Open Images' labels beyond its trainable classes): its rows
    are left out and counted, and an image left with no row is left out too. ``columns`` names the file's (image,
    label, value) columns; an image's file is its name plus ``image_suffix`` (Open Images: ``ImageID`` + ``.jpg``).
    With ``image_dir`` every image must exist there and decode; without it filenames are not checked (labels only)."""
    csv_path = Path(csv_path)
    for what, names in (("class_names", class_names), ("vocabulary", vocabulary)):
        if names is not None and len(set(names)) != len(names):
            raise ValueError(f"{what} repeats a name: {sorted(n for n in set(names) if names.count(n) > 1)[:5]}")
    table = read_csv_columns(csv_path, columns, categorical=True)
    frame = table.frame.set_axis(list(LONG_COLUMNS), axis=1)
    lines, other_rows = table.lines, 0
    if class_names is not None and vocabulary is not None:
        frame, lines, other_rows = _leave_out_other_classes(frame, lines, table.ragged, class_names, vocabulary)
        what = f"the {len(vocabulary)} classes of the class descriptions"
    else:
        what = f"the {len((class_names or vocabulary) or [])} classes of " + (
            "--classes / the checkpoint" if class_names is not None else "the class descriptions")
    allowed = class_names if class_names is not None else vocabulary
    problems = table.ragged + _row_problems(frame, lines, allowed, what, columns)
    labels, first_lines, duplicates = _encode(frame, lines, problems, class_names, columns, image_suffix)
    labels.other_class_rows = other_rows
    problems += duplicates
    if image_dir is not None:
        name_problems, _ = check_filenames(list(zip(first_lines.tolist(), labels.filenames)), image_dir)
        problems += [BadRow(p.line, columns[0], p.value, p.reason) for p in name_problems.values()]
    if problems:
        raise LabelFileError(csv_path, sorted(problems, key=lambda p: p.line), hint=FIX_HINT)
    if len(frame) == 0:
        raise ValueError(f"{csv_path}: no label rows")
    return labels


def read_long_csv(csv_path: str | Path, image_dir: str | Path, class_names: list[str] | None = None, *,
                  columns: tuple[str, str, str] = LONG_COLUMNS, image_suffix: str = "",
                  vocabulary: list[str] | None = None) -> LongLabels:
    """:func:`parse_long_labels` with every image checked to exist in ``image_dir`` and decode."""
    return parse_long_labels(csv_path, class_names, columns=columns, image_suffix=image_suffix,
                             vocabulary=vocabulary, image_dir=image_dir)
