"""What a run learns from: the label space, the labelled train/val images, and their data loaders.

:data:`DATASETS` is the ``--dataset`` registry: each :class:`DatasetFormat` knows how a training run reads the
format (a :class:`~.config.TrainConfig` into ``(LabelSpace, train, val)``), how ``validate.py`` reads it (an
:class:`EvalRequest` into labelled images), what ``--arch auto`` trains on it, and what it can do (the partial-label
simulators need fully labelled data; attribute groups give per-attribute accuracy and abstention). The readers live in
:mod:`partial_csl.data`; adding a format is one reader module plus one entry here, and no other code tests a format's
name.
"""

from __future__ import annotations

import contextlib
import json
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
from ..data.partial import simulate_partial, simulation_record, simulation_summary
from ..data.schema import AttributeSchema, load_schema
from ..data.transforms import PIL_RESAMPLING, DataConfig, build_transform, seed_worker
from ..losses.imbalance import annotated_counts, positive_counts
from ..models.heads import cooccurrence_graph
from ..priors import load_priors
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


def read_coco_split(annotations: str | Path, images: str | Path, keep_empty: bool = False,
                    class_names: list[str] | None = None) -> tuple[LabelledImages, list[str]]:
    """A COCO split (images without annotations dropped unless ``keep_empty``); with ``class_names`` its categories
    must be exactly those (e.g. a checkpoint's)."""
    coco = load_coco(annotations, images, keep_empty=keep_empty)
    if class_names is not None and coco.class_names != list(class_names):
        raise ValueError(f"{annotations}: categories {coco.class_names} differ from the expected {list(class_names)}")
    return LabelledImages(coco.image_dir, coco.filenames, coco.targets), coco.class_names


def _count_positives(targets: np.ndarray) -> list[int]:
    return positive_counts(targets).astype(int).tolist()


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


def _write_simulation(run_dir: Path, train: LabelledImages, full: np.ndarray, class_names: list[str],
                      cfg: TrainConfig) -> None:
    sim_dir = run_dir / "simulation"
    sim_dir.mkdir(parents=True, exist_ok=True)
    record = simulation_record(full, train.targets, cfg.simulate_partial_type, cfg.simulate_partial_param, cfg.seed)
    log.info("simulation %s(%s): kept %.1f %% of the %d true positives; %.1f %% of the entries annotated; %d of %d "
             "images with a positive kept none", record["protocol"], record["param"],
             100 * record["positives_kept_share"], record["true_positives"], 100 * record["annotated_share"],
             record["images_that_lost_every_positive"], record["images_with_a_positive"])
    over = record["positives_kept_share"] - cfg.simulate_partial_param
    if cfg.simulate_partial_type == "missing_positives" and over > 0.01:
        log.warning("missing_positives(%s) kept %.1f %% of the positives: every image keeps at least one, and these "
                    "images have %.2f positives on average", cfg.simulate_partial_param,
                    100 * record["positives_kept_share"], record["true_positives_per_image"])
    atomic_write_text(sim_dir / "simulation.json", json.dumps(record, indent=2) + "\n")
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
    train, class_names = read_coco_split(train_ann, train_img, cfg.keep_empty)
    val, _ = read_coco_split(val_ann, val_img, cfg.keep_empty, class_names)
    true_frequency = None
    if cfg.simulate_partial_type:
        full = train.targets
        train.targets = simulate_partial(full, cfg.simulate_partial_type, cfg.simulate_partial_param, cfg.seed)
        true_frequency = full.mean(axis=0)
        _write_simulation(run_dir, train, full, class_names, cfg)
    return LabelSpace(class_names, None, _count_positives(train.targets), true_frequency), train, val


@dataclass(frozen=True)
class EvalRequest:
    """What ``validate.py`` reads labelled data from, with what the checkpoint says it must hold."""

    checkpoint: str
    class_names: list[str]
    schema: AttributeSchema | None  # the checkpoint's attributes (None: multi-label)
    output_dir: Path
    csv_path: str | None = None
    images: str | None = None
    annotations: str | None = None
    data_root: str | None = None
    expected_schema: AttributeSchema | None = None  # --schema: refuse a checkpoint of other attributes
    on_bad_rows: str = "error"
    keep_empty: bool = False  # COCO images without annotations, as the checkpoint's run treated them


