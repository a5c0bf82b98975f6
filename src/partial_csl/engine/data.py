"""What a run learns from: the label space, the labelled train/val images, and their data loaders.

:data:`DATASETS` is the ``--dataset`` registry: each entry turns a :class:`~.config.TrainConfig` into
``(LabelSpace, train, val)`` from one data format (the readers live in :mod:`partial_csl.data`). Adding a format is
one reader module plus one entry here.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from ..data.coco import coco_2014_paths, load_coco
from ..data.dataset import ImageCache, MultiLabelImageDataset
from ..data.labels import read_attribute_csv, write_rejected_rows
from ..data.partial import simulate_partial, simulation_summary
from ..data.schema import AttributeSchema, load_schema
from ..data.transforms import PIL_RESAMPLING, DataConfig, build_transform, seed_worker
from ..models.heads import cooccurrence_graph
from ..safe_io import atomic_write_text, same_file
from .config import TrainConfig

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
    expected_positives: float | None = None  # positives per image estimated from the training labels (EPR, ROLE)
    train_annotated_counts: list[int] = field(default_factory=list)  # annotated (not #N/A) labels per class

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
    cache: ImageCache | None = field(default=None, repr=False)  # see cache_images

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


def _count_positives(targets: np.ndarray) -> list[int]:
    return (targets == 1).sum(axis=0).astype(int).tolist()


def attribute_data(cfg: TrainConfig, run_dir: Path) -> tuple[LabelSpace, LabelledImages, LabelledImages]:
    """``--dataset attributes``: train/val attribute CSVs over one image folder (or ``--val-images``)."""
    missing = [flag for flag, value in (("--train-csv", cfg.train_csv), ("--val-csv", cfg.val_csv),
                                        ("--images", cfg.images)) if not value]
    if missing:
        raise ValueError(f"attribute data needs {', '.join(missing)}")
    if same_file(cfg.train_csv, cfg.val_csv):
        raise ValueError(f"--val-csv {cfg.val_csv} is the --train-csv file: the best checkpoint would be chosen on "
                         "the training data; give a validation split (images_train_test_valid_split.py makes one)")
    schema = load_schema(cfg.schema)
    train = read_attribute_split(cfg.train_csv, cfg.images, schema, cfg.on_bad_rows,
                                 run_dir / "rejected_rows_train.csv")
    val = read_attribute_split(cfg.val_csv, cfg.val_images or cfg.images, schema, cfg.on_bad_rows,
                               run_dir / "rejected_rows_val.csv")
    return LabelSpace(schema.class_names, schema, _count_positives(train.targets)), train, val


def _write_simulation(run_dir: Path, train: LabelledImages, full: np.ndarray, class_names: list[str]) -> None:
    sim_dir = run_dir / "simulation"
    sim_dir.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(train.targets.astype(np.int8), columns=class_names)
    frame.insert(0, "filename", train.filenames)
    atomic_write_text(sim_dir / "simulated_targets.csv", frame.to_csv(index=False, lineterminator="\n"))
    summary = simulation_summary(full, train.targets, class_names)
    atomic_write_text(sim_dir / "simulation_summary.csv",
                      summary.to_csv(index=False, float_format="%.6f", lineterminator="\n"))


def coco_data(cfg: TrainConfig, run_dir: Path) -> tuple[LabelSpace, LabelledImages, LabelledImages]:
    """``--dataset coco``: COCO-format train/val; the partial-label simulation (if any) hides training labels only."""
    train_ann, train_img = coco_paths("train", cfg.data, cfg.train_annotations, cfg.train_images or cfg.images)
    val_ann, val_img = coco_paths("val", cfg.data, cfg.val_annotations, cfg.val_images)
    train, class_names = read_coco_split(train_ann, train_img, cfg.drop_empty)
    val, _ = read_coco_split(val_ann, val_img, cfg.drop_empty, class_names)
    true_frequency = None
    if cfg.simulate_partial_type:
        full = train.targets
        train.targets = simulate_partial(full, cfg.simulate_partial_type, cfg.simulate_partial_param, cfg.seed)
        true_frequency = full.mean(axis=0)
        _write_simulation(run_dir, train, full, class_names)
    return LabelSpace(class_names, None, _count_positives(train.targets), true_frequency), train, val


# the --dataset registry: name -> (config, run folder) -> (label space, train, val)
DATASETS: dict[str, Callable[[TrainConfig, Path], tuple[LabelSpace, LabelledImages, LabelledImages]]] = {
    "attributes": attribute_data,
    "coco": coco_data,
}


def load_training_data(cfg: TrainConfig, run_dir: Path) -> tuple[LabelSpace, LabelledImages, LabelledImages]:
    """The label space and train/val images of ``cfg`` (bad rows and simulations are recorded in ``run_dir``)."""
    if cfg.dataset not in DATASETS:
        raise ValueError(f"unknown dataset type {cfg.dataset!r}; expected one of {sorted(DATASETS)}")
    if cfg.simulate_partial_type and cfg.dataset != "coco":
        raise ValueError("--simulate_partial_type applies to --dataset coco (fully labelled data)")
    labels, train, val = DATASETS[cfg.dataset](cfg, run_dir)
    shared = shared_images(train, val)
    if shared:
        log.warning("%d of the %d validation images are training images too (by resolved path or inode, e.g. %s): "
                    "the best checkpoint is chosen partly on training data", len(shared), len(val), shared[0])
    labels.num_train_images, labels.expected_positives = len(train), expected_positives(train.targets)
    labels.train_annotated_counts = (train.targets != -1).sum(axis=0).astype(int).tolist()
    if cfg.head == "label_graph":
        labels.label_graph = cooccurrence_graph(train.targets, cfg.graph_threshold)
    return labels, train, val


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
