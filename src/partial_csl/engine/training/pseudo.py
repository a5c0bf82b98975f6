"""``--pseudo-labels`` in a run: a teacher labels the unknown labels it is sure of (the rule:
:mod:`partial_csl.pseudo_labels`).

The teacher (``--pseudo-teacher``, :data:`TEACHERS`) is, after each epoch, a frozen copy of whichever weights
(regular or EMA) validated better (the default), or the EMA model as it trains. After each epoch the teacher's
validation scores (computed anyway to pick the best weights) calibrate the per-class thresholds; from epoch
``--pseudo-warmup`` + 1 on, every training batch's unknown entries that the teacher, shown the un-augmented view of
the batch, is sure of become targets of the augmented view the student trains on. Only the main stage uses it (the
prior stage's model must not see its own guesses). On ``--resume`` the teacher is chosen and calibrated again from
the restored weights, so the resumed epochs are those of an uninterrupted run. Each epoch's row of ``metrics.csv``
says how many unknowns were labelled and, where the simulation knows the truth, how many rightly.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ...models import logits_to_probabilities
from ...pseudo_labels import (
    MIN_SUPPORT,
    Thresholds,
    calibrate_thresholds,
    classes_without_reachable_threshold,
    positive_caps,
    positives_needed,
    pseudo_targets,
    share_within_attributes,
)
from ..distributed import DistInfo, sum_across_ranks
from ..inference.probabilities import predict_dataset
from ..setup.build import TrainingParts
from .embeddings import StageInputs
from .epoch_validation import ema_is_better, score_weights, validated_weights
from .run import Run

log = logging.getLogger(__name__)

THRESHOLD_SCOPES = {
    "class": "each class its own positive threshold, from its own validation predictions",
    "attribute": "one positive threshold per attribute, shared by its classes (attribute data): the teacher's choice "
                 "is right this often over the attribute's validation images, so rare classes can be pseudo-labelled",
}
TEACHERS = {
    "ema": "the EMA weights as they train, step by step (the model itself under --ema-decay 0)",
    "validated": "after each epoch, a frozen copy of whichever weights (regular or EMA) validated better",
}


@dataclass
class PseudoLabeller:
    """The teacher, its thresholds and this epoch's counts; call it on a batch (see :meth:`relabel`)."""

    teacher: nn.Module | None  # a "validated" teacher is chosen after the first validation
    frequencies: torch.Tensor  # (C,) annotated positive share of each class: the per-image caps
    groups: list[list[int]] | None
    warmup: int  # epochs before the first pseudo-label
    epochs: int  # the stage's epochs
    precision: float
    negative_precision: float
    truth: np.ndarray | None = None  # (N, C) the full training labels, known only for simulated data
    kind: str = "ema"  # a key of TEACHERS
    scope: str = "class"  # a key of THRESHOLD_SCOPES
    view: Callable[[nn.Module], nn.Module] = lambda model: model  # weights -> what the teacher calls
    thresholds: Thresholds | None = None
    counts: dict = field(default_factory=dict)
    _frozen: nn.Module | None = None

    def after_validation(self, weights: list[nn.Module], scores: list[np.ndarray], use_ema: bool,
                         targets: np.ndarray, epoch: int) -> None:
        """The teacher for the next epoch and its thresholds, from this epoch's validation: ``weights`` (regular,
        then EMA if any), their ``scores``, and whether the EMA's validated better."""
        if not self.needed_after(epoch):
            return
        if self.kind == "validated":
            chosen = weights[int(use_ema)]
            if self._frozen is None:
                self._frozen = copy.deepcopy(chosen).eval().requires_grad_(False)
                self.teacher = self.view(self._frozen).eval()
            else:
                self._frozen.load_state_dict(chosen.state_dict())
            self.calibrate(scores[int(use_ema)], targets, epoch)
        else:
            self.calibrate(scores[-1], targets, epoch)

    def calibrate(self, scores: np.ndarray, targets: np.ndarray, epoch: int) -> None:
        """Thresholds from the teacher's validation ``scores`` (NaN rows: unreadable images, left out)."""
        readable = ~np.isnan(scores).any(axis=1)
        self.thresholds = calibrate_thresholds(scores[readable], targets[readable], self.precision,
                                               self.negative_precision)
        if self.scope == "attribute":
            self.thresholds = share_within_attributes(self.thresholds, scores[readable], targets[readable],
                                                      self.groups or [], self.precision)
        log.info("pseudo-label thresholds after epoch %d: %s", epoch + 1, self.thresholds.summary())

    def needed_after(self, epoch: int) -> bool:
        """Whether a teacher is needed after epoch ``epoch`` (0-based): from the warm-up's last epoch until the
        run's last but one (the last epoch's validation labels nothing)."""
        return self.warmup <= epoch + 1 < self.epochs

    def active(self, epoch: int) -> bool:
        return epoch >= self.warmup and self.thresholds is not None

    @torch.no_grad()
    def relabel(self, teacher_inputs: torch.Tensor, targets: torch.Tensor, rows: torch.Tensor | None) -> torch.Tensor:
        """``targets`` with the teacher's pseudo-labels on the unknown entries it is sure of."""
        device, was_training = targets.device, self.teacher.training
        self.teacher.eval()  # the EMA model already is; the model itself (no EMA) must not update its BN statistics
        probs = logits_to_probabilities(self.teacher, self.teacher(teacher_inputs.to(device)).float())
        self.teacher.train(was_training)
        positive = torch.as_tensor(self.thresholds.positive, dtype=probs.dtype, device=device)
        negative = torch.as_tensor(self.thresholds.negative, dtype=probs.dtype, device=device)
        caps = positive_caps(targets, self.frequencies.to(device))
        new = pseudo_targets(probs, targets, positive, negative, caps, self.groups)
        self._count(targets, new, rows)
        return new

    def _count(self, before: torch.Tensor, after: torch.Tensor, rows: torch.Tensor | None) -> None:
        labelled = (before == -1) & (after != -1)
        positives = labelled & (after == 1)
        self.counts["pseudo_positives"] = self.counts.get("pseudo_positives", 0) + int(positives.sum())
        self.counts["pseudo_negatives"] = self.counts.get("pseudo_negatives", 0) + int((labelled & ~positives).sum())
        if self.truth is not None and rows is not None:
            truth = torch.as_tensor(self.truth[rows.cpu().numpy()], device=after.device)
            right = labelled & (after == truth)
            self.counts["right_positives"] = self.counts.get("right_positives", 0) + int((right & positives).sum())
            self.counts["right_negatives"] = self.counts.get("right_negatives", 0) + int((right & ~positives).sum())

    def epoch_row(self, info: DistInfo) -> dict:
        """This epoch's counts over every rank, for ``metrics.csv`` (and a fresh count for the next epoch)."""
        names = ["pseudo_positives", "pseudo_negatives", "right_positives", "right_negatives"]
        counts = dict(zip(names, sum_across_ranks([self.counts.get(n, 0) for n in names], info)))
        self.counts = {}
        row = {name: int(counts[name]) for name in names[:2]}
        if self.truth is not None:
            for kind in ("positives", "negatives"):
                made = counts[f"pseudo_{kind}"]
                row[f"pseudo_{kind}_precision"] = round(counts[f"right_{kind}"] / made, 4) if made else ""
        return row


