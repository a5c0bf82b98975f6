"""Large loss modification (Kim et al., CVPR 2022, "Large Loss Matters in Weakly Supervised Multi-Label
Classification"): unknown labels are negatives that may be wrong, and a wrong negative shows as a large loss.

The base loss is BCE with every unknown a negative (assume negative). In every batch, the unknown entries with the
largest losses, k = ceil(R x B x C) of them (a share R of *all* the batch's entries, as in the paper), are

* ``ll_r`` (rejection): given weight 0;
* ``ll_ct`` (temporary correction): trained as positives in this step only;
* ``ll_cp`` (permanent correction): trained as positives, and remembered as positives for the rest of the run in a
  per-image label store (indexed by the batch's sample indices, saved with the training state).

The share grows with the epoch t (0-based, so the first epoch trains plain assume-negative): R(t) = t x delta for
LL-R and LL-Ct; LL-Cp corrects a constant share delta per batch from the second epoch on, since what it corrected
stays corrected. ``ll_delta_rel`` is delta in percent (the paper's Delta_rel, 0.1 to 0.5 % per epoch). Annotated
labels are never modified.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..options import Option
from .options import REDUCTION
from .partial import reduce_loss

OPTIONS = (Option("ll_delta_rel", 0.2, "percent of a batch's entries modified per epoch"), REDUCTION)

LARGE_LOSS_SCHEMES = ("rejection", "temporary", "permanent")


class LargeLossModification(nn.Module):
    def __init__(self, scheme: str = "rejection", ll_delta_rel: float = 0.2, num_samples: int = 0,
                 num_classes: int = 0, reduction: str = "mean"):
        super().__init__()
        if scheme not in LARGE_LOSS_SCHEMES:
            raise ValueError(f"unknown large-loss scheme {scheme!r}; expected one of {LARGE_LOSS_SCHEMES}")
        if not 0.0 <= ll_delta_rel <= 100.0:
            raise ValueError(f"ll_delta_rel is a percentage per epoch, got {ll_delta_rel}")
        self.scheme, self.delta, self.reduction = scheme, ll_delta_rel / 100.0, reduction
        self.uses_sample_index = scheme == "permanent"
        self.epoch = 0
        if self.uses_sample_index and (num_samples <= 0 or num_classes <= 0):
            raise ValueError("ll_cp needs the number of training images and classes (its label store)")
        store = torch.zeros((num_samples, num_classes) if self.uses_sample_index else (0, 0), dtype=torch.bool)
        self.register_buffer("corrected_positives", store)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def modified_share(self) -> float:
        """R: the share of the batch's entries whose loss is modified in the current epoch."""
        if self.scheme == "permanent":
            return self.delta if self.epoch >= 1 else 0.0
        return min(self.delta * self.epoch, 1.0)

    def largest_unknown_losses(self, negative_loss: torch.Tensor, unknown: torch.Tensor) -> torch.Tensor:
        """Boolean (B, C): the k unknown entries with the largest loss as negatives."""
        chosen = torch.zeros_like(unknown)
        k = min(math.ceil(self.modified_share() * unknown.numel()), int(unknown.sum()))
        if k > 0:
            scores = negative_loss.detach().masked_fill(~unknown, float("-inf")).flatten()
            chosen.view(-1)[scores.topk(k).indices] = True
        return chosen

    def forward(self, logits: torch.Tensor, targets: torch.Tensor, indices: torch.Tensor | None = None) -> torch.Tensor:
        logits = logits.float()
        if self.uses_sample_index:
            if indices is None:
                raise ValueError("ll_cp needs the sample indices of the batch (its label store is per image)")
            targets = torch.where(self.corrected_positives[indices] & (targets == -1), 1.0, targets)
        positive_loss, negative_loss = -F.logsigmoid(logits), -F.logsigmoid(-logits)
        per_entry = torch.where(targets == 1, positive_loss, negative_loss)
        chosen = self.largest_unknown_losses(negative_loss, targets == -1)
        if self.scheme == "rejection":
            per_entry = per_entry.masked_fill(chosen, 0.0)
        else:
            per_entry = torch.where(chosen, positive_loss, per_entry)
        if self.scheme == "permanent" and chosen.any():
            rows, columns = chosen.nonzero(as_tuple=True)  # (not store[indices] |= chosen: a repeated image's
            self.corrected_positives[indices[rows], columns] = True  # last copy would overwrite the others)
        return reduce_loss(per_entry, self.reduction)


def ll_r_loss(ll_delta_rel: float = 0.2, reduction: str = "mean") -> LargeLossModification:
    return LargeLossModification("rejection", ll_delta_rel, reduction=reduction)


def ll_ct_loss(ll_delta_rel: float = 0.2, reduction: str = "mean") -> LargeLossModification:
    return LargeLossModification("temporary", ll_delta_rel, reduction=reduction)


def ll_cp_loss(ll_delta_rel: float = 0.2, num_samples: int = 0, num_classes: int = 0,
               reduction: str = "mean") -> LargeLossModification:
    return LargeLossModification("permanent", ll_delta_rel, num_samples, num_classes, reduction)
