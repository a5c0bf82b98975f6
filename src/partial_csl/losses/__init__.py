"""Losses for partially labelled multi-label data; targets in {1 positive, 0 negative, -1 unknown}.

:data:`LOSSES` is the registry behind ``train.py --loss``: a name and a constructor. :func:`build_loss` passes each
constructor only the settings its signature names, so a run hands every loss the same settings (``gamma_neg``,
``clip``, ``reduction``, ``prior`` ...) and a new loss is one module plus one entry here.

Two optional hooks let a loss follow the training: ``set_epoch(epoch)`` (0-based, called before every epoch: the
schedules of SPLC and the large-loss methods) and ``uses_sample_index = True``, for which the engine passes the
batch's sample indices as a third argument (the per-image label stores of ROLE and LL-Cp). Any state a loss keeps is
in its ``state_dict`` and saved with the training state, so ``--resume`` continues it.
"""

import inspect

from .assume_negative import (
    ExpectedPositiveLoss,
    OnlineLabelEstimationLoss,
    WeightedAssumeNegativeLoss,
    an_loss,
    an_ls_loss,
)
from .imbalance import DistributionBalancedLoss
from .large_loss import LargeLossModification, ll_cp_loss, ll_ct_loss, ll_r_loss
from .margin import AdditiveAngularMarginLoss, LabelSmoothingLoss
from .multitask import TASK_WEIGHTINGS, MultiTaskLoss, dwa_weights
from .partial import PARTIAL_LOSS_MODES, TOPK_SCOPES, PartialSelectiveLoss, likelihood_topk_mask
from .plain import GroupSoftmaxCrossEntropy, ZLPRLoss, asl_loss, bce_loss, focal_loss
from .robust import HillLoss, SelfPacedCorrectionLoss

LOSSES = {
    "partial_asl": PartialSelectiveLoss,  # CSL: --partial_loss_mode decides what unknown labels do
    "bce": bce_loss,  # binary cross-entropy on annotated labels; unknowns ignored
    "focal": focal_loss,  # focal loss (--focal-gamma) on annotated labels; unknowns ignored
    "asl": asl_loss,  # asymmetric loss (--gamma_neg, --gamma_pos, --clip) on annotated labels; unknowns ignored
    "zlpr": ZLPRLoss,  # zero-bounded log-sum-exp pairwise loss; unknowns in neither sum
    "label_smoothing": LabelSmoothingLoss,  # BCE on 1 - eps/2 / eps/2 targets (--label-smoothing); modes apply
    "aam": AdditiveAngularMarginLoss,  # additive angular margin on cosine logits (--head cosine); modes apply
    # Cole et al. 2021: assume negative, weighted, label-smoothed, expected positive regularisation, ROLE
    "an": an_loss,
    "wan": WeightedAssumeNegativeLoss,
    "an_ls": an_ls_loss,
    "epr": ExpectedPositiveLoss,
    "role": OnlineLabelEstimationLoss,
    # Zhang et al. 2021: robust losses for missing positives (every non-positive may be a missing positive)
    "hill": HillLoss,
    "splc": SelfPacedCorrectionLoss,
    # Kim et al. 2022: the largest unknown losses rejected, corrected for a step, or corrected for good
    "ll_r": ll_r_loss,
    "ll_ct": ll_ct_loss,
    "ll_cp": ll_cp_loss,
    # Wu et al. 2020: Distribution-Balanced loss (re-balanced weights, negative-tolerant regularisation; --db-neg-scale)
    "db": DistributionBalancedLoss,
}


def loss_uses_priors(name: str) -> bool:
    """Whether the loss takes class priors (its selective mode needs them, from a file or the prior stage)."""
    return "prior" in inspect.signature(LOSSES[name]).parameters


def loss_uses_expected_positives(name: str) -> bool:
    """Whether the loss takes the expected number of positives per image (EPR, ROLE)."""
    return "expected_positives" in inspect.signature(LOSSES[name]).parameters


def build_loss(name: str, **settings):
    """The loss ``name`` from the settings its constructor accepts (the others are not its business)."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; expected one of {sorted(LOSSES)}")
    constructor = LOSSES[name]
    accepted = inspect.signature(constructor).parameters
    return constructor(**{k: v for k, v in settings.items() if k in accepted})


__all__ = [
    "LOSSES",
    "PARTIAL_LOSS_MODES",
    "TASK_WEIGHTINGS",
    "TOPK_SCOPES",
    "AdditiveAngularMarginLoss",
    "DistributionBalancedLoss",
    "ExpectedPositiveLoss",
    "GroupSoftmaxCrossEntropy",
    "HillLoss",
    "LabelSmoothingLoss",
    "LargeLossModification",
    "MultiTaskLoss",
    "OnlineLabelEstimationLoss",
    "PartialSelectiveLoss",
    "SelfPacedCorrectionLoss",
    "WeightedAssumeNegativeLoss",
    "ZLPRLoss",
    "asl_loss",
    "bce_loss",
    "build_loss",
    "dwa_weights",
    "focal_loss",
    "likelihood_topk_mask",
    "loss_uses_expected_positives",
    "loss_uses_priors",
]
