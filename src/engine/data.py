"""Labelled image sets for training and evaluation, and their seeded data loaders."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..data.dataset import MultiLabelImageDataset
from ..data.labels import read_attribute_csv, write_rejected_rows
from ..data.schema import AttributeSchema
from ..data.transforms import build_transform, seed_worker


@dataclass
class LabelledImages:
    """Images of one split with targets (N, C) in {-1, 0, 1}."""

    image_dir: Path
    filenames: list[str]
    targets: np.ndarray

    def __len__(self) -> int:
        return len(self.filenames)

    def dataset(self, image_size: int, train: bool, augment: str = "csl") -> MultiLabelImageDataset:
        return MultiLabelImageDataset(self.image_dir, self.filenames, self.targets,
                                      build_transform(image_size, train, augment))


def read_attribute_split(csv_path: str | Path, image_dir: str | Path, schema: AttributeSchema,
                         on_bad_rows: str = "error", rejected_path: str | Path | None = None) -> LabelledImages:
    """Validate an attribute CSV against ``image_dir``; skipped bad rows go to ``rejected_path``."""
    table = read_attribute_csv(csv_path, schema, image_dir=image_dir, on_bad_rows=on_bad_rows)
    if table.rejected and rejected_path is not None:
        write_rejected_rows(table.rejected, rejected_path)
    if len(table) == 0:
        raise ValueError(f"{csv_path}: no usable rows")
    return LabelledImages(Path(image_dir), table.filenames, table.targets)


def make_loader(dataset: torch.utils.data.Dataset, batch_size: int, workers: int, train: bool,
                seed: int = 0) -> DataLoader:
    """Shuffled, drop-last loader for training (order fixed by ``seed``); ordered loader for evaluation."""
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=train, num_workers=workers,
                      drop_last=train and len(dataset) > batch_size, generator=generator,
                      worker_init_fn=seed_worker, pin_memory=torch.cuda.is_available(),
                      persistent_workers=False)
