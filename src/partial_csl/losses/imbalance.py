"""Loss-side handling of class imbalance, computed from the *known* training labels only (targets {1, 0, -1}).

The statistics (an ``#N/A`` attribute is -1 across its group and counts for nothing):

* ``n_c``: the annotated positives of class c; ``a_c``: its annotated labels (positive or negative);
* class-balanced weights (Cui et al., CVPR 2019): w_c = (1 - beta) / (1 - beta^n_c), the inverse "effective number"
  of samples, normalised to mean 1 over the classes (over each attribute's classes for the per-attribute heads, so
  that no attribute's loss grows or shrinks as a whole). A class without a positive counts as n_c = 1 (the largest
  weight): it has no positive term to weight, and the weights of the others should not depend on it;
* logit adjustment (Menon et al., ICLR 2021), sigmoid form: tau * log(pi_c / (1 - pi_c)) with pi_c = n_c / a_c, the
  positive rate among the annotated labels (clipped to [1/(a_c + 1), a_c/(a_c + 1)] so that a class annotated only
  positive or only negative gets a finite offset; a never-annotated class gets 0); softmax form: tau * log(share of
  class c among its attribute's known values), counts below 1 counted as 1;
* balanced softmax (Ren et al., NeurIPS 2020): log n_c added within each attribute (n_c below 1 counted as 1). With
  tau = 1 it is the softmax logit adjustment: log n_c and log share differ by a constant per attribute, which the
  softmax cancels.

The modules: :class:`ReweightedLoss` wraps a per-entry loss of ``--arch csl`` (class weights on the positive terms,
a training-time logit offset, deferred re-weighting), :class:`BalancedGroupCrossEntropy` is the per-attribute softmax
cross-entropy with class weights and a logit offset, and :class:`DistributionBalancedLoss` is Wu et al.'s loss.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..options import Option
from .options import REDUCTION
from .partial import reduce_loss
from .plain import GroupSoftmaxCrossEntropy

DB_OPTIONS = (Option("db_neg_scale", 2.0, "negative logit scale lambda"),
              Option("db_focal_gamma", 2.0, "focal exponent (2, with the balance factor 2, as the authors' "
                     "configuration; 0: the bare form without either)"), REDUCTION)

UNKNOWN = -1


def positive_counts(targets: np.ndarray) -> np.ndarray:
    """(C,) annotated positives per class."""
    return (np.asarray(targets) == 1).sum(axis=0).astype(float)


def annotated_counts(targets: np.ndarray) -> np.ndarray:
    """(C,) annotated labels (positive or negative) per class; ``#N/A`` entries are not counted."""
    return (np.asarray(targets) != UNKNOWN).sum(axis=0).astype(float)


def _normalise(weights: np.ndarray, groups: list[slice] | None) -> np.ndarray:
    """Mean 1 over all classes, or over each group's classes."""
    out = weights.copy()
    for sl in groups or [slice(0, len(weights))]:
        out[sl] = weights[sl] / weights[sl].mean()
    return out


def effective_number_weights(positives: np.ndarray, beta: float, groups: list[slice] | None = None) -> np.ndarray:
    """(1 - beta) / (1 - beta^n_c), normalised to mean 1 (per group when ``groups`` are given); n_c < 1 counts as 1."""
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"the class-balanced beta must be in [0, 1), got {beta}")
    n = np.maximum(np.asarray(positives, dtype=float), 1.0)
    return _normalise((1.0 - beta) / (1.0 - beta ** n), groups)


def sigmoid_log_prior_odds(positives: np.ndarray, annotated: np.ndarray) -> np.ndarray:
    """log(pi / (1 - pi)) per class, pi = positives / annotated, clipped to [1/(a+1), a/(a+1)]; 0 if never annotated."""
    positives, annotated = np.asarray(positives, dtype=float), np.asarray(annotated, dtype=float)
    safe = np.maximum(annotated, 1.0)
    pi = np.clip(positives / safe, 1.0 / (safe + 1.0), safe / (safe + 1.0))
    return np.where(annotated > 0, np.log(pi / (1.0 - pi)), 0.0)


