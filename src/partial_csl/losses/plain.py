"""The plain multi-label losses partial-label papers compare with, each ignoring unknown (-1) entries.

BCE, focal and ASL are the Partial Asymmetric Loss in ``ignore`` mode with other settings (one implementation,
:class:`PartialSelectiveLoss`): BCE is all gammas 0 and no clip, focal uses one gamma for positives and negatives,
ASL (Ridnik et al., ICCV 2021) uses gamma-, gamma+ and the probability clip. ZLPR (Su et al., 2022) and the per-group
softmax cross-entropy (mutually exclusive attribute groups) are separate.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .options import CLIP, FOCAL_GAMMA, GAMMA_NEG, GAMMA_POS, REDUCTION
from .partial import PartialSelectiveLoss, reduce_loss

FOCAL_OPTIONS = (FOCAL_GAMMA, REDUCTION)
ASL_OPTIONS = (GAMMA_NEG, GAMMA_POS, CLIP, REDUCTION)


def bce_loss(reduction: str = "mean") -> PartialSelectiveLoss:
    return PartialSelectiveLoss("ignore", gamma_pos=0, gamma_neg=0, gamma_unann=0, clip=0, reduction=reduction)


def focal_loss(focal_gamma: float = 2.0, reduction: str = "mean") -> PartialSelectiveLoss:
    """Focal loss (Lin et al., 2017) with the focusing factor's gradient kept, as in the original."""
    gamma = focal_gamma
    return PartialSelectiveLoss("ignore", gamma_pos=gamma, gamma_neg=gamma, gamma_unann=gamma, clip=0,
                                reduction=reduction, focal_grad=True)


def asl_loss(gamma_neg: float = 4.0, gamma_pos: float = 1.0, clip: float = 0.05,
             reduction: str = "mean") -> PartialSelectiveLoss:
    return PartialSelectiveLoss("ignore", gamma_pos=gamma_pos, gamma_neg=gamma_neg, gamma_unann=gamma_neg,
                                clip=clip, reduction=reduction)


class ZLPRLoss(nn.Module):
    """log(1 + sum_neg e^s) + log(1 + sum_pos e^-s) per sample; unknown entries take part in neither sum."""

    def __init__(self, reduction: str = "mean"):
        super().__init__()
        self.reduction = reduction

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        zero = torch.zeros_like(logits[:, :1])
        neg = logits.masked_fill(targets != 0, float("-inf"))
        pos = (-logits).masked_fill(targets != 1, float("-inf"))
        per_sample = torch.logsumexp(torch.cat([zero, neg], 1), 1) + torch.logsumexp(torch.cat([zero, pos], 1), 1)
        return reduce_loss(per_sample[:, None], self.reduction)


class GroupSoftmaxCrossEntropy(nn.Module):
    """Softmax cross-entropy within each group of mutually exclusive classes; an unknown group adds nothing.

    ``forward`` returns the sum over groups of each group's mean over the samples where it is known;
    :meth:`per_group` returns the (G,) vector, for task weighting.
    """

    def __init__(self, group_slices: list[slice]):
        super().__init__()
        self.group_slices = list(group_slices)

    def per_group(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        losses = []
        for sl in self.group_slices:
            block = targets[:, sl]
            known = (block == 1).any(dim=1)
            if known.any():
                losses.append(F.cross_entropy(logits[known, sl].float(), block[known].argmax(dim=1)))
            else:
                losses.append(logits.new_zeros((), dtype=torch.float32) + 0.0 * logits[:, sl].sum())
        return torch.stack(losses)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.per_group(logits, targets).sum()
