"""The ``--dataset`` registry: :data:`DATASETS` holds one :class:`DatasetFormat` per data format.

An entry knows how a training run reads the format (a :class:`~.config.TrainConfig` into ``(LabelSpace, train,
val)``), how ``validate.py`` reads it (an :class:`EvalRequest` into labelled images), what ``--arch auto`` trains on
it, and what it can do (the partial-label simulators need fully labelled data; attribute groups give per-attribute
accuracy and abstention). The file readers live in :mod:`partial_csl.data`; adding a format is one reader module plus
one entry here, and no other code tests a format's name.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ...data import lvis, open_images
from ...data.image_checks import image_manifest
from ...data.long_labels import read_class_list, read_long_csv
from ...data.partial import simulate_partial, simulation_record, simulation_summary
from ...data.schema import AttributeSchema, load_schema
from ...losses.imbalance import annotated_counts, positive_counts
from ...models.heads import cooccurrence_graph, head_needs_label_graph
from ...priors import load_priors
from ...safe_io import atomic_write_text, same_file
from ..config import TrainConfig
from .run_data import (
    LabelledImages,
    LabelSpace,
    coco_paths,
    expected_positives,
    read_attribute_split,
    read_coco_split,
    shared_images,
)

log = logging.getLogger(__name__)


def _count_positives(targets: np.ndarray) -> list[int]:
    return positive_counts(targets).astype(int).tolist()


def _check_csv_split(cfg: TrainConfig) -> None:
    """Both CSVs and the image folder given, and the validation CSV not the training one."""
    missing = [flag for flag, value in (("--train-csv", cfg.train_csv), ("--val-csv", cfg.val_csv),
                                        ("--images", cfg.images)) if not value]
    if missing:
        raise ValueError(f"--dataset {cfg.dataset} needs {', '.join(missing)}")
    if same_file(cfg.train_csv, cfg.val_csv):
        raise ValueError(f"--val-csv {cfg.val_csv} is the --train-csv file: the best checkpoint would be chosen on "
                         "the training data; give a validation split (images_train_test_valid_split.py makes one)")


def attribute_data(cfg: TrainConfig, run_dir: Path) -> tuple[LabelSpace, LabelledImages, LabelledImages]:
    """``--dataset attributes``: train/val attribute CSVs over one image folder (or ``--val-images``)."""
    _check_csv_split(cfg)
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
        train.truth = full
        true_frequency = full.mean(axis=0)
        _write_simulation(run_dir, train, full, class_names, cfg)
    return LabelSpace(class_names, None, _count_positives(train.targets), true_frequency), train, val


def multilabel_csv_data(cfg: TrainConfig, run_dir: Path) -> tuple[LabelSpace, LabelledImages, LabelledImages]:
    """``--dataset multilabel_csv``: long train/val CSVs (filename,label,value); classes from ``--classes`` or the
    training file. A validation label the training classes lack is refused."""
    _check_csv_split(cfg)
    train = read_long_csv(cfg.train_csv, cfg.images, read_class_list(cfg.classes) if cfg.classes else None)
    val_images = cfg.val_images or cfg.images
    val = read_long_csv(cfg.val_csv, val_images, train.class_names)
    return (LabelSpace(train.class_names, None, _count_positives(train.targets)),
            LabelledImages(Path(cfg.images), train.filenames, train.targets),
            LabelledImages(Path(val_images), val.filenames, val.targets))


def open_images_data(cfg: TrainConfig, run_dir: Path) -> tuple[LabelSpace, LabelledImages, LabelledImages]:
    """``--dataset openimages``: Open Images V6 human-verified image-level labels under ``--data``."""
    if not cfg.data:
        raise ValueError("--dataset openimages needs --data DIR (the class descriptions and label files)")
    descriptions = open_images.read_descriptions(cfg.data)
    class_ids = read_class_list(cfg.classes) if cfg.classes else None
    unknown = [ident for ident in class_ids or [] if ident not in descriptions]
    if unknown:
        raise ValueError(f"--classes {cfg.classes}: {len(unknown)} LabelName(s) not in the class descriptions, "
                         f"e.g. {unknown[:3]}")
    train_ann, train_img = open_images.split_paths("train", cfg.data, cfg.train_annotations, cfg.train_images)
    val_ann, val_img = open_images.split_paths("val", cfg.data, cfg.val_annotations, cfg.val_images)
    train, names = open_images.read_open_images_split(train_ann, train_img, descriptions, class_ids)
    val, _ = open_images.read_open_images_split(val_ann, val_img, descriptions, train.class_names)
    for labels, path in ((train, train_ann), (val, val_ann)):
        if labels.other_class_rows:
            log.info("%s: %d label rows of classes outside the run's %d were left out", path,
                     labels.other_class_rows, len(names))
    return (LabelSpace(names, None, _count_positives(train.targets)),
            LabelledImages(train_img, train.filenames, train.targets),
            LabelledImages(val_img, val.filenames, val.targets))


def lvis_data(cfg: TrainConfig, run_dir: Path) -> tuple[LabelSpace, LabelledImages, LabelledImages]:
    """``--dataset lvis``: LVIS v1 image-level labels (annotated: positive; neg_category_ids: negative)."""
    root = cfg.data or ""
    train = lvis.read_lvis_split(lvis.split_path("train", cfg.data, cfg.train_annotations), cfg.train_images or root)
    val = lvis.read_lvis_split(lvis.split_path("val", cfg.data, cfg.val_annotations), cfg.val_images or root,
                               train.class_names)
    return (LabelSpace(train.class_names, None, _count_positives(train.targets)),
            LabelledImages(Path(cfg.train_images or root), train.filenames, train.targets),
            LabelledImages(Path(cfg.val_images or root), val.filenames, val.targets, class_groups=val.class_groups))


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


def multilabel_csv_eval_data(req: EvalRequest) -> LabelledImages:
    if req.schema is not None:
        raise ValueError(f"{req.checkpoint} was trained on attributes; evaluate it with --dataset attributes")
    if not req.csv_path or not req.images:
        raise ValueError("--dataset multilabel_csv needs --csv and --images")
    labels = read_long_csv(req.csv_path, req.images, req.class_names)
    return LabelledImages(Path(req.images), labels.filenames, labels.targets)


def open_images_eval_data(req: EvalRequest) -> LabelledImages:
    if not req.data_root:
        raise ValueError("--dataset openimages needs --data DIR (the class descriptions)")
    descriptions = open_images.read_descriptions(req.data_root)
    annotations, images = open_images.split_paths("val", req.data_root, req.annotations, req.images)
    class_ids = open_images.class_ids_of(req.class_names, descriptions)
    labels, _ = open_images.read_open_images_split(annotations, images, descriptions, class_ids)
    return LabelledImages(images, labels.filenames, labels.targets)


def lvis_eval_data(req: EvalRequest) -> LabelledImages:
    root = req.images or req.data_root or ""
    split = lvis.read_lvis_split(lvis.split_path("val", req.data_root, req.annotations), root, req.class_names)
    return LabelledImages(Path(root), split.filenames, split.targets, class_groups=split.class_groups)


def coco_eval_data(req: EvalRequest) -> LabelledImages:
    annotations, images = coco_paths("val", req.data_root, req.annotations, req.images)
    return read_coco_split(annotations, images, req.keep_empty, class_names=req.class_names)[0]


@dataclass(frozen=True)
class DatasetFormat:
    """One ``--dataset``: its readers, what ``--arch auto`` trains on it, and what it can do."""

    read_training: Callable[[TrainConfig, Path], tuple[LabelSpace, LabelledImages, LabelledImages]]
    read_evaluation: Callable[[EvalRequest], LabelledImages]
    default_arch: str  # what --arch auto trains (see architectures.resolve_auto)
    fully_labelled: bool  # complete labels: the partial-label simulators (--simulate_partial_type) apply
    attribute_groups: bool  # mutually exclusive classes per attribute: per-attribute accuracy and abstention
    help: str
    # what --arch auto sets with default_arch, where a setting is left at its default: a value, or f(config)
    auto_settings: dict = field(default_factory=dict)


# CSL as the attribute default was measured (benchmarks/README.md, "The attribute default end to end"): the top-3
# per-batch ignore, unknowns focused by gamma_unann 4, the ignore-mode prior stage for 3/8 of the epochs (3 of 8)
CSL_ATTRIBUTES = {"likelihood_topk": 3, "gamma_unann": 4.0,
                  "prior_epochs": lambda cfg: max(1, round(cfg.epochs * 3 / 8))}

DATASETS: dict[str, DatasetFormat] = {
    # CSL, the reference's: per-attribute heads won on ResNet-18, lost on the default TResNet-M (benchmarks/README.md)
    "attributes": DatasetFormat(attribute_data, attribute_eval_data, default_arch="csl", fully_labelled=False,
                                attribute_groups=True, help="attributes: CSVs with #N/A", auto_settings=CSL_ATTRIBUTES),
    "coco": DatasetFormat(coco_data, coco_eval_data, default_arch="csl", fully_labelled=True,
                          attribute_groups=False, help="coco: COCO-format JSON"),
    "multilabel_csv": DatasetFormat(multilabel_csv_data, multilabel_csv_eval_data, default_arch="csl",
                                    fully_labelled=False, attribute_groups=False,
                                    help="multilabel_csv: long CSVs of filename,label,value (1, 0; no row: unknown)"),
    "openimages": DatasetFormat(open_images_data, open_images_eval_data, default_arch="csl", fully_labelled=False,
                                attribute_groups=False, help="openimages: Open Images V6 human-verified labels"),
    "lvis": DatasetFormat(lvis_data, lvis_eval_data, default_arch="csl", fully_labelled=False, attribute_groups=False,
                          help="lvis: LVIS v1 JSON (annotated: positive; neg_category_ids: negative)"),
}


def get_dataset(name: str) -> DatasetFormat:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset type {name!r}; expected one of {sorted(DATASETS)}")
    return DATASETS[name]


IMAGE_MANIFEST = "image_checks.csv"


def load_training_data(cfg: TrainConfig, run_dir: Path) -> tuple[LabelSpace, LabelledImages, LabelledImages]:
    """The label space and train/val images of ``cfg`` (bad rows and simulations are recorded in ``run_dir``)."""
    data_format = get_dataset(cfg.dataset)
    if cfg.simulate_partial_type and not data_format.fully_labelled:
        simulated = sorted(name for name, entry in DATASETS.items() if entry.fully_labelled)
        raise ValueError(f"--simulate_partial_type hides labels of fully labelled data (--dataset "
                         f"{' or '.join(simulated)}), not of --dataset {cfg.dataset}")
    with image_manifest(run_dir / IMAGE_MANIFEST) as manifest:  # a resumed run does not decode them again
        labels, train, val = data_format.read_training(cfg, run_dir)
    if manifest.reused:
        log.info("image checks: %d images unchanged since %s (not decoded again), %d checked now", manifest.reused,
                 manifest.path.name, manifest.checked)
    shared = shared_images(train, val)
    if shared:
        log.warning("%d of the %d validation images are training images too (by resolved path or inode, e.g. %s): "
                    "the best checkpoint is chosen partly on training data", len(shared), len(val), shared[0])
    labels.num_train_images, labels.train_targets = len(train), train.targets
    labels.expected_positives, labels.expected_positives_source = expected_positives_estimate(cfg, labels)
    labels.train_annotated_counts = annotated_counts(train.targets).astype(int).tolist()
    if head_needs_label_graph(cfg.head):
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
