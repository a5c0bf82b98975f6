"""COCO-format multi-label data: one row per image, one class per category, parsed with pycocotools.

Category ids may have gaps (real COCO has 80 categories with ids 1..90); they map to contiguous class indices in
ascending id order, and the class names come from the JSON. An image without annotations is dropped, as the official
CSL/ASL loaders drop them from train and val (``keep_empty=True`` keeps it as all-negative instead, which changes val
mAP and the negative pools of the FPC simulation). Targets are 0/1: COCO labels are complete,
the partial-label simulators of :mod:`partial_csl.data.partial` make them partial.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .image_checks import image_problems as decode_problems
from .images import check_image_folder, resolve_image_path


@dataclass
class CocoLabels:
    image_dir: Path
    filenames: list[str]
    targets: np.ndarray
    class_names: list[str]
    category_ids: list[int]


def coco_2014_paths(root: str | Path, split: str) -> tuple[Path, Path]:
    """``ROOT/annotations/instances_<split>2014.json`` and ``ROOT/<split>2014/``."""
    root = Path(root)
    return root / "annotations" / f"instances_{split}2014.json", root / f"{split}2014"


def duplicate_images(images: list[dict]) -> list[str]:
    """An image id listed twice (pycocotools would keep the last entry only, dropping an image) and one file listed
    under two ids (it would train under two label sets), each named with its ids and file names."""
    names_of: dict = {}
    ids_of: dict = {}
    for entry in images:
        name = entry.get("file_name")
        names_of.setdefault(entry.get("id"), []).append(name)
        ids_of.setdefault(os.path.normpath(str(name)), []).append(entry.get("id"))
    problems = [f"image id {i} is listed {len(names)} times (file names {', '.join(map(repr, names))})"
                for i, names in names_of.items() if len(names) > 1]
    problems += [f"file name {name!r} is listed under {len(set(ids))} image ids ({', '.join(map(str, ids))})"
                 for name, ids in ids_of.items() if len(set(ids)) > 1]
    return problems


def image_problems(image_ids: list, filenames: list[str], image_dir: Path) -> list[str]:
    """Every listed image outside the folder, absent, or that does not fully decode (checked now, as an attribute
    CSV's images are, rather than one at a time in the middle of training)."""
    check_image_folder(image_dir)
    problems: dict[int, str] = {}
    to_decode: list[tuple[int, Path]] = []
    for position, (image_id, name) in enumerate(zip(image_ids, filenames)):
        try:
            path = resolve_image_path(image_dir, name)
        except ValueError:
            problems[position] = f"image id {image_id}: file name {name!r} points outside {image_dir}"
            continue
        if not path.is_file():
            problems[position] = f"image id {image_id}: {name!r} is listed but absent from {image_dir}"
        else:
            to_decode.append((position, path))
    verdicts = decode_problems([path for _, path in to_decode], [filenames[i] for i, _ in to_decode])
    for (position, _), reason in zip(to_decode, verdicts):
        if reason is not None:
            problems[position] = f"image id {image_ids[position]}: {filenames[position]!r}: {reason}"
    return [problems[i] for i in sorted(problems)]


def load_coco(annotation_file: str | Path, image_dir: str | Path, keep_empty: bool = False,
              check_images: bool = True) -> CocoLabels:
    annotation_file, image_dir = Path(annotation_file), Path(image_dir)
    if not annotation_file.is_file():
        raise FileNotFoundError(f"COCO annotation file not found: {annotation_file}")
    from pycocotools.coco import COCO  # here, not at the top: only COCO-format data needs the package

    try:
        with contextlib.redirect_stdout(io.StringIO()):
            coco = COCO(str(annotation_file))
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ValueError(f"{annotation_file}: not a COCO annotation file ({type(err).__name__}: {err})") from err
    category_ids = sorted(coco.cats)
    if not category_ids:
        raise ValueError(f"{annotation_file}: no categories")
    column = {cid: i for i, cid in enumerate(category_ids)}
    problems = []
    for ann in coco.dataset.get("annotations", []):
        if ann.get("image_id") not in coco.imgs:
            problems.append(f"annotation {ann.get('id')} points to unknown image id {ann.get('image_id')}")
        if ann.get("category_id") not in column:
            problems.append(f"annotation {ann.get('id')} points to unknown category id {ann.get('category_id')}")
    problems += duplicate_images(coco.dataset.get("images", []))
    image_ids = sorted(coco.imgs)
    filenames = [coco.imgs[i]["file_name"] for i in image_ids]
    if check_images:
        problems += image_problems(image_ids, filenames, image_dir)
    if problems:
        shown = "\n  ".join(problems[:50])
        more = f"\n  ... and {len(problems) - 50} more" if len(problems) > 50 else ""
        raise ValueError(f"{annotation_file}: {len(problems)} problem(s):\n  {shown}{more}")
    targets = np.zeros((len(image_ids), len(category_ids)), dtype=np.float32)
    for row, image_id in enumerate(image_ids):
        for ann in coco.imgToAnns.get(image_id, []):
            targets[row, column[ann["category_id"]]] = 1.0
    if not keep_empty:
        keep = targets.any(axis=1)
        targets, filenames = targets[keep], [f for f, k in zip(filenames, keep) if k]
    names = [str(coco.cats[cid].get("name", cid)) for cid in category_ids]
    return CocoLabels(image_dir, filenames, targets, names, category_ids)
