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
  table of logits, the *label store*, indexed by the batch's sample indices) with annotated entries fixed to their
  labels. The model is trained towards the estimates and the estimates towards the model (each side's target
  detached), each with the EPR term; the two halves are averaged.

``k`` is the number of positives expected per image, which Cole et al. take as known; the engine passes an estimate
from the training labels unless ``--expected-positives`` gives it. ROLE's table trains with the model's optimiser at
``role_lr_multiplier`` times its learning rate and without weight decay: a row gets a gradient only when its image
is in a batch (about once an epoch), though Adam's momentum keeps moving it for a while after, as in Cole et al.'s
code. The expected count ``k`` matters: the default estimate sums each class's annotated positive rate, which is
right for labels missing at random and too high under class-dependent annotation (FPC keeps as many negatives as
positives per class, so rare classes look common): give ``--expected-positives`` there.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .margin import LabelSmoothingLoss
from .partial import PartialSelectiveLoss, reduce_loss


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


class OnlineLabelEstimationLoss(nn.Module):
    """ROLE: the model and a per-image label estimate (the label store) trained towards each other, with EPR.

    Call with the batch's sample ``indices`` (rows of the training set). The label store's logits start at
    logit(k / C) for every entry; annotated entries never use them.
    """

    uses_sample_index = True

    def __init__(self, num_samples: int = 0, num_classes: int = 0, expected_positives: float | None = None,
                 epr_weight: float = 1.0, role_lr_multiplier: float = 10.0, reduction: str = "mean"):
        super().__init__()
        if num_samples <= 0 or num_classes <= 0:
            raise ValueError("role needs the number of training images and classes (its label store)")
        self.expected_positives = _check_expected_positives(expected_positives)
        self.epr_weight, self.reduction, self.lr_multiplier = epr_weight, reduction, role_lr_multiplier
        rate = min(max(self.expected_positives / num_classes, 1e-4), 1 - 1e-4)
        self.label_logits = nn.Parameter(torch.full((num_samples, num_classes), math.log(rate / (1 - rate))))

    def forward(self, logits: torch.Tensor, targets: torch.Tensor, indices: torch.Tensor | None = None) -> torch.Tensor:
        if indices is None:
            raise ValueError("role needs the sample indices of the batch (its label store is per training image)")
        logits = logits.float()
        annotated = targets != -1
        estimates = torch.where(annotated, targets.float(), torch.sigmoid(self.label_logits[indices]))
        model_side = binary_cross_entropy(logits, estimates.detach())
        label_side = binary_cross_entropy(self.label_logits[indices], torch.sigmoid(logits).detach()) * (~annotated)
        penalties = (expected_positive_penalty(torch.sigmoid(logits), self.expected_positives, self.reduction)
                     + expected_positive_penalty(estimates, self.expected_positives, self.reduction))
        return (reduce_loss(model_side + label_side, self.reduction) + self.epr_weight * penalties) / 2
