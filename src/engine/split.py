"""Split an attribute CSV into train/valid/test CSVs with a distribution report; writes only to ``out_dir``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..data.labels import read_attribute_csv, write_label_csv, write_rejected_rows
from ..data.schema import AttributeSchema
from ..data.split import class_distribution, iterative_stratification, known_positive_matrix
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
