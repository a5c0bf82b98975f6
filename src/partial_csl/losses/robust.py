"""Hill and SPLC (Zhang et al., 2021, "Simple and Robust Loss Design for Multi-Label Learning with Missing Labels").

Both were designed for the *missing positives* protocol, where a missing label looks like a negative and nothing
marks it, so, as published, they treat every entry that is not an annotated positive (annotated negatives and
unknowns alike) as a negative that may be a missing positive. Positives use the *focal margin* loss: focal loss
(exponent ``focal_gamma``) on the logit shifted by ``focal_margin`` m, which asks positives for a margin:
``-(1 - sigmoid(x - m))^gamma log sigmoid(x - m)``.

* ``hill``: a negative with p = sigmoid(x) costs ``(hill_lambda - p) p^2``, a hill-shaped loss whose gradient vanishes
  both for easy negatives (p near 0) and for confident ones (p near 1, likely missing positives), peaking in between;
* ``splc`` (self-paced loss correction): from epoch ``splc_start_epoch`` (0-based; the paper's warm-up is one epoch),
  a negative whose probability exceeds ``splc_threshold`` tau is treated as a positive for that step (plain focal loss
  on its unshifted logit); the other negatives get the focal loss ``-p^gamma log(1 - p)``. The correction depends only
  on the current prediction, so nothing is stored. tau = 0.6 is the authors' code's default, which their README
  keeps for every setting but COCO with 75 % of the positives left (0.65).

The focusing factors keep their gradient, as in focal loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..options import Option
from .options import FOCAL_GAMMA, REDUCTION
from .partial import reduce_loss

FOCAL_MARGIN = Option("focal_margin", 1.0, "logit margin of the focal-margin loss on positives")
HILL_OPTIONS = (Option("hill_lambda", 1.5, "lambda of the negative loss (lambda - p) p^2"), FOCAL_MARGIN, FOCAL_GAMMA,
                REDUCTION)
SPLC_OPTIONS = (Option("splc_threshold", 0.6, "a negative above this probability is trained as a positive (the "
                       "authors' code's default; their README: 0.65 for COCO with 75 % left)"),
                Option("splc_start_epoch", 1, "first epoch (0-based) of the correction"), FOCAL_MARGIN, FOCAL_GAMMA,
                REDUCTION)


def focal_positive(logits: torch.Tensor, gamma: float) -> torch.Tensor:
    """-(1 - p)^gamma log p, element-wise, p = sigmoid(logits)."""
    return -(1 - torch.sigmoid(logits)) ** gamma * F.logsigmoid(logits)


def focal_negative(logits: torch.Tensor, gamma: float) -> torch.Tensor:
    """-p^gamma log(1 - p), element-wise."""
    return -torch.sigmoid(logits) ** gamma * F.logsigmoid(-logits)


class HillLoss(nn.Module):
    def __init__(self, hill_lambda: float = 1.5, focal_margin: float = 1.0, focal_gamma: float = 2.0,
                 reduction: str = "mean"):
        super().__init__()
        self.hill_lambda, self.margin, self.gamma, self.reduction = hill_lambda, focal_margin, focal_gamma, reduction

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        p = torch.sigmoid(logits)
        negative = (self.hill_lambda - p) * p**2
        per_entry = torch.where(targets == 1, focal_positive(logits - self.margin, self.gamma), negative)
        return reduce_loss(per_entry, self.reduction)


class SelfPacedCorrectionLoss(nn.Module):
    """SPLC; the engine calls :meth:`set_epoch` at the start of every epoch."""

    def __init__(self, splc_threshold: float = 0.6, splc_start_epoch: int = 1, focal_margin: float = 1.0,
                 focal_gamma: float = 2.0, reduction: str = "mean"):
        super().__init__()
        if not 0.0 < splc_threshold < 1.0:
            raise ValueError(f"splc_threshold must be a probability in (0, 1), got {splc_threshold}")
        self.threshold, self.start_epoch = splc_threshold, splc_start_epoch
        self.margin, self.gamma, self.reduction = focal_margin, focal_gamma, reduction
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def corrected(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Boolean (B, C): the negatives this step treats as positives."""
        if self.epoch < self.start_epoch:
            return torch.zeros_like(targets, dtype=torch.bool)
        return (targets != 1) & (torch.sigmoid(logits.detach()) > self.threshold)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        corrected = self.corrected(logits, targets)
        per_entry = torch.where(targets == 1, focal_positive(logits - self.margin, self.gamma),
                                torch.where(corrected, focal_positive(logits, self.gamma),
                                            focal_negative(logits, self.gamma)))
        return reduce_loss(per_entry, self.reduction)
