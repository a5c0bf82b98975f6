"""Losses for partially labelled multi-label data; targets in {1 positive, 0 negative, -1 unknown}."""

from .multitask import TASK_WEIGHTINGS, MultiTaskLoss, dwa_weights
from .partial import PARTIAL_LOSS_MODES, TOPK_SCOPES, PartialSelectiveLoss, likelihood_topk_mask
from .plain import GroupSoftmaxCrossEntropy, ZLPRLoss, asl_loss, bce_loss, focal_loss

LOSSES = {"partial_asl": PartialSelectiveLoss, "bce": bce_loss, "focal": focal_loss, "asl": asl_loss,
          "zlpr": ZLPRLoss}


def build_loss(name: str, **kwargs):
    """A loss by name: ``partial_asl`` (CSL), ``bce``, ``focal``, ``asl``, ``zlpr``."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; expected one of {sorted(LOSSES)}")
    return LOSSES[name](**kwargs)


__all__ = [
    "LOSSES",
    "PARTIAL_LOSS_MODES",
    "TASK_WEIGHTINGS",
    "TOPK_SCOPES",
    "GroupSoftmaxCrossEntropy",
    "MultiTaskLoss",
    "PartialSelectiveLoss",
    "ZLPRLoss",
    "asl_loss",
    "bce_loss",
    "build_loss",
    "dwa_weights",
    "focal_loss",
    "likelihood_topk_mask",
]
