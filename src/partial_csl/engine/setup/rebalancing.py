"""A run's class-imbalance settings turned into loss parts: class weights, logit offsets, the post-hoc adjustment.

Everything comes from the training label counts of :class:`~.data.LabelSpace` (annotated positives and annotated
labels per class: ``#N/A`` counts for nothing). :data:`CLASS_WEIGHTINGS` and :data:`LOGIT_ADJUSTMENTS` are the
registries behind ``--class-weights`` and ``--logit-adjust``; each adjustment gives a training-time offset (added to
the logits inside the loss) and a prediction-time one (added to the logits of the finished model), per output form:
``sigmoid`` (``--arch csl``) or ``softmax`` (one softmax per attribute).

The post-hoc offset is stored in the main stage's checkpoints (``logit_adjustment``) and
:func:`apply_logit_adjustment` adds it to the model's outputs whenever a checkpoint is loaded
(:func:`~.checkpoint.model_from_checkpoint`), so validate.py, infer.py, export.py (the offset is traced into the
exported graph) and the web page all predict with it. The scores logged during training (metrics.csv, the choice of
best.pt) are of the unadjusted logits: under a sigmoid a per-class shift does not change any class's AP, and that
choice is the one the adjustment is applied after.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from ...losses import MultiTaskLoss
from ...losses.imbalance import (
    BalancedGroupCrossEntropy,
    ReweightedLoss,
    balanced_softmax_offset,
    effective_number_weights,
    sigmoid_log_prior_odds,
    softmax_log_prior,
)
from ..config import TrainConfig, require_resolved
from .run_data import LabelSpace

Offsets = tuple[np.ndarray | None, np.ndarray | None]  # (training-time, prediction-time) logit offsets


def _counts(labels: LabelSpace) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(labels.train_class_counts, dtype=float), np.asarray(labels.train_annotated_counts, dtype=float)


def _log_prior(labels: LabelSpace, form: str) -> np.ndarray:
    positives, annotated = _counts(labels)
    if form == "sigmoid":
        return sigmoid_log_prior_odds(positives, annotated)
    return softmax_log_prior(positives, list(labels.schema.group_slices().values()))


def _balanced_softmax(cfg: TrainConfig, labels: LabelSpace, form: str) -> Offsets:
    if form != "softmax":
        raise ValueError("--logit-adjust balanced_softmax is a softmax loss: use it with the per-attribute heads "
                         "(--arch mtl, latent or afa); --arch csl has --logit-adjust train or posthoc")
    return balanced_softmax_offset(_counts(labels)[0]), None


LOGIT_ADJUSTMENTS: dict[str, Callable[[TrainConfig, LabelSpace, str], Offsets]] = {
    "none": lambda cfg, labels, form: (None, None),
    # Menon et al. 2021: + tau log prior in the loss only; the model's logits are the balanced ones
    "train": lambda cfg, labels, form: (cfg.la_tau * _log_prior(labels, form), None),
    # Menon et al. 2021: a plain loss, then - tau log prior on the finished model's logits
    "posthoc": lambda cfg, labels, form: (None, -cfg.la_tau * _log_prior(labels, form)),
    # Ren et al. 2020: + log n_c inside each attribute's softmax
    "balanced_softmax": _balanced_softmax,
}
CLASS_WEIGHTINGS = ("none", "effective_number")


def class_weights(cfg: TrainConfig, labels: LabelSpace, groups: list[slice] | None) -> np.ndarray | None:
    """Per-class weights of ``--class-weights`` (mean 1 over all classes, or over each group's)."""
    require_resolved(cfg)
    if cfg.class_weights not in CLASS_WEIGHTINGS:
        raise ValueError(f"unknown --class-weights {cfg.class_weights!r}; expected one of {CLASS_WEIGHTINGS}")
    if cfg.class_weights == "none":
        return None
    return effective_number_weights(_counts(labels)[0], cfg.cb_beta, groups)


def logit_offsets(cfg: TrainConfig, labels: LabelSpace, form: str) -> Offsets:
    require_resolved(cfg)
    if cfg.logit_adjust not in LOGIT_ADJUSTMENTS:
        raise ValueError(f"unknown --logit-adjust {cfg.logit_adjust!r}; expected one of {sorted(LOGIT_ADJUSTMENTS)}")
    return LOGIT_ADJUSTMENTS[cfg.logit_adjust](cfg, labels, form)


def wrap_single_head(criterion: nn.Module, cfg: TrainConfig, labels: LabelSpace) -> nn.Module:
    """``criterion`` with the class weights (on positives) and training-time offset of the settings, if any."""
    weights = class_weights(cfg, labels, None)
    offset, _ = logit_offsets(cfg, labels, "sigmoid")
    if weights is None and offset is None:
        return criterion
    if hasattr(criterion, "expected_positives"):  # epr, role: a batch-level penalty, not one term per entry
        raise ValueError(f"--loss {cfg.loss} adds a penalty on the whole batch, which class weights and logit "
                         "adjustment cannot weigh per entry: use it without --class-weights / --logit-adjust train")
    return ReweightedLoss(criterion, cfg.loss_reduction, _tensor(weights), _tensor(offset), cfg.drw_start_epoch)


def per_attribute_loss(cfg: TrainConfig, labels: LabelSpace) -> MultiTaskLoss:
    """The multi-head archs' task-weighted cross-entropy, with per-class weights and offsets when asked for."""
    groups = list(labels.schema.group_slices().values())
    weights = class_weights(cfg, labels, groups)
    offset, _ = logit_offsets(cfg, labels, "softmax")
    ce = None
    if weights is not None or offset is not None:
        ce = BalancedGroupCrossEntropy(groups, _tensor(weights), _tensor(offset), cfg.drw_start_epoch)
    return MultiTaskLoss(groups, cfg.task_weighting, cfg.dwa_temperature, ce=ce)


def posthoc_adjustment(cfg: TrainConfig, labels: LabelSpace, form: str) -> list[float] | None:
    """The offset a checkpoint stores for prediction (``--logit-adjust posthoc``), else None; ``form``: the
    architecture's output form (sigmoid or softmax)."""
    _, offset = logit_offsets(cfg, labels, form)
    return None if offset is None else [float(v) for v in offset]


def apply_logit_adjustment(model: nn.Module, offset: list[float] | None) -> nn.Module:
    """Add ``offset`` to ``model``'s output logits from now on (a forward hook, so tracing and export keep it)."""
    if offset is None:
        return model
    shift = torch.as_tensor(offset, dtype=torch.float32)

    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        # in float32: under bf16 autocast, rounding the shifted logits to 8 bits would tie and reorder an image's
        # scores within a class (changing its AP), which the shift itself never does
        return output.float() + shift.to(device=output.device)

    model.register_forward_hook(hook)
    return model


def _tensor(values: np.ndarray | None) -> torch.Tensor | None:
    return None if values is None else torch.as_tensor(values, dtype=torch.float32)
