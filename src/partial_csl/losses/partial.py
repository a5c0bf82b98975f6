"""The Partial (Selective) Asymmetric Loss of CSL (Ben-Baruch et al., arXiv 2110.10955).

Targets use {1 positive, 0 annotated negative, -1 unknown}. Per element, with p = sigmoid(logit) and the clip ``m``
shifting negatives to p_m = max(p - m, 0)::

    positive            -a+  (1 - p)^g+   log(p)
    annotated negative  -a-  p_m^g-       log(1 - p_m)
    unknown (negative)  -au  p_m^gu       log(1 - p_m)

times a weight w in {0, 1} (or a row scale) that the *mode* decides for unknown entries:

* ``negative``: every unknown is a negative;
* ``ignore``: unknowns get weight 0 (only annotated labels train);
* ``ignore_normalize_classes``: ``ignore``, and each sample is scaled by 1 / (1 + its number of annotated labels) + 1;
* ``selective`` (CSL): unknowns of classes whose prior exceeds ``prior_threshold`` are ignored; among the unknowns,
  the ``likelihood_topk`` most likely positives are ignored; every other unknown is a negative. Annotated entries are
  never ignored.

The top-k has three scopes. ``batch`` (the reference code) spends a budget of ``likelihood_topk * batch_size`` over
all unknown entries of the batch, so a sample with many confident unknowns can take several samples' share, and
unknowns already ignored by the prior step still use up budget. ``sample`` (the paper's description) ignores the k
most likely unknowns of each sample. ``adaptive`` (this project's) sets each sample's k from the priors instead of a
constant tuned for COCO's 80 classes: the expected number of positives among that sample's remaining unknowns,
``round(sum of prior_c over its unknown classes not already ignored by the prior step)``, so an image with few
unknowns of rare classes ignores none and one with many unknowns of common classes ignores several; ``likelihood_topk``
is then unused. Ranking is by logit, which orders exactly as the reference's ``1 - p_m`` except that it does not tie
the entries below the clip.

The focusing factor is computed without gradient, as in the reference; ``focal_grad=True`` keeps its gradient.
``reduction='sum'`` is the reference (a total over the batch, hence the "huge" values users report);
``'mean'`` sums over classes and averages over samples; ``'none'`` returns the (B, C) matrix.
Everything is computed in float32, so the loss is safe under fp16/bf16 autocast.
"""

from __future__ import annotations

import torch
from torch import nn

from ..options import Option
from .options import CLIP, GAMMA_NEG, GAMMA_POS, REDUCTION

PARTIAL_LOSS_MODES = ("negative", "ignore", "ignore_normalize_classes", "selective")
TOPK_SCOPES = ("batch", "sample", "adaptive")

# the settings of the partial-label modes (also read by the losses built on this one: label_smoothing, aam)
MODE_OPTIONS = (
    Option("partial_loss_mode", "selective", "how unknown labels are treated", choices=PARTIAL_LOSS_MODES),
    Option("likelihood_topk", 5, "selective: ignore the k most likely unknowns (per sample budget)"),
    Option("likelihood_topk_scope", "batch", "batch: k*B over the batch (reference); sample: k per sample; "
           "adaptive: each sample's expected positives among its unknowns, from the priors", choices=TOPK_SCOPES),
    Option("prior_threshold", 0.5, "selective: ignore unknowns of classes with a prior above this"),
)
OPTIONS = (*MODE_OPTIONS, GAMMA_POS, GAMMA_NEG,
           Option("gamma_unann", 2.0, "focusing exponent of the unknown labels trained as negatives"),
           Option("alpha_pos", 1.0, "weight of the positive terms"),
           Option("alpha_neg", 1.0, "weight of the negative terms"),
           Option("alpha_unann", 1.0, "weight of the unknown labels trained as negatives"),
           CLIP, REDUCTION)
REDUCTIONS = ("sum", "mean", "none")
LOG_EPS = 1e-8


def reduce_loss(per_element: torch.Tensor, reduction: str) -> torch.Tensor:
    """(B, C) -> ``sum`` over everything, ``mean`` = sum over classes averaged over samples, or ``none``."""
    if reduction == "sum":
        return per_element.sum()
    if reduction == "mean":
        return per_element.sum() / max(per_element.shape[0], 1)
    if reduction == "none":
        return per_element
    raise ValueError(f"unknown reduction {reduction!r}; expected one of {REDUCTIONS}")


def likelihood_topk_mask(logits: torch.Tensor, unknown: torch.Tensor, k: int, scope: str) -> torch.Tensor:
    """Boolean (B, C): the unknown entries among the ``k`` (per sample) or ``k * B`` (per batch) highest logits."""
    if scope not in ("batch", "sample"):
        raise ValueError(f"likelihood_topk_mask takes the scope batch or sample, not {scope!r}")
    mask = torch.zeros_like(unknown)
    if k <= 0 or not unknown.any():
        return mask
    scores = logits.detach().float().masked_fill(~unknown, float("-inf"))
    if scope == "batch":
        n = min(k * logits.shape[0], int(unknown.sum()))
        mask.view(-1)[scores.view(-1).topk(n).indices] = True
    else:
        k = min(k, logits.shape[1])
        idx = scores.topk(k, dim=1).indices
        mask.scatter_(1, idx, True)
        mask &= unknown
    return mask


