"""Split an attribute CSV into train/valid/test CSVs with a distribution report; writes only to ``out_dir``.

Every output path is checked against every input (the CSV, the image folder and each image, the schema file)
before any work, by resolved path and by inode, and every file is written as a new file (temp file + rename): the
rebalanced image folder holds hard links to the originals, so opening one of its paths for writing could change an
original.
"""

from __future__ import annotations

import json
import os
import random
import re
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from ...data.images import content_duplicates, load_rgb, resolve_image_path
from ...data.labels import (
    FILENAME_COLUMN,
    LabelTable,
    read_attribute_csv,
    write_label_csv,
    write_rejected_rows,
)
from ...data.sampling import expected_distribution, sampling_weights
from ...data.schema import AttributeSchema
from ...data.split import class_distribution, iterative_stratification, known_positive_matrix
from ...data.transforms import build_offline_augmentation
from ...manifest import Manifest, other_files, remove_files
from ...reports.distribution import distribution_markdown, write_distribution
from ...safe_io import (
    atomic_open,
    atomic_write_text,
    check_output_folder,
    refuse_inputs_as_outputs,
    replace_with_link,
    same_file,
)

SPLIT_NAMES = ("train", "valid", "test")
REPORT_SUFFIXES = (".csv", ".md", ".png")
REBALANCE_MANIFEST = "rebalance_files.json"  # the images a rebalancing wrote: a re-run removes its stale ones
_COPY_NAME = re.compile(r"_rb\d+(_[^/]*)?\.png$")


def split_outputs(out_dir: str | Path) -> list[Path]:
    """Every file :func:`split_attribute_csv` may write."""
    out_dir = Path(out_dir)
    names = [f"{s}.csv" for s in SPLIT_NAMES] + ["rejected_rows.csv", "split_summary.json"]
    return [out_dir / n for n in names] + [out_dir / f"split_distribution{x}" for x in REPORT_SUFFIXES]


def rebalance_outputs(out_dir: str | Path) -> list[Path]:
    """The files and the folder :func:`rebalance_train_split` writes (the folder's content is checked per file)."""
    out_dir = Path(out_dir)
    return [out_dir / "rebalanced_images", out_dir / "train_rebalanced.csv", out_dir / REBALANCE_MANIFEST,
            *(out_dir / f"rebalance_distribution{x}" for x in REPORT_SUFFIXES)]


def _earlier_rebalancing(out_dir: Path, image_dir: Path) -> list[str]:
    """The images an earlier rebalancing wrote in ``out_dir/rebalanced_images``: its manifest, or (written before
    manifests) the files named like copies or linked to the image of the same name in ``image_dir``."""
    recorded = Manifest(out_dir, REBALANCE_MANIFEST).read()
    if recorded is not None:
        return recorded
    folder = out_dir / "rebalanced_images"
    found = [p.relative_to(folder) for p in folder.rglob("*") if p.is_file()] if folder.is_dir() else []
    return [f"rebalanced_images/{rel.as_posix()}" for rel in found
            if _COPY_NAME.search(rel.name) or same_file(folder / rel, image_dir / rel)]


def _replace_earlier_images(out_dir: Path, earlier: list[str], planned: list[Path]) -> dict[str, list[str]]:
    """Remove the earlier rebalancing's images that this one did not write again, record this one's, and name the
    files in the folder that no rebalancing wrote (they stay)."""
    mine = {p.relative_to(out_dir).as_posix() for p in planned}
    removed = remove_files(out_dir, set(earlier) - mine)
    Manifest(out_dir, REBALANCE_MANIFEST).reset(planned)
    kept = [f"rebalanced_images/{f}" for f in other_files(out_dir / "rebalanced_images")]
    return {"removed": removed, "kept": [f for f in kept if f not in mine]}


def check_split_paths(csv_path: str | Path, image_dir: str | Path, out_dir: str | Path, rebalance: bool = False,
                      extra_inputs: Iterable[str | Path] = ()) -> None:
    """Refuse (OutputIsInputError) before any work when an output of the split (and rebalancing) is an input."""
    # the folder itself too: outputs never go into the image folder (as train.py's run folder never does)
    outputs = [Path(out_dir), *split_outputs(out_dir)] + (rebalance_outputs(out_dir) if rebalance else [])
    refuse_inputs_as_outputs(outputs, [csv_path, image_dir, *extra_inputs])
    check_output_folder(out_dir, "--output-dir")


