"""Open Images V6 image-level labels (``--dataset openimages --data DIR``), the data CSL was made for.

Inside ``DIR``, as the download lays it out:

* ``oidv6-class-descriptions.csv``: ``LabelName,DisplayName`` (``/m/0bt9lr,Dog``);
* ``*train-annotations-human-imagelabels.csv`` and ``*validation-annotations-human-imagelabels.csv``
  (``ImageID,Source,LabelName,Confidence``): Confidence 1 is a verified positive, 0 a verified negative, and every
  label of an image without a row is unknown. The machine-generated label files are other files and are not read;
* images as ``train/<ImageID>.jpg`` and ``validation/<ImageID>.jpg``.

The classes are ``--classes`` (a file of LabelNames, e.g. the trainable classes) or the LabelNames the training file
uses, sorted. A class is named by its DisplayName, or ``DisplayName (LabelName)`` where the descriptions give one
DisplayName to several LabelNames, so the names are unique and the same for every reader of the same descriptions.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from .csv_rows import read_csv_rows
from .long_labels import LongLabels, read_long_csv
from .problems import CsvFormatError

DESCRIPTIONS = "oidv6-class-descriptions.csv"
LABEL_COLUMNS = ("ImageID", "LabelName", "Confidence")
SPLIT_FOLDERS = {"train": "train", "val": "validation"}


def read_descriptions(root: str | Path) -> dict[str, str]:
    """LabelName -> class name (see the module docstring); a LabelName listed twice is refused."""
    path = Path(root) / DESCRIPTIONS
    table = read_csv_rows(path)
    label, display = table.column_index(["LabelName", "DisplayName"])
    names: dict[str, str] = {}
    for line, row in zip(table.lines, table.rows):
        if row[label] in names:
            raise CsvFormatError(path, f"LabelName {row[label]!r} is described twice", line)
        names[row[label].strip()] = row[display].strip()
    shared = {name for name, count in Counter(names.values()).items() if count > 1}
    return {ident: f"{name} ({ident})" if name in shared else name for ident, name in names.items()}


def split_paths(split: str, root: str | Path | None, annotations: str | None, images: str | None) -> tuple[Path, Path]:
    """The human-verified label file and image folder of ``split`` under ``root``; explicit paths win."""
    folder = SPLIT_FOLDERS[split]
    if annotations is None:
        if root is None:
            raise ValueError(f"Open Images {split} data needs --data DIR (or --{split}-annotations and images)")
        found = sorted(Path(root).glob(f"*{folder}-annotations-human-imagelabels*.csv"))
        if len(found) != 1:
            raise FileNotFoundError(f"{root}: expected one *{folder}-annotations-human-imagelabels.csv, found "
                                    f"{[p.name for p in found] or 'none'}")
        annotations = str(found[0])
    return Path(annotations), Path(images) if images else Path(root) / folder


def read_open_images_split(annotations: Path, images: Path, descriptions: dict[str, str],
                           class_ids: list[str] | None = None) -> tuple[LongLabels, list[str]]:
    """The split's images and verified labels over ``class_ids`` (default: its LabelNames, sorted); returns the labels
    (classes as LabelNames) and the class names."""
    labels = read_long_csv(annotations, images, class_ids, columns=LABEL_COLUMNS, image_suffix=".jpg",
                           vocabulary=list(descriptions))
    return labels, [descriptions[ident] for ident in labels.class_names]


def class_ids_of(names: list[str], descriptions: dict[str, str]) -> list[str]:
    """The LabelNames of a checkpoint's class names (refused, named, if the descriptions lack one)."""
    by_name = {name: ident for ident, name in descriptions.items()}
    missing = [name for name in names if name not in by_name]
    if missing:
        raise ValueError(f"{len(missing)} of the checkpoint's classes are not in {DESCRIPTIONS}: {missing[:5]}")
    return [by_name[name] for name in names]