def adaptive_topk_mask(logits: torch.Tensor, candidates: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
    """Boolean (B, C): in each row, the k_i most likely ``candidates``, k_i = round(sum of ``prior`` over them)."""
    budgets = torch.round((candidates.float() * prior[None, :]).sum(dim=1))
    scores = logits.detach().float().masked_fill(~candidates, float("-inf"))
    ranks = scores.argsort(dim=1, descending=True).argsort(dim=1)  # 0 for each row's most likely candidate
    return candidates & (ranks < budgets[:, None])


class PartialSelectiveLoss(nn.Module):
    """``loss(logits, targets)`` with logits (B, C) and targets (B, C) in {-1, 0, 1}."""

    def __init__(self, partial_loss_mode: str = "negative", gamma_pos: float = 0.0, gamma_neg: float = 1.0,
                 gamma_unann: float = 2.0, alpha_pos: float = 1.0, alpha_neg: float = 1.0, alpha_unann: float = 1.0,
                 clip: float = 0.0, likelihood_topk: int = 5, likelihood_topk_scope: str = "batch",
                 prior_threshold: float = 0.5, prior: torch.Tensor | None = None, reduction: str = "sum",
                 focal_grad: bool = False):
        super().__init__()
        if partial_loss_mode not in PARTIAL_LOSS_MODES:
            raise ValueError(f"unknown partial_loss_mode {partial_loss_mode!r}; expected one of {PARTIAL_LOSS_MODES}")
        if likelihood_topk_scope not in TOPK_SCOPES:
            raise ValueError(f"unknown likelihood_topk_scope {likelihood_topk_scope!r}; expected one of {TOPK_SCOPES}")
        if reduction not in REDUCTIONS:
            raise ValueError(f"unknown reduction {reduction!r}; expected one of {REDUCTIONS}")
        if not 0.0 <= clip < 1.0:
            raise ValueError(f"clip must be in [0, 1), got {clip}")
        self.partial_loss_mode, self.reduction, self.focal_grad = partial_loss_mode, reduction, focal_grad
        self.gamma_pos, self.gamma_neg, self.gamma_unann = gamma_pos, gamma_neg, gamma_unann
        self.alpha_pos, self.alpha_neg, self.alpha_unann = alpha_pos, alpha_neg, alpha_unann
        self.clip, self.likelihood_topk, self.likelihood_topk_scope = clip, int(likelihood_topk), likelihood_topk_scope
        self.prior_threshold = prior_threshold
        self.register_buffer("prior", None if prior is None else torch.as_tensor(prior, dtype=torch.float32))

    def entry_weights(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """(B, C) float weight of every entry under the mode (0 = ignored)."""
        annotated = targets != -1
        unknown = ~annotated
        mode = self.partial_loss_mode
        if mode == "negative":
            return torch.ones_like(logits, dtype=torch.float32)
        if mode == "ignore":
            return annotated.float()
        if mode == "ignore_normalize_classes":
            row_scale = 1.0 / (1.0 + annotated.sum(dim=1, keepdim=True).float()) + 1.0
            return annotated.float() * row_scale
        ignored = torch.zeros_like(unknown)
        if self.prior is not None and self.prior_threshold:
            if self.prior.numel() != logits.shape[1]:
                raise ValueError(f"prior has {self.prior.numel()} classes but the logits have {logits.shape[1]}")
            ignored |= unknown & (self.prior > self.prior_threshold)[None, :]
        if self.likelihood_topk_scope == "adaptive":
            if self.prior is None:
                raise ValueError("likelihood_topk_scope adaptive sets each sample's k from the class priors; "
                                 "give priors (--prior_path, or the prior stage)")
            ignored |= adaptive_topk_mask(logits, unknown & ~ignored, self.prior)
        else:
            ignored |= likelihood_topk_mask(logits, unknown, self.likelihood_topk, self.likelihood_topk_scope)
        return (~ignored).float()

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if logits.shape != targets.shape:
            raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} differ in shape")
        logits = logits.float()
        pos, neg, unk = (targets == 1).float(), (targets == 0).float(), (targets == -1).float()
        p = torch.sigmoid(logits)
        q = 1.0 - p
        if self.clip > 0:
            q = (q + self.clip).clamp(max=1.0)
        log_p, log_q = p.clamp(min=LOG_EPS).log(), q.clamp(min=LOG_EPS).log()
        likelihood = (self.alpha_pos * pos * log_p + self.alpha_neg * neg * log_q
                      + self.alpha_unann * unk * log_q)
        with torch.set_grad_enabled(self.focal_grad and torch.is_grad_enabled()):
            exponent = self.gamma_pos * pos + self.gamma_neg * neg + self.gamma_unann * unk
            base = torch.where(exponent > 0, 1.0 - p * pos - q * (neg + unk), torch.ones_like(p))
            focus = base.pow(exponent)  # exponent 0 gives exactly 1 with a zero (not NaN) gradient
        with torch.no_grad():
            weights = self.entry_weights(logits, targets)
        return reduce_loss(-likelihood * focus * weights, self.reduction)