def write_reports(dist: pd.DataFrame, out_dir: Path, stem: str, title: str) -> dict[str, Path]:
    """:func:`write_distribution` into a fresh temp folder, then each file renamed into ``out_dir`` (new files)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    final = {}
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=f".{stem}.") as temp:
        for key, path in write_distribution(dist, temp, stem, title).items():
            final[key] = out_dir / path.name
            os.replace(path, final[key])
    return final


def _keep_copies_together(table: LabelTable, images: list[Path], assignment: np.ndarray) -> list[dict]:
    """Put each row whose image is a byte-identical copy of an earlier row's (``x.JPG`` saved again as ``x.jpg``)
    into that row's split, so that no split is scored on an image another trained on; returns the copies found."""
    copies = content_duplicates(images)
    for i, j in copies.items():
        assignment[i] = assignment[j]
    return [{"line": table.lines[i], "filename": table.filenames[i], "copy_of_line": table.lines[j],
             "copy_of": table.filenames[j]} for i, j in sorted(copies.items())]


def split_attribute_csv(csv_path: str | Path, image_dir: str | Path, out_dir: str | Path, schema: AttributeSchema,
                        ratios: tuple[float, float, float] = (0.8, 0.1, 0.1), seed: int = 0,
                        on_bad_rows: str = "error") -> dict:
    """Write ``train.csv``, ``valid.csv``, ``test.csv`` and ``split_distribution.{csv,md,png}`` into ``out_dir``."""
    out_dir = Path(out_dir)
    check_split_paths(csv_path, image_dir, out_dir)
    table = read_attribute_csv(csv_path, schema, image_dir=image_dir, on_bad_rows=on_bad_rows)
    if len(table) == 0:
        raise ValueError(f"{csv_path}: no usable rows; nothing was written")
    images = [resolve_image_path(Path(image_dir), n) for n in table.filenames]
    refuse_inputs_as_outputs(split_outputs(out_dir), images)
    out_dir.mkdir(parents=True, exist_ok=True)
    rejected_path = None
    if table.rejected:
        rejected_path = write_rejected_rows(table.rejected, out_dir / "rejected_rows.csv")
    assignment = iterative_stratification(known_positive_matrix(table), list(ratios), seed)
    copies = _keep_copies_together(table, images, assignment)
    parts = {name: table.subset(np.flatnonzero(assignment == k)) for k, name in enumerate(SPLIT_NAMES)}
    files = {name: str(write_label_csv(part.raw, out_dir / f"{name}.csv")) for name, part in parts.items()}
    dist = class_distribution({"all": table, **parts})
    report = write_reports(dist, out_dir, "split_distribution", "Split class distribution")
    summary = {
        "csv": str(csv_path), "images": str(image_dir), "seed": seed, "ratios": list(ratios),
        "rows": {name: len(part) for name, part in parts.items()}, "files": files,
        "rejected_rows": len(table.rejected), "rejected_file": str(rejected_path) if rejected_path else None,
        "content_duplicates": copies, "schema": schema.to_dict(),
    }
    atomic_write_text(out_dir / "split_summary.json", json.dumps(summary, indent=2) + "\n")
    summary["distribution_markdown"] = distribution_markdown(dist)
    summary["report"] = {k: str(v) for k, v in report.items()}
    return summary


def copy_names(originals: Sequence[str], copies: Sequence[int]) -> list[list[str]]:
    """Names of the augmented copies: ``<stem>_rb<k>_<ext>.png`` (``a.jpg`` -> ``a_rb1_jpg.png``), each distinct
    from every original (and from its folders) and from every other copy, compared case-insensitively (for
    case-insensitive file systems); a taken name moves on to the next ``k``."""
    taken = {n.casefold() for n in originals}
    taken |= {str(parent).casefold() for n in originals for parent in Path(n).parents}
    names = []
    for original, count in zip(originals, copies):
        path = Path(original)
        ext = f"_{path.suffix[1:]}" if path.suffix else ""
        mine, k = [], 0
        while len(mine) < count:
            k += 1
            candidate = path.with_name(f"{path.stem}_rb{k}{ext}.png").as_posix()
            if candidate.casefold() not in taken:
                taken.add(candidate.casefold())
                mine.append(candidate)
        names.append(mine)
    return names