def softmax_log_prior(positives: np.ndarray, groups: list[slice]) -> np.ndarray:
    """log(share of each class within its group), counts below 1 counted as 1."""
    n = np.maximum(np.asarray(positives, dtype=float), 1.0)
    out = np.zeros_like(n)
    for sl in groups:
        out[sl] = np.log(n[sl] / n[sl].sum())
    return out


def balanced_softmax_offset(positives: np.ndarray) -> np.ndarray:
    """log n_c (counts below 1 counted as 1): added to the logits inside the per-attribute softmax."""
    return np.log(np.maximum(np.asarray(positives, dtype=float), 1.0))


class _Deferred(nn.Module):
    """Class weights that switch on at epoch ``start_epoch`` (0: from the start; deferred re-weighting, Cao et al.
    2019, trains the plain loss first so that the features are learnt from the natural distribution)."""

    def __init__(self, class_weights: torch.Tensor | None, start_epoch: int):
        super().__init__()
        self.register_buffer("class_weights", None if class_weights is None
                             else torch.as_tensor(class_weights, dtype=torch.float32))
        self.start_epoch, self.epoch = int(start_epoch), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def active_weights(self) -> torch.Tensor | None:
        return self.class_weights if self.epoch >= self.start_epoch else None

    def get_extra_state(self) -> dict:
        return {"epoch": self.epoch}

    def set_extra_state(self, state: dict) -> None:
        self.epoch = int(state.get("epoch", 0))


class ReweightedLoss(_Deferred):
    """``base`` (a loss whose ``reduction='none'`` gives (B, C)) with per-class weights on the *positive* entries and
    a logit offset added in training only. Negatives keep weight 1: they are plentiful for a rare class, and raising
    them with its weight would push that class's scores down, against the purpose of the weights."""

    def __init__(self, base: nn.Module, reduction: str, class_weights: torch.Tensor | None = None,
                 logit_offset: torch.Tensor | None = None, start_epoch: int = 0):
        super().__init__(class_weights, start_epoch)
        self.base, self.reduction = base, reduction
        self.base.reduction = "none"
        self.register_buffer("logit_offset", None if logit_offset is None
                             else torch.as_tensor(logit_offset, dtype=torch.float32))
        self.uses_sample_index = getattr(base, "uses_sample_index", False)
        if hasattr(base, "lr_multiplier"):  # a label store (ROLE's) keeps its own learning rate when wrapped
            self.lr_multiplier = base.lr_multiplier

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        if hasattr(self.base, "set_epoch"):
            self.base.set_epoch(epoch)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor, *extra) -> torch.Tensor:
        logits = logits.float()
        if self.logit_offset is not None:
            logits = logits + self.logit_offset
        per_entry = self.base(logits, targets, *extra)
        if per_entry.shape != logits.shape:
            raise ValueError(f"class weights and logit adjustment need a loss with one term per entry; "
                             f"{type(self.base).__name__} gives {tuple(per_entry.shape)}")
        weights = self.active_weights()
        if weights is not None:
            per_entry = per_entry * torch.where(targets == 1, weights, torch.ones_like(weights))
        return reduce_loss(per_entry, self.reduction)


