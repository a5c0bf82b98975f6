"""Imbalance-aware sampling for partially labelled attribute data.

Two ways to weight the training images, both computed from the *known* labels only (an ``#N/A`` attribute neither
raises nor lowers an image's weight):

* ``balanced``: LVIS repeat-factor sampling (Gupta et al., CVPR 2019). A class seen in a fraction f(c) of the images
  where it is annotated gets r(c) = max(1, sqrt(t / f(c))); an image gets the largest r(c) over its known positives.
  It treats co-occurrence bluntly: a rare neck type is usually drawn with the dominant sleeve and pattern, so
  repeating it also repeats those common classes, and an image whose only rare attribute is unknown is not boosted.
* ``raking``: per-image weights that bring every attribute's class distribution as close as possible to a target
  (by default proportional to sqrt(frequency), like ``balanced``'s intent) *jointly*. This is iterative proportional
  fitting (raking, Deming & Stephan 1940): cycle over the attributes, multiplying the weight of each image whose
  attribute g is class c by target_g(c) / current_g(c), until every attribute matches. Starting from uniform
  weights, the fixed point is the weighting closest to uniform in KL divergence that meets all the attribute targets
  at once, so boosting a rare neck type is paid for by lowering the weights of other images with the same common
  sleeve and pattern. Weights are capped at ``max_weight`` times the smallest, to bound repeats of one image.

The expected class distribution under any weights is computed exactly from the weights
(:func:`expected_distribution`), never estimated by drawing. :class:`RepeatAwareSampler` draws an epoch of indices
with replacement and tells the dataset which draws repeat an image, so that :class:`RepeatAwareDataset` can give
repeats a stronger augmentation.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset, Sampler

from .schema import UNKNOWN, AttributeSchema
from .sparse_targets import SparseTargets

SAMPLERS = ("uniform", "balanced", "raking")


def class_frequencies(targets: np.ndarray | SparseTargets) -> np.ndarray:
    """(C,) share of positives among the images where each class is annotated (targets in {1, 0, -1})."""
    if isinstance(targets, SparseTargets):
        known, positives = targets.known_counts(), targets.positive_counts()
    else:
        known, positives = (targets != UNKNOWN).sum(axis=0), (targets == 1).sum(axis=0)
    return np.divide(positives, known, out=np.zeros(targets.shape[1]), where=known > 0)


def repeat_factors(targets: np.ndarray | SparseTargets, threshold: float, power: float = 0.5) -> np.ndarray:
    """LVIS repeat factor per image: max over its known positives of max(1, (t / f(c))^power) (LVIS: power 0.5,
    the square root; smaller is gentler, 0 uniform); 1 without any."""
    freq = class_frequencies(targets)
    per_class = np.where(freq > 0, (threshold / np.maximum(freq, 1e-12)) ** power, 1.0)
    per_class = np.maximum(per_class, 1.0)
    if isinstance(targets, SparseTargets):
        return targets.row_max(per_class)
    positive = targets == 1
    return np.where(positive.any(axis=1), np.where(positive, per_class[None, :], 1.0).max(axis=1), 1.0)


def raking_weights(values: np.ndarray, schema: AttributeSchema, power: float = 0.5, max_weight: float = 10.0,
                   iterations: int = 200, tol: float = 1e-6) -> np.ndarray:
    """Per-image weights (mean 1) whose per-attribute class distributions approach freq^power (normalised).

    ``values`` is (N, G) with -1 for unknown. ``power`` 0.5 is the square-root target, 0 the uniform one and 1 keeps
    the data as it is.
    """
    n = len(values)
    weights = np.ones(n)
    targets = []
    for j, group in enumerate(schema.groups):
        col = values[:, j]
        counts = np.bincount(col[col != UNKNOWN], minlength=group.num_classes).astype(float)
        goal = np.where(counts > 0, counts ** power, 0.0)
        targets.append(goal / goal.sum() if goal.sum() > 0 else goal)
    for _ in range(iterations):
        previous = weights.copy()
        for j, goal in enumerate(targets):
            col = values[:, j]
            known = col != UNKNOWN
            current = np.bincount(col[known], weights=weights[known], minlength=len(goal))
            current = current / current.sum() if current.sum() > 0 else current
            factor = np.divide(goal, current, out=np.ones_like(goal), where=current > 0)
            weights[known] *= factor[col[known]]
        weights = np.clip(weights / weights.min(), 1.0, max_weight)
        if np.max(np.abs(weights / weights.mean() - previous / previous.mean())) < tol:
            break
    return weights / weights.mean()


def cap_weights(weights: np.ndarray, max_repeats: float | None) -> np.ndarray:
    """Weights no larger than ``max_repeats`` times the lightest image's (None: as they are)."""
    if max_repeats is None:
        return weights
    if max_repeats < 1:
        raise ValueError(f"the cap on repeats must be at least 1, got {max_repeats}")
    return np.minimum(weights, max_repeats * weights.min())


