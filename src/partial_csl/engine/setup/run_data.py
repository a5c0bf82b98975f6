"""What a run learns from: the label space, the labelled train/val images, their readers and data loaders, and the
checks on them before training. The ``--dataset`` registry that picks a format's readers is :mod:`.formats`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from ...data.coco import coco_2014_paths, load_coco
from ...data.dataset import ImageCache, MultiLabelImageDataset
from ...data.labels import read_attribute_csv, write_rejected_rows
from ...data.schema import AttributeSchema
from ...data.transforms import PIL_RESAMPLING, DataConfig, build_transform, seed_worker

log = logging.getLogger(__name__)


@dataclass
class LabelSpace:
    """What the model predicts: class names, the attribute groups when the labels are attributes, and the counts of
    annotated training positives per class (for majority baselines and checkpoints)."""

    class_names: list[str]
    schema: AttributeSchema | None = None
    train_class_counts: list[int] = field(default_factory=list)
    true_frequency: np.ndarray | None = None  # known only for simulated partial labels
    label_graph: np.ndarray | None = None  # (C, C) co-occurrence of the known training labels (label_graph head)
    num_train_images: int = 0
    expected_positives: float | None = None  # positives per image k (EPR, ROLE): see expected_positives_estimate
    expected_positives_source: str = ""  # where k comes from
    train_annotated_counts: list[int] = field(default_factory=list)  # annotated (not #N/A) labels per class
    train_targets: np.ndarray | None = field(default=None, repr=False)  # (N, C) {1, 0, -1}: ROLE's store starts there

    @property
    def groups(self) -> dict[str, slice] | None:
        return self.schema.group_slices() if self.schema else None

    @property
    def majority(self) -> dict[str, int] | None:
        """The most frequent training class of each attribute (the majority baseline)."""
        if not self.schema or not self.train_class_counts:
            return None
        counts = np.asarray(self.train_class_counts)
        return {name: int(counts[sl].argmax()) for name, sl in self.schema.group_slices().items()}


@dataclass
class LabelledImages:
    """Images of one split with targets (N, C) in {-1, 0, 1}; ``values`` (N, G) are the attribute values as read
    (-1 unknown), kept for attribute data so that nothing has to decode the targets again."""

    image_dir: Path
    filenames: list[str]
    targets: np.ndarray
    values: np.ndarray | None = None
    class_groups: dict[str, list[int]] | None = None  # groups the report gives a mean AP each (LVIS: r / c / f)
    cache: ImageCache | None = field(default=None, repr=False)  # see cache_images
    truth: np.ndarray | None = field(default=None, repr=False)  # (N, C) full labels of simulated partial labels

    def __len__(self) -> int:
        return len(self.filenames)

    def dataset(self, data_config: DataConfig, train: bool, augment: str = "csl") -> MultiLabelImageDataset:
        return MultiLabelImageDataset(self.image_dir, self.filenames, self.targets,
                                      build_transform(data_config, train, augment), self.cache)

    def cache_images(self, data_config: DataConfig) -> int:
        """Decode and resize every image once for all the epochs of a run (``--cache-images``); returns bytes used."""
        self.cache = ImageCache(data_config.image_size, PIL_RESAMPLING[data_config.interpolation])
        self.cache.fill(MultiLabelImageDataset(self.image_dir, self.filenames, self.targets))
        return self.cache.nbytes()


def read_attribute_split(csv_path: str | Path, image_dir: str | Path, schema: AttributeSchema,
                         on_bad_rows: str = "error", rejected_path: str | Path | None = None) -> LabelledImages:
    """Validate an attribute CSV against ``image_dir``; skipped bad rows go to ``rejected_path``."""
    table = read_attribute_csv(csv_path, schema, image_dir=image_dir, on_bad_rows=on_bad_rows)
    if table.rejected and rejected_path is not None:
        write_rejected_rows(table.rejected, rejected_path)
    if len(table) == 0:
        raise ValueError(f"{csv_path}: no usable rows")
    return LabelledImages(Path(image_dir), table.filenames, table.targets, table.values)


def make_loader(dataset: torch.utils.data.Dataset, batch_size: int, workers: int, train: bool,
                seed: int = 0, sampler: torch.utils.data.Sampler | None = None,
                collate_fn: Callable | None = None) -> DataLoader:
    """Shuffled (or ``sampler``-driven), drop-last loader for training, seeded; ordered loader for evaluation."""
    generator = torch.Generator().manual_seed(seed)
    per_epoch = len(sampler) if sampler is not None else len(dataset)
    return DataLoader(dataset, batch_size=batch_size, shuffle=train and sampler is None, sampler=sampler,
                      num_workers=workers, collate_fn=collate_fn,
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


def read_coco_split(annotations: str | Path, images: str | Path, keep_empty: bool = False,
                    class_names: list[str] | None = None) -> tuple[LabelledImages, list[str]]:
    """A COCO split (images without annotations dropped unless ``keep_empty``); with ``class_names`` its categories
    must be exactly those (e.g. a checkpoint's)."""
    coco = load_coco(annotations, images, keep_empty=keep_empty)
    if class_names is not None and coco.class_names != list(class_names):
        raise ValueError(f"{annotations}: categories {coco.class_names} differ from the expected {list(class_names)}")
    return LabelledImages(coco.image_dir, coco.filenames, coco.targets), coco.class_names


def _identities(images: LabelledImages) -> list[set[tuple]]:
    """Each image's resolved path and, when it exists, (device, inode): two names of one file share one of them."""
    out = []
    for name in images.filenames:
        path = (images.image_dir / name).resolve()
        keys: set[tuple] = {("path", str(path))}
        with contextlib.suppress(OSError):
            st = path.stat()
            keys.add(("inode", st.st_dev, st.st_ino))
        out.append(keys)
    return out


def shared_images(train: LabelledImages, val: LabelledImages) -> list[str]:
    """The validation images that are also training images (the same file under any name), in validation order."""
    seen = set().union(*_identities(train))
    return [name for name, keys in zip(val.filenames, _identities(val)) if keys & seen]


def expected_positives(targets: np.ndarray) -> float:
    """Positives per image the training labels suggest: the sum over classes of each class's annotated positive
    rate (positives / annotated), or, for a class without annotated negatives, of positives / images, a lower bound
    (under single-positive labels that gives 1: the observed count, as nothing says more)."""
    targets = np.asarray(targets)
    positives, negatives = (targets == 1).sum(axis=0), (targets == 0).sum(axis=0)
    rates = np.where(negatives > 0, positives / np.maximum(positives + negatives, 1), positives / max(len(targets), 1))
    return float(max(rates.sum(), 1e-3))


def single_positive_labels(targets: np.ndarray) -> bool:
    """Whether training labels look like single positives (SPML): no annotated negative and at most one annotated
    positive per image, so the labels cannot say how many positives an image has."""
    targets = np.asarray(targets)
    return bool((targets == 1).any() and not (targets == 0).any() and ((targets == 1).sum(axis=1) <= 1).all())


def check_validation_labels(val: LabelledImages, source: str | Path | None) -> None:
    """Refuse, before training, validation data on which no class can be scored: the best checkpoint is picked by
    validation mAP, which needs a class with a known positive and a known negative."""
    scorable = ((val.targets == 1).any(axis=0) & (val.targets == 0).any(axis=0)).any()
    if not scorable:
        raise ValueError(f"{source}: the validation data has no class with both a known positive and a known "
                         "negative, so its mAP (which picks the best checkpoint) cannot be computed; give a "
                         "validation set with known labels")


def unscored_attributes(labels: LabelSpace, val: LabelledImages) -> list[str]:
    """The attributes without one known validation label: their accuracy is undefined at every epoch."""
    if labels.schema is None:
        return []
    return [name for name, sl in labels.schema.group_slices().items() if not (val.targets[:, sl] == 1).any()]


def label_warnings(labels: LabelSpace, train: LabelledImages) -> list[dict]:
    """Classes the training labels say nothing (or nothing positive) about: listed at the start of a run."""
    known, positives = (train.targets != -1).sum(axis=0), (train.targets == 1).sum(axis=0)
    out = []
    for c, name in enumerate(labels.class_names):
        if known[c] == 0:
            reason = "no annotated training label (every training value of its attribute is #N/A)"
        elif positives[c] == 0:
            reason = f"no annotated positive among {int(known[c])} annotated training labels"
        else:
            continue
        out.append({"class": name, "annotated": int(known[c]), "positives": int(positives[c]), "reason": reason})
    return out