def attribute_eval_data(req: EvalRequest) -> LabelledImages:
    if req.schema is None:
        raise ValueError(f"{req.checkpoint} was not trained on attributes; evaluate it with --dataset coco")
    if not req.csv_path or not req.images:
        raise ValueError("attribute data needs --csv and --images")
    if req.expected_schema is not None and req.expected_schema != req.schema:
        raise ValueError(f"{req.checkpoint} was trained for attributes {req.schema.to_dict()['groups']}, "
                         f"not {req.expected_schema.to_dict()['groups']}")
    return read_attribute_split(req.csv_path, req.images, req.schema, req.on_bad_rows,
                                req.output_dir / "rejected_rows.csv")


def coco_eval_data(req: EvalRequest) -> LabelledImages:
    annotations, images = coco_paths("val", req.data_root, req.annotations, req.images)
    return read_coco_split(annotations, images, req.keep_empty, class_names=req.class_names)[0]


@dataclass(frozen=True)
class DatasetFormat:
    """One ``--dataset``: its readers, what ``--arch auto`` trains on it, and what it can do."""

    read_training: Callable[[TrainConfig, Path], tuple[LabelSpace, LabelledImages, LabelledImages]]
    read_evaluation: Callable[[EvalRequest], LabelledImages]
    default_arch: str  # what --arch auto trains (see config.resolve_auto)
    fully_labelled: bool  # complete labels: the partial-label simulators (--simulate_partial_type) apply
    attribute_groups: bool  # mutually exclusive classes per attribute: per-attribute accuracy and abstention
    help: str


DATASETS: dict[str, DatasetFormat] = {
    # per-attribute softmax heads under the balanced softmax: the best of the imbalance arms end to end on the demo
    # (benchmarks/README.md, "Imbalance handling")
    "attributes": DatasetFormat(attribute_data, attribute_eval_data, default_arch="mtl", fully_labelled=False,
                                attribute_groups=True, help="attributes: CSVs with #N/A"),
    "coco": DatasetFormat(coco_data, coco_eval_data, default_arch="csl", fully_labelled=True,
                          attribute_groups=False, help="coco: COCO-format JSON"),
}


def get_dataset(name: str) -> DatasetFormat:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset type {name!r}; expected one of {sorted(DATASETS)}")
    return DATASETS[name]


def load_training_data(cfg: TrainConfig, run_dir: Path) -> tuple[LabelSpace, LabelledImages, LabelledImages]:
    """The label space and train/val images of ``cfg`` (bad rows and simulations are recorded in ``run_dir``)."""
    data_format = get_dataset(cfg.dataset)
    if cfg.simulate_partial_type and not data_format.fully_labelled:
        simulated = sorted(name for name, entry in DATASETS.items() if entry.fully_labelled)
        raise ValueError(f"--simulate_partial_type hides labels of fully labelled data (--dataset "
                         f"{' or '.join(simulated)}), not of --dataset {cfg.dataset}")
    labels, train, val = data_format.read_training(cfg, run_dir)
    shared = shared_images(train, val)
    if shared:
        log.warning("%d of the %d validation images are training images too (by resolved path or inode, e.g. %s): "
                    "the best checkpoint is chosen partly on training data", len(shared), len(val), shared[0])
    labels.num_train_images, labels.train_targets = len(train), train.targets
    labels.expected_positives, labels.expected_positives_source = expected_positives_estimate(cfg, labels)
    labels.train_annotated_counts = annotated_counts(train.targets).astype(int).tolist()
    if cfg.head == "label_graph":
        labels.label_graph = cooccurrence_graph(train.targets, cfg.graph_threshold)
    return labels, train, val


def expected_positives_estimate(cfg: TrainConfig, labels: LabelSpace) -> tuple[float, str]:
    """The positives per image k of EPR and ROLE, and where it comes from, first of: ``--expected-positives``; the sum
    of the true class frequencies when a simulation hid the labels (the value Cole et al. take as given); the number
    of attributes for attribute data (a garment has one value of each); the sum of the ``--prior_path`` priors; and
    last the annotated positive rates summed (:func:`expected_positives`), which is right only for labels missing at
    random: under a fixed budget per class (FPC) it gives C/2, under single positives 1."""
    if cfg.expected_positives is not None:
        return float(cfg.expected_positives), "given (--expected-positives)"
    if labels.true_frequency is not None:
        return float(np.sum(labels.true_frequency)), "the simulation's true class frequencies, summed"
    if labels.schema is not None:
        return float(len(labels.schema.group_slices())), "one value per attribute"
    if cfg.prior_path:
        return float(load_priors(cfg.prior_path, labels.class_names).sum()), f"the priors of {cfg.prior_path}, summed"
    return (expected_positives(labels.train_targets),
            "the annotated positive rates, summed (right for labels missing at random only: give --expected-positives "
            "when annotation depends on the class)")


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
