"""Losses for partially labelled multi-label data; targets in {1 positive, 0 negative, -1 unknown}.

:data:`LOSSES` is the registry behind ``train.py --loss``: a :class:`LossEntry` holds the constructor and the
settings it reads, declared as :class:`~partial_csl.options.Option` in the loss's module. TrainConfig's loss fields
and train.py's loss flags are generated from them (:data:`LOSS_OPTIONS`), so a new loss, with settings of its own, is
one module plus one entry here. What the run itself knows (the priors, the training set's size and counts: see
:data:`CONTEXT`) reaches a constructor that names it.

Two optional hooks let a loss follow the training: ``set_epoch(epoch)`` (0-based, called before every epoch: the
schedules of SPLC and the large-loss methods) and ``uses_sample_index = True``, for which the engine passes the
batch's sample indices as a third argument (the per-image label stores of ROLE and LL-Cp). Any state a loss keeps is
in its ``state_dict`` and saved with the training state, so ``--resume`` continues it.
"""

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from ..options import Option, merge_options
from . import large_loss, partial
from .assume_negative import (
    AN_LS_OPTIONS,
    EPR_OPTIONS,
    ROLE_OPTIONS,
    WAN_OPTIONS,
    ExpectedPositiveLoss,
    OnlineLabelEstimationLoss,
    WeightedAssumeNegativeLoss,
    an_loss,
    an_ls_loss,
)
from .imbalance import DB_OPTIONS, DistributionBalancedLoss
from .large_loss import LargeLossModification, ll_cp_loss, ll_ct_loss, ll_r_loss
from .margin import AAM_OPTIONS, LABEL_SMOOTHING_OPTIONS, AdditiveAngularMarginLoss, LabelSmoothingLoss
from .multitask import TASK_WEIGHTINGS, MultiTaskLoss, dwa_weights
from .options import REDUCTION
from .partial import PARTIAL_LOSS_MODES, TOPK_SCOPES, PartialSelectiveLoss, likelihood_topk_mask
from .plain import ASL_OPTIONS, FOCAL_OPTIONS, GroupSoftmaxCrossEntropy, ZLPRLoss, asl_loss, bce_loss, focal_loss
from .robust import HILL_OPTIONS, SPLC_OPTIONS, HillLoss, SelfPacedCorrectionLoss

# what a run knows and hands every loss that names it in its signature (the settings come from the options)
CONTEXT = ("prior", "num_samples", "num_classes", "expected_positives", "train_targets", "seed", "class_positives",
           "class_annotated")


@dataclass(frozen=True)
class LossEntry:
    """One ``--loss``: its constructor, the settings it reads (each a TrainConfig field and a train.py flag) and a
    line for ``--help``."""

    build: Callable[..., nn.Module]
    options: tuple[Option, ...]
    help: str

    def create(self, settings: Any, **context) -> nn.Module:
        """The loss, its options read from ``settings`` (any object with them as attributes: a TrainConfig) and the
        ``context`` (:data:`CONTEXT`) its constructor names."""
        accepted = inspect.signature(self.build).parameters
        kwargs = {option.keyword: getattr(settings, option.name) for option in self.options}
        return self.build(**kwargs, **{k: v for k, v in context.items() if k in accepted and k not in kwargs})


LOSSES = {
    "partial_asl": LossEntry(PartialSelectiveLoss, partial.OPTIONS,
                             "CSL's loss: unknowns as --partial_loss_mode says"),
    "bce": LossEntry(bce_loss, (REDUCTION,), "binary cross-entropy on annotated labels; unknowns ignored"),
    "focal": LossEntry(focal_loss, FOCAL_OPTIONS, "focal loss on annotated labels; unknowns ignored"),
    "asl": LossEntry(asl_loss, ASL_OPTIONS, "asymmetric loss on annotated labels; unknowns ignored"),
    "zlpr": LossEntry(ZLPRLoss, (REDUCTION,), "zero-bounded log-sum-exp pairwise loss; unknowns in neither sum"),
    "label_smoothing": LossEntry(LabelSmoothingLoss, LABEL_SMOOTHING_OPTIONS,
                                 "BCE on 1 - eps/2 / eps/2 targets; the modes apply"),
    "aam": LossEntry(AdditiveAngularMarginLoss, AAM_OPTIONS,
                     "additive angular margin on cosine logits (--head cosine); the modes apply"),
    # Cole et al. 2021: assume negative, weighted, label-smoothed, expected positive regularisation, ROLE
    "an": LossEntry(an_loss, (REDUCTION,), "assume negative"),
    "wan": LossEntry(WeightedAssumeNegativeLoss, WAN_OPTIONS, "weighted assume negative"),
    "an_ls": LossEntry(an_ls_loss, AN_LS_OPTIONS, "assume negative, label-smoothed (1 - eps / eps)"),
    "epr": LossEntry(ExpectedPositiveLoss, EPR_OPTIONS, "expected positive regularisation"),
    "role": LossEntry(OnlineLabelEstimationLoss, ROLE_OPTIONS, "online estimation of the unknown labels"),
    # Zhang et al. 2021: robust losses for missing positives (every non-positive may be a missing positive)
    "hill": LossEntry(HillLoss, HILL_OPTIONS, "Hill loss on negatives, focal margin on positives"),
    "splc": LossEntry(SelfPacedCorrectionLoss, SPLC_OPTIONS, "self-paced loss correction"),
    # Kim et al. 2022: the largest unknown losses rejected, corrected for a step, or corrected for good
    "ll_r": LossEntry(ll_r_loss, large_loss.OPTIONS, "large-loss rejection"),
    "ll_ct": LossEntry(ll_ct_loss, large_loss.OPTIONS, "large-loss correction, temporary"),
    "ll_cp": LossEntry(ll_cp_loss, large_loss.OPTIONS, "large-loss correction, permanent"),
    # Wu et al. 2020: Distribution-Balanced loss (re-balanced weights, negative-tolerant regularisation)
    "db": LossEntry(DistributionBalancedLoss, DB_OPTIONS, "Distribution-Balanced loss"),
}

# every loss setting once, with the losses that read it: TrainConfig's loss fields and train.py's loss flags
LOSS_OPTIONS = merge_options((name, entry.options) for name, entry in LOSSES.items())


def get_loss(name: str) -> LossEntry:
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; expected one of {sorted(LOSSES)}")
    return LOSSES[name]


def loss_uses_priors(name: str) -> bool:
    """Whether the loss takes class priors (its selective mode needs them, from a file or the prior stage)."""
    return "prior" in inspect.signature(get_loss(name).build).parameters


def loss_uses_expected_positives(name: str) -> bool:
    """Whether the loss takes the expected number of positives per image (EPR, ROLE)."""
    return "expected_positives" in inspect.signature(get_loss(name).build).parameters


def build_loss(name: str, **keywords) -> nn.Module:
    """The loss ``name`` from constructor keywords (those it does not name are dropped; the others keep the
    constructor's defaults). A run builds its loss from its settings instead: ``get_loss(name).create(cfg, ...)``."""
    constructor = get_loss(name).build
    accepted = inspect.signature(constructor).parameters
    return constructor(**{k: v for k, v in keywords.items() if k in accepted})


__all__ = [
    "CONTEXT",
    "LOSSES",
    "LOSS_OPTIONS",
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
    "LossEntry",
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
    "get_loss",
    "likelihood_topk_mask",
    "loss_uses_expected_positives",
    "loss_uses_priors",
]
