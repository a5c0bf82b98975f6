"""LVIS v1 as image-level partial labels (``--dataset lvis --data DIR``): federated annotation made partial.

Inside ``DIR``: ``lvis_v1_train.json`` and ``lvis_v1_val.json``, and the COCO 2017 images their ``coco_url`` names
(``train2017/…``, ``val2017/…``; LVIS images have no ``file_name``, and some validation images are COCO train2017
photos, so the folder comes from the URL). Per image, a category with an annotation is a positive (also when it is in
``not_exhaustive_category_ids``: that flag is about missing *instances*), a category in ``neg_category_ids`` a
verified negative, and every other category unknown. Each category's ``frequency`` (r / c / f: in 1–10, 11–100, over
100 training images) gives the rare / common / frequent groups that LVIS reports mAP over.

Every inconsistency is named before training: an annotation or negative id that is no category, a category both
annotated and verified negative on one image, an image whose URL is not under ``DIR``, a missing or unreadable image.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

import numpy as np

from .filenames import check_filenames
from .problems import BadRow, LabelFileError

FREQUENCY_GROUPS = {"r": "rare", "c": "common", "f": "frequent"}
SPLIT_FILES = {"train": "lvis_v1_train.json", "val": "lvis_v1_val.json"}


@dataclass
class LvisSplit:
    filenames: list[str]  # relative to the root: train2017/000000391895.jpg
    targets: np.ndarray  # (N, C) in {-1, 0, 1}
    class_names: list[str]
    class_groups: dict[str, list[int]]  # rare / common / frequent: class indices


def split_path(split: str, root: str | Path | None, annotations: str | None) -> Path:
    if annotations:
        return Path(annotations)
    if not root:
        raise ValueError(f"LVIS {split} data needs --data DIR (with {SPLIT_FILES[split]})")
    return Path(root) / SPLIT_FILES[split]


def _image_name(image: dict) -> str:
    """``train2017/<name>.jpg`` from the image's ``coco_url`` (its last two path parts)."""
    parts = PurePosixPath(urlparse(image.get("coco_url", "")).path).parts
    return str(PurePosixPath(*parts[-2:])) if len(parts) >= 2 else ""


def _labels(data: dict, index: dict[int, int], path: Path) -> tuple[np.ndarray, list[BadRow]]:
    """Targets of every image and the problems, each named by image id (LVIS has no lines to name)."""
    row = {image["id"]: i for i, image in enumerate(data["images"])}
    targets = np.full((len(row), len(index)), -1, dtype=np.int8)
    problems = []
    for image in data["images"]:
        for category in image.get("neg_category_ids", []):
            if category not in index:
                problems.append(BadRow(image["id"], "neg_category_ids", str(category), "no such category"))
            else:
                targets[row[image["id"]], index[category]] = 0
    for annotation in data.get("annotations", []):
        category, image_id = annotation["category_id"], annotation["image_id"]
        if category not in index or image_id not in row:
            what = "category_id" if category not in index else "image_id"
            problems.append(BadRow(annotation["id"], what, str(annotation[what]), f"no such {what[:-3]}"))
        elif targets[row[image_id], index[category]] == 0:
            problems.append(BadRow(image_id, "neg_category_ids", str(category),
                                   "annotated and verified negative on this image"))
        else:
            targets[row[image_id], index[category]] = 1
    return targets, problems


def read_lvis_split(path: str | Path, root: str | Path, class_names: list[str] | None = None) -> LvisSplit:
    """An LVIS JSON's images and image-level labels; with ``class_names`` (a checkpoint's) its categories must be
    exactly those, in that order."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"LVIS annotations not found: {path}")
    data = json.loads(path.read_text(encoding="utf-8"))
    categories = sorted(data["categories"], key=lambda c: c["id"])
    names = [c["name"] for c in categories]
    if class_names is not None and names != class_names:
        raise ValueError(f"{path}: its {len(names)} categories are not the checkpoint's {len(class_names)} classes")
    targets, problems = _labels(data, {c["id"]: i for i, c in enumerate(categories)}, path)
    entries = [(image["id"], _image_name(image)) for image in data["images"]]
    name_problems, _ = check_filenames(entries, root)
    problems += [BadRow(p.line, "coco_url", p.value, p.reason) for p in name_problems.values()]
    if problems:
        raise LabelFileError(path, problems, hint="(the 'line' is the image or annotation id; fix them and run again)")
    groups = {label: [i for i, c in enumerate(categories) if c.get("frequency") == key]
              for key, label in FREQUENCY_GROUPS.items()}
    return LvisSplit([name for _, name in entries], targets.astype(np.int64), names, groups)