def sampling_weights(kind: str, values: np.ndarray, schema: AttributeSchema, threshold: float = 0.3,
                     max_weight: float = 10.0, power: float = 0.5, max_repeats: float | None = None) -> np.ndarray:
    """Weights (mean 1) of one sampler kind. ``power`` is the strength of the rebalancing: the exponent of the
    repeat factors (balanced) and 1 minus the exponent of the frequency target (raking); 0.5 is the square-root
    default of both, 0 is uniform. ``max_repeats`` caps every image's weight relative to the lightest."""
    if kind == "uniform":
        return np.ones(len(values))
    if kind == "balanced":
        weights = repeat_factors(schema.encode(values), threshold, power)
    elif kind == "raking":
        weights = raking_weights(values, schema, power=1.0 - power, max_weight=max_weight)
    else:
        raise ValueError(f"unknown sampler {kind!r}; expected one of {SAMPLERS}")
    weights = cap_weights(weights, max_repeats)
    return weights / weights.mean()


def expected_distribution(values: np.ndarray, schema: AttributeSchema, weights: np.ndarray,
                          label: str) -> pd.DataFrame:
    """Exact class shares (among known) and ``#N/A`` share per attribute of a weighted draw, as a long table."""
    weights = np.asarray(weights, dtype=float)
    records = []
    for j, group in enumerate(schema.groups):
        col = values[:, j]
        known = col != UNKNOWN
        mass = np.bincount(col[known], weights=weights[known], minlength=group.num_classes)
        for k, name in enumerate(group.class_names):
            records.append({"split": label, "attribute": group.name, "class": name,
                            "count": mass[k] / weights.sum() * len(values), "share": mass[k] / max(mass.sum(), 1e-12)})
        missing = weights[~known].sum()
        records.append({"split": label, "attribute": group.name, "class": "#N/A",
                        "count": missing / weights.sum() * len(values), "share": missing / weights.sum()})
    return pd.DataFrame.from_records(records)


def rounded_draw(weights: torch.Tensor, num_samples: int, generator: torch.Generator) -> torch.Tensor:
    """``num_samples`` indices, image i exactly floor(e_i) or floor(e_i) + 1 times (e_i = its expected count): the
    floors, then the remaining draws *without* replacement with the fractional parts as weights, shuffled. Fewer
    duplicates than independent draws, and no image beyond its expected count rounded up."""
    expected = weights / weights.sum() * num_samples
    counts = expected.floor().long()
    remainder = num_samples - int(counts.sum())
    if remainder > 0:
        fraction = (expected - counts).clamp(min=0) + 1e-12
        counts[torch.multinomial(fraction, remainder, replacement=False, generator=generator)] += 1
    draws = torch.repeat_interleave(torch.arange(len(weights)), counts)
    return draws[torch.randperm(len(draws), generator=generator)]


def earlier_draws(draws: np.ndarray) -> np.ndarray:
    """For each draw, how many earlier draws picked the same index (0 for an index's first draw)."""
    order = np.argsort(draws, kind="stable")
    ranked = draws[order]
    starts = np.r_[0, np.flatnonzero(ranked[1:] != ranked[:-1]) + 1]
    counts = np.empty(len(draws), dtype=np.int64)
    counts[order] = np.arange(len(draws)) - np.repeat(starts, np.diff(np.r_[starts, len(draws)]))
    return counts


class RepeatAwareSampler(Sampler):
    """Draws ``num_samples`` indices proportional to ``weights``, seeded by (seed, epoch): independently with
    replacement, or with ``replacement=False`` by :func:`rounded_draw`.

    Yields ``(index, k)`` pairs where k counts earlier draws of the same index in this epoch (0 for the first).
    For DDP, give each rank ``rank`` and ``world_size``: every rank draws the same epoch and keeps its own slice.
    """

    def __init__(self, weights: np.ndarray, num_samples: int | None = None, seed: int = 0, rank: int = 0,
                 world_size: int = 1, replacement: bool = True):
        self.weights = torch.as_tensor(np.asarray(weights, dtype=np.float64))
        self.replacement = replacement
        self.num_samples = num_samples or len(self.weights)
        self.seed, self.epoch, self.rank, self.world_size = seed, 0, rank, world_size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(self.num_samples / self.world_size)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        if self.replacement:
            draws = torch.multinomial(self.weights, self.num_samples, replacement=True, generator=generator).numpy()
        else:
            draws = rounded_draw(self.weights, self.num_samples, generator).numpy()
        pairs = list(zip(draws.tolist(), earlier_draws(draws).tolist()))
        # pad like DistributedSampler so that every rank yields len(self) items (ranks that differ hang DDP); the
        # padding can be longer than the epoch (fewer draws than ranks), so the draws are repeated as often as needed
        padding = len(self) * self.world_size - len(pairs)
        pairs += (pairs * math.ceil(padding / len(pairs)))[:padding]
        return iter(pairs[self.rank::self.world_size])


class RepeatAwareDataset(Dataset):
    """Wraps a dataset whose ``transform`` it swaps for ``strong_transform`` on repeated draws ``(index, k > 0)``."""

    def __init__(self, dataset: Dataset, strong_transform: Callable):
        self.dataset, self.strong_transform = dataset, strong_transform
        self.targets = dataset.targets

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: tuple[int, int] | int):
        index, repeat = item if isinstance(item, tuple) else (item, 0)
        if repeat == 0:
            return self.dataset[index]
        return self.dataset.get(index, self.strong_transform)
