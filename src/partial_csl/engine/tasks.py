"""What a run learns from: the task (classes, attribute groups, counts) and its train/val images.

:func:`build_task` reads attribute CSVs or COCO-format data (simulating partial labels when asked), and the helpers
here derive what training needs from them: sampling weights, the sampler's distribution report, the prior-quality
report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.partial import simulate_partial, simulation_summary
from ..data.sampling import expected_distribution, repeat_factors, sampling_weights
from ..data.schema import UNKNOWN, AttributeSchema, load_schema
from ..priors import prior_quality
from ..reports.distribution import write_distribution
from .config import TrainConfig
from .data import DATASETS, LabelledImages, coco_paths, read_attribute_split, read_coco_split


@dataclass
class Task:
    """What the model predicts: class names, and the attribute groups when the labels are attributes."""

    class_names: list[str]
    schema: AttributeSchema | None = None
    train_class_counts: list[int] = field(default_factory=list)
    true_frequency: np.ndarray | None = None  # known only for simulated partial labels

    @property
    def groups(self) -> dict[str, slice] | None:
        return self.schema.group_slices() if self.schema else None

    @property
    def majority(self) -> dict[str, int] | None:
        if not self.schema or not self.train_class_counts:
            return None
        counts = np.asarray(self.train_class_counts)
        return {name: int(counts[sl].argmax()) for name, sl in self.schema.group_slices().items()}


def training_sample_weights(cfg: TrainConfig, task: Task, train: LabelledImages) -> np.ndarray | None:
    """Per-image sampling weights of ``cfg.sampler`` (None for uniform shuffling)."""
    if cfg.sampler == "uniform":
        return None
    if task.schema is not None:
        return sampling_weights(cfg.sampler, task.schema.decode(train.targets), task.schema, cfg.repeat_threshold,
                                cfg.sampler_max_weight)
    if cfg.sampler == "raking":
        raise ValueError("--sampler raking needs attribute data (it balances each attribute's classes)")
    weights = repeat_factors(train.targets, cfg.repeat_threshold)
    return weights / weights.mean()


def write_sampler_report(cfg: TrainConfig, task: Task, train: LabelledImages, run_dir: Path) -> None:
    """Class distribution per attribute of the data and of the sampler's expected draw (exact, from the weights)."""
    weights = training_sample_weights(cfg, task, train)
    if weights is None or task.schema is None:
        return
    values = task.schema.decode(train.targets)
    dist = pd.concat([expected_distribution(values, task.schema, np.ones(len(values)), "data"),
                      expected_distribution(values, task.schema, weights, f"{cfg.sampler} sampler")])
    write_distribution(dist, run_dir, "sampler_distribution", f"Training distribution under the {cfg.sampler} sampler")


def prior_quality_report(priors: np.ndarray, targets: np.ndarray, task: Task,
                         mean_posterior: np.ndarray | None = None) -> dict:
    """The prior estimate, the plain mean posterior and the naive count of annotated positives, each against the
    best reference available: the true class frequency for simulations, else the annotated positive rate."""
    known = targets != UNKNOWN
    annotated_rate = (targets == 1).sum(axis=0) / np.maximum(known.sum(axis=0), 1)
    if task.true_frequency is not None:
        reference, name = task.true_frequency, "true class frequency (full labels)"
    else:
        reference, name = annotated_rate, "positive rate among the annotated training labels"
    naive = (targets == 1).sum(axis=0).astype(float)
    report = {"reference": name, "estimate": prior_quality(priors, reference, task.class_names),
              "naive_annotation_count": prior_quality(naive, reference, task.class_names)}
    if mean_posterior is not None:
        report["mean_posterior"] = prior_quality(mean_posterior, reference, task.class_names)
    return report


def _attribute_task(cfg: TrainConfig, run_dir: Path) -> tuple[Task, LabelledImages, LabelledImages]:
    missing = [flag for flag, value in (("--train-csv", cfg.train_csv), ("--val-csv", cfg.val_csv),
                                        ("--images", cfg.images)) if not value]
    if missing:
        raise ValueError(f"attribute data needs {', '.join(missing)}")
    schema = load_schema(cfg.schema)
    train = read_attribute_split(cfg.train_csv, cfg.images, schema, cfg.on_bad_rows,
                                 run_dir / "rejected_rows_train.csv")
    val = read_attribute_split(cfg.val_csv, cfg.val_images or cfg.images, schema, cfg.on_bad_rows,
                               run_dir / "rejected_rows_val.csv")
    counts = (train.targets == 1).sum(axis=0).astype(int).tolist()
    return Task(schema.class_names, schema, counts), train, val


def _coco_task(cfg: TrainConfig, run_dir: Path) -> tuple[Task, LabelledImages, LabelledImages]:
    """COCO-format train/val; the partial-label simulation (if any) hides training labels only."""
    train_ann, train_img = coco_paths("train", cfg.data, cfg.train_annotations, cfg.train_images or cfg.images)
    val_ann, val_img = coco_paths("val", cfg.data, cfg.val_annotations, cfg.val_images)
    train, class_names = read_coco_split(train_ann, train_img, cfg.drop_empty)
    val, _ = read_coco_split(val_ann, val_img, cfg.drop_empty, class_names)
    true_frequency = None
    if cfg.simulate_partial_type:
        full = train.targets
        train.targets = simulate_partial(full, cfg.simulate_partial_type, cfg.simulate_partial_param, cfg.seed)
        true_frequency = full.mean(axis=0)
        sim_dir = run_dir / "simulation"
        sim_dir.mkdir(parents=True, exist_ok=True)
        frame = pd.DataFrame(train.targets.astype(np.int8), columns=class_names)
        frame.insert(0, "filename", train.filenames)
        frame.to_csv(sim_dir / "simulated_targets.csv", index=False, lineterminator="\n")
        simulation_summary(full, train.targets, class_names).to_csv(sim_dir / "simulation_summary.csv", index=False,
                                                                   float_format="%.6f", lineterminator="\n")
    counts = (train.targets == 1).sum(axis=0).astype(int).tolist()
    return Task(class_names, None, counts, true_frequency), train, val


def build_task(cfg: TrainConfig, run_dir: Path) -> tuple[Task, LabelledImages, LabelledImages]:
    if cfg.dataset not in DATASETS:
        raise ValueError(f"unknown dataset type {cfg.dataset!r}; expected one of {DATASETS}")
    if cfg.simulate_partial_type and cfg.dataset != "coco":
        raise ValueError("--simulate_partial_type applies to --dataset coco (fully labelled data)")
    return _attribute_task(cfg, run_dir) if cfg.dataset == "attributes" else _coco_task(cfg, run_dir)