def pseudo_labeller(run: Run, inputs: StageInputs, parts: TrainingParts, stage: str,
                    resumed_after: int) -> PseudoLabeller | None:
    """The main stage's labeller under ``--pseudo-labels``; a stage resumed after epoch ``resumed_after`` (-1: a new
    stage) chooses and calibrates its teacher again from the restored weights."""
    cfg = run.cfg
    if not cfg.pseudo_labels or stage != "main":
        return None
    targets = run.train.targets
    known = np.maximum((targets != -1).sum(axis=0), 1)
    frequencies = torch.as_tensor((targets == 1).sum(axis=0) / known, dtype=torch.float32)
    groups = [list(range(s.start, s.stop)) for s in run.labels.groups.values()] if run.labels.groups else None
    teacher = None
    if cfg.pseudo_teacher == "ema":
        model = parts.ema.module if parts.ema is not None else parts.model
        teacher = inputs.view(model)
        teacher.train(model.training)  # a fresh wrapper (--freeze-backbone) starts in train mode: relabel restores it
    labeller = PseudoLabeller(teacher, frequencies, groups, cfg.pseudo_warmup, cfg.epochs, cfg.pseudo_precision,
                              cfg.pseudo_negative_precision, truth=run.train.truth, kind=cfg.pseudo_teacher,
                              scope=cfg.pseudo_thresholds, view=inputs.view)
    _warn_of_unreachable_classes(run)
    if resumed_after >= 0 and labeller.needed_after(resumed_after):
        if labeller.kind == "validated":
            scores, reports = score_weights(run, parts, inputs)
            labeller.after_validation(validated_weights(parts), scores, ema_is_better(reports), run.val.targets,
                                      resumed_after)
        else:  # the live teacher's scores only
            scores = predict_dataset(teacher, inputs.val, cfg.batch_size, cfg.workers, run.device, run.amp_dtype,
                                     info=run.dist, desc="pseudo-label thresholds", skipped={})
            labeller.after_validation([teacher], [scores], False, run.val.targets, resumed_after)
    return labeller


def _warn_of_unreachable_classes(run: Run) -> None:
    """Name the classes whose validation labels are too few for any positive threshold: they will get no
    pseudo-positive, so the pseudo-labels lean to the other classes. (Under ``--pseudo-thresholds attribute`` a class
    shares its attribute's threshold, so only a whole attribute with too few labelled images lacks one.)"""
    targets, cfg = run.val.targets, run.cfg
    if cfg.pseudo_thresholds == "attribute":
        known = {name: int((targets[:, s] != -1).all(axis=1).sum()) for name, s in run.labels.groups.items()}
        unreachable = [f"{name} ({count} labelled)" for name, count in known.items() if count < MIN_SUPPORT]
        kind, total = "attributes", len(known)
    else:
        classes = classes_without_reachable_threshold(targets, cfg.pseudo_precision)
        unreachable = [run.labels.class_names[c] for c in classes]
        kind, total = "classes", len(run.labels.class_names)
    right = "right top-class predictions" if kind == "attributes" else "positives"
    if unreachable and run.dist.is_primary:
        log.warning("--pseudo-labels: %d of %d %s have too few validation labels for a positive threshold at "
                    "--pseudo-precision %g (%d labelled images and %d %s needed) and will get no "
                    "pseudo-positive: %s%s", len(unreachable), total, kind, cfg.pseudo_precision, MIN_SUPPORT,
                    positives_needed(cfg.pseudo_precision), right, ", ".join(unreachable[:10]),
                    f" and {len(unreachable) - 10} more" if len(unreachable) > 10 else "")