def _copy_counts(weights: np.ndarray, max_copies: int, max_total: int | None) -> np.ndarray:
    """``round(w / w_min) - 1`` copies per image, capped per image and in all (highest weights first)."""
    copies = np.minimum(np.rint(weights / weights.min()).astype(int) - 1, max_copies)
    budget = len(weights) if max_total is None else max_total
    for i in np.argsort(-weights, kind="stable"):
        copies[i] = min(copies[i], budget)
        budget -= copies[i]
    return copies


def _write_images(sources: list[Path], originals: list[str], generated: list[list[str]], images_out: Path) -> None:
    """Hard-link (or copy) every original and write every augmented copy, each as a new directory entry."""
    augment = build_offline_augmentation()
    items = zip(sources, originals, generated)
    for source, name, new_names in tqdm(items, total=len(sources), desc="rebalancing", unit="img", disable=None):
        replace_with_link(source, images_out / name)
        if not new_names:
            continue
        img = load_rgb(source)
        for new_name in new_names:
            with atomic_open(images_out / new_name, "wb") as f:
                augment(img).save(f, format="PNG")


def rebalance_train_split(train_csv: str | Path, image_dir: str | Path, out_dir: str | Path,
                          schema: AttributeSchema, *, kind: str = "balanced", threshold: float = 0.3,
                          max_copies: int = 10, max_total: int | None = None, seed: int = 0) -> dict:
    """Offline rebalancing (the Flixstock workflow, bounded): augmented copies of rare-class images on disk.

    Each training image gets ``round(w / w_min) - 1`` copies (at most ``max_copies``; at most ``max_total`` in all,
    the highest weights first), with ``w`` the ``balanced`` or ``raking`` sampling weight. Everything goes to
    ``out_dir``: ``rebalanced_images/`` (the originals hard-linked or copied under their path relative to the image
    folder, plus the copies named by :func:`copy_names`), ``train_rebalanced.csv`` (whose filenames are those
    relative paths) and ``rebalance_distribution.{csv,md,png}`` (before and after). No output may be an input.
    """
    out_dir, image_dir = Path(out_dir), Path(image_dir)
    outputs = rebalance_outputs(out_dir)
    refuse_inputs_as_outputs(outputs, [train_csv, image_dir])
    table = read_attribute_csv(train_csv, schema, image_dir=image_dir)
    sources = [resolve_image_path(image_dir, name) for name in table.filenames]
    originals = [s.relative_to(image_dir.resolve()).as_posix() for s in sources]
    copies = _copy_counts(sampling_weights(kind, table.values, schema, threshold), max_copies, max_total)
    generated = copy_names(originals, copies)
    images_out = outputs[0]
    planned = [images_out / n for n in originals] + [images_out / n for names in generated for n in names]
    refuse_inputs_as_outputs(planned, [train_csv, image_dir, *sources], by_inode=False)
    refuse_inputs_as_outputs(outputs[1:], [*sources])
    earlier = _earlier_rebalancing(out_dir, image_dir)
    Manifest(out_dir, REBALANCE_MANIFEST).add([*planned, *(out_dir / f for f in earlier)])  # before any image
    random.seed(seed)
    torch.manual_seed(seed)
    _write_images(sources, originals, generated, images_out)
    stale = _replace_earlier_images(out_dir, earlier, planned)
    rows = [table.raw.assign(**{FILENAME_COLUMN: originals})]
    rows += [table.raw.iloc[[i] * len(names)].assign(**{FILENAME_COLUMN: names})
             for i, names in enumerate(generated) if names]
    extended = pd.concat(rows, ignore_index=True)
    values = np.concatenate([table.values, np.repeat(table.values, copies, axis=0)])
    csv_out = write_label_csv(extended, out_dir / "train_rebalanced.csv")
    before = expected_distribution(table.values, schema, np.ones(len(table)), "train")
    after = expected_distribution(values, schema, np.ones(len(extended)), "train + copies")
    report = write_reports(pd.concat([before, after]), out_dir, "rebalance_distribution",
                           f"Offline rebalancing ({kind}): class distribution before and after")
    return {"csv": str(csv_out), "images": str(images_out), "copies": int(copies.sum()),
            "rows": len(extended), "report": {k: str(v) for k, v in report.items()}, **stale}