class BalancedGroupCrossEntropy(GroupSoftmaxCrossEntropy):
    """Softmax cross-entropy per attribute with per-class weights (a weighted mean over the known samples, as
    ``F.cross_entropy(weight=...)``) and a logit offset added in training only (logit adjustment, balanced softmax)."""

    def __init__(self, group_slices: list[slice], class_weights: torch.Tensor | None = None,
                 logit_offset: torch.Tensor | None = None, start_epoch: int = 0):
        super().__init__(group_slices)
        self.deferred = _Deferred(class_weights, start_epoch)
        self.register_buffer("logit_offset", None if logit_offset is None
                             else torch.as_tensor(logit_offset, dtype=torch.float32))

    def set_epoch(self, epoch: int) -> None:
        self.deferred.set_epoch(epoch)

    def per_group(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        if self.logit_offset is not None:
            logits = logits + self.logit_offset
        weights = self.deferred.active_weights()
        losses = []
        for sl in self.group_slices:
            block = targets[:, sl]
            known = (block == 1).any(dim=1)
            if known.any():
                weight = None if weights is None else weights[sl]
                losses.append(F.cross_entropy(logits[known, sl], block[known].argmax(dim=1), weight=weight))
            else:
                losses.append(logits.new_zeros(()) + 0.0 * logits[:, sl].sum())
        return torch.stack(losses)


def db_rebalance_weights(targets: torch.Tensor, positives: torch.Tensor, alpha: float = 0.1, beta: float = 10.0,
                         mu: float = 0.2) -> torch.Tensor:
    """(B, C) re-balanced weights of the Distribution-Balanced loss: r = (1 / n_c) / sum over the sample's known
    positives j of 1 / n_j (class-level over instance-level sampling probability under class-aware resampling),
    smoothed to sigmoid(beta (r - mu)) + alpha. A sample without a known positive takes r = 1."""
    inverse = 1.0 / positives.clamp(min=1.0)
    repeat = ((targets == 1).float() * inverse).sum(dim=1, keepdim=True)
    ratio = torch.where(repeat > 0, inverse / repeat.clamp(min=1e-12), torch.ones_like(repeat))
    return torch.sigmoid(beta * (ratio - mu)) + alpha


class DistributionBalancedLoss(nn.Module):
    """The Distribution-Balanced loss (Wu et al., ECCV 2020) on the annotated labels (unknowns are ignored), in the
    authors' configuration (``ResampleLoss`` with ``reweight_func='rebalance'``, focal on):

    * re-balanced weights :func:`db_rebalance_weights` on every entry;
    * negative-tolerant regularisation: the logits shifted by ``(init_bias_scale / lambda) log(pi / (1 - pi))`` (pi:
      the class prior among annotated labels; the reference divides the bias by lambda), and the negative terms
      computed on lambda-scaled logits and weighted 1 / lambda, ``(1 / lambda) log(1 + exp(lambda z))``, so that the
      many negatives of a rare class stop pushing its score far below 0 once it is below the bias;
    * the focal term: every entry's BCE times ``(1 - p_t)^gamma`` (p_t the probability of its label, on the scaled
      logit for a negative) and the balance factor 2. ``db_focal_gamma`` 0 gives the bare form (no focal term and no
      balance factor, the reference's ``focal=False``).
    """

    def __init__(self, class_positives: np.ndarray, class_annotated: np.ndarray, db_alpha: float = 0.1,
                 db_beta: float = 10.0, db_mu: float = 0.2, db_neg_scale: float = 2.0, db_init_bias: float = 0.05,
                 db_focal_gamma: float = 2.0, db_focal_balance: float = 2.0, reduction: str = "mean"):
        super().__init__()
        if db_neg_scale <= 0:
            raise ValueError(f"the negative logit scale lambda must be positive, got {db_neg_scale}")
        if db_focal_gamma < 0:
            raise ValueError(f"the focal exponent gamma must be non-negative, got {db_focal_gamma}")
        self.register_buffer("positives", torch.as_tensor(class_positives, dtype=torch.float32))
        odds = sigmoid_log_prior_odds(np.asarray(class_positives), np.asarray(class_annotated))
        self.register_buffer("bias", torch.as_tensor(db_init_bias / db_neg_scale * odds, dtype=torch.float32))
        self.alpha, self.beta, self.mu = db_alpha, db_beta, db_mu
        self.neg_scale, self.reduction = db_neg_scale, reduction
        self.focal_gamma = db_focal_gamma
        self.balance = db_focal_balance if db_focal_gamma > 0 else 1.0

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        z = logits.float() + self.bias
        pos, neg = (targets == 1).float(), (targets == 0).float()
        positive_term = F.softplus(-z)
        negative_term = F.softplus(self.neg_scale * z) / self.neg_scale
        if self.focal_gamma > 0:  # (1 - p_t)^gamma: sigmoid(-z) for a positive, sigmoid(lambda z) for a negative
            positive_term = positive_term * torch.sigmoid(-z) ** self.focal_gamma
            negative_term = negative_term * torch.sigmoid(self.neg_scale * z) ** self.focal_gamma
        weights = db_rebalance_weights(targets, self.positives, self.alpha, self.beta, self.mu)
        per_entry = self.balance * weights * (pos * positive_term + neg * negative_term)
        return reduce_loss(per_entry, self.reduction)
