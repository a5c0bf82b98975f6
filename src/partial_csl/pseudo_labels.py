"""Teacher pseudo-labels for the unknown entries (``--pseudo-labels``): learn from the unknowns, not only around them.

Every loss here decides how to *weigh* an unknown label. With pseudo-labels a teacher (a copy of the better-
validating weights, or the EMA model) predicts on an un-augmented view of the batch, and the unknown entries it is
sure of become hard targets of the student's (augmented) view, for whatever loss the run trains with. Known entries
are never changed. Per class:

* a pseudo-positive needs ``p >= positive threshold``, and an image gets at most ``cap`` of them (its expected
  number of positives among its unknown classes, from the class frequencies), the most confident first;
* a pseudo-negative needs ``p <= negative threshold``;
* for attribute data, an unknown attribute (all its classes unknown) becomes the one-hot of the teacher's choice
  when that choice clears its class's positive threshold: the per-attribute softmax target.

The thresholds are calibrated per class on the validation split's verified labels (:func:`calibrate_thresholds`):
the lowest score whose predictions above it are right at least ``precision`` of the time, and the highest score
whose predictions below it are negatives at least ``negative_precision`` of the time. A rare class thus gets its own
threshold instead of drowning under a common class's, and a class the teacher cannot yet separate gets none. For
attribute data the positive threshold may instead be shared by an attribute's classes
(:func:`share_within_attributes`), so that a rare class with few validation images can be pseudo-labelled at all.
Everything is plain arrays and tensors: the trainer (:mod:`partial_csl.engine.training.pseudo`) runs the teacher.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

UNKNOWN = -1


@dataclass(frozen=True)
class Thresholds:
    """Per-class thresholds (C,): ``positive`` (inf: no pseudo-positive) and ``negative`` (-inf: no
    pseudo-negative)."""

    positive: np.ndarray
    negative: np.ndarray

    def summary(self) -> str:
        pos, neg = np.isfinite(self.positive), np.isfinite(self.negative)
        return (f"{pos.sum()}/{len(pos)} classes may get pseudo-positives (median threshold "
                f"{np.median(self.positive[pos]) if pos.any() else float('nan'):.3f}), {neg.sum()} pseudo-negatives "
                f"(median {np.median(self.negative[neg]) if neg.any() else float('nan'):.3f})")


MIN_SUPPORT = 5  # a threshold rests on at least this many validation predictions


def _lowest_reliable_score(scores: np.ndarray, correct: np.ndarray, precision: float, min_support: int) -> float:
    """The lowest s such that, of the entries scoring at least s (taken from the highest down), at least
    ``precision`` are ``correct`` and there are at least ``min_support``; nan when there is none. Ties are taken
    together: a threshold cannot split entries of equal score."""
    order = np.argsort(-scores, kind="stable")
    ranked, right = scores[order], np.cumsum(correct[order])
    counts = np.arange(1, len(ranked) + 1)
    tie_end = np.r_[ranked[1:] != ranked[:-1], True]  # the last entry of each group of equal scores
    ok = tie_end & (counts >= min_support) & (right >= precision * counts)
    return float(ranked[np.flatnonzero(ok)[-1]]) if ok.any() else float("nan")


def calibrate_thresholds(scores: np.ndarray, targets: np.ndarray, precision: float = 0.9,
                         negative_precision: float = 0.99, min_support: int = MIN_SUPPORT) -> Thresholds:
    """Per-class thresholds from the teacher's ``scores`` (N, C) on labelled data ``targets`` (N, C; -1 unknown,
    left out): see the module docstring. A class with fewer than ``min_support`` reliable predictions either way
    gets no threshold on that side."""
    classes = scores.shape[1]
    positive, negative = np.full(classes, np.inf), np.full(classes, -np.inf)
    for c in range(classes):
        known = targets[:, c] != UNKNOWN
        s, t = scores[known, c].astype(np.float64), targets[known, c]
        if len(s) == 0:
            continue
        high = _lowest_reliable_score(s, t == 1, precision, min_support)
        low = -_lowest_reliable_score(-s, t == 0, negative_precision, min_support)  # from the lowest score up
        positive[c] = high if np.isfinite(high) else np.inf
        negative[c] = low if np.isfinite(low) else -np.inf
    overlap = negative >= positive  # cannot happen with sensible precisions; a class would be both: neither
    positive[overlap], negative[overlap] = np.inf, -np.inf
    return Thresholds(positive, negative)


def share_within_attributes(thresholds: Thresholds, scores: np.ndarray, targets: np.ndarray, groups: list[list[int]],
                            precision: float = 0.9, min_support: int = MIN_SUPPORT) -> Thresholds:
    """``thresholds`` with one positive threshold per attribute, shared by its classes (``--pseudo-thresholds
    attribute``): the lowest top-class score at which the teacher's choice is the true class ``precision`` of the
    time, over the validation images whose attribute is known. A rare class then needs no ``min_support`` right
    predictions of its own: the teacher is trusted on it as far as on the attribute as a whole. A class keeps its own
    threshold where that is lower. Negative thresholds stay per class (an attribute's classes get no pseudo-negative:
    they follow the one-hot rule)."""
    positive = thresholds.positive.copy()
    for group in groups:
        known = (targets[:, group] != UNKNOWN).all(axis=1)
        confidence = scores[known][:, group].max(axis=1).astype(np.float64)
        right = scores[known][:, group].argmax(axis=1) == targets[known][:, group].argmax(axis=1)
        shared = _lowest_reliable_score(confidence, right, precision, min_support)
        # a class clears either threshold: its own (reliable on its own) or its attribute's
        positive[group] = np.fmin(positive[group], shared if np.isfinite(shared) else np.inf)
    return Thresholds(positive, thresholds.negative)


def positives_needed(precision: float, min_support: int = MIN_SUPPORT) -> int:
    """The fewest positives a class's labelled data needs for a positive threshold at ``precision``."""
    return math.ceil(precision * min_support - 1e-9)  # the tolerance: 0.8 x 5 is 4.000000000000001


