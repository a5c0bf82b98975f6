"""Label-smoothed BCE and the additive angular margin loss, with unknown labels treated as the partial-label modes do.

Both build the same per-entry weights as :class:`~.partial.PartialSelectiveLoss` (``negative``: unknowns are
negatives; ``ignore``: they weigh 0; ``ignore_normalize_classes``; ``selective``: priors and top-k decide), then a
binary cross-entropy per entry, where an unknown entry that is not ignored is a negative:

* :class:`LabelSmoothingLoss`: targets 1 / 0 become 1 - eps/2 / eps/2 (``label_smoothing`` = eps), the multi-label
  form of label smoothing (each sigmoid is a two-class softmax); or 1 - eps / eps, Cole et al.'s (``an_ls``);
* :class:`AdditiveAngularMarginLoss`: the logits must be cosines times a scale s (``--head cosine``); a positive's
  logit becomes s cos(theta + m), which asks for an angle m smaller than plain BCE would (ArcFace's margin, applied
  per class). Past theta + m = pi the margin is replaced by its linear continuation, as in ArcFace, so the logit
  keeps decreasing in theta.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..options import COSINE_SCALE, Option
from .options import LABEL_SMOOTHING, REDUCTION
from .partial import MODE_OPTIONS, PartialSelectiveLoss, reduce_loss

LABEL_SMOOTHING_OPTIONS = (LABEL_SMOOTHING, *MODE_OPTIONS, REDUCTION)
AAM_OPTIONS = (Option("aam_margin", 0.5, "the additive angular margin m (radians) on positives", param="margin"),
               COSINE_SCALE,
               *MODE_OPTIONS, REDUCTION)


class _ModeWeighted(nn.Module):
    """The partial-label mode's entry weights, shared by the losses below."""

    def __init__(self, partial_loss_mode: str, likelihood_topk: int, likelihood_topk_scope: str,
                 prior_threshold: float, prior: torch.Tensor | None, reduction: str):
        super().__init__()
        self.modes = PartialSelectiveLoss(partial_loss_mode, likelihood_topk=likelihood_topk,
                                          likelihood_topk_scope=likelihood_topk_scope,
                                          prior_threshold=prior_threshold, prior=prior, reduction=reduction)
        self.reduction = reduction

    def weighted(self, per_entry: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            weights = self.modes.entry_weights(logits, targets)
        return reduce_loss(per_entry * weights, self.reduction)


class LabelSmoothingLoss(_ModeWeighted):
    """``two_class=True``: targets 1 - eps/2 and eps/2 (a sigmoid as a two-class softmax, smoothed as
    ``F.cross_entropy(label_smoothing=eps)`` smooths one); ``False``: 1 - eps and eps, Cole et al.'s AN-LS."""

    def __init__(self, partial_loss_mode: str = "negative", label_smoothing: float = 0.1, likelihood_topk: int = 5,
                 likelihood_topk_scope: str = "batch", prior_threshold: float = 0.5,
                 prior: torch.Tensor | None = None, reduction: str = "mean", two_class: bool = True):
        super().__init__(partial_loss_mode, likelihood_topk, likelihood_topk_scope, prior_threshold, prior, reduction)
        if not 0.0 <= label_smoothing < (1.0 if two_class else 0.5):
            raise ValueError(f"label_smoothing must be in [0, {1.0 if two_class else 0.5}), got {label_smoothing}")
        self.label_smoothing = label_smoothing
        self.negative_target = label_smoothing / 2 if two_class else label_smoothing

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        hard = (targets == 1).float()  # unknowns that count are negatives
        soft = hard * (1 - 2 * self.negative_target) + self.negative_target
        per_entry = F.binary_cross_entropy_with_logits(logits, soft, reduction="none")
        return self.weighted(per_entry, logits, targets)


class AdditiveAngularMarginLoss(_ModeWeighted):
    def __init__(self, partial_loss_mode: str = "negative", margin: float = 0.5, scale: float = 30.0,
                 likelihood_topk: int = 5, likelihood_topk_scope: str = "batch", prior_threshold: float = 0.5,
                 prior: torch.Tensor | None = None, reduction: str = "mean"):
        super().__init__(partial_loss_mode, likelihood_topk, likelihood_topk_scope, prior_threshold, prior, reduction)
        if not 0.0 <= margin < math.pi / 2:
            raise ValueError(f"margin must be an angle in [0, pi/2), got {margin}")
        self.margin, self.scale = margin, scale

    def margin_logits(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """s cos(theta + m) for positives, s cos(theta) for every other entry."""
        cos = (logits.float() / self.scale).clamp(-1.0, 1.0)
        sin = (1.0 - cos * cos).clamp_min(0.0).sqrt()
        shifted = cos * math.cos(self.margin) - sin * math.sin(self.margin)
        # beyond theta + m = pi, cos(theta + m) would rise again; ArcFace continues linearly instead
        linear = cos - math.sin(math.pi - self.margin) * self.margin
        shifted = torch.where(cos > math.cos(math.pi - self.margin), shifted, linear)
        return self.scale * torch.where(targets == 1, shifted, cos)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        per_entry = F.binary_cross_entropy_with_logits(self.margin_logits(logits, targets),
                                                       (targets == 1).float(), reduction="none")
        return self.weighted(per_entry, logits.float(), targets)
