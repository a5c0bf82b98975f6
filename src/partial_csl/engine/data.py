"""Labelled image sets (attribute CSVs or COCO-format JSON) for training and evaluation, and their data loaders."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..data.coco import coco_2014_paths, load_coco
from ..data.dataset import MultiLabelImageDataset
from ..data.labels import read_attribute_csv, write_rejected_rows
from ..data.schema import AttributeSchema
from ..data.transforms import build_transform, seed_worker

DATASETS = ("attributes", "coco")


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
                seed: int = 0, sampler: torch.utils.data.Sampler | None = None) -> DataLoader:
    """Shuffled (or ``sampler``-driven), drop-last loader for training, seeded; ordered loader for evaluation."""
    generator = torch.Generator().manual_seed(seed)
    per_epoch = len(sampler) if sampler is not None else len(dataset)
    return DataLoader(dataset, batch_size=batch_size, shuffle=train and sampler is None, sampler=sampler,
                      num_workers=workers,
                      drop_last=train and per_epoch > batch_size, generator=generator,
                      worker_init_fn=seed_worker, pin_memory=torch.cuda.is_available(),
                      persistent_workers=False)


def coco_paths(split: str, data_root: str | None, annotations: str | None,
               images: str | None) -> tuple[str, str]:
    """Annotation file and image folder of a COCO split: explicit paths win over the 2014 layout under ``data_root``."""
    if data_root:
        default_ann, default_img = coco_2014_paths(data_root, split)
        annotations, images = annotations or str(default_ann), images or str(default_img)
    if not annotations or not images:
        raise ValueError(f"COCO {split} data needs --data ROOT (2014 layout) or --{split}-annotations and "
                         f"--{split}-images")
    return annotations, images


def read_coco_split(annotations: str | Path, images: str | Path, drop_empty: bool = False,
                    class_names: list[str] | None = None) -> tuple[LabelledImages, list[str]]:
    """A COCO split; with ``class_names`` its categories must be exactly those (e.g. a checkpoint's)."""
    coco = load_coco(annotations, images, drop_empty=drop_empty)
    if class_names is not None and coco.class_names != list(class_names):
        raise ValueError(f"{annotations}: categories {coco.class_names} differ from the expected {list(class_names)}")
    return LabelledImages(coco.image_dir, coco.filenames, coco.targets), coco.class_names