def classes_without_reachable_threshold(targets: np.ndarray, precision: float,
                                        min_support: int = MIN_SUPPORT) -> np.ndarray:
    """Classes that can never get a positive threshold from labelled data ``targets`` (N, C), whatever the teacher:
    at least ``min_support`` predictions with ``precision`` of them right need that many labelled images and
    ceil(precision x min_support) positives among them, which these classes do not have."""
    needed = positives_needed(precision, min_support)
    positives, known = (targets == 1).sum(axis=0), (targets != UNKNOWN).sum(axis=0)
    return np.flatnonzero((positives < needed) | (known < min_support))


def positive_caps(targets: torch.Tensor, frequencies: torch.Tensor) -> torch.Tensor:
    """Per image (B,): the expected number of positives among its unknown classes (the class ``frequencies``
    summed over them), rounded to the nearest whole number."""
    expected = ((targets == UNKNOWN).float() * frequencies).sum(dim=1)
    return torch.floor(expected + 0.5).long()


def _top_per_row(mask: torch.Tensor, margin: torch.Tensor, caps: torch.Tensor) -> torch.Tensor:
    """``mask`` keeping, in each row, only its ``caps[row]`` entries of largest ``margin``."""
    margin = margin.masked_fill(~mask, float("-inf"))
    order = margin.argsort(dim=1, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(mask.shape[1], device=mask.device).expand_as(order))
    return mask & (rank < caps[:, None])


def pseudo_targets(probs: torch.Tensor, targets: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor,
                   caps: torch.Tensor, groups: list[list[int]] | None = None) -> torch.Tensor:
    """``targets`` (B, C) with the unknown entries the teacher's ``probs`` are sure of filled in (see the module
    docstring): ``positive`` / ``negative`` are the per-class thresholds (C,), ``caps`` the pseudo-positives allowed
    per image (B,), ``groups`` the class indices of each attribute (their classes follow the one-hot rule)."""
    new = targets.clone()
    grouped = torch.zeros(targets.shape[1], dtype=torch.bool, device=targets.device)
    for group in groups or []:
        index = torch.as_tensor(group, device=targets.device)
        grouped[index] = True
        confidence, choice = probs[:, index].max(dim=1)
        fill = (targets[:, index] == UNKNOWN).all(dim=1) & (confidence >= positive[index][choice])
        one_hot = torch.nn.functional.one_hot(choice, len(group)).to(new.dtype)
        new[:, index] = torch.where(fill[:, None], one_hot, new[:, index])
    free = (targets == UNKNOWN) & ~grouped
    pos = _top_per_row(free & (probs >= positive), probs - positive, caps)
    neg = free & (probs <= negative) & ~pos
    new[pos] = 1
    new[neg] = 0
    return new
