"""The training loader of a run: its sampler (uniform shuffling or per-image weights), its length, its report.

Training batches are ``(inputs, targets, sample indices, skipped)``: the indices are the rows of the training set,
which the losses with a per-image label store (ROLE, LL-Cp) need (every other loss ignores them); ``skipped`` maps
the rows whose image could not be read this time to the reason. Such an image is replaced in its batch by the next
readable one, so every batch keeps its size (DDP ranks stay in step) and one bad file among millions never stops a
run; the trainer names it in the run folder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from torch.utils.data import DataLoader, Dataset, default_collate

from ...data.images import ImageLoadError
from ...data.sampling import (
    RepeatAwareDataset,
    RepeatAwareSampler,
    cap_weights,
    expected_distribution,
    repeat_factors,
    sampling_weights,
)
from ...data.transforms import DataConfig, TwoViews, build_strong_transform, build_transform
from ...reports.distribution import write_distribution
from ..config import TrainConfig
from ..distributed import DistInfo, ShardedShuffleSampler
from .run_data import LabelledImages, LabelSpace, make_loader


def training_sample_weights(cfg: TrainConfig, labels: LabelSpace, train: LabelledImages) -> np.ndarray | None:
    """Per-image sampling weights of ``cfg.sampler`` (None for uniform shuffling), from the known labels only."""
    if cfg.sampler == "uniform":
        return None
    if labels.schema is not None:
        return sampling_weights(cfg.sampler, train.values, labels.schema, cfg.repeat_threshold,
                                cfg.sampler_max_weight, cfg.sampler_power, cfg.sampler_max_repeats)
    if cfg.sampler == "raking":
        raise ValueError("--sampler raking needs attribute data (it balances each attribute's classes)")
    weights = cap_weights(repeat_factors(train.targets, cfg.repeat_threshold, cfg.sampler_power),
                          cfg.sampler_max_repeats)
    return weights / weights.mean()


def write_sampler_report(cfg: TrainConfig, labels: LabelSpace, train: LabelledImages, weights: np.ndarray | None,
                         run_dir: Path) -> None:
    """Class distribution per attribute of the data and of the sampler's expected draw (exact, from the weights)."""
    if weights is None or labels.schema is None:
        return
    values = train.values
    dist = pd.concat([expected_distribution(values, labels.schema, np.ones(len(values)), "data"),
                      expected_distribution(values, labels.schema, weights, f"{cfg.sampler} sampler")])
    write_distribution(dist, run_dir, "sampler_distribution", f"Training distribution under the {cfg.sampler} sampler")


MAX_UNREADABLE_IN_A_ROW = 16  # more than this in a row is not a bad file but a lost folder: the run stops


class IndexedDataset(Dataset):
    """``dataset[item]`` followed by the sample's row in the training set (``item`` or, for a repeat-aware draw
    ``(index, k)``, ``index``) and {row: reason} of the images skipped for it: an image that cannot be read is
    replaced by the next row's."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: int | tuple[int, int]):
        index = item[0] if isinstance(item, tuple) else item
        skipped: dict[int, str] = {}
        for step in range(MAX_UNREADABLE_IN_A_ROW):
            row = (index + step) % len(self.dataset)
            try:
                sample = self.dataset[(row, *item[1:]) if isinstance(item, tuple) else row]
            except ImageLoadError as err:
                skipped[row] = str(err)
                continue
            return (*sample, row, skipped)
        raise ImageLoadError(f"{MAX_UNREADABLE_IN_A_ROW} images in a row could not be read (is the image folder "
                             f"still there?); the last: {skipped[row]}")


def collate_training(items: list[tuple]) -> tuple:
    """The default collate of (inputs, targets, row) and the merged {row: reason} of the skipped images."""
    skipped = {row: reason for *_, unread in items for row, reason in unread.items()}
    return (*default_collate([item[:-1] for item in items]), skipped)


def _sampler(n: int, weights: np.ndarray | None, seed: int, info: DistInfo, replacement: bool = True):
    if weights is None:
        return ShardedShuffleSampler(n, seed, info.rank, info.world_size)
    return RepeatAwareSampler(weights, n, seed, info.rank, info.world_size, replacement)


def train_loader(cfg: TrainConfig, train: LabelledImages, data_config: DataConfig, weights: np.ndarray | None,
                 seed: int, info: DistInfo) -> DataLoader:
    """This epoch's loader: seeded shuffling or weighted draws (repeats get a stronger augmentation), this rank's
    shard of every global batch."""
    dataset = train.dataset(data_config, train=True, augment=cfg.augment)
    strong = build_strong_transform(data_config)
    if cfg.pseudo_labels:  # the teacher's view beside each training view
        teacher_view = build_transform(data_config, train=False)
        dataset.transform, strong = TwoViews(dataset.transform, teacher_view), TwoViews(strong, teacher_view)
    if weights is not None:
        dataset = RepeatAwareDataset(dataset, strong)
    return make_loader(IndexedDataset(dataset), cfg.batch_size, cfg.workers, train=True, seed=seed,
                       sampler=_sampler(len(train), weights, seed, info, cfg.sampler_replacement),
                       collate_fn=collate_training)


def feature_loader(cfg: TrainConfig, features: Dataset, weights: np.ndarray | None, seed: int,
                   info: DistInfo) -> DataLoader:
    """This epoch's loader over cached backbone features (``--freeze-backbone``): the same sampling as images."""
    return make_loader(IndexedDataset(features), cfg.batch_size, 0, train=True, seed=seed,
                       sampler=_sampler(len(features), weights, seed, info, cfg.sampler_replacement),
                       collate_fn=collate_training)


def steps_per_epoch(cfg: TrainConfig, n_images: int, weights: np.ndarray | None, info: DistInfo) -> int:
    """Optimiser steps in one epoch, as :func:`train_loader` will yield them (its drop-last rule included)."""
    per_rank = len(_sampler(n_images, weights, 0, info))
    drop_last = per_rank > cfg.batch_size
    steps = per_rank // cfg.batch_size if drop_last else -(-per_rank // cfg.batch_size)
    return max(steps, 1)
