"""The assume-negative family of Cole et al. (CVPR 2021, "Multi-Label Learning from Single Positive Labels").

Targets are {1 positive, 0 annotated negative, -1 unknown}; with p = sigmoid(logit), per entry:

* ``an`` (assume negative): BCE with every unknown taken as a negative (CSL's ``negative`` mode with no focusing);
* ``wan`` (weighted AN): the same, an unknown's negative term weighted by ``wan_weight`` (default 1 / (C - 1), the
  paper's gamma), so that the many assumed negatives do not drown the few positives; annotated negatives keep weight 1;
* ``an_ls`` (AN with label smoothing): BCE on targets 1 - eps and eps (Cole et al.'s), unknowns as negatives;
* ``epr`` (expected positive regularisation): BCE on the annotated entries only, plus
  ``epr_weight * (mean over the batch of sum_c p - k)^2 / C``, which pulls the predicted number of positives per
  image towards ``k`` = ``expected_positives``. Cole et al. average their BCE over the B x C entries and divide the
  squared error by C^2; our ``mean`` reduction sums over classes, so dividing by C keeps their ratio of the two terms;
* ``role`` (regularised online label estimation): a learnable estimate of every training image's labels (an (N, C)
  table of logits, the *label store*, indexed by the batch's sample indices), started as Cole et al. start it
  (annotated entries at 0.995 / 0.005, unknown ones uniform in [0.4, 0.6] in probability, drawn between the two
  logits). Each side (model, estimates) is trained on half the BCE against the annotated labels plus half the BCE
  against the other side's detached output, each with the EPR term, and the two halves are averaged.

``k`` is the number of positives expected per image, which Cole et al. take as known (COCO 2.9); the engine passes
``--expected-positives``, else the simulation's true class frequencies summed, else one per attribute for attribute
data, else the sum of a ``--prior_path`` file's priors, else the annotated positive rates summed (see
:func:`partial_csl.engine.setup.run_data.expected_positives_estimate`).
ROLE's table trains with the model's optimiser at
``role_lr_multiplier`` times its learning rate and without weight decay: a row gets a gradient only when its image
is in a batch (about once an epoch), though Adam's momentum keeps moving it for a while after, as in Cole et al.'s
code.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..options import Option
from .margin import LabelSmoothingLoss
from .options import LABEL_SMOOTHING, REDUCTION
from .partial import PartialSelectiveLoss, reduce_loss

EPR_WEIGHT = Option("epr_weight", 1.0, "weight of the expected-positive penalty")
WAN_OPTIONS = (Option("wan_weight", None, "weight of an unknown's negative term (default 1 / (classes - 1))",
                      type=float), REDUCTION)
AN_LS_OPTIONS = (LABEL_SMOOTHING, REDUCTION)
EPR_OPTIONS = (EPR_WEIGHT, REDUCTION)
ROLE_OPTIONS = (EPR_WEIGHT, Option("role_lr_multiplier", 10.0, "learning rate of the label estimates, times --lr"),
                REDUCTION)


def an_loss(reduction: str = "mean") -> PartialSelectiveLoss:
    """Assume negative: BCE, every unknown a negative."""
    return PartialSelectiveLoss("negative", gamma_pos=0, gamma_neg=0, gamma_unann=0, clip=0, reduction=reduction)


def an_ls_loss(label_smoothing: float = 0.1, reduction: str = "mean") -> LabelSmoothingLoss:
    """Assume negative with label smoothing as Cole et al. smooth: targets 1 - eps and eps (eps = 0.1 in their code).
    (``--loss label_smoothing`` smooths by half as much, 1 - eps/2 and eps/2, the two-class softmax form.)"""
    return LabelSmoothingLoss(label_smoothing=label_smoothing, partial_loss_mode="negative", reduction=reduction,
                              two_class=False)


def binary_cross_entropy(logits: torch.Tensor, soft_targets: torch.Tensor) -> torch.Tensor:
    """Element-wise BCE of float32 ``logits`` against targets in [0, 1] (stable for large logits)."""
    return -(soft_targets * F.logsigmoid(logits) + (1 - soft_targets) * F.logsigmoid(-logits))


def expected_positive_penalty(probs: torch.Tensor, expected_positives: float, reduction: str) -> torch.Tensor:
    """(mean over the batch of the predicted positives per image - k)^2 / C, summed over the batch for ``sum``."""
    if reduction not in ("mean", "sum"):
        raise ValueError(f"a regularised loss reduces with mean or sum, not {reduction!r}")
    penalty = (probs.sum(dim=1).mean() - expected_positives) ** 2 / probs.shape[1]
    return penalty * probs.shape[0] if reduction == "sum" else penalty


def _check_expected_positives(value: float | None) -> float:
    if value is None or not math.isfinite(value) or value <= 0:
        raise ValueError(f"expected_positives must be a positive number of labels per image, got {value}")
    return float(value)


class WeightedAssumeNegativeLoss(nn.Module):
    """WAN: BCE with unknowns as negatives, each weighted ``wan_weight`` (None: 1 / (C - 1))."""

    def __init__(self, wan_weight: float | None = None, reduction: str = "mean"):
        super().__init__()
        self.wan_weight, self.reduction = wan_weight, reduction

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        classes = logits.shape[1]
        weight = self.wan_weight if self.wan_weight is not None else 1.0 / max(classes - 1, 1)
        per_entry = binary_cross_entropy(logits, (targets == 1).float())
        per_entry = per_entry * torch.where(targets == -1, weight, 1.0)
        return reduce_loss(per_entry, self.reduction)


class ExpectedPositiveLoss(nn.Module):
    """EPR: BCE on annotated entries plus the expected-positive penalty (weight ``epr_weight``)."""

    def __init__(self, expected_positives: float | None = None, epr_weight: float = 1.0, reduction: str = "mean"):
        super().__init__()
        self.expected_positives = _check_expected_positives(expected_positives)
        self.epr_weight, self.reduction = epr_weight, reduction

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        per_entry = binary_cross_entropy(logits, (targets == 1).float()) * (targets != -1).float()
        penalty = expected_positive_penalty(torch.sigmoid(logits), self.expected_positives, self.reduction)
        return reduce_loss(per_entry, self.reduction) + self.epr_weight * penalty


ROLE_UNKNOWN_START = math.log(0.6 / 0.4)  # unknown estimates start uniform in logit(0.4) .. logit(0.6)
ROLE_ANNOTATED_START = math.log(0.995 / 0.005)  # annotated ones at 0.995 (positive) or 0.005 (negative)


def initial_label_logits(train_targets: np.ndarray, seed: int) -> torch.Tensor:
    """ROLE's label store as Cole et al. start it: logit(0.995) for annotated positives, logit(0.005) for annotated
    negatives, and for every unknown entry a uniform draw between logit(0.4) and logit(0.6) (seeded)."""
    targets = torch.as_tensor(np.asarray(train_targets), dtype=torch.float32)
    generator = torch.Generator().manual_seed(seed)
    logits = ROLE_UNKNOWN_START * (2 * torch.rand(targets.shape, generator=generator) - 1)
    logits[targets == 1] = ROLE_ANNOTATED_START
    logits[targets == 0] = -ROLE_ANNOTATED_START
    return logits


class OnlineLabelEstimationLoss(nn.Module):
    """ROLE: the model and a per-image label estimate (the label store) trained towards each other, with EPR.

    Call with the batch's sample ``indices`` (rows of the training set). As in Cole et al.'s ``loss_role``, every
    entry has an estimate (annotated ones included, started near their label by :func:`initial_label_logits`), and
    each side's per-entry loss is half the BCE against the annotated labels plus half the BCE against the other
    side's (detached) output; the EPR penalties of both sides are averaged. So an annotated positive weighs about as
    much as in plain BCE: half through its label, half through its estimate (about 0.995).
    """

    uses_sample_index = True

    def __init__(self, num_samples: int = 0, num_classes: int = 0, expected_positives: float | None = None,
                 epr_weight: float = 1.0, role_lr_multiplier: float = 10.0, reduction: str = "mean",
                 train_targets: np.ndarray | None = None, seed: int = 0):
        super().__init__()
        if train_targets is None:  # nothing annotated is known: every estimate starts as an unknown one
            if num_samples <= 0 or num_classes <= 0:
                raise ValueError("role needs the training targets, or the number of training images and classes")
            train_targets = np.full((num_samples, num_classes), -1, dtype=np.int8)
        self.expected_positives = _check_expected_positives(expected_positives)
        self.epr_weight, self.reduction, self.lr_multiplier = epr_weight, reduction, role_lr_multiplier
        self.label_logits = nn.Parameter(initial_label_logits(train_targets, seed))

    def forward(self, logits: torch.Tensor, targets: torch.Tensor, indices: torch.Tensor | None = None) -> torch.Tensor:
        if indices is None:
            raise ValueError("role needs the sample indices of the batch (its label store is per training image)")
        logits, store = logits.float(), self.label_logits[indices]
        annotated, labels = (targets != -1).float(), (targets == 1).float()
        estimates = torch.sigmoid(store)
        model_side = annotated * binary_cross_entropy(logits, labels) + binary_cross_entropy(logits, estimates.detach())
        label_side = (annotated * binary_cross_entropy(store, labels)
                      + binary_cross_entropy(store, torch.sigmoid(logits).detach()))
        penalties = (expected_positive_penalty(torch.sigmoid(logits), self.expected_positives, self.reduction)
                     + expected_positive_penalty(estimates, self.expected_positives, self.reduction))
        return (reduce_loss(model_side + label_side, self.reduction) + self.epr_weight * penalties) / 2
