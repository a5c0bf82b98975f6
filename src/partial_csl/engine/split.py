"""Split an attribute CSV into train/valid/test CSVs with a distribution report; writes only to ``out_dir``."""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from ..data.dataset import load_rgb
from ..data.labels import FILENAME_COLUMN, read_attribute_csv, resolve_image_path, write_label_csv, write_rejected_rows
from ..data.sampling import expected_distribution, sampling_weights
from ..data.schema import AttributeSchema
from ..data.split import class_distribution, iterative_stratification, known_positive_matrix
from ..data.transforms import build_offline_augmentation
from ..reports.distribution import distribution_markdown, write_distribution

SPLIT_NAMES = ("train", "valid", "test")


def split_attribute_csv(csv_path: str | Path, image_dir: str | Path, out_dir: str | Path, schema: AttributeSchema,
                        ratios: tuple[float, float, float] = (0.8, 0.1, 0.1), seed: int = 0,
                        on_bad_rows: str = "error") -> dict:
    """Write ``train.csv``, ``valid.csv``, ``test.csv`` and ``split_distribution.{csv,md,png}`` into ``out_dir``."""
    out_dir = Path(out_dir)
    table = read_attribute_csv(csv_path, schema, image_dir=image_dir, on_bad_rows=on_bad_rows)
    out_dir.mkdir(parents=True, exist_ok=True)
    rejected_path = None
    if table.rejected:
        rejected_path = write_rejected_rows(table.rejected, out_dir / "rejected_rows.csv")
    assignment = iterative_stratification(known_positive_matrix(table), list(ratios), seed)
    parts = {name: table.subset(np.flatnonzero(assignment == k)) for k, name in enumerate(SPLIT_NAMES)}
    files = {name: str(write_label_csv(part.raw, out_dir / f"{name}.csv")) for name, part in parts.items()}
    dist = class_distribution({"all": table, **parts})
    report = write_distribution(dist, out_dir, "split_distribution", "Split class distribution")
    summary = {
        "csv": str(csv_path), "images": str(image_dir), "seed": seed, "ratios": list(ratios),
        "rows": {name: len(part) for name, part in parts.items()}, "files": files,
        "rejected_rows": len(table.rejected), "rejected_file": str(rejected_path) if rejected_path else None,
        "schema": schema.to_dict(),
    }
    (out_dir / "split_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    summary["distribution_markdown"] = distribution_markdown(dist)
    summary["report"] = {k: str(v) for k, v in report.items()}
    return summary


def _link_or_copy(source: Path, target: Path) -> None:
    """A hard link (no extra disk) where the file system allows it, else a copy; the source is never modified."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def rebalance_train_split(train_csv: str | Path, image_dir: str | Path, out_dir: str | Path,
                          schema: AttributeSchema, kind: str = "balanced", threshold: float = 0.3,
                          max_copies: int = 10, max_total: int | None = None, seed: int = 0) -> dict:
    """Offline rebalancing (the Flixstock workflow, bounded): augmented copies of rare-class images on disk.

    Each training image gets ``round(w / w_min) - 1`` copies (at most ``max_copies``; at most ``max_total`` in all,
    the highest weights first), with ``w`` the ``balanced`` or ``raking`` sampling weight. Everything goes to
    ``out_dir``: ``rebalanced_images/`` (the originals hard-linked or copied, plus ``<stem>_rb<k>.png`` copies),
    ``train_rebalanced.csv`` and ``rebalance_distribution.{csv,md,png}`` (before and after).
    """
    out_dir, image_dir = Path(out_dir), Path(image_dir)
    table = read_attribute_csv(train_csv, schema, image_dir=image_dir)
    weights = sampling_weights(kind, table.values, schema, threshold)
    copies = np.minimum(np.rint(weights / weights.min()).astype(int) - 1, max_copies)
    budget = len(table) if max_total is None else max_total
    for i in np.argsort(-weights, kind="stable"):
        copies[i] = min(copies[i], budget)
        budget -= copies[i]
    images_out = out_dir / "rebalanced_images"
    images_out.mkdir(parents=True, exist_ok=True)
    random.seed(seed)
    torch.manual_seed(seed)
    augment = build_offline_augmentation()
    rows, values = [table.raw], [table.values]
    for i, name in enumerate(tqdm(table.filenames, desc="rebalancing", unit="img", disable=None)):
        source = resolve_image_path(image_dir, name)
        target = images_out / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            _link_or_copy(source, target)
        if copies[i] == 0:
            continue
        img = load_rgb(source)
        stem = Path(name).with_suffix("")
        new_rows = table.raw.iloc[[i] * int(copies[i])].copy()
        new_rows[FILENAME_COLUMN] = [f"{stem}_rb{k}.png" for k in range(1, copies[i] + 1)]
        for new_name in new_rows[FILENAME_COLUMN]:
            augment(img).save(images_out / new_name)
        rows.append(new_rows)
        values.append(np.repeat(table.values[i:i + 1], copies[i], axis=0))
    extended = pd.concat(rows, ignore_index=True)
    csv_out = write_label_csv(extended, out_dir / "train_rebalanced.csv")
    before = expected_distribution(table.values, schema, np.ones(len(table)), "train")
    after = expected_distribution(np.concatenate(values), schema, np.ones(len(extended)), "train + copies")
    report = write_distribution(pd.concat([before, after]), out_dir, "rebalance_distribution",
                                f"Offline rebalancing ({kind}): class distribution before and after")
    return {"csv": str(csv_out), "images": str(images_out), "copies": int(copies.sum()),
            "rows": len(extended), "report": {k: str(v) for k, v in report.items()}}
